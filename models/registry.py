"""Engine registry: build an engine by name from a plain option table.

This is the one place that maps the names used in configurations (``"reml"``,
``"bayes"``) to engine classes, so callers never import engine modules directly.
Engine modules are imported lazily (PyMC is slow to import).
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from collections.abc import Mapping
from typing import Any

from models.base import Engine

#: engine name -> (module, engine class, options class)
ENGINES: dict[str, tuple[str, str, str]] = {
    "reml": ("models.reml", "RemlEngine", "RemlOptions"),
    "bayes": ("models.bayes.engine", "BayesEngine", "BayesOptions"),
}


class EngineOptionsError(ValueError):
    """An engine option table that cannot be used."""


def _options_class(name: str) -> type:
    if name not in ENGINES:
        raise EngineOptionsError(f"unknown engine {name!r}; known engines: {', '.join(ENGINES)}")
    module, _, options = ENGINES[name]
    return typing.cast(type, getattr(importlib.import_module(module), options))


def _build(cls: type, table: Mapping[str, Any], where: str) -> Any:
    """Instantiate dataclass ``cls`` from ``table``, recursing into nested dataclasses."""
    if not isinstance(table, Mapping):
        raise EngineOptionsError(f"{where} = {table!r}: must be a table")
    flds = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in flds:
            raise EngineOptionsError(
                f"unknown option {where}.{key}; allowed: {', '.join(sorted(flds))}"
            )
        hint = hints.get(key)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            value = _build(hint, value, f"{where}.{key}")
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except EngineOptionsError:
        raise
    except (ValueError, TypeError) as err:
        raise EngineOptionsError(f"{where}: {err}") from err


def build_options(name: str, table: Mapping[str, Any] | None = None, *, level: float = 0.95) -> Any:
    """Validated options object of engine ``name`` from a plain table.

    ``level`` (the interval level) is a study-wide setting and cannot be set per engine.
    """
    cls = _options_class(name)
    table = dict(table or {})
    if "level" in table:
        raise EngineOptionsError(
            f"'level' is set for the whole study (top-level key `level`), not per engine; "
            f"remove it from [engines.{name}]"
        )
    table["level"] = level
    return _build(cls, table, name)


def validate_options(name: str, table: Mapping[str, Any] | None, *, level: float = 0.95) -> None:
    """Raise :class:`EngineOptionsError` if ``table`` is not valid for engine ``name``."""
    build_options(name, table, level=level)


def build_engine(
    name: str, table: Mapping[str, Any] | None = None, *, level: float = 0.95
) -> Engine:
    """Construct engine ``name`` with options from ``table``."""
    options = build_options(name, table, level=level)
    module, engine_cls, _ = ENGINES[name]
    cls = getattr(importlib.import_module(module), engine_cls)
    return typing.cast(Engine, cls(options))
