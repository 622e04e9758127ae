"""Write a study configuration back to TOML (read back identically by ``load_config``)."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from study.design.config import StudyConfig

__all__ = ["dumps_toml"]


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps_toml(cfg: StudyConfig) -> str:
    """Write a configuration as TOML that :func:`load_config` reads back identically."""
    d = cfg.design
    lines = [
        f"name = {_toml_value(cfg.name)}",
        f"replicates = {cfg.replicates}",
        f"seed = {cfg.seed}",
        f"level = {cfg.level!r}",
        f"keep_draws = {cfg.keep_draws}",
        "",
        "[design]",
    ]
    for f in fields(d):
        if f.name != "predictor":
            lines.append(f"{f.name} = {_toml_value(getattr(d, f.name))}")
    lines += ["", "[design.predictor]"]
    lines += [
        f"{f.name} = {_toml_value(getattr(d.predictor, f.name))}" for f in fields(d.predictor)
    ]
    lines += ["", "[engines]", f"run = {_toml_value(list(cfg.engines))}"]
    for name, opts in cfg.engine_options.items():
        lines += ["", f"[engines.{name}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in opts.items()]
    return "\n".join(lines) + "\n"
