"""The data-generating model of a crossed design: ``[design]`` with a ``crossed`` table.

``y = X beta + sum_f Z_f u_f + e`` with one random term ``f`` per bar of ``random``,
``u_f ~ N(0, I_{K_f} (x) D_f)`` and ``e ~ N(0, sigma^2 I)``.  The keys::

    crossed = { subj = 24, item = 16 }   # grouping factors and their levels (>= 2 each)
    seen = "all"                         # or "list": study.design.crossed.layout
    fixed = "cond + x"                   # the fixed part over the predictors
    beta = { "(Intercept)" = 0.0, cond = 0.4, x = 0.2 }
    random = "(1 + cond | subj) + (1 + cond | item)"
    re_sd = { subj = [0.6, 0.3], item = [0.4, 0.2] }  # per factor, its effects in order
    re_cor = { subj = 0.3, item = 0.2 }  # per factor: a number (2 effects) or a matrix
    sigma = 1.0

    [design.predictors.cond]
    distribution = "latin_square"        # the condition of each row (layout.square)
    levels = [-0.5, 0.5]                 # numbers, or names (a categorical predictor)

    [design.predictors.x]                # any distribution of study.design.predictors,
    distribution = "normal"              # at level "row" (default: a value per row) or
    level = "row"                        # a factor's ("subj": one value per subject)

Every check is made at load, in the one validation style (``design.re_sd.subj = [..]:
must have 2 values ...``); among them lme4's (``checkNlevels``, ``checkNobs``:
:func:`models.crossed.crossed_problem`) and one lme4 leaves to the optimiser: a random
slope must vary within the levels of its factor (``(1 + cond | subj)`` when each subject
meets one condition is not identified).  Those two are checked on the design's rows and
an X drawn from the fixed ``check`` stream of :mod:`study.design.seeds` (the
deterministic parts, the Latin square and the factor-level pattern, are the design's
own; a normal covariate varies almost surely).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd

from models.crossed import Bar, CrossedData, CrossedStructure, crossed_problem
from models.structure import INTERCEPT
from models.validate import check_keys, fail, integer, number, numbers
from study.design.crossed.bars import default_random, effects_of, parse_random
from study.design.crossed.layout import SEEN, n_rows, rows, square
from study.design.predictors import Predictor, check_set, draw
from study.design.seeds import check_rng
from study.design.terms import beta_values, default_fixed, fixed_columns, plain_beta

#: the distribution of a counterbalanced condition (crossed designs only)
LATIN = "latin_square"
#: the most random-effect levels ``L = sum_f K_f r_f`` (``Z'Z`` is held dense, L x L:
#: 200 MB at this size, and every fit and the truth factor an L x L matrix)
MAX_LEVELS = 5_000
#: the most rows a crossed design may have
MAX_ROWS = 10_000_000
#: the keys of a crossed ``[design]`` table
KEYS = ("crossed", "seen", "predictors", "fixed", "beta", "random", "re_sd", "re_cor", "sigma")
#: the keys that define X (what the design stream is keyed by)
X_KEYS = ("crossed", "seen", "predictors")
#: the key a [design] table is a crossed design by
MARK = "crossed"


@dataclass(frozen=True)
class LatinSquare:
    """A counterbalanced condition: ``levels[k]`` on the rows of condition ``k`` of the
    design's Latin square (:func:`study.design.crossed.layout.square`)."""

    name: str
    levels: tuple[float, ...] | tuple[str, ...]

    @classmethod
    def from_table(cls, name: str, table: Mapping[str, Any], key: str) -> LatinSquare:
        check_keys(table, ("distribution", "levels", "level"), key)
        level = table.get("level", "row")
        if level != "row":
            raise fail(
                f"{key}.level",
                level,
                'must be "row" for a latin_square (it sets the condition of each row); a '
                "factor-level predictor takes another distribution",
            )
        levels = table.get("levels")
        if not isinstance(levels, list | tuple) or len(levels) < 2:
            raise fail(
                f"{key}.levels", levels, "must be a list of >= 2 conditions, e.g. [-0.5, 0.5]"
            )
        if all(isinstance(v, str) and v for v in levels):
            values: tuple[Any, ...] = tuple(levels)
        else:
            values = numbers(f"{key}.levels", levels)
        if len(set(values)) != len(values):
            raise fail(f"{key}.levels", list(values), "must be distinct")
        return cls(name, values)

    @property
    def categorical(self) -> bool:
        return isinstance(self.levels[0], str)

    @property
    def n(self) -> int:
        """Number of conditions."""
        return len(self.levels)

    def table(self) -> dict[str, Any]:
        return {"distribution": LATIN, "levels": list(self.levels)}


