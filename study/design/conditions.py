"""Conditions: a grid of designs in one study (SimDesign's ``createDesign``).

A ``[conditions]`` table crosses lists of design parameters into a full grid; its
optional ``exclude`` list drops combinations (each entry drops the conditions that
match all its keys) and its optional ``add`` list appends explicit conditions that are
not part of the crossing (an entry's ``label`` names it: ``label = "skewed u"``).
Nested keys vary with quoted dotted names: ``"beta.treat" = [0.0, 0.3]``,
``"predictors.treat.share" = [0.3, 0.5]``; a whole table varies as a list of
tables.  Every condition starts from ``[design]`` and overrides the
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
from dataclasses import dataclass, fields
from typing import Any

from models.validate import OptionError, check_keys, fail
from study.design.crossed import spec as crossed
from study.design.crossed.spec import CrossedDesignConfig
from study.design.spec import DesignConfig

#: design keys that fix the term list (the generating structure): never varied whole
#: (a predictor's settings may vary: ``"predictors.treat.share" = [0.3, 0.5]``)
STRUCTURE_KEYS = ("predictors", "random", "correlated", "fixed")
#: design keys a condition may vary
FACTOR_KEYS = tuple(
    f.name for f in fields(DesignConfig) if f.name == "predictors" or f.name not in STRUCTURE_KEYS
)
#: crossed design keys a condition may vary (``"crossed.subj" = [12, 24]``)
CROSSED_FACTOR_KEYS = tuple(k for k in crossed.KEYS if k == "predictors" or k not in STRUCTURE_KEYS)
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
    design: DesignConfig | CrossedDesignConfig

    @property
    def id(self) -> str:
        """A 16-hex-digit hash of the full design: the condition's identity."""
        return design_id(self.design)


def design_table(design: DesignConfig | CrossedDesignConfig) -> dict[str, Any]:
    """Every generator setting of ``design`` as plain values (:meth:`DesignConfig.table`:
    a setting added later is left out while at its default, so designs made before it
    existed keep their ids)."""
    return json.loads(json.dumps(design.table(hashed=True)))


