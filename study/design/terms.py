"""The fixed part of a design: its lme4 formula over the predictors, the names of X's
columns (lme4's: ``(Intercept)``, ``treat``, ``siteb``, ``treat:age``) and X itself.

``fixed = "treat * age"`` is a right-hand side in Wilkinson notation (``+``, ``:``,
``*``) over the predictors the design defines; the default is their main effects in
table order.  formulaic builds the columns (treatment contrasts, the first level of a
categorical predictor the reference) and :mod:`models.formula` names them as lme4 does.
The intercept is always there: the truth and ``icc`` are defined with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from models.structure import INTERCEPT
from models.validate import fail, number


def default_fixed(names: Sequence[str]) -> str:
    """The main effects of ``names``."""
    return " + ".join(names) if names else "1"


def fixed_columns(
    rhs: str, frame: pd.DataFrame, names: Sequence[str], key: str = "design.fixed"
) -> tuple[tuple[str, ...], np.ndarray]:
    """The column names (intercept first) and X of ``rhs`` on ``frame`` (a column per
    predictor in ``names``); one-line :class:`OptionError` naming ``key`` otherwise."""
    from models.formula import FormulaError, design_matrix, rhs_variables

    try:
        used = rhs_variables(rhs)
    except FormulaError as err:
        raise fail(key, rhs, _rule(err, rhs)) from None
    unknown = [v for v in used if v not in names]
    if unknown:
        raise fail(
            key,
            rhs,
            f"names {', '.join(map(repr, unknown))}, not a predictor of the design "
            f"({', '.join(names)}); define it in [design.predictors.{unknown[0]}] or fix the name",
        )
    try:
        columns, X = design_matrix(rhs, frame)
    except FormulaError as err:
        raise fail(key, rhs, _rule(err, rhs)) from None
    if not columns or columns[0] != INTERCEPT:
        raise fail(key, rhs, "must keep the intercept (drop 0 + / - 1): the truth and icc need it")
    dup = sorted({c for c in columns if columns.count(c) > 1})
    if dup:
        raise fail(key, rhs, f"gives the column(s) {dup} twice; name the predictors apart")
    return tuple(columns), X


def _rule(err: Exception, rhs: str) -> str:
    text = str(err)
    for prefix in (f"formula {rhs!r}", f"formula '~ {rhs}'", repr(rhs)):
        if text.startswith(prefix):
            text = text[len(prefix) :].lstrip(": ")
    return text or "is not a formula of the predictors, e.g. treat * age"


def beta_values(
    value: object, fixed: tuple[str, ...], key: str = "design.beta"
) -> tuple[float, ...]:
    """``beta`` in the order of ``fixed``: a list in that order or a table keyed by
    lme4's term names (every one of them)."""
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in fixed]
        if unknown:
            raise fail(
                f"{key}.{unknown[0]}",
                value[unknown[0]],
                f"is not a fixed effect of the design ({', '.join(fixed)})",
            )
        missing = [k for k in fixed if k not in value]
        if missing:
            raise fail(
                key,
                dict(value),
                f"has no value for {', '.join(map(repr, missing))}; give every fixed effect "
                f"({', '.join(fixed)})",
            )
        return tuple(number(f"{key}.{k}", value[k]) for k in fixed)
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise fail(key, value, f"must be a list ({len(fixed)} values) or a table keyed by term")
    values = tuple(number(f"{key}[{i}]", v) for i, v in enumerate(value))
    if len(values) != len(fixed):
        raise fail(
            key,
            list(values),
            f"must have {len(fixed)} values, one per fixed effect ({', '.join(fixed)}), "
            "or be a table keyed by term",
        )
    return values


def plain_beta(value: Any) -> Any:
    """``beta`` as TOML holds it (a list, or a table keyed by term)."""
    if isinstance(value, Mapping):
        return {str(k): float(v) for k, v in value.items()}
    return [float(v) for v in value]
