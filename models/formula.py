"""lme4-style model formulas: ``Reaction ~ Days + Dose + (Days | Subject)``.

Grammar (one grouping factor; every random term must also be a fixed term, because
``Z`` is made of ``X``'s columns, :mod:`models.structure`)::

    formula := response "~" fixed-terms "+" bar ["+" bar ...]
    bar     := "(" terms "|" group ")"     correlated random effects (unstructured D)
             | "(" terms "||" group ")"    uncorrelated random effects (diagonal D)

- fixed part: column names, ``x1:x2`` (interaction), ``x1*x2`` (= ``x1 + x2 + x1:x2``),
  ``C(x)`` (categorical), ``0 +`` or ``-1`` (no intercept); an empty fixed part is the
  intercept.  Text columns and pandas categoricals are categorical.  Factors are coded
  with treatment contrasts (first level the reference) and named as lme4 prints them:
  ``(Intercept)``, ``Days``, ``Doseb`` (variable and level), ``Days:Doseb``, ``C(Dose)b``.
- bars: ``(x | g)`` has an implicit intercept, as in lme4 (``(1 + x | g)``); ``(0 + x | g)``
  and ``(-1 + x | g)`` drop it.  ``(x || g)`` is lme4's ``(1 | g) + (0 + x | g)``, and
  several bars with the same group are allowed when each holds one term (they are then
  uncorrelated, e.g. ``(1 | g) + (0 + x | g)``).
- refused, with a one-line :class:`FormulaError` (a :class:`ValueError`; whatever the
  formula library raises, a SyntaxError included, becomes one): no bar, two grouping
  factors, nested (``g/h``) or interaction (``g:h``) groups, a random term missing from
  the fixed part, ``||`` on a categorical variable (lme4 keeps a factor's columns
  correlated), function calls other than ``C(x)``, unknown columns.

Why formulaic: the fixed part is ordinary Wilkinson-formula algebra (term expansion and
ordering, intercept removal, contrasts, column naming), which formulaic implements and
tests; writing it again would be a second, weaker copy.  formulaic has no mixed-model
bars: its ``|`` only separates the parts of a multi-part formula at the top level
(``y ~ a | b``) and is a syntax error inside parentheses.  So the bars are split off by
hand (a scan of the text at parenthesis depth 0), and formulaic parses and builds the
fixed part and each bar's left-hand side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from formulaic import Formula as _Formulaic
from formulaic import model_matrix
from formulaic.errors import FormulaicError
from formulaic.parser.types import Term

from models.crossed.data import CrossedData
from models.crossed.structure import Bar, CrossedStructure
from models.data import MAX_ABS_VALUE, LMMData
from models.structure import INTERCEPT, Structure

__all__ = [
    "Formula",
    "FormulaError",
    "ModelFrame",
    "bar_structure",
    "model_data",
    "model_frame",
    "parse",
]

_NAME = re.compile(r"[A-Za-z_.][\w.]*|`[^`]+`")
_CATEGORICAL = re.compile(r"C\((.+)\)")
EXAMPLE = "Reaction ~ Days + (Days | Subject)"


class FormulaError(ValueError):
    """A formula (or its data) that cannot be used: one line naming the problem and the
    fix.  Every exception of the formula library is re-raised as this one."""


def _reason(err: BaseException) -> str:
    """One line of what the formula library said (its class when it said nothing)."""
    lines = str(err).strip().splitlines()
    reason = lines[0].strip() if lines else ""
    if isinstance(err, FormulaicError):
        return reason or type(err).__name__
    return f"{type(err).__name__}: {reason}" if reason else type(err).__name__


@dataclass(frozen=True)
class Formula:
    """A parsed formula: ``response ~ fixed + (random[0] | group) [+ ...]``.

    ``text`` is the formula as given (white space collapsed); ``fixed`` the fixed part, a
    formulaic right-hand side (``"1"`` when empty); ``random`` the left-hand side of each
    bar; ``correlated`` False for ``||`` or several bars (diagonal ``D``); ``variables``
    the data columns of the terms, ``categorical`` those written ``C(x)``.
    """

    text: str
    response: str
    fixed: str
    random: tuple[str, ...]
    correlated: bool
    group: str
    variables: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    bars: tuple[tuple[str, bool, str], ...] = ()

    @property
    def groups(self) -> tuple[str, ...]:
        """The grouping factors (``"g:h"`` for an interaction), in order of appearance."""
        return tuple(dict.fromkeys(g for *_, g in self.bars)) or (self.group,)

    @property
    def crossed(self) -> bool:
        """Several grouping factors (crossed or nested): a :class:`CrossedData` model."""
        return len(self.groups) > 1

    @property
    def group_columns(self) -> tuple[str, ...]:
        """The data columns the grouping factors are made of."""
        return tuple(dict.fromkeys(c for g in self.groups for c in g.split(":")))

    @property
    def columns(self) -> tuple[str, ...]:
        """Every data column the model uses: response, variables, grouping columns."""
        return tuple(dict.fromkeys((self.response, *self.variables, *self.group_columns)))


def _scan(text: str) -> list[int]:
    """Parenthesis depth before each character (-1 inside backquotes)."""
    depths, depth, quoted = [], 0, False
    for ch in text:
        if ch == "`":
            quoted = not quoted
        depth -= ch == ")" and not quoted
        if depth < 0:
            raise FormulaError(f"formula {text!r}: a ')' has no matching '('")
        depths.append(-1 if quoted or ch == "`" else depth)
        depth += ch == "(" and not quoted
    if depth or quoted:
        raise FormulaError(f"formula {text!r}: unbalanced parentheses or backquotes")
    return depths


def _split(text: str, seps: str) -> list[str]:
    """``text`` cut before every character of ``seps`` at depth 0 (kept with its piece)."""
    depths, pieces, start = _scan(text), [], 0
    for i, ch in enumerate(text):
        if ch in seps and depths[i] == 0:
            pieces.append(text[start:i])
            start = i
    return [*pieces, text[start:]]


def _name(text: str, what: str, formula: str) -> str:
    text = text.strip()
    if not _NAME.fullmatch(text):
        raise FormulaError(f"formula {formula!r}: the {what} must be one column name, got {text!r}")
    return text.strip("`")


def _terms(rhs: str, formula: str) -> list[Term]:
    # any exception: formulaic raises its own errors, but also Python's SyntaxError (a
    # term that is not an expression), TypeError, RecursionError, ...; none may escape
    # as a traceback (the caller only ever gets a one-line FormulaError)
    try:
        return list(_Formulaic("~ " + rhs))
    except Exception as err:
        if isinstance(err, FormulaicError):
            raise FormulaError(f"formula {formula!r}: {_reason(err)}") from None
        raise FormulaError(
            f"formula {formula!r} cannot be parsed ({_reason(err)}); write column names, "
            f"x1:x2, x1*x2 and C(x) only, e.g. {EXAMPLE}"
        ) from None


def _bar(body: str, formula: str) -> tuple[str, bool, tuple[str, ...]]:
    """``x | g`` -> (``"x"``, correlated, ``("g",)``); ``x | g/h`` (nested: lme4's
    ``(x | g) + (x | h:g)``) -> ``("g", "h:g")``; ``x | g:h`` (the interaction's levels)
    -> ``("g:h",)``."""
    bars = [p for p in _split(body, "|") if p.startswith("|")]
    double = "||" in body and len(bars) == 2 and bars[0] == "|"
    if len(bars) != 1 and not double:
        raise FormulaError(f"formula {formula!r}: ({body}) must hold one '|' or '||'")
    lhs, _, group = body.partition("||" if double else "|")
    if not lhs.strip():
        raise FormulaError(
            f"formula {formula!r}: ({body}) has no terms before the bar, e.g. (1 | g)"
        )
    levels = group.split("/")
    if len(levels) > 1 and any(":" in g for g in levels):
        raise FormulaError(
            f"formula {formula!r}: ({body}) mixes / and : in its grouping; write the "
            "nesting with / only (g/h) or the terms one by one ((1 | g) + (1 | g:h))"
        )
    if len(levels) == 1:
        parts = [_name(g, "grouping factor", formula) for g in group.split(":")]
        return lhs.strip(), not double, (":".join(parts),)
    # lme4's expandSlash: g/h/k -> g, h:g, k:h:g (the inner factor first, as lme4 names it)
    outer = [_name(g, "grouping factor", formula) for g in levels]
    names = [":".join(reversed(outer[: depth + 1])) for depth in range(len(outer))]
    return lhs.strip(), not double, tuple(names)


def parse(formula: str) -> Formula:
    """Parse an lme4-style formula (module docstring); :class:`FormulaError` if unsupported."""
    text = " ".join(str(formula).split())
    if not text:
        raise FormulaError(f"empty formula; write response ~ terms, e.g. {EXAMPLE}")
    sides = _split(text, "~")
    if len(sides) != 2:
        what = "has no '~'" if len(sides) == 1 else "has more than one '~'"
        raise FormulaError(f"formula {text!r} {what}; write response ~ terms, e.g. {EXAMPLE}")
    if not sides[0].strip():
        raise FormulaError(f"formula {text!r} has no response before '~', e.g. {EXAMPLE}")
    response = _name(sides[0], "response", text)
    fixed_parts, bars = [], []
    for piece in _split(sides[1][1:], "+-"):
        body = piece.lstrip("+- ").strip()
        if "|" not in body:
            fixed_parts.append(piece)
            continue
        depths = _scan(body)[1:-1]
        whole = body.startswith("(") and body.endswith(")") and 0 not in depths
        if not whole or piece.strip().startswith("-"):
            raise FormulaError(
                f"formula {text!r}: {body!r} is not a random term; add one in parentheses, "
                f"e.g. {EXAMPLE}"
            )
        lhs, correlated, names = _bar(body[1:-1], text)
        bars += [(body, lhs, correlated, g) for g in names]
    if not bars:
        raise FormulaError(
            f"formula {text!r} has no random part; a mixed model needs one, e.g. + (1 | group)"
        )
    groups = list(dict.fromkeys(g for *_, g in bars))
    fixed = "".join(fixed_parts).strip().lstrip("+").strip() or "1"
    fixed_terms = _terms(fixed, text)
    factors = [f for t in fixed_terms for f in t.factors]
    random_terms: list[tuple[str, str]] = []
    for body, lhs, correlated, group in bars:
        terms = _terms(lhs, text)
        shared = sum(1 for *_, g in bars if g == group)
        if shared > 1 and correlated and len(terms) > 1:
            raise FormulaError(
                f"formula {text!r}: several bars with one group must each hold one term "
                f"({body} has {len(terms)}); write one bar, or (x || g) for uncorrelated terms"
            )
        for term in terms:
            name = "(Intercept)" if str(term) == "1" else str(term)
            if (name, group) in random_terms:
                which = f"random term {name!r}" + (f" of {group!r}" if len(groups) > 1 else "")
                raise FormulaError(f"formula {text!r}: {which} appears twice")
            if term not in fixed_terms:
                if str(term) == "1":
                    others = " + ".join(str(t) for t in terms if str(t) != "1")
                    raise FormulaError(
                        f"formula {text!r}: the random intercept of {body} is not in the fixed "
                        "part (it has 0 or -1); drop the 0 / -1"
                        + (f", or write (0 + {others} | {group})" if others else "")
                    )
                suggest = name if fixed == "1" else f"{fixed} + {name}"
                raise FormulaError(
                    f"random term {name!r} is not in the fixed part; add it there: "
                    f"{response} ~ {suggest} + {' + '.join(b[0] for b in bars)}"
                )
            random_terms.append((name, group))
        factors += [f for t in terms for f in t.factors]
    variables, categorical = [], []
    for factor in factors:
        found = _variable(factor, f"formula {text!r}")
        if found is not None:
            variables.append(found[0])
            if found[1]:
                categorical.append(found[0])
    used, factor = tuple(dict.fromkeys(variables)), tuple(dict.fromkeys(categorical))
    if len(groups) > 1:
        crossed = tuple((lhs, corr, g) for _, lhs, corr, g in bars)
        # each bar is its own random term (bars sharing a group: uncorrelated terms)
        return Formula(text, response, fixed, (), False, groups[0], used, factor, crossed)
    correlated = len(bars) == 1 and bars[0][2]
    random = tuple(b[1] for b in bars)
    return Formula(text, response, fixed, random, correlated, groups[0], used, factor)


def _lme4_name(column: str) -> str:
    """formulaic's column name as lme4 prints it: ``Dose[T.b]`` -> ``Doseb``."""
    if column == "Intercept":
        return INTERCEPT
    return re.sub(r"\[(?:T\.)?(.*?)\]", r"\1", column)


def _columns(frame: pd.DataFrame, rhs: str) -> tuple[list[str], np.ndarray]:
    try:
        mm = model_matrix("~ " + rhs, frame, na_action="ignore")
    except Exception as err:  # any exception of the formula library: see _terms
        if isinstance(err, FormulaicError):
            raise FormulaError(f"{rhs!r}: {_reason(err)}") from None
        raise FormulaError(
            f"{rhs!r} cannot be built from the data ({_reason(err)}); check the columns "
            "and their values"
        ) from None
    return [_lme4_name(str(c)) for c in mm.columns], mm.to_numpy(dtype=float)


def _numeric(frame: pd.DataFrame, f: Formula) -> pd.DataFrame:
    """Numeric columns as floats, checked as :meth:`LMMData.from_frame` does; text columns
    (and ``C(x)``) stay categorical; a column mixing numbers and text is refused."""
    out = frame.copy()
    for col in dict.fromkeys((f.response, *f.variables)):
        values = out[col]
        factor = col in f.categorical or isinstance(values.dtype, pd.CategoricalDtype)
        if (factor and col != f.response) or pd.api.types.is_bool_dtype(values):
            continue
        if not pd.api.types.is_numeric_dtype(values):
            number = pd.to_numeric(values.astype(object), errors="coerce")
            bad = np.flatnonzero((values.notna() & number.isna()).to_numpy())
            if bad.size and (col == f.response or number.notna().any()):
                raise FormulaError(
                    f"column {col!r} must be numeric, but data row {bad[0] + 1} holds "
                    f"{values.iloc[bad[0]]!r}; fix or drop the non-numeric values"
                    + ("" if col == f.response else f", or write C({col}) for a categorical")
                )
            if bad.size:
                continue  # text: a categorical variable
            out[col] = values = number
        arr = values.to_numpy(dtype=float)
        if np.isinf(arr).any():
            n_inf = int(np.isinf(arr).sum())
            raise FormulaError(
                f"column {col!r} has {n_inf} infinite value(s) (inf); drop those rows"
            )
        top = np.abs(arr[np.isfinite(arr)]).max(initial=0.0)
        if top > MAX_ABS_VALUE:
            raise FormulaError(
                f"column {col!r} has values too large to fit (max |value| {top:.3g} > "
                f"{MAX_ABS_VALUE:.0e}: squares overflow); rescale it, e.g. to other units"
            )
    return out


@dataclass(frozen=True)
class ModelFrame:
    """The rows and columns of a table that a formula's model uses, cleaned as
    :func:`model_data` fits them.

    ``frame`` holds the columns of :attr:`Formula.columns` (numbers, also written as
    text, as floats; text columns, ``C(x)`` columns and categoricals as they are, unused
    categories dropped), the rows without a missing value, sorted by group (stable),
    index ``0..N-1``; ``group`` the group code of each row (``0..K-1``, sorted),
    ``labels`` the group labels (as text, sorted); ``dropped`` the number of rows left
    out for missing values (lme4's ``na.omit``); ``factors`` the labels and codes of
    every grouping factor (the first one's are ``labels`` and ``group``).
    """

    formula: Formula
    frame: pd.DataFrame
    group: np.ndarray
    labels: tuple[str, ...]
    dropped: int
    factors: dict[str, tuple[tuple[str, ...], np.ndarray]] = field(default_factory=dict)


def model_frame(frame: pd.DataFrame, formula: str | Formula) -> ModelFrame:
    """The part of ``frame`` the model of ``formula`` uses (:class:`ModelFrame`), with
    the checks of :func:`model_data` on its columns; :class:`FormulaError` (one line)
    on any problem."""
    f = parse(formula) if isinstance(formula, str) else formula
    missing = [c for c in f.columns if c not in frame.columns]
    if missing:
        raise FormulaError(f"column(s) {missing} not in the data; available: {list(frame.columns)}")
    sub = _numeric(frame[list(f.columns)], f)
    keep = sub.notna().all(axis=1).to_numpy()
    sub = sub[keep].copy()
    if sub.empty:
        raise FormulaError(
            f"no rows left: every row has a missing value in one of {list(f.columns)}"
        )
    for col in sub.columns:
        if isinstance(sub[col].dtype, pd.CategoricalDtype):
            sub[col] = sub[col].cat.remove_unused_categories()  # lme4: drop.unused.levels
    for col in f.categorical:  # C(x) of whole numbers made float by a missing value
        if pd.api.types.is_float_dtype(sub[col]) and (sub[col] == sub[col].round()).all():
            sub[col] = sub[col].astype(np.int64)  # levels 1, 2, as lme4 names them
    labels, codes = _factor(sub, f.group)
    order = np.argsort(codes, kind="stable")
    sub = sub.iloc[order].reset_index(drop=True)
    factors = {g: _factor(sub, g) for g in f.groups}
    return ModelFrame(f, sub, codes[order], labels, int((~keep).sum()), factors)


def _factor(sub: pd.DataFrame, group: str) -> tuple[tuple[str, ...], np.ndarray]:
    """Level labels (as text, sorted) and codes of a grouping factor: one column, or
    the interaction ``g:h`` of several (labels ``"a:b"``, only the combinations seen)."""
    texts = []
    for col in group.split(":"):
        values = sub[col]
        if pd.api.types.is_float_dtype(values) and (values == values.round()).all():
            values = values.astype(np.int64)  # integer labels made float by a missing value
        texts.append(values.astype(str).to_numpy())
    joined = (
        texts[0] if len(texts) == 1 else np.array([":".join(t) for t in zip(*texts, strict=True)])
    )
    labels, codes = np.unique(joined, return_inverse=True)
    return tuple(map(str, labels)), codes


def model_data(frame: pd.DataFrame, formula: str | Formula) -> tuple[LMMData | CrossedData, int]:
    """The data of ``formula`` from ``frame``, and the number of rows dropped.

    Rows with a missing value in a column the model uses are dropped (lme4's
    ``na.omit``); the rest are sorted by group (stable; labels as text, sorted), as
    :meth:`LMMData.from_frame` does (:func:`model_frame`).  One grouping factor gives
    an :class:`LMMData`, several (crossed or nested) a :class:`CrossedData`.
    :class:`ValueError` (one line; :class:`FormulaError` for the formula) on any problem.
    """
    mf = model_frame(frame, formula)
    f, sub = mf.formula, mf.frame
    fixed, X = _columns(sub, f.fixed)
    y = sub[f.response].to_numpy(dtype=float)
    if f.crossed:
        bars = []
        for lhs, correlated, group in f.bars:
            names = _random_names(f, sub, lhs, correlated, group, fixed)
            bars.append(Bar(group, tuple(names), correlated))
        crossed = CrossedStructure(tuple(fixed), tuple(bars))
        codes = {g: c for g, (_, c) in mf.factors.items()}
        labels = {g: lab for g, (lab, _) in mf.factors.items()}
        return CrossedData(y, X, crossed, codes, labels), mf.dropped
    random: list[str] = []
    for lhs in f.random:
        random += _random_names(f, sub, lhs, f.correlated, f.group, fixed)
    structure = Structure(tuple(fixed), tuple(random), f.correlated)
    data = LMMData(y, X, mf.group, structure.predictors, mf.labels, structure)
    return data, mf.dropped


def _random_names(
    f: Formula, sub: pd.DataFrame, lhs: str, correlated: bool, group: str, fixed: list[str]
) -> list[str]:
    """The fixed-effect columns of a bar's left-hand side ``lhs``."""
    names, _ = _columns(sub, lhs)
    if not correlated and len(names) > len(_terms(lhs, f.text)):
        raise FormulaError(
            f"formula {f.text!r}: uncorrelated random effects of a categorical variable "
            f"({lhs}) are not supported (lme4 keeps a factor's columns correlated); use "
            f"one bar with |"
        )
    same = {frozenset(n.split(":")): n for n in fixed}  # x:z is z:x
    names = [same.get(frozenset(n.split(":")), n) for n in names]
    outside = [n for n in names if n not in fixed]
    if outside:
        raise FormulaError(
            f"formula {f.text!r}: random effect {outside[0]!r} of ({lhs} | {group}) is not "
            f"a fixed-effect column {fixed}; code it as the fixed part does (the same "
            "intercept, 0 + in both parts or in neither)"
        )
    return names


def bar_structure(fixed: tuple[str, ...], bar: str) -> Structure:
    """The structure a random part such as ``"(1 + X | g)"`` or ``"(X || g)"`` gives a
    model whose fixed effects are the numeric columns ``fixed`` (``"(Intercept)"``
    and predictor names; the group's name is not used): what a study design's
    ``random = "..."`` means.  The random effects keep the order they are written in.
    :class:`FormulaError` (one line) if the text is not bars on those effects."""
    text = " ".join(str(bar).split())
    pieces = [p.lstrip("+ ").strip() for p in _split(text, "+")] if text else [""]
    for piece in pieces:
        if not (piece.startswith("(") and piece.endswith(")") and "|" in piece):
            raise FormulaError(
                f"{text!r}: {piece!r} is not a random term; write only random terms in "
                "parentheses, e.g. (1 | g), (1 + X | g) or (X || g)"
            )
    for piece in pieces:
        lhs = piece[1:-1].split("|")[0]
        for term in _terms(lhs, text):
            name = INTERCEPT if str(term) == "1" else str(term)
            if name not in fixed:
                raise FormulaError(
                    f"{text!r}: {name!r} is not a fixed effect of the design "
                    f"({', '.join(fixed)}); add it to predictors"
                )
    predictors = [n for n in fixed if n != INTERCEPT]
    rhs = " + ".join(predictors) if predictors else "1"
    if INTERCEPT not in fixed:
        rhs = f"0 + {rhs}"
    full = f"y ~ {rhs} + {text}"
    try:
        f = parse(full)
    except ValueError as err:
        raise FormulaError(str(err).replace(f"formula {full!r}", repr(text))) from None
    names = [INTERCEPT if str(t) == "1" else str(t) for lhs in f.random for t in _terms(lhs, text)]
    return Structure(tuple(fixed), tuple(names), f.correlated)


def rhs_variables(rhs: str) -> tuple[str, ...]:
    """The variables a right-hand side (``"treat * age"``) uses, in order of appearance;
    :class:`FormulaError` for anything but names, ``:``, ``*``, ``+`` and ``C(x)``."""
    text = " ".join(str(rhs).split()) or "1"
    if "|" in text or "~" in text:
        raise FormulaError(f"{text!r}: write the fixed part only (no ~, no random terms)")
    found = (_variable(f, repr(text)) for t in _terms(text, text) for f in t.factors)
    return tuple(dict.fromkeys(v[0] for v in found if v is not None))


def _variable(factor: Any, where: str) -> tuple[str, bool] | None:
    """The data column of a term's factor and whether it is ``C(x)`` (categorical);
    None for a literal (the intercept); :class:`FormulaError` for any other call."""
    expr, method = str(factor.expr), str(factor.eval_method.value)
    if method == "literal":
        return None
    match = _CATEGORICAL.fullmatch(expr)
    if method == "python" and not (match and _NAME.fullmatch(match[1].strip())):
        raise FormulaError(
            f"{where}: {expr!r}: function calls are not supported except C(column) "
            "(categorical); transform the column in the data instead"
        )
    if method == "python" and match:
        return match[1].strip().strip("`"), True
    return expr, False


def design_matrix(rhs: str, frame: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """The columns of right-hand side ``rhs`` on ``frame``, named as lme4 names them
    (``(Intercept)``, ``siteb``, ``treat:age``), and the matrix (float)."""
    return _columns(frame, " ".join(str(rhs).split()) or "1")
