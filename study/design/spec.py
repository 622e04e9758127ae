"""The data-generating model of a study: predictor distribution, design parameters.

Frozen dataclasses validated in ``__post_init__`` in the one style of
:mod:`models.validate` (``design.sigma = -1: must be > 0``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, cast

import numpy as np

from models.structure import INTERCEPT, Structure
from models.validate import (
    OMIT_DEFAULT,
    boolean,
    check_keys,
    choice,
    fail,
    integer,
    number,
    numbers,
)
from study.design.distributions import Shape
from study.design.noise import Missing, Residuals
from study.design.pilot import Pilot, load_checked
from study.design.predictors import Predictor, check_set, example_frame
from study.design.random_part import bar_structure, correlation, random_effects
from study.design.sizes import GroupSizes
from study.design.terms import beta_values, default_fixed, fixed_columns

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


#: the keys of ``[design.predictor]``
PREDICTOR_KEYS = ("distribution", "low", "high", "mean", "sd")
#: the random-effect SDs when ``re_sd`` is not given (the report's design)
DEFAULT_RE_SD = (1.0, 2.0)


@dataclass(frozen=True)
class DesignConfig:
    """The data-generating model ``y_i = X_i beta + Z_i u_i + e_i``.

    Parameters
    ----------
    groups : int
        Number of groups K (>= 2).
    group_size : int, tuple of int or GroupSizes
        Subjects per group: one number for all, one per group, or a distribution the
        sizes are drawn from once per design (:mod:`study.design.sizes`).
    predictors : tuple of str, or mapping of name to table
        Predictor names sharing the ``predictor`` distribution (drawn per row), or one
        table per predictor (:mod:`study.design.predictors`).
    beta : tuple of float, or mapping of term to float
        Fixed effects in the order of X's columns, or keyed by lme4's term names.
    re_sd : tuple of float
        Random-effect SDs, one per random effect in the order of ``random``; without
        the intercept's when ``icc`` gives it.
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
        The distribution of the predictors given as a list of names.
    random : tuple of str or str
        The fixed effects with a random effect (names, or an lme4 random part such as
        ``"(1 + X | g)"``), in the order of the fixed effects; empty for all of them.
    correlated : bool
        Whether the random effects are correlated (lme4 ``|``) or not (``||``).
    fixed : str
        The fixed part as an lme4 right-hand side over the predictors (default: their
        main effects; :mod:`study.design.terms`).
    icc : float or None
        The intercept's share of the variance at X = 0, ``sd0^2 / (sd0^2 + sigma^2)``, in
        place of its SD: ``sd0 = sigma sqrt(icc / (1 - icc))``.
    random_effects : Shape
        The distribution of u, standardised so that ``Cov(u) = D`` exactly.
    residuals : Residuals
        The residuals' distribution and heteroscedasticity (:mod:`study.design.noise`).
    missing : Missing or None
        Missing outcomes, deleted after generation (:mod:`study.design.noise`).
    """

    groups: int = 40
    group_size: int | tuple[int, ...] | GroupSizes = 50
    predictors: tuple[str, ...] | tuple[Predictor, ...] = ("X",)
    beta: tuple[float, ...] | Mapping[str, float] = (5.0, 2.0)
    re_sd: tuple[float, ...] = DEFAULT_RE_SD
    re_cor: tuple[tuple[float, ...], ...] = ()
    sigma: float = 1.0
    repeats: int = 1
    fixed_random_effects: bool = False
    predictor: PredictorSpec = field(default_factory=PredictorSpec)
    # added after runs were made: left out of tables and hashes while at the default
    random: tuple[str, ...] = field(default=(), metadata=OMIT_DEFAULT)
    correlated: bool = field(default=True, metadata=OMIT_DEFAULT)
    fixed: str = field(default="", metadata=OMIT_DEFAULT)
    icc: float | None = field(default=None, metadata=OMIT_DEFAULT)
    random_effects: Shape = field(default_factory=Shape, metadata=OMIT_DEFAULT)
    residuals: Residuals = field(default_factory=Residuals, metadata=OMIT_DEFAULT)
    missing: Missing | None = field(default=None, metadata=OMIT_DEFAULT)
    #: a pilot CSV whose predictor values X is drawn from (:mod:`study.design.pilot`),
    #: its sha256 (checked when given) and its grouping column
    predictors_from: str = field(default="", metadata={**OMIT_DEFAULT, "hashed": False})
    predictors_sha256: str = field(default="", metadata=OMIT_DEFAULT)
    group_column: str = field(default="", metadata=OMIT_DEFAULT)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        pilot = self._pilot()
        if pilot is not None and self.groups == PILOT:
            set_(self, "groups", pilot.n_groups)
        groups = integer("design.groups", self.groups, low=2)
        if not (pilot is not None and self.group_size == PILOT):
            set_(self, "group_size", _group_size(self.group_size, groups))
        if isinstance(self.predictor, Mapping):
            check_keys(self.predictor, PREDICTOR_KEYS, "design.predictor")
            set_(self, "predictor", PredictorSpec(**self.predictor))
        if not isinstance(self.predictor, PredictorSpec):
            raise fail("design.predictor", self.predictor, "must be a table")
        if pilot is None:
            variables = self._read_predictors()
            names = tuple(v.name for v in variables)
            frame = example_frame(variables)
        else:
            variables, names, frame = (), pilot.predictors, pilot.frame
        set_(self, "_variables", variables)
        if not isinstance(self.fixed, str):
            raise fail("design.fixed", self.fixed, 'must be a formula, e.g. "treat * age"')
        if self.fixed or self.tables or pilot is not None:
            fixed, _ = fixed_columns(self.fixed or default_fixed(names), frame, names)
        else:  # predictors = [names]: X is the intercept and their values
            fixed = (INTERCEPT, *names)
        set_(self, "_fixed", fixed)
        beta = beta_values(self.beta, fixed)
        set_(self, "_beta", beta)
        set_(
            self,
            "beta",
            dict(zip(fixed, beta, strict=True)) if isinstance(self.beta, Mapping) else beta,
        )
        boolean("design.correlated", self.correlated)
        if isinstance(self.random, str):  # an lme4 random part: "(1 + X | g)"
            parsed = bar_structure(self.random, fixed, self.correlated)
            set_(self, "correlated", parsed.correlated)
            set_(self, "random", () if parsed.random == fixed else parsed.random)
        elif self.random != ():
            set_(self, "random", random_effects(self.random, fixed, "design.random"))
        if len(self.random) == 1:  # one random effect: nothing to correlate
            set_(self, "correlated", True)
        self._check_variances()
        set_(self, "repeats", integer("design.repeats", self.repeats, low=1))
        self._check_rows()
        boolean("design.fixed_random_effects", self.fixed_random_effects)
        if self.fixed_random_effects and not all(self.sds):
            raise fail(
                "design.re_sd",
                list(self.re_sd),
                "must be > 0 with fixed_random_effects = true (the conditional truth "
                "needs D invertible)",
            )
        if not isinstance(self.random_effects, Shape):
            set_(
                self,
                "random_effects",
                Shape.from_table(self.random_effects, "design.random_effects"),
            )
        set_(self, "residuals", Residuals.from_table(self.residuals))
        self.residuals.check(fixed[1:])
        if self.missing is not None:
            set_(self, "missing", Missing.from_table(self.missing))
            self.missing.check(fixed[1:])

    def _pilot(self) -> Pilot | None:
        """The pilot data X is drawn from (``predictors_from``), loaded and checked as
        ``study fit`` checks a CSV; None without one."""
        set_ = object.__setattr__
        set_(self, "_pilot_data", None)
        if not self.predictors_from:
            for key in ("predictors_sha256", "group_column"):
                if getattr(self, key):
                    raise fail(f"design.{key}", getattr(self, key), "needs predictors_from")
            return None
        key = "design.predictors_from"
        if not isinstance(self.predictors_from, str):
            raise fail(key, self.predictors_from, "must be the path of a CSV file")
        if self.predictors != ("X",) or self.predictor != PredictorSpec():
            raise fail(key, self.predictors_from, "replaces predictors: drop predictors there")
        # the random part names the grouping column (once read, ``group_column`` holds it)
        if isinstance(self.random, str):
            bars = self.random
        elif self.group_column:
            bars = f"(1 | {self.group_column})"
        else:
            bars = ""
        if not isinstance(self.fixed, str) or not self.fixed or not bars:
            raise fail(
                key,
                self.predictors_from,
                'needs fixed and random as formulas over its columns, e.g. fixed = "Days", '
                'random = "(Days | Subject)"',
            )
        pilot = load_checked(self.predictors_from, f"{self.fixed} + {bars}", self)
        set_(self, "predictors_sha256", pilot.sha256)
        set_(self, "group_column", pilot.group_column)
        set_(self, "_pilot_data", pilot)
        return pilot

    @property
    def pilot(self) -> Pilot | None:
        """The pilot data of ``predictors_from`` (None without)."""
        return cast("Pilot | None", self.__dict__.get("_pilot_data"))

    def _read_predictors(self) -> tuple[Predictor, ...]:
        """The predictors as :class:`Predictor` records (``predictors`` validated)."""
        value = self.predictors
        if isinstance(value, Mapping) or (
            isinstance(value, tuple) and value and isinstance(value[0], Predictor)
        ):
            if self.predictor != PredictorSpec():
                raise fail(
                    "design.predictor",
                    "(a table)",
                    "is for predictors = [names]; with [design.predictors.NAME] tables give "
                    "each predictor its distribution there",
                )
            items = value.items() if isinstance(value, Mapping) else [(p.name, p) for p in value]
            out = tuple(
                p
                if isinstance(p, Predictor)
                else Predictor.from_table(n, p, f"design.predictors.{n}")
                for n, p in items
            )
            if not out:
                raise fail("design.predictors", {}, "must define at least one predictor")
            check_set(out, self.groups, "design.predictors")
            object.__setattr__(self, "predictors", out)
            return out
        if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
            raise fail(
                "design.predictors",
                value,
                "must be a list of >= 1 names or [design.predictors.NAME] tables",
            )
        for i, name in enumerate(value):
            if not isinstance(name, str) or not name.isidentifier():
                raise fail(f"design.predictors[{i}]", name, "must be an identifier-like name")
        if len(set(value)) != len(value):
            raise fail("design.predictors", list(value), "names must be distinct")
        object.__setattr__(self, "predictors", tuple(value))
        return tuple(Predictor.legacy(str(n), self.predictor) for n in value)

    def _check_variances(self) -> None:
        set_ = object.__setattr__
        set_(self, "sigma", number("design.sigma", self.sigma, low=0.0))
        random_names = self.structure.random
        r = len(random_names)
        given = random_names
        if self.icc is not None:
            icc = number("design.icc", self.icc, low=0.0, high=1.0, low_inclusive=True)
            if icc >= 1.0:
                raise fail(
                    "design.icc", icc, "must be in [0, 1): sd0 = sigma sqrt(icc / (1 - icc))"
                )
            if INTERCEPT not in random_names:
                raise fail("design.icc", icc, "needs a random intercept (random has none)")
            set_(self, "icc", icc)
            given = tuple(n for n in random_names if n != INTERCEPT)
            if self.re_sd is DEFAULT_RE_SD:
                set_(self, "re_sd", ())
        # an SD of 0 is allowed: a random effect that is absent from the data (fits
        # then sit on the boundary, as a study of boundary fits wants)
        re_sd = numbers("design.re_sd", self.re_sd, low=0.0, low_inclusive=True)
        if len(re_sd) != len(given):
            if self.icc is not None and len(re_sd) == r:
                raise fail(
                    "design.icc",
                    self.icc,
                    "gives the intercept's SD, and so does re_sd; drop it from re_sd "
                    f"(re_sd: {', '.join(given) or 'none'}) or drop icc",
                )
            raise fail(
                "design.re_sd",
                list(re_sd),
                f"must have {len(given)} values, one per random effect ({', '.join(given)})"
                + (" other than the intercept (icc gives its SD)" if self.icc is not None else ""),
            )
        set_(self, "re_sd", re_sd)
        if self.icc is None:
            sds = re_sd
            if not any(re_sd):
                raise fail("design.re_sd", list(re_sd), "must have at least one SD > 0")
        else:
            sd0 = self.sigma * float(np.sqrt(self.icc / (1.0 - self.icc)))
            sds = tuple(sd0 if n == INTERCEPT else re_sd[given.index(n)] for n in random_names)
        set_(self, "_sds", sds)
        re_cor = self.re_cor or tuple(
            tuple(1.0 if i == j else 0.0 for j in range(r)) for i in range(r)
        )
        set_(self, "re_cor", correlation(re_cor, r))
        if not self.correlated and not np.allclose(np.array(self.re_cor), np.eye(r)):
            raise fail(
                "design.re_cor",
                [list(row) for row in self.re_cor],
                "must be the identity (or left out) with correlated = false",
            )

    def _check_rows(self) -> None:
        """Refuse a design whose replicates would have more than :data:`MAX_ROWS` rows,
        naming the largest of the settings that multiply into the row count."""
        subjects = self.max_subjects
        rows = subjects * self.repeats
        if rows <= MAX_ROWS:
            return
        factors = {"design.repeats": self.repeats, "design.groups": self.groups}
        if isinstance(self.group_size, int):
            factors["design.group_size"] = self.group_size
        key = max(factors, key=lambda k: factors[k])
        raise fail(
            key,
            factors[key],
            f"makes {rows:,} rows per replicate ({subjects:,} subjects x {self.repeats:,} "
            f"repeats), more than the {MAX_ROWS:,} a replicate may hold in memory; use "
            "fewer or smaller groups, or fewer repeats",
        )

    @property
    def tables(self) -> bool:
        """Whether the predictors are given as tables (not a list of names)."""
        return bool(self.predictors) and isinstance(self.predictors[0], Predictor)

    @property
    def variables(self) -> tuple[Predictor, ...]:
        """Every predictor as a :class:`Predictor` record (in table order)."""
        return cast(tuple[Predictor, ...], self.__dict__["_variables"])

    @property
    def effects(self) -> tuple[str, ...]:
        """The fixed effects other than the intercept: X's columns after the first."""
        return cast(tuple[str, ...], self.__dict__["_fixed"][1:])

    @property
    def fixed_formula(self) -> str:
        """The fixed part as a right-hand side (``fixed``, or the main effects)."""
        return self.fixed or default_fixed(tuple(v.name for v in self.variables))

    @property
    def beta_values(self) -> tuple[float, ...]:
        """``beta`` in the order of X's columns."""
        return cast(tuple[float, ...], self.__dict__["_beta"])

    @property
    def sds(self) -> tuple[float, ...]:
        """Every random effect's SD (the intercept's from ``icc`` when given)."""
        return cast(tuple[float, ...], self.__dict__["_sds"])

    @property
    def q(self) -> int:
        """Number of fixed effects, intercept included."""
        return len(self.effects) + 1

    @property
    def structure(self) -> Structure:
        """The generating model's fixed and random effects."""
        fixed = (INTERCEPT, *self.effects)
        return Structure(fixed, self.random or fixed, self.correlated)

    @property
    def random_sizes(self) -> bool:
        """Whether the group sizes are drawn (once per design) or the pilot's."""
        return isinstance(self.group_size, GroupSizes) or self.group_size == PILOT

    @property
    def sizes(self) -> np.ndarray:
        """Subjects per group, shape (K,) (drawn sizes: :attr:`Design.sizes`)."""
        if isinstance(self.group_size, GroupSizes) or self.group_size == PILOT:
            raise ValueError("the group sizes are drawn: Design(config, seed).sizes has them")
        if isinstance(self.group_size, tuple):
            return np.array(self.group_size, dtype=np.int64)
        return np.full(self.groups, self.group_size, dtype=np.int64)

    @property
    def max_subjects(self) -> int:
        """The subjects a design has (at most, when the sizes are drawn)."""
        if isinstance(self.group_size, GroupSizes):
            return self.groups * self.group_size.bound
        if self.group_size == PILOT:
            assert self.pilot is not None
            return self.groups * int(self.pilot.sizes.max())
        if isinstance(self.group_size, tuple):
            return sum(self.group_size)  # Python ints: no overflow before the check
        return self.groups * self.group_size

    @property
    def data_values(self) -> int:
        """Float values one replicate's data hold while fitted (at most): the rows'
        response, fixed-effect columns and group code."""
        return self.max_subjects * self.repeats * (self.q + 2)

    @property
    def D(self) -> np.ndarray:
        """Random-effects covariance ``diag(sd) C diag(sd)`` embedded in the q x q space
        of the fixed effects (rows and columns of effects without a random effect are
        0): ``Z D_r Z' = X D X'``, so the truth's algebra on ``X`` holds for any ``Z``."""
        return self.embed(self.structure.covariance(self.sds, self.re_cor))

    @property
    def cor_full(self) -> np.ndarray:
        """The random-effect correlation matrix embedded in q x q (identity elsewhere)."""
        return self.embed(np.array(self.re_cor), eye=True)

    @property
    def sd_full(self) -> np.ndarray:
        """Random-effect SDs per fixed effect (0 for effects without a random effect)."""
        out = np.zeros(self.q)
        out[list(self.structure.index)] = self.sds
        return out

    def embed(self, M: np.ndarray, eye: bool = False) -> np.ndarray:
        """An r x r matrix placed in the q x q space of the fixed effects."""
        idx = np.array(self.structure.index)
        out = np.eye(self.q) if eye else np.zeros((self.q, self.q))
        out[np.ix_(idx, idx)] = M
        return out

    def table(self, full: bool = False, hashed: bool = False) -> dict[str, Any]:
        """Every setting as plain TOML values, read back identically; a setting added
        after runs were made is left out while at its default (so designs made before
        it existed keep their ids, hence their seeds), unless ``full``.  ``hashed``:
        only what determines the data (a pilot counts by its sha256, not its path)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if hashed and f.metadata.get("hashed", True) is False:
                continue
            if not full and f.metadata.get("omit_default") and value == _default(f):
                continue
            if value is None:
                continue
            if f.name == "predictor" and self.tables:
                continue
            if f.name in ("predictors", "predictor") and self.predictors_from:
                continue
            out[f.name] = _plain(value)
        return out

    def x_table(self) -> dict[str, Any]:
        """The settings that define X (what the design stream is keyed by): the groups,
        their sizes, the repeats and the predictors; never beta, the variances, icc,
        the distributions of u and e or missingness."""
        table = self.table()
        return {k: table[k] for k in X_KEYS if k in table}


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


#: the design keys that define X (the seed policy: docs/architecture.md); a pilot file
#: by its content (its sha256), not its path
X_KEYS = ("groups", "group_size", "repeats", "predictors", "predictor", "predictors_sha256")
#: ``groups`` / ``group_size`` with ``predictors_from``: the pilot's own groups / rows
PILOT = "pilot"


def _plain(value: Any) -> Any:
    """A setting as TOML holds it."""
    if hasattr(value, "table"):
        return value.table()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        if value and isinstance(value[0], Predictor):
            return {p.name: p.table() for p in value}
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def _group_size(value: object, groups: int) -> int | tuple[int, ...] | GroupSizes:
    if isinstance(value, GroupSizes):
        return value
    if isinstance(value, Mapping):
        return GroupSizes.from_table(value)
    if isinstance(value, list | tuple):
        sizes = tuple(integer(f"design.group_size[{i}]", v, low=1) for i, v in enumerate(value))
        if len(sizes) != groups:
            raise fail(
                "design.group_size",
                list(sizes),
                f"must be one number, a list of {groups} (one per group) or a distribution, "
                'e.g. { distribution = "uniform", low = 5, high = 50 }',
            )
        return sizes
    return integer("design.group_size", value, low=1)
