"""Study configuration: frozen dataclasses loaded from TOML and validated once.

A configuration is a preset name (``seed``, ``default``: TOML files shipped in
``study/design/presets``) or the path of a TOML file.  Everything is checked at load,
engine options included (into each engine's typed options object, against the
model each engine fits), in the one style of :mod:`models.validate`; every
problem raises :class:`ConfigError` whose one-line message names the key, echoes the
value and says what to write instead.  The CLI prints it and exits with code 2.

The validated object is :class:`StudyConfig` (:mod:`study.design.study_config`,
re-exported here); the design itself (:class:`DesignConfig`, :class:`PredictorSpec`) lives in
:mod:`study.design.spec`.  Engines are chosen in one way: an ``[engines]`` table whose
``run`` list names them (default: every engine), with ``[engines.NAME]`` tables for
their options.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import fields
from importlib import resources
from pathlib import Path
from typing import Any

from models.registry import DEFAULT_ENGINES, Registry, default_registry
from models.validate import OptionError, check_keys, fail
from study.design.conditions import Condition, design_from_table
from study.design.crossed.spec import KEYS as CROSSED_KEYS
from study.design.crossed.spec import CrossedDesignConfig, is_crossed
from study.design.power import TABLE as POWER_TABLE
from study.design.power import PowerSettings, level_from_alpha
from study.design.sbc import TABLE as SBC_TABLE
from study.design.sbc import SbcSettings
from study.design.spec import PILOT, DesignConfig, PredictorSpec
from study.design.study_config import MAX_REPLICATES, StudyConfig
from study.errors import ConfigError

__all__ = [
    "MAX_REPLICATES",
    "PRESETS",
    "Condition",
    "CrossedDesignConfig",
    "DesignConfig",
    "PredictorSpec",
    "StudyConfig",
    "config_from_dict",
    "config_from_text",
    "differences",
    "load_config",
]


def _presets() -> tuple[str, ...]:
    """Every TOML file of study/design/presets, by name (``default`` first)."""
    folder = resources.files("study.design.presets")
    names = [p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")]
    return tuple(sorted(names, key=lambda n: (n != "default", n)))


#: the presets, by name
PRESETS: tuple[str, ...] = _presets()
#: the settings tables of kinds of study other than the coverage study, by table name
KIND_TABLES: dict[str, type] = {SBC_TABLE: SbcSettings, POWER_TABLE: PowerSettings}


def differences(a: Mapping[str, Any], b: Mapping[str, Any], where: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested tables, as ``key: a -> b``."""
    out = []
    for key in sorted(set(a) | set(b), key=str):
        full = f"{where}.{key}" if where else str(key)
        va, vb = a.get(key), b.get(key)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out += differences(va, vb, full)
        elif va != vb:
            out.append(f"{full}: {_brief(va)} -> {_brief(vb)}")
    return out


def _brief(value: Any) -> str:
    if value is None:
        return "(not set)"
    return "(a table)" if isinstance(value, Mapping) else repr(value)


_TOP_KEYS = {
    "name",
    "replicates",
    "seed",
    "level",
    "keep_draws",
    "replicates_by_condition",
    "design",
    "engines",
    "conditions",
    *KIND_TABLES,
}
_DESIGN_KEYS = {f.name for f in fields(DesignConfig)}
_ENGINES_HINT = (
    'choose engines with an [engines] table: `[engines]` then `run = ["reml", "bayes"]`, '
    "and set options in [engines.reml] / [engines.bayes]"
)


#: the integers a config may hold: 64-bit signed, as numpy arrays and netCDF store them
INT64 = (-(2**63), 2**63 - 1)


