"""Conditions: a grid of designs in one study (SimDesign's ``createDesign``).

A ``[conditions]`` table crosses lists of design parameters into a full grid; its
optional ``exclude`` list drops combinations (each entry drops the conditions that
match all its keys) and its optional ``add`` list appends explicit conditions that are
not part of the crossing.  Every condition starts from ``[design]`` and overrides the
factors it sets; the predictors (hence the term list) are the same in all.  A study
without ``[conditions]`` is one condition, the base design.

A condition is identified by its **full design** (:attr:`Condition.id`, a hash of
every generator setting), never by its position: the seed policy keys its streams on
that id, so adding, removing or reordering conditions leaves the others' data alone.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from models.validate import OptionError, check_keys, fail
from study.design.spec import DesignConfig, PredictorSpec

#: design keys that fix the term list (the generating structure): never varied
STRUCTURE_KEYS = ("predictors", "random", "correlated")
#: design keys a condition may vary
FACTOR_KEYS = tuple(f.name for f in fields(DesignConfig) if f.name not in STRUCTURE_KEYS)
#: keys of ``[conditions]`` that are not factors
SPECIAL_KEYS = ("exclude", "add")
#: label of the single condition of a study without ``[conditions]``
BASE_LABEL = "base"
#: the most conditions a grid may cross into (each is a design built and kept in memory)
MAX_CONDITIONS = 100_000


@dataclass(frozen=True)
class Condition:
    """One design of a study.

    Attributes
    ----------
    label : str
        ``"groups=5, group_size=20"`` (the factors it sets), or ``"base"``.
    factors : dict
        The factor values it sets (plain TOML values).
    design : DesignConfig
        Its full design: the base with the factors applied.
    """

    label: str
    factors: Mapping[str, Any]
    design: DesignConfig

    @property
    def id(self) -> str:
        """A 16-hex-digit hash of the full design: the condition's identity."""
        return design_id(self.design)


def design_table(design: DesignConfig) -> dict[str, Any]:
    """Every generator setting of ``design`` as plain values (lists for tuples); a
    setting marked ``omit_default`` is left out while at its default, so designs made
    before it existed keep their ids (and so their seeds)."""
    table = json.loads(json.dumps(asdict(design)))
    for f in fields(design):
        if f.metadata.get("omit_default") and getattr(design, f.name) == f.default:
            table.pop(f.name, None)
    return table


def design_id(design: DesignConfig) -> str:
    """Hash of :func:`design_table` (canonical JSON)."""
    text = json.dumps(design_table(design), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def factor_text(value: Any) -> str:
    """A factor value as text: scalars as they are, lists and tables as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    return json.dumps(value, separators=(", ", ": "))


def _label(factors: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={factor_text(v)}" for k, v in factors.items()) or BASE_LABEL


def _design(base: Mapping[str, Any], factors: Mapping[str, Any], label: str) -> DesignConfig:
    table = {**base, **factors}
    predictor = table.pop("predictor", {})
    try:
        if not isinstance(predictor, Mapping):
            raise fail("design.predictor", predictor, "must be a table")
        return DesignConfig(**table, predictor=PredictorSpec(**predictor))
    except OptionError as err:
        if label == BASE_LABEL:
            raise
        raise OptionError("", None, f"condition {label}: {err}") from err


def _check_factors(table: Mapping[str, Any], where: str) -> None:
    check_keys(table, FACTOR_KEYS, where)


def expand(base: Mapping[str, Any], spec: Mapping[str, Any]) -> tuple[Condition, ...]:
    """The conditions of a study: the crossed grid of ``spec``, minus ``exclude``, plus
    ``add``; one base condition when ``spec`` is empty.

    Parameters
    ----------
    base : mapping
        The ``[design]`` table (raw TOML values).
    spec : mapping
        The ``[conditions]`` table.

    Raises
    ------
    OptionError
        Naming the condition and key that is wrong.
    """
    spec = dict(spec)
    for key in STRUCTURE_KEYS:
        if key in spec:
            raise fail(
                f"conditions.{key}",
                spec[key],
                f"cannot vary: every condition has the same terms; set {key} in [design] "
                "(engines may fit other structures: random / correlated in [engines.NAME])",
            )
    exclude = spec.pop("exclude", [])
    add = spec.pop("add", [])
    _check_factors(spec, "conditions")
    for key, levels in spec.items():
        if not isinstance(levels, list) or not levels:
            raise fail(
                f"conditions.{key}",
                levels,
                "must be a non-empty list of levels, e.g. groups = [5, 10, 20]",
            )
    for name, entries in (("exclude", exclude), ("add", add)):
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise fail(f"conditions.{name}", entries, "must be a list of tables")
        for i, entry in enumerate(entries):
            _check_factors(entry, f"conditions.{name}[{i}]")
    size = math.prod(len(levels) for levels in spec.values())
    if size > MAX_CONDITIONS:
        counts = " x ".join(f"{len(v):,} {k}" for k, v in spec.items())
        raise fail(
            "conditions",
            "(a table)",
            f"crosses into {size:,} conditions ({counts}), more than {MAX_CONDITIONS:,}; "
            "give fewer levels, or split the grid into studies of their own",
        )
    crossed = [dict(zip(spec, combo, strict=True)) for combo in itertools.product(*spec.values())]
    if not spec:
        crossed = [] if add else [{}]
    for i, entry in enumerate(exclude):
        if not any(all(c.get(k) == v for k, v in entry.items()) for c in crossed):
            raise fail(f"conditions.exclude[{i}]", entry, "matches no condition of the grid")
        crossed = [c for c in crossed if not all(c.get(k) == v for k, v in entry.items())]
    chosen = [*crossed, *(dict(e) for e in add)]
    if not chosen:
        raise fail("conditions.exclude", exclude, "excludes every condition of the grid")
    out = [Condition(_label(f), f, _design(base, f, _label(f))) for f in chosen]
    seen: dict[str, str] = {}
    for c in out:
        if c.id in seen:
            raise fail(
                "conditions", c.label, f"is the same design as condition {seen[c.id]}; drop one"
            )
        seen[c.id] = c.label
    return tuple(out)


def factor_names(conditions: Sequence[Condition]) -> list[str]:
    """The factors any condition sets, in order of first appearance."""
    return list(dict.fromkeys(k for c in conditions for k in c.factors))


def factor_values(conditions: Sequence[Condition], name: str) -> list[Any]:
    """Each condition's actual value of design parameter ``name``, for coordinates and
    tidy columns: numbers as they are, or all as text when any is a list or table."""
    values = [design_table(c.design)[name] for c in conditions]
    if all(isinstance(v, bool | int | float) for v in values):
        return values
    return [factor_text(v) for v in values]