@dataclass(frozen=True)
class FactorPredictor:
    """A predictor of :mod:`study.design.predictors` at level ``row`` (a value per row)
    or a factor's level (one value per level of that factor, e.g. a subject's age)."""

    predictor: Predictor
    level: str = "row"

    @property
    def name(self) -> str:
        return self.predictor.name

    def table(self) -> dict[str, Any]:
        out = self.predictor.table()
        out.pop("level", None)
        if self.level != "row":
            out["level"] = self.level
        return out


CrossedPredictor = LatinSquare | FactorPredictor


@dataclass(frozen=True)
class CrossedDesignConfig:
    """The data-generating model of a crossed design (module docstring).

    Parameters
    ----------
    crossed : mapping of str to int
        The grouping factors, by the names the random part uses, and their levels
        (>= 2 each, at least two factors), in the order of the rows.
    seen : str
        ``"all"``: every combination of levels is a row; ``"list"``: only those within
        one list of the Latin square (:mod:`study.design.crossed.layout`).
    predictors : mapping of name to table
        ``[design.predictors.NAME]`` tables: ``latin_square`` or any distribution of
        :mod:`study.design.predictors` at level ``row`` or a factor's.
    fixed : str
        The fixed part over the predictors (default: their main effects; ``"1"``
        without predictors).
    beta : tuple of float, or mapping of term to float
        The fixed effects (required).
    random : str
        lme4 bars over the factors (default: a random intercept per factor).
    re_sd : mapping of factor to list of float
        Each factor's random-effect SDs, in the order of its effects (required; a
        number for one effect).
    re_cor : mapping of factor to number or matrix
        Each factor's random-effect correlation matrix (default: the identity); a
        number for two effects.  Zero between the effects of different bars and
        within an uncorrelated (``||``) bar.
    sigma : float
        Residual SD (> 0).
    """

    crossed: Mapping[str, int]
    seen: str = "all"
    predictors: Mapping[str, Any] | tuple[CrossedPredictor, ...] = field(default_factory=dict)
    fixed: str = ""
    beta: tuple[float, ...] | Mapping[str, float] | None = None
    random: str = ""
    re_sd: Mapping[str, Any] | None = None
    re_cor: Mapping[str, Any] = field(default_factory=dict)
    sigma: float = 1.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "crossed", _factors(self.crossed))
        if self.seen not in SEEN:
            raise fail("design.seen", self.seen, f"must be one of {', '.join(SEEN)}")
        variables = _predictors(self.predictors, self.crossed)
        set_(self, "predictors", variables)
        squares = [p for p in variables if isinstance(p, LatinSquare)]
        self._check_square(squares)
        set_(self, "sigma", number("design.sigma", self.sigma, low=0.0))
        names = tuple(p.name for p in variables)
        if not isinstance(self.fixed, str):
            raise fail("design.fixed", self.fixed, 'must be a formula, e.g. "cond + x"')
        frame = _example_frame(variables)
        fixed, _ = fixed_columns(self.fixed or default_fixed(names), frame, names)
        if self.beta is None:
            raise fail(
                "design.beta",
                None,
                f"must be given for a crossed design, one per fixed effect ({', '.join(fixed)})",
            )
        beta = beta_values(self.beta, fixed)
        set_(
            self,
            "beta",
            dict(zip(fixed, beta, strict=True)) if isinstance(self.beta, Mapping) else beta,
        )
        set_(self, "_beta", beta)
        random = self.random or default_random(tuple(self.crossed))
        set_(self, "_fixed", fixed)
        set_(self, "_frame", frame)
        structure = self.parse(random)
        set_(self, "random", " ".join(str(random).split()))  # as written (C(x) stays)
        set_(self, "_structure", structure)
        self._check_variances(structure)
        self._check_size(structure)
        problem = self.problem(structure)
        if problem:
            raise fail("design.random", self.random, problem)

    # -- checks -------------------------------------------------------------------------
    def _check_square(self, squares: list[LatinSquare]) -> None:
        if len(squares) > 1:
            raise fail(
                f"design.predictors.{squares[1].name}.distribution",
                LATIN,
                f"is given twice ({squares[0].name} is one): a design has one Latin square; "
                "code more conditions as its levels",
            )
        if not squares:
            if self.seen == "list":
                raise fail(
                    "design.seen",
                    "list",
                    "needs a latin_square predictor (its conditions are the lists), e.g. "
                    '[design.predictors.cond] distribution = "latin_square"',
                )
            return
        sq = squares[0]
        for factor, k in self.crossed.items():
            if k % sq.n:
                low, high = k - k % sq.n, k - k % sq.n + sq.n
                why = (
                    f"each {factor} meets each condition equally often"
                    if self.seen == "all"
                    else f"its {sq.n} lists have as many {factor} levels each"
                )
                give = f"{low} or {high}" if low else f"{high}"
                raise fail(
                    f"design.crossed.{factor}",
                    k,
                    f"must be a multiple of the {sq.n} levels of the Latin square "
                    f"{sq.name} (so that {why}); give {give}",
                )

    def _check_variances(self, structure: CrossedStructure) -> None:
        set_ = object.__setattr__
        with_terms = tuple(dict.fromkeys(b.group for b in structure.bars))
        given = self.re_sd
        if not isinstance(given, Mapping):
            example = ", ".join(f"{f} = [...]" for f in with_terms)
            raise fail(
                "design.re_sd", given, f"must be a table of SDs per factor, e.g. {{ {example} }}"
            )
        check_keys(given, with_terms, "design.re_sd")
        sds: dict[str, tuple[float, ...]] = {}
        for factor in with_terms:
            effects = effects_of(structure, factor)
            key = f"design.re_sd.{factor}"
            if factor not in given:
                raise fail(
                    "design.re_sd",
                    dict(given),
                    f"has no SDs for {factor} ({', '.join(effects)}); give re_sd.{factor}",
                )
            value = given[factor]
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = [value]
            values = numbers(key, value, low=0.0, low_inclusive=True)
            if len(values) != len(effects):
                raise fail(
                    key,
                    list(values),
                    f"must have {len(effects)} value(s), one per random effect of {factor} "
                    f"({', '.join(effects)})",
                )
            sds[factor] = values
        if not any(v for s in sds.values() for v in s):
            raise fail("design.re_sd", dict(given), "must have at least one SD > 0")
        set_(self, "re_sd", sds)
        cors = self.re_cor
        if not isinstance(cors, Mapping):
            raise fail("design.re_cor", cors, "must be a table per factor, e.g. { subj = 0.3 }")
        check_keys(cors, with_terms, "design.re_cor")
        out = {}
        for factor in with_terms:
            if factor in cors:
                out[factor] = _correlation(cors[factor], structure, factor)
        set_(self, "re_cor", out)

    def _check_size(self, structure: CrossedStructure) -> None:
        n = self.rows
        if n > MAX_ROWS:
            raise fail(
                "design.crossed",
                dict(self.crossed),
                f"makes {n:,} rows, more than the {MAX_ROWS:,} a crossed design may have",
            )
        too_many = self.too_many_levels(structure)
        if too_many:
            raise fail("design.crossed", dict(self.crossed), too_many)

    def too_many_levels(self, structure: CrossedStructure) -> str:
        """Why ``structure`` has too many random-effect levels on this design, or ``""``."""
        L = self.levels_of(structure)
        if L <= MAX_LEVELS:
            return ""
        return (
            f"makes {L:,} random-effect levels (levels x random effects, all terms) for "
            f"{structure.text()}, more than {MAX_LEVELS:,} (Z'Z is held as a dense L x L "
            "matrix); use fewer levels or fewer random slopes"
        )

    def parse(self, text: object, key: str = "design.random") -> CrossedStructure:
        """The structure of random part ``text`` (lme4 bars) on this design's fixed
        effects and factors (:func:`study.design.crossed.bars.parse_random`)."""
        fixed = cast(tuple[str, ...], self.__dict__["_fixed"])
        frame = cast(pd.DataFrame, self.__dict__["_frame"])
        return parse_random(text, fixed, tuple(self.crossed), frame, key)

    def levels_of(self, structure: CrossedStructure) -> int:
        """``L = sum_f K_f r_f``: the columns of ``Z`` of ``structure`` on this design."""
        return sum(self.crossed[b.group] * b.r for b in structure.bars)

    def problem(self, structure: CrossedStructure) -> str:
        """Why ``structure`` cannot be fitted to this design, or ``""``: lme4's checks
        (:func:`models.crossed.crossed_problem`) and every random slope varying within
        the levels of its factor, on the check stream's X (module docstring)."""
        too_many = self.too_many_levels(structure)
        if too_many:
            return too_many
        data = self.skeleton()
        if structure != data.structure:
            data = data.with_structure(structure)
        reason = crossed_problem(data)
        return reason or unidentified(data, self.seen)

    # -- the design's rows and X --------------------------------------------------------
    @property
    def variables(self) -> tuple[CrossedPredictor, ...]:
        """The predictors, in table order."""
        return cast(tuple[CrossedPredictor, ...], self.predictors)

    @property
    def square(self) -> LatinSquare | None:
        """The Latin square, if the design has one."""
        return next((p for p in self.variables if isinstance(p, LatinSquare)), None)

    @property
    def lists(self) -> int:
        """The Latin square's conditions (1 without one)."""
        sq = self.square
        return 1 if sq is None else sq.n

    @property
    def rows(self) -> int:
        """Number of rows N."""
        return n_rows(self.crossed, self.seen, self.lists)

    def codes(self) -> dict[str, np.ndarray]:
        """The level codes of every row, per factor."""
        return rows(self.crossed, self.seen, self.lists)

    def draw_x(
        self, rng: np.random.Generator, codes: Mapping[str, np.ndarray]
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """The predictors' values on every row and X, drawn from ``rng``: the row-level
        predictors first (table order), then each factor's (in the order of ``crossed``:
        one value per level); a Latin square draws nothing."""
        n = next(iter(codes.values())).size
        values: dict[str, Any] = {}
        for level in ("row", *self.crossed):
            group = [
                p.predictor
                for p in self.variables
                if isinstance(p, FactorPredictor) and p.level == level
            ]
            if not group:
                continue
            units = n if level == "row" else self.crossed[level]
            frame = draw(group, rng, np.zeros(units, dtype=np.int64), 1)
            for name in frame.columns:
                column = frame[name]
                values[name] = (
                    column if level == "row" else column.iloc[codes[level]].reset_index(drop=True)
                )
        sq = self.square
        if sq is not None:
            k = square(codes, self.seen, sq.n)
            if sq.categorical:
                values[sq.name] = pd.Categorical.from_codes(k, categories=pd.Index(sq.levels))
            else:
                values[sq.name] = np.asarray(sq.levels, dtype=float)[k]
        names = tuple(p.name for p in self.variables)
        frame = pd.DataFrame({name: values[name] for name in names}, index=pd.RangeIndex(n))
        _, X = fixed_columns(self.fixed_formula, frame, names)
        return frame, X

    def skeleton(self) -> CrossedData:
        """The design's rows with an X and a y from the fixed check stream: what the
        load-time checks look at (:meth:`problem`)."""
        rng = check_rng()
        codes = self.codes()
        _, X = self.draw_x(rng, codes)
        y = np.asarray(rng.standard_normal(X.shape[0]))
        return CrossedData(y, X, self.structure, codes)

    # -- what the rest of the study reads ---------------------------------------------
    @property
    def structure(self) -> CrossedStructure:
        """The generating model's fixed effects and random terms."""
        return cast(CrossedStructure, self.__dict__["_structure"])

    @property
    def factors(self) -> tuple[str, ...]:
        """The grouping factors, in the order of ``crossed``."""
        return tuple(self.crossed)

    @property
    def effects(self) -> tuple[str, ...]:
        """The fixed effects other than the intercept."""
        return self.structure.fixed[1:]

    @property
    def q(self) -> int:
        return self.structure.q

    @property
    def beta_values(self) -> tuple[float, ...]:
        """``beta`` in the order of X's columns."""
        return cast(tuple[float, ...], self.__dict__["_beta"])

    @property
    def fixed_formula(self) -> str:
        return self.fixed or default_fixed(tuple(p.name for p in self.variables))

    def covariances(self) -> list[np.ndarray]:
        """``D_f`` of every bar of :attr:`structure` (r_f x r_f)."""
        return [s[:, None] * c * s[None, :] for s, c in self.bar_factors()]

    def bar_factors(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per bar: the SDs of its effects and their correlation matrix."""
        out = []
        for b in self.structure.bars:
            effects = effects_of(self.structure, b.group)
            pick = [effects.index(e) for e in b.effects]
            sds = np.asarray(cast(Mapping[str, Any], self.re_sd)[b.group], dtype=float)[pick]
            cor = self.re_cor.get(b.group)
            C = np.eye(len(effects)) if cor is None else np.asarray(cor, dtype=float)
            out.append((sds, C[np.ix_(pick, pick)]))
        return out

    #: a crossed design has none of these (read where one-factor designs have them)
    icc = None
    missing = None
    fixed_random_effects = False

    @property
    def data_values(self) -> int:
        """Float values one replicate's data hold while fitted: the rows (y, X, codes and
        Z's entries) and the dense ``Z'Z``."""
        r = sum(b.r for b in self.structure.bars)
        L = self.levels_of(self.structure)
        return self.rows * (self.q + 2 + len(self.crossed) + 2 * r) + L * L + L * self.q

    def describe(self) -> str:
        """``subj = 24 x item = 16, every subj meets every item: 384 rows``."""
        sizes = " x ".join(f"{f} = {k}" for f, k in self.crossed.items())
        first, second = (*self.crossed, "")[:2]
        if self.seen == "all":
            how = f"every {first} meets every {second}"
        else:
            how = f"each {first} meets the {second}s of its list ({self.lists} lists)"
        return f"{sizes}, {how}: {self.rows:,} rows"

    def table(self, full: bool = False, hashed: bool = False) -> dict[str, Any]:
        """Every setting as plain TOML values, read back identically (``full`` and
        ``hashed`` as :meth:`study.design.spec.DesignConfig.table`: every setting here
        is written and hashed)."""
        out: dict[str, Any] = {
            "crossed": dict(self.crossed),
            "seen": self.seen,
            "predictors": {p.name: p.table() for p in self.variables},
            "fixed": self.fixed,
            "beta": plain_beta(self.beta),
            "random": self.random,
            "re_sd": {f: list(v) for f, v in cast(Mapping[str, Any], self.re_sd).items()},
            "re_cor": {f: [list(row) for row in m] for f, m in self.re_cor.items()},
            "sigma": self.sigma,
        }
        if not out["predictors"]:
            del out["predictors"]
        if not out["re_cor"]:
            del out["re_cor"]
        return out

    def x_table(self) -> dict[str, Any]:
        """The settings that define X: the factors, which rows are seen, the predictors."""
        table = self.table()
        return {k: table[k] for k in X_KEYS if k in table}


def is_crossed(table: Mapping[str, Any]) -> bool:
    """Whether a ``[design]`` table is a crossed design's (it has ``crossed``)."""
    return MARK in table


def _factors(value: object) -> dict[str, int]:
    if not isinstance(value, Mapping) or len(value) < 2:
        raise fail(
            "design.crossed",
            value,
            "must name at least two crossed grouping factors and their levels, e.g. "
            "{ subj = 24, item = 16 } (one factor: groups and group_size)",
        )
    out = {}
    for name, k in value.items():
        key = f"design.crossed.{name}"
        if not isinstance(name, str) or not name.isidentifier():
            raise fail(key, k, "must be named by an identifier (letters, digits, _)")
        levels = integer(key, k, low=1)
        if levels < 2:
            raise fail(
                key,
                levels,
                "must be >= 2: a grouping factor needs at least 2 levels (lme4: grouping "
                "factors must have > 1 sampled level)",
            )
        out[name] = levels
    return out


def _predictors(value: object, crossed: Mapping[str, int]) -> tuple[CrossedPredictor, ...]:
    if isinstance(value, tuple) and all(
        isinstance(p, LatinSquare | FactorPredictor) for p in value
    ):
        return value
    if not isinstance(value, Mapping):
        raise fail(
            "design.predictors",
            value,
            "must be [design.predictors.NAME] tables in a crossed design",
        )
    out: list[CrossedPredictor] = []
    for name, table in value.items():
        key = f"design.predictors.{name}"
        if not isinstance(table, Mapping):
            raise fail(key, table, 'must be a table, e.g. distribution = "latin_square"')
        if name in crossed:
            raise fail(key, "(a table)", f"is named like the factor {name}; name it apart")
        if table.get("distribution") == LATIN:
            out.append(LatinSquare.from_table(name, table, key))
            continue
        level = table.get("level", "row")
        if level != "row" and level not in crossed:
            raise fail(
                f"{key}.level", level, f"must be row or a factor of crossed ({', '.join(crossed)})"
            )
        if table.get("center") == "group":
            raise fail(
                f"{key}.center",
                "group",
                "must be none or grand in a crossed design (it has no one group to centre in)",
            )
        row = Predictor.from_table(name, {**table, "level": "row"}, key)
        out.append(FactorPredictor(row, level))
    plain = [p for p in out if isinstance(p, FactorPredictor)]
    for p in plain:
        for other, r in p.predictor.p.get("cor", ()):
            match = next((q for q in plain if q.name == other), None)
            if match is None or match.level != p.level:
                raise fail(
                    f"design.predictors.{p.name}.cor.{other}",
                    r,
                    f"must name another normal predictor of level {p.level!r}",
                )
    for level in ("row", *crossed):
        group = [p.predictor for p in plain if p.level == level]
        if level != "row":  # checked as group-level (a balanced share leaves both arms)
            group = [dataclasses.replace(q, level="group") for q in group]
        check_set(group, crossed.get(level, 2), "design.predictors")
    return tuple(out)


def _example_frame(variables: Sequence[CrossedPredictor]) -> pd.DataFrame:
    """A small frame with every predictor (every level of the categorical ones)."""
    sizes = [2]
    for p in variables:
        if isinstance(p, LatinSquare) and p.categorical:
            sizes.append(p.n)
        elif isinstance(p, FactorPredictor) and p.predictor.categorical:
            sizes.append(len(p.predictor.levels))
    n = max(sizes)
    frame: dict[str, Any] = {}
    for p in variables:
        if isinstance(p, LatinSquare) and p.categorical:
            frame[p.name] = pd.Categorical.from_codes(
                np.arange(n) % p.n, categories=pd.Index(p.levels)
            )
        elif isinstance(p, FactorPredictor) and p.predictor.categorical:
            levels = p.predictor.levels
            frame[p.name] = pd.Categorical.from_codes(
                np.arange(n) % len(levels), categories=pd.Index(levels)
            )
        else:
            frame[p.name] = np.arange(n, dtype=float)
    return pd.DataFrame(frame, index=pd.RangeIndex(n))


def _correlation(
    value: object, structure: CrossedStructure, factor: str
) -> tuple[tuple[float, ...], ...]:
    """``re_cor.FACTOR``: a number (two effects) or an r x r matrix over the factor's
    effects; symmetric, unit diagonal, positive definite, and zero wherever the
    structure has no correlation (between bars, within ``||``)."""
    key = f"design.re_cor.{factor}"
    effects = effects_of(structure, factor)
    r = len(effects)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if r != 2:
            raise fail(key, value, f"must be an {r} x {r} matrix ({factor} has {r} random effects)")
        rho = number(key, value, low=-1.0, high=1.0)
        value = [[1.0, rho], [rho, 1.0]]
    if isinstance(value, str) or not isinstance(value, list | tuple) or len(value) != r:
        raise fail(key, value, f"must be a {r} x {r} correlation matrix over {', '.join(effects)}")
    rows_ = tuple(numbers(f"{key}[{i}]", row) for i, row in enumerate(value))
    if any(len(row) != r for row in rows_):
        raise fail(key, value, f"must be a {r} x {r} correlation matrix over {', '.join(effects)}")
    C = np.array(rows_, dtype=float)
    if not np.allclose(np.diag(C), 1.0) or not np.allclose(C, C.T):
        raise fail(key, [list(x) for x in rows_], "must be symmetric with ones on the diagonal")
    allowed = np.eye(r, dtype=bool)
    at = 0
    for b in structure.bars:
        if b.group != factor:
            continue
        if b.correlated:
            allowed[at : at + b.r, at : at + b.r] = True
        at += b.r
    if np.any(C[~allowed] != 0.0):
        raise fail(
            key,
            [list(x) for x in rows_],
            "must be 0 between effects that random makes uncorrelated (different terms, "
            "or ||); write them in one term with |",
        )
    if np.linalg.eigvalsh(C).min() <= 1e-10:
        raise fail(key, [list(x) for x in rows_], "must be positive definite (|correlations| < 1)")
    return rows_


def unidentified(data: CrossedData, seen: str = "all") -> str:
    """Why a random term's effects are not identified by the design, or ``""``: within
    every level of its factor, its columns are collinear (a slope that does not vary
    within the factor's levels: ``(1 + cond | subj)`` when each subject meets one
    condition)."""
    for b, offset, K in zip(data.structure.bars, data.offsets, data.levels, strict=True):
        if b.r == 1:
            continue
        r = b.r
        block = data.ZtZ[offset : offset + K * r, offset : offset + K * r].reshape(K, r, K, r)
        per_level = block[np.arange(K), :, np.arange(K), :]  # (K, r, r)
        eig = np.linalg.eigvalsh(per_level)
        if np.all(eig[:, 0] <= 1e-9 * np.maximum(eig[:, -1], 1e-300)):
            codes = data.codes[b.group]
            n = np.bincount(codes, minlength=K)
            flat = []
            for e in b.effects:
                if e == INTERCEPT:
                    continue
                x = data.column(e)
                mean = np.bincount(codes, x, K) / n
                var = np.bincount(codes, x * x, K) / n - mean**2
                if np.all(var <= 1e-12 * max(1.0, float(np.max(x * x)))):
                    flat.append(e)
            if flat:
                e = flat[0]
                where = ' (seen = "list": a list meets one condition)' if seen == "list" else ""
                rest = [x for x in b.effects if x != e]
                hint = Bar(b.group, tuple(rest), b.correlated).text()
                return (
                    f"the random slope of {e} by {b.group} is not identified: {e} takes one "
                    f"value within each {b.group}{where}; drop it from the term, e.g. {hint}"
                )
            return (
                f"the random effects of {b.text()} are collinear within every level of "
                f"{b.group}: they are not identified; drop a random slope"
            )
    return ""