def check_integers(value: object, key: str = "") -> None:
    """Refuse any integer in ``value`` (a parsed TOML table, nested tables and lists
    included) outside the 64-bit range :data:`INT64`, naming its dotted key.

    TOML integers are Python ints of any size, but every integer a study stores or
    computes with (seeds, counts, sizes, engine options, lists of them in conditions)
    goes through numpy or netCDF, which overflow past 64 bits: one check of the whole
    table covers every key, present and future.
    """
    if isinstance(value, Mapping):
        for k, v in value.items():
            check_integers(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            check_integers(v, f"{key}[{i}]")
    elif isinstance(value, int) and not isinstance(value, bool):
        low, high = INT64
        if not low <= value <= high:
            raise fail(
                key,
                value,
                f"is too large for a 64-bit integer (must be between {low:,} and {high:,}); "
                "give a smaller number",
            )


def _table(key: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail(key, value, "must be a table")
    return dict(value)


#: keys of ``[engines.NAME]`` that say what model the engine fits, not how
STRUCTURE_KEYS = ("random", "correlated")


def _engines(
    raw: object, registry: Registry
) -> tuple[tuple[str, ...], dict[str, Any], dict[str, Any]]:
    """``(engines run, option tables, structure tables)`` from the ``[engines]`` table
    (engines of ``registry`` only: a configuration never names code to import)."""
    if isinstance(raw, list):
        raise fail("engines", raw, f"must be a table, not a list; {_ENGINES_HINT}")
    table = _table("engines", raw)
    check_keys(table, {"run", *registry.names, *filter(registry.is_label, table)}, "engines")
    run = table.pop("run", list(DEFAULT_ENGINES))
    structures: dict[str, Any] = {}
    for name, opts in table.items():
        opts = table[name] = _table(f"engines.{name}", opts)
        picked = {k: opts.pop(k) for k in STRUCTURE_KEYS if k in opts}
        if picked:
            structures[name] = picked
        if isinstance(run, list) and name not in run:
            raise fail(
                "engines.run",
                run,
                f"does not include {name!r}, which [engines.{name}] configures; "
                f"add it to engines.run or remove the [engines.{name}] table",
            )
    return (tuple(run) if isinstance(run, list) else run), table, structures


def config_from_dict(
    raw: Mapping[str, Any],
    *,
    default_name: str,
    registry: Registry | None = None,
    base: Path | None = None,
) -> StudyConfig:
    """Build a validated :class:`StudyConfig` from a parsed TOML table (engines from
    ``registry``, default: the installed ones).

    Raises
    ------
    ConfigError
        One line naming the key, the value and the fix.
    """
    try:
        check_integers(raw)
        raw = dict(raw)
        level_from_alpha(raw)
        check_keys(raw, _TOP_KEYS, "")
        design_raw = _table("design", raw.pop("design", {}))
        check_keys(design_raw, CROSSED_KEYS if is_crossed(design_raw) else _DESIGN_KEYS, "design")
        _pilot_paths(design_raw, base)
        registry = registry or default_registry()
        engines, options, structures = _engines(raw.pop("engines", {}), registry)
        conditions = _table("conditions", raw.pop("conditions", {}))
        kind_settings = {}
        for key, settings_class in KIND_TABLES.items():
            if key in raw:
                table = _table(key, raw.pop(key))
                check_keys(table, {f.name for f in fields(settings_class)}, key)
                kind_settings[key] = settings_class(**table)
        design = design_from_table(design_raw)
        return StudyConfig(
            name=raw.pop("name", default_name),
            design=design,
            engines=engines,
            engine_options=options,
            engine_structures=structures,
            condition_spec=conditions,
            kind_settings=kind_settings,
            registry=registry,
            **raw,
        )
    except OptionError as err:
        raise ConfigError(str(err)) from err


def _pilot_paths(design: dict[str, Any], base: Path | None) -> None:
    """``predictors_from`` made absolute (relative to the config's folder, ``base``; the
    working directory for a preset or a text), and the pilot's own groups and rows
    where ``groups`` / ``group_size`` are not given."""
    path = design.get("predictors_from")
    if not path:
        return
    if not isinstance(path, str):
        raise fail("design.predictors_from", path, "must be the path of a CSV file")
    full = Path(path).expanduser()
    if not full.is_absolute():
        full = (base or Path.cwd()) / full
    design["predictors_from"] = str(full.resolve())
    design.setdefault("groups", PILOT)
    design.setdefault("group_size", PILOT)


def with_registry(config: StudyConfig, registry: Registry) -> StudyConfig:
    """``config`` validated again against ``registry`` (its engines may now be ones
    given through the Python API)."""
    return config_from_text(
        config.to_toml(), default_name=config.name, label=config.name, registry=registry
    )


def load_config(spec: str | Path, registry: Registry | None = None) -> StudyConfig:
    """Load a preset by name (``seed``, ``default``) or a TOML file by path (engines
    from ``registry``, default: the installed ones)."""
    name = str(spec)
    if name in PRESETS:
        text = resources.files("study.design.presets").joinpath(f"{name}.toml").read_text()
        default_name = name
    else:
        path = Path(spec)
        if not path.exists():
            raise ConfigError(
                f"config {name!r}: no such file and not a preset; "
                f"give a TOML path or one of: {', '.join(PRESETS)}"
            )
        if path.is_dir():
            raise ConfigError(f"config {name!r} is a directory; give a TOML file or a preset")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"config {name!r} cannot be read ({err}); check the file") from err
        default_name = path.stem
    base = None if name in PRESETS else Path(spec).parent
    return config_from_text(
        text, default_name=default_name, label=name, registry=registry, base=base
    )


def config_from_text(
    text: str,
    *,
    default_name: str,
    label: str,
    registry: Registry | None = None,
    base: Path | None = None,
) -> StudyConfig:
    """Parse and validate TOML ``text`` (``label`` names it in errors)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        hint = f"; {_ENGINES_HINT}" if "'engines'" in str(err) else "; fix the syntax"
        raise ConfigError(f"config {label!r} is not valid TOML ({err}){hint}") from err
    if not raw:
        raise ConfigError(
            f"config {label!r} is empty (no settings); write the study's settings into it "
            f"(README: the configuration file) or give a preset: {', '.join(PRESETS)}"
        )
    return config_from_dict(raw, default_name=default_name, registry=registry, base=base)
