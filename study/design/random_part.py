"""The random part of a design: an lme4 random part (``"(1 + X | g)"``) or a list of
fixed-effect names, kept in the order of the fixed effects (``re_sd`` and ``re_cor``
follow it), and the random-effect correlation matrix."""

from __future__ import annotations

import numpy as np

from models.structure import Structure
from models.validate import OptionError, fail, numbers
from study.design.crossed.bars import groups_of


def bar_structure(
    text: str, fixed: tuple[str, ...], correlated: bool, key: str = "design.random"
) -> Structure:
    """The structure of ``random`` (``key``) written as an lme4 random part; its terms
    in the order of the fixed effects (``re_sd`` and ``re_cor`` follow that order)."""
    from models.formula import bar_structure as parse_bar  # formulaic: only when needed

    groups = groups_of(text, key)
    if len(groups) > 1:  # (models.formula reads several since it fits crossed models)
        first, second = groups[:2]
        raise fail(
            key,
            text,
            f"one grouping factor only in a design of groups ({', '.join(groups)} given); "
            f"for crossed factors write crossed = {{ {first} = 24, {second} = 16 }} in "
            "[design]",
        )
    try:
        structure = parse_bar(fixed, text)
        in_order(structure.random, fixed, key, text)
    except ValueError as err:
        if isinstance(err, OptionError):
            raise
        rule = str(err)
        if rule.startswith(repr(text)):
            rule = rule[len(repr(text)) :].lstrip(": ")
        raise fail(key, text, rule) from None
    if not correlated and structure.correlated and structure.r > 1:
        raise fail(
            "design.correlated",
            False,
            f"contradicts random = {text!r} (|: correlated); write || in random or drop correlated",
        )
    return structure


def in_order(names: tuple[str, ...], fixed: tuple[str, ...], key: str, shown: object) -> None:
    """Refuse random effects listed in another order than the fixed effects: ``re_sd``
    and ``re_cor`` are read in that order, so another would silently swap them."""
    ordered = tuple(n for n in fixed if n in names)
    if names != ordered:
        raise fail(
            key,
            shown,
            f"list the random effects in the order of the fixed effects ({', '.join(ordered)}): "
            "re_sd and re_cor follow that order",
        )


def random_effects(
    value: object, fixed: tuple[str, ...], key: str, ordered: bool = True
) -> tuple[str, ...]:
    """The random effects as given (a list of fixed-effect names; with ``ordered``, in
    the order of ``fixed``, else put in that order); ``()`` for all of them."""
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise fail(key, value, f"must be a non-empty list of fixed-effect names from {list(fixed)}")
    unknown = [v for v in value if v not in fixed]
    if unknown or not all(isinstance(v, str) for v in value):
        raise fail(
            key, list(value), f"must name fixed effects: {unknown} are not among {list(fixed)}"
        )
    if len(set(value)) != len(value):
        raise fail(key, list(value), "names must be distinct")
    if ordered:
        in_order(tuple(value), fixed, key, list(value))
    names = tuple(n for n in fixed if n in value)
    return () if names == fixed else names


def correlation(value: object, q: int) -> tuple[tuple[float, ...], ...]:
    """A q x q correlation matrix: symmetric, unit diagonal, positive definite."""
    if isinstance(value, str) or not isinstance(value, list | tuple) or len(value) != q:
        raise fail("design.re_cor", value, f"must be a {q} x {q} correlation matrix")
    rows = tuple(numbers(f"design.re_cor[{i}]", row) for i, row in enumerate(value))
    cor = np.array(rows, dtype=object)
    if cor.shape != (q, q):
        raise fail("design.re_cor", value, f"must be a {q} x {q} correlation matrix")
    cor = cor.astype(float)
    if not np.allclose(np.diag(cor), 1.0) or not np.allclose(cor, cor.T):
        raise fail("design.re_cor", value, "must be symmetric with ones on the diagonal")
    if np.linalg.eigvalsh(cor).min() <= 1e-10:
        raise fail(
            "design.re_cor",
            [list(r) for r in rows],
            "must be positive definite (all eigenvalues > 0); |correlations| < 1",
        )
    return rows
