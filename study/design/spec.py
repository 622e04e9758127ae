"""The data-generating model of a study: predictor distribution, design parameters.

Frozen dataclasses validated in ``__post_init__`` in the one style of
:mod:`models.validate` (``design.sigma = -1: must be > 0``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.structure import INTERCEPT, Structure
from models.validate import (
    OMIT_DEFAULT,
    OptionError,
    boolean,
    choice,
    fail,
    integer,
    number,
    numbers,
)

DISTRIBUTIONS = ("rounded_uniform", "uniform", "normal")
#: the most rows one replicate's data may have (groups x group_size x repeats): a
#: sample is held in memory several times over while it is generated and fitted
#: (about 3 GB a copy at this size with one predictor); the seed design has 100,000.
#: Whether a smaller design fits this machine is :mod:`study.run.budget`'s question.
MAX_ROWS = 100_000_000


@dataclass(frozen=True)
class PredictorSpec:
    """Distribution of each predictor value (drawn once per study, per subject).

    ``rounded_uniform``: ``round(Uniform(low, high))`` (the report's default);
    ``uniform``: ``Uniform(low, high)``; ``normal``: ``Normal(mean, sd)``.
    """

    distribution: str = "rounded_uniform"
    low: float = 1.0
    high: float = 20.0
    mean: float = 0.0
    sd: float = 1.0

    def __post_init__(self) -> None:
        choice("design.predictor.distribution", self.distribution, DISTRIBUTIONS)
        for name in ("low", "high", "mean", "sd"):
            value = number(f"design.predictor.{name}", getattr(self, name))
            object.__setattr__(self, name, value)
        if self.distribution != "normal" and not self.low < self.high:
            raise fail("design.predictor.high", self.high, f"must be > low ({self.low:g})")
        if self.distribution == "normal":
            number("design.predictor.sd", self.sd, low=0.0)

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Draw ``size`` predictor values."""
        if self.distribution == "normal":
            return rng.normal(self.mean, self.sd, size)
        x = rng.uniform(self.low, self.high, size)
        return np.round(x) if self.distribution == "rounded_uniform" else x


@dataclass(frozen=True)
class DesignConfig:
    """The data-generating model ``y_i = X_i beta + Z_i u_i + e_i``.

    Parameters
    ----------
    groups : int
        Number of groups K (>= 2).
    group_size : int or tuple of int
        Subjects per group: one number for all, or one per group.
    predictors : tuple of str
        Predictor names (p >= 1).
    beta : tuple of float
        Fixed effects, intercept first (length p + 1).
    random : tuple of str
        The fixed effects with a random effect (``"(Intercept)"`` and predictor names;
        ``Z`` is made of those columns of ``X``), kept in the order of the fixed
        effects; empty (the default) for all of them.
    correlated : bool
        Whether the random effects are correlated (lme4 ``|``) or independent
        (``||``: ``re_cor`` must then be the identity).
    re_sd : tuple of float
        Random-effect SDs, one per random effect in the order of ``random``.
    re_cor : tuple of tuple of float
        Random-effect correlation matrix (r x r, positive definite); default the
        identity.
    sigma : float
        Residual SD (> 0).
    repeats : int
        Each group's subjects are repeated this many times with new noise (the
        report's inner loop; 1 = no repetition).
    fixed_random_effects : bool
        Draw u once per study and reuse it (the report's quirk) instead of redrawing.
    predictor : PredictorSpec
        Distribution of the predictor values.
    """

    groups: int = 40
    group_size: int | tuple[int, ...] = 50
    predictors: tuple[str, ...] = ("X",)
    beta: tuple[float, ...] = (5.0, 2.0)
    re_sd: tuple[float, ...] = (1.0, 2.0)
    re_cor: tuple[tuple[float, ...], ...] = ()
    sigma: float = 1.0
    repeats: int = 1
    fixed_random_effects: bool = False
    predictor: PredictorSpec = field(default_factory=PredictorSpec)
    # added after runs were made: left out of tables and hashes while at the default
    random: tuple[str, ...] = field(default=(), metadata=OMIT_DEFAULT)
    correlated: bool = field(default=True, metadata=OMIT_DEFAULT)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        groups = integer("design.groups", self.groups, low=2)
        if isinstance(self.group_size, list | tuple):
            sizes = tuple(
                integer(f"design.group_size[{i}]", v, low=1) for i, v in enumerate(self.group_size)
            )
            if len(sizes) != groups:
                raise fail(
                    "design.group_size",
                    list(sizes),
                    f"must be one number or a list of {groups} (one per group)",
                )
            set_(self, "group_size", sizes)
        else:
            set_(self, "group_size", integer("design.group_size", self.group_size, low=1))
        predictors = self.predictors
        if (
            isinstance(predictors, str)
            or not isinstance(predictors, list | tuple)
            or not predictors
        ):
            raise fail("design.predictors", predictors, "must be a list of >= 1 names")
        for i, name in enumerate(predictors):
            if not isinstance(name, str) or not name.isidentifier():
                raise fail(f"design.predictors[{i}]", name, "must be an identifier-like name")
        if len(set(predictors)) != len(predictors):
            raise fail("design.predictors", list(predictors), "names must be distinct")
        set_(self, "predictors", tuple(predictors))
        q = len(predictors) + 1
        beta = numbers("design.beta", self.beta)
        if len(beta) != q:
            names = ", ".join(predictors)
            raise fail("design.beta", list(beta), f"must have {q} values (intercept then {names})")
        fixed = (INTERCEPT, *predictors)
        boolean("design.correlated", self.correlated)
        if isinstance(self.random, str):  # an lme4 random part: "(1 + X | g)"
            parsed = bar_structure(self.random, fixed, self.correlated)
            set_(self, "correlated", parsed.correlated)
            set_(self, "random", () if parsed.random == fixed else parsed.random)
        elif self.random != ():
            set_(self, "random", random_effects(self.random, fixed, "design.random"))
        if len(self.random) == 1:  # one random effect: nothing to correlate
            set_(self, "correlated", True)
        random_names = self.structure.random
        r = len(random_names)
        # an SD of 0 is allowed: a random effect that is absent from the data (fits
        # then sit on the boundary, as a study of boundary fits wants)
        re_sd = numbers("design.re_sd", self.re_sd, low=0.0, low_inclusive=True)
        if not any(re_sd):
            raise fail("design.re_sd", list(re_sd), "must have at least one SD > 0")
        if len(re_sd) != r:
            raise fail(
                "design.re_sd",
                list(re_sd),
                f"must have {r} values, one per random effect ({', '.join(random_names)})",
            )
        set_(self, "beta", beta)
        set_(self, "re_sd", re_sd)
        re_cor = self.re_cor or tuple(
            tuple(1.0 if i == j else 0.0 for j in range(r)) for i in range(r)
        )
        set_(self, "re_cor", _correlation(re_cor, r))
        if not self.correlated and not np.allclose(np.array(self.re_cor), np.eye(r)):
            raise fail(
                "design.re_cor",
                [list(row) for row in self.re_cor],
                "must be the identity (or left out) with correlated = false",
            )
        set_(self, "sigma", number("design.sigma", self.sigma, low=0.0))
        set_(self, "repeats", integer("design.repeats", self.repeats, low=1))
        self._check_rows()
        boolean("design.fixed_random_effects", self.fixed_random_effects)
        if self.fixed_random_effects and not all(re_sd):
            raise fail(
                "design.re_sd",
                list(re_sd),
                "must be > 0 with fixed_random_effects = true (the conditional truth "
                "needs D invertible)",
            )
        if not isinstance(self.predictor, PredictorSpec):
            raise fail("design.predictor", self.predictor, "must be a table")

    def _check_rows(self) -> None:
        """Refuse a design whose replicates would have more than :data:`MAX_ROWS` rows,
        naming the largest of the settings that multiply into the row count."""
        sizes = self.group_size
        subjects = sum(sizes) if isinstance(sizes, tuple) else self.groups * sizes
        rows = subjects * self.repeats
        if rows <= MAX_ROWS:
            return
        factors = {"design.repeats": self.repeats, "design.groups": self.groups}
        if not isinstance(sizes, tuple):
            factors["design.group_size"] = sizes
        key = max(factors, key=lambda k: factors[k])
        raise fail(
            key,
            factors[key],
            f"makes {rows:,} rows per replicate ({subjects:,} subjects x {self.repeats:,} "
            f"repeats), more than the {MAX_ROWS:,} a replicate may hold in memory; use "
            "fewer or smaller groups, or fewer repeats",
        )

    @property
    def q(self) -> int:
        """Number of fixed effects, intercept included."""
        return len(self.predictors) + 1

    @property
    def structure(self) -> Structure:
        """The generating model's fixed and random effects."""
        fixed = (INTERCEPT, *self.predictors)
        return Structure(fixed, self.random or fixed, self.correlated)

    @property
    def sizes(self) -> np.ndarray:
        """Subjects per group, shape (K,)."""
        if isinstance(self.group_size, tuple):
            return np.array(self.group_size, dtype=np.int64)
        return np.full(self.groups, self.group_size, dtype=np.int64)

    @property
    def D(self) -> np.ndarray:
        """Random-effects covariance ``diag(sd) C diag(sd)`` embedded in the q x q space
        of the fixed effects (rows and columns of effects without a random effect are
        0): ``Z D_r Z' = X D X'``, so the truth's algebra on ``X`` holds for any ``Z``."""
        return self.embed(self.structure.covariance(self.re_sd, self.re_cor))

    @property
    def cor_full(self) -> np.ndarray:
        """The random-effect correlation matrix embedded in q x q (identity elsewhere)."""
        return self.embed(np.array(self.re_cor), eye=True)

    @property
    def sd_full(self) -> np.ndarray:
        """Random-effect SDs per fixed effect (0 for effects without a random effect)."""
        out = np.zeros(self.q)
        out[list(self.structure.index)] = self.re_sd
        return out

    def embed(self, M: np.ndarray, eye: bool = False) -> np.ndarray:
        """An r x r matrix placed in the q x q space of the fixed effects."""
        idx = np.array(self.structure.index)
        out = np.eye(self.q) if eye else np.zeros((self.q, self.q))
        out[np.ix_(idx, idx)] = M
        return out


def bar_structure(
    text: str, fixed: tuple[str, ...], correlated: bool, key: str = "design.random"
) -> Structure:
    """The structure of ``random`` (``key``) written as an lme4 random part; its terms
    in the order of the fixed effects (``re_sd`` and ``re_cor`` follow that order)."""
    from models.formula import bar_structure as parse_bar  # formulaic: only when needed

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


def _correlation(value: object, q: int) -> tuple[tuple[float, ...], ...]:
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