def _hash(table: Mapping[str, Any]) -> str:
    text = json.dumps(table, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def design_id(design: DesignConfig | CrossedDesignConfig) -> str:
    """Hash of :func:`design_table` (canonical JSON): the key of a condition's replicate
    streams."""
    return _hash(design_table(design))


def x_id(design: DesignConfig | CrossedDesignConfig) -> str:
    """Hash of the settings that define X (:meth:`DesignConfig.x_table`): the key of the
    design stream, so a grid over ``beta``, a variance or ``icc`` keeps X."""
    return _hash(json.loads(json.dumps(design.x_table())))


def factor_path(key: str) -> list[str]:
    """A factor's path into the design table: ``"beta.treat"`` -> ``["beta", "treat"]``."""
    return key.split(".")


def _get(table: Mapping[str, Any], key: str) -> Any:
    value: Any = table
    for part in factor_path(key):
        value = value[part]
    return value


def _set(table: dict[str, Any], key: str, value: Any, where: str) -> None:
    *parents, last = factor_path(key)
    node = table
    for i, part in enumerate(parents):
        child = node.get(part)
        if not isinstance(child, dict):
            shown = ".".join(parents[: i + 1])
            raise fail(
                where,
                value,
                f"sets a key inside design.{shown}, which is not a table there; write "
                f"design.{shown} as a table in [design] (e.g. beta keyed by term) or vary "
                f"{shown} whole",
            )
        node[part] = dict(child)
        node = node[part]
    if parents and last not in node:
        shown = ".".join(parents)
        raise fail(where, value, f"names no key of design.{shown} ({', '.join(map(str, node))})")
    node[last] = value


def factor_text(value: Any) -> str:
    """A factor value as text: scalars as they are, lists and tables as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    return json.dumps(value, separators=(", ", ": "))


def _label(factors: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={factor_text(v)}" for k, v in factors.items()) or BASE_LABEL


def design_from_table(table: Mapping[str, Any]) -> DesignConfig | CrossedDesignConfig:
    """The design of a ``[design]`` table (keys checked): crossed when it has
    ``crossed``, else one grouping factor."""
    if crossed.is_crossed(table):
        check_keys(table, crossed.KEYS, "design")
        return CrossedDesignConfig(**table)
    check_keys(table, [f.name for f in fields(DesignConfig)], "design")
    return DesignConfig(**table)


def _design(
    base: DesignConfig | CrossedDesignConfig, factors: Mapping[str, Any], label: str
) -> DesignConfig | CrossedDesignConfig:
    table = json.loads(json.dumps(base.table()))
    try:
        for key, value in factors.items():
            _set(table, key, value, f"conditions.{key}")
        design = design_from_table(table)
    except OptionError as err:
        if label == BASE_LABEL:
            raise
        raise OptionError("", None, f"condition {label}: {err}") from err
    if design.structure != base.structure:
        raise fail(
            "conditions",
            label,
            f"changes the model's terms ({', '.join(design.structure.terms)} instead of "
            f"{', '.join(base.structure.terms)}); every condition must have the same terms",
        )
    return design


def _entry_label(value: object, where: str) -> str | None:
    """An ``add`` entry's own ``label`` (what the condition is called), if it has one."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or any(c in value for c in "/\\\n"):
        raise fail(f"{where}.label", value, "must be a short name without slashes")
    return value.strip()


def _check_factors(table: Mapping[str, Any], where: str, allowed: Sequence[str]) -> None:
    check_keys({factor_path(k)[0]: v for k, v in table.items()}, allowed, where)
    for key in table:
        if key in STRUCTURE_KEYS:
            raise fail(
                f"{where}.{key}",
                table[key],
                f"cannot vary: every condition has the same terms; set {key} in [design] "
                "(engines may fit other structures: random / correlated in [engines.NAME])",
            )


def expand(
    base: DesignConfig | CrossedDesignConfig, spec: Mapping[str, Any]
) -> tuple[Condition, ...]:
    """The conditions of a study: the crossed grid of ``spec``, minus ``exclude``, plus
    ``add``; one base condition when ``spec`` is empty.

    Parameters
    ----------
    base : DesignConfig or CrossedDesignConfig
        The ``[design]`` table, validated.
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
    add = list(add) if isinstance(add, list) else add  # (its entries lose their labels below)
    allowed = CROSSED_FACTOR_KEYS if isinstance(base, CrossedDesignConfig) else FACTOR_KEYS
    _check_factors(spec, "conditions", allowed)
    for key, levels in spec.items():
        if not isinstance(levels, list) or not levels:
            raise fail(
                f"conditions.{key}",
                levels,
                "must be a non-empty list of levels, e.g. groups = [5, 10, 20]",
            )
    labels: list[str | None] = []
    for name, entries in (("exclude", exclude), ("add", add)):
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise fail(f"conditions.{name}", entries, "must be a list of tables")
        for i, entry in enumerate(entries):
            if name == "add":
                entries[i] = entry = dict(entry)
                labels.append(_entry_label(entry.pop("label", None), f"conditions.add[{i}]"))
            _check_factors(entry, f"conditions.{name}[{i}]", allowed)
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
    names = [_label(f) for f in crossed] + [
        given or _label(f) for given, f in zip(labels, chosen[len(crossed) :], strict=True)
    ]
    given = {n for n in labels if n}
    twice = [n for n in names if names.count(n) > 1 and n in given]
    if twice:  # (conditions that share a generated label are the same design: below)
        raise fail("conditions.add", twice[0], "labels must be distinct")
    out = [Condition(n, f, _design(base, f, n)) for n, f in zip(names, chosen, strict=True)]
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
    values = [_get(json.loads(json.dumps(c.design.table(full=True))), name) for c in conditions]
    if all(isinstance(v, bool | int | float) for v in values):
        return values
    return [factor_text(v) for v in values]
