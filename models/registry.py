"""Engine registry: engine names -> option classes and engine classes.

This is the one place that maps the names used in configurations (``"reml"``,
``"bayes"``) to engine classes, so callers never import engine modules directly.
Engine modules are imported lazily (PyMC is slow to import).  Options are validated
once, into the engine's frozen options object (:func:`build_options`); an engine is
then built from that object (:func:`build_engine`).
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import typing
from collections.abc import Mapping
from typing import Any

from models.base import Engine
from models.structure import Structure
from models.validate import OptionError, OptionTypeError, check_keys

#: engine name -> (module, engine class, options class)
ENGINES: dict[str, tuple[str, str, str]] = {
    "reml": ("models.reml", "RemlEngine", "RemlOptions"),
    "bayes": ("models.bayes.engine", "BayesEngine", "BayesOptions"),
}
#: engines with a prior they can draw from (:class:`models.base.PriorEngine`)
PRIOR_ENGINES: tuple[str, ...] = ("bayes",)
#: engine names, in their canonical order
ENGINE_NAMES: tuple[str, ...] = tuple(ENGINES)
#: engine name -> version of what it computes: raised when the same options and seed
#: give other numbers (bayes 2: the q = 2 likelihood Op, models/bayes/kernel.py; reml 2:
#: the Newton polish to the exact optimum and the new inference, models/reml/; bayes 3:
#: chains start in a data-scaled region and stuck chains are rerun and recorded,
#: models/bayes/start.py), so a run started by one version is not resumed by another
ENGINE_VERSIONS: dict[str, int] = {"reml": 2, "bayes": 3}


#: the suffix of an engine variant's label (``reml-kr``)
_SUFFIX = re.compile(r"[a-z0-9_]+")


def engine_kind(label: object, key: str = "engine") -> str:
    """The engine that ``label`` runs.

    A label is an engine name (``"reml"``) or, for a second instance of that engine
    with options of its own, the name with a suffix: ``"reml-kr"`` runs the REML
    engine with the options of ``[engines.reml-kr]`` (suffix: lower-case letters,
    digits, ``_``).  Variants let one study compare settings of one method side by
    side (e.g. interval options), each a value of the results' ``engine`` coordinate.
    """
    if not isinstance(label, str):
        raise OptionTypeError(key, label, f"must be one of {', '.join(ENGINE_NAMES)}")
    kind, sep, suffix = label.partition("-")
    if kind not in ENGINE_NAMES or (sep and not _SUFFIX.fullmatch(suffix)):
        raise OptionError(
            key,
            label,
            f"must be one of {', '.join(ENGINE_NAMES)}, or one of them with a suffix "
            "for a variant with its own options (e.g. reml-kr: lower-case letters, digits, _)",
        )
    return kind


def is_engine_label(name: object) -> bool:
    """Whether ``name`` is an engine label (:func:`engine_kind`)."""
    try:
        engine_kind(name)
    except OptionError:
        return False
    return True


def _options_class(name: str) -> type:
    module, _, options = ENGINES[engine_kind(name)]
    return typing.cast(type, getattr(importlib.import_module(module), options))


def _build(cls: type, table: object, **fixed: Any) -> Any:
    """Instantiate dataclass ``cls`` from ``table`` (plus ``fixed`` settings that the
    table may not hold), recursing into nested dataclasses.

    Errors are keyed relative to ``table`` (``chains``, ``priors.sd_scale``).
    """
    if not isinstance(table, Mapping):
        raise OptionTypeError("", table, f"must be a table of {cls.__name__} settings")
    flds = {f.name for f in dataclasses.fields(cls)}
    check_keys(table, flds - set(fixed), "")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        hint = hints.get(key)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping):
                raise OptionTypeError(key, value, "must be a table")
            try:
                value = _build(hint, value)
            except OptionError as err:
                raise err.within(key) from err
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs, **fixed)


def build_options(
    name: str,
    table: Mapping[str, Any] | None = None,
    *,
    level: float = 0.95,
    structure: Structure | None = None,
) -> Any:
    """The validated, frozen options object of engine ``name`` from a plain table.

    Parameters
    ----------
    name : str
        An engine name (:data:`ENGINE_NAMES`).
    table : mapping, optional
        Option values by name (TOML ``[engines.NAME]``); missing ones take defaults.
    level : float
        The interval level: a study-wide setting, refused inside ``table``.
    structure : Structure, optional
        The model the options will serve; when given, settings per coefficient or per
        random effect (the Bayesian engine's prior lists) must match it.

    Raises
    ------
    OptionError
        Keyed relative to ``table`` (e.g. ``"chains = 0: must be >= 1"``).
    """
    cls = _options_class(name)
    table = dict(table or {})
    if "level" in table:
        raise OptionError(
            "",
            table["level"],
            "'level' is set for the whole study (top-level key `level`), not per engine; "
            "remove it from the engine's table",
        )
    options = _build(cls, table, level=level)
    if structure is not None and hasattr(options, "check_structure"):
        options.check_structure(structure)
    return options


def options_table(options: Any) -> dict[str, Any]:
    """The options object as a plain table (lists for tuples; ``level`` left out).

    A field marked ``OMIT_DEFAULT`` is left out while it holds its default: an option
    added later then leaves the tables, and so the configuration hashes, of existing
    runs as they were.
    """

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    out: dict[str, Any] = {}
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if f.name == "level" or (f.metadata.get("omit_default") and value == f.default):
            continue
        out[f.name] = options_table(value) if dataclasses.is_dataclass(value) else plain(value)
    return out


def build_engine(name: str, options: Any = None, *, level: float = 0.95) -> Engine:
    """Construct engine ``name`` from its options object (or a plain table, validated)."""
    if options is None or isinstance(options, Mapping):
        options = build_options(name, options, level=level)
    module, engine_cls, _ = ENGINES[engine_kind(name)]
    cls = getattr(importlib.import_module(module), engine_cls)
    return typing.cast(Engine, cls(options))


def limit_threads(options: Any, threads: int) -> Any:
    """``options`` for an engine that may use at most ``threads`` cores.

    For engines that run work in parallel (the Bayesian engine's chains) the options
    object's ``with_threads`` caps it; others are returned as they are.  The results
    of a fit never depend on this setting.
    """
    limit = getattr(options, "with_threads", None)
    return options if limit is None else limit(threads)
