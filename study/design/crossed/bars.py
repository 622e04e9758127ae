"""The random part of a crossed design: lme4 bars over its grouping factors.

``"(1 + cond | subj) + (1 + cond | item)"`` -> a :class:`models.crossed.CrossedStructure`
with one :class:`~models.crossed.Bar` per term.  A bar's left-hand side is built by the
formula library on the design's predictors (:func:`models.formula.design_matrix`), so
``(cond | subj)`` has lme4's implicit intercept, ``(0 + cond | subj)`` drops it and a
categorical predictor gives its treatment-coded columns; every random effect must be a
column of the fixed part (the truth's algebra and the engines need ``Z`` from ``X``'s
columns or the intercept).  ``||`` makes a bar's effects uncorrelated (one diagonal
``D``), and one factor may have several bars when their effects differ
(``(1 | subj) + (0 + cond | subj)``).  A bar's effects are listed in the order of the
fixed effects, as ``re_sd`` and ``re_cor`` read them (another order would swap them
silently); the group is one factor of ``crossed`` (no ``g/h`` or ``g:h``: the design
crosses its factors, it does not nest them).

Why a parser here: :func:`models.formula.parse` takes one grouping factor (it is being
extended to several); this one needs only the bars and the design's own columns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd

from models.crossed import Bar, CrossedStructure
from models.validate import OptionError, fail

_NAME = re.compile(r"[A-Za-z_][\w.]*")
EXAMPLE = "(1 + cond | subj) + (1 + cond | item)"


def default_random(factors: Sequence[str]) -> str:
    """A random intercept per factor: ``(1 | subj) + (1 | item)``."""
    return " + ".join(f"(1 | {f})" for f in factors)


def _pieces(text: str, key: str) -> list[str]:
    """``text`` cut at ``+`` outside parentheses."""
    pieces, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            raise fail(key, text, "has a ')' without its '('")
        if ch == "+" and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    if depth:
        raise fail(key, text, "has unbalanced parentheses")
    return [p.strip() for p in [*pieces, text[start:]]]


def groups_of(text: str, key: str = "design.random") -> tuple[str, ...]:
    """The groups the bars of random part ``text`` name, in order (``g`` of
    ``(1 | g)``; pieces that are not bars are left to the parser)."""
    groups = []
    for piece in _pieces(" ".join(text.split()), key):
        body = piece[1:-1] if piece.startswith("(") and piece.endswith(")") else ""
        if "|" in body:
            groups.append(body.rpartition("|")[2].strip())
    return tuple(dict.fromkeys(groups))


def parse_random(
    text: object,
    fixed: Sequence[str],
    factors: Sequence[str],
    frame: pd.DataFrame,
    key: str = "design.random",
) -> CrossedStructure:
    """The structure of random part ``text`` for fixed effects ``fixed`` (lme4 column
    names), grouping factors ``factors`` and predictors ``frame`` (an example frame:
    every predictor, every level of the categorical ones); one-line
    :class:`OptionError` naming ``key`` otherwise."""
    from models.formula import design_matrix

    if not isinstance(text, str) or not text.strip():
        raise fail(
            key, text, f"must be lme4 random terms over {', '.join(factors)}, e.g. {EXAMPLE}"
        )
    text = " ".join(text.split())
    bars: list[Bar] = []
    for piece in _pieces(text, key):
        if not (piece.startswith("(") and piece.endswith(")")) or "|" not in piece:
            raise fail(
                key,
                text,
                f"{piece!r} is not a random term; write terms in parentheses, e.g. {EXAMPLE}",
            )
        body = piece[1:-1]
        correlated = "||" not in body
        lhs, _, group = body.partition("|" if correlated else "||")
        group = group.strip()
        if "|" in group or "|" in lhs:
            raise fail(key, text, f"{piece} must hold one '|' or '||'")
        if "/" in group or ":" in group:
            raise fail(
                key,
                text,
                f"{piece}: nested or interaction groups are not generated (the design crosses "
                f"its factors {', '.join(factors)}); group by one of them",
            )
        if not _NAME.fullmatch(group) or group not in factors:
            raise fail(
                key,
                text,
                f"{piece} groups by {group!r}, not a factor of design.crossed "
                f"({', '.join(factors)}); add it to crossed or fix the name",
            )
        if not lhs.strip():
            raise fail(key, text, f"{piece} has no terms before the bar, e.g. (1 | {group})")
        try:
            names, _ = design_matrix(lhs, frame)
        except ValueError as err:
            raise fail(key, text, f"{piece}: {err}") from None
        same = {frozenset(n.split(":")): n for n in fixed}  # x:z is z:x
        names = [same.get(frozenset(n.split(":")), n) for n in names]
        outside = [n for n in names if n not in fixed]
        if outside:
            raise fail(
                key,
                text,
                f"{piece}: {outside[0]!r} is not a fixed effect of the design "
                f"({', '.join(fixed)}); add it to fixed (a random effect needs its fixed one)",
            )
        ordered = [n for n in fixed if n in names]
        if names != ordered:
            raise fail(
                key,
                text,
                f"{piece}: list the random effects in the order of the fixed effects "
                f"({', '.join(ordered)}): re_sd and re_cor follow that order",
            )
        earlier = [e for b in bars if b.group == group for e in b.effects if e in names]
        if earlier:
            raise fail(key, text, f"{piece}: {earlier[0]!r} already varies by {group}")
        bars.append(Bar(group, tuple(names), correlated))
    try:
        return CrossedStructure(tuple(fixed), tuple(bars))
    except ValueError as err:
        if isinstance(err, OptionError):
            raise
        raise fail(key, text, str(err)) from None


def effects_of(structure: CrossedStructure, factor: str) -> tuple[str, ...]:
    """The random effects of ``factor`` over all its bars, in the order of the bars:
    the order of ``re_sd.FACTOR`` and of ``re_cor.FACTOR``'s rows."""
    return tuple(e for b in structure.bars if b.group == factor for e in b.effects)
