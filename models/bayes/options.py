"""Options and priors of the Bayesian engine (frozen, validated dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from models.structure import Structure
from models.validate import (
    OMIT_DEFAULT,
    OptionError,
    OptionTypeError,
    boolean,
    choice,
    integer,
    number,
    numbers,
)

if TYPE_CHECKING:
    from models.crossed.structure import CrossedStructure

PARAMETERIZATIONS = ("marginal", "centered", "noncentered")
SAMPLERS = ("nutpie", "pymc")
SCALE_FAMILIES = ("halfnormal", "halft", "exponential")
ALGEBRAS = ("auto", "kernel", "unrolled", "batched")
#: "no-logdet" is deliberately wrong (drops sum_i log|A_i|): it exists to show that
#: simulation-based calibration (``study sbc``) detects an error of that size
LIKELIHOODS = ("marginal", "no-logdet")


def _per_coefficient(name: str, value: object, *, low: float | None) -> float | tuple[float, ...]:
    """One number, or a non-empty list of numbers (one per fixed or random effect)."""
    if isinstance(value, list | tuple):
        if not value:
            raise OptionError(name, [], "must be a number or a non-empty list of numbers")
        return numbers(name, value, low=low)
    return number(name, value, low=low)


@dataclass(frozen=True)
class BayesPriors:
    """Priors of the Bayesian engine (weakly informative, not data dependent).

    Defaults, for data on roughly unit scale:

    * fixed effects ``beta_k ~ Normal(fixed_loc=0, fixed_scale=10)``;
    * random-effect SDs ``sd_j ~ half-Student-t(sd_df=3, scale sd_scale=2.5)``;
    * correlation matrix of the random effects ``~ LKJ(lkj_eta=2)`` (mildly favours
      small correlations; ``lkj_eta=1`` is uniform), when they are correlated and
      there are two or more (a diagonal ``D``, lme4's ``||``, has no correlations);
    * residual SD ``sigma ~ half-Student-t(sigma_df=3, scale sigma_scale=2.5)``.

    ``sd_family`` / ``sigma_family`` choose ``"halfnormal"`` (scale = its sigma),
    ``"halft"`` (scale and df) or ``"exponential"`` (scale = its mean).  Rescale
    the data, or these scales, when the data are far from unit scale.
    ``fixed_loc`` and ``fixed_scale`` take one number for every fixed effect or a list
    with one per fixed effect (q, in the order of ``X``'s columns, intercept first);
    ``sd_scale`` one number or a list with one per random effect (r, in the order of
    the structure's random effects; r = q for the all-slopes model).  Lengths are
    checked against a model by :meth:`check_structure`;
    :func:`models.bayes.scaled_priors.scaled_priors` builds such lists from a dataset.
    """

    fixed_loc: float | tuple[float, ...] = 0.0
    fixed_scale: float | tuple[float, ...] = 10.0
    sd_family: str = "halft"
    sd_scale: float | tuple[float, ...] = 2.5
    sd_df: float = 3.0
    lkj_eta: float = 2.0
    sigma_family: str = "halft"
    sigma_scale: float = 2.5
    sigma_df: float = 3.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "fixed_loc", _per_coefficient("fixed_loc", self.fixed_loc, low=None))
        for name in ("fixed_scale", "sd_scale"):
            set_(self, name, _per_coefficient(name, getattr(self, name), low=0.0))
        for name in ("sd_df", "lkj_eta", "sigma_scale", "sigma_df"):
            number(name, getattr(self, name), low=0.0)
        choice("sd_family", self.sd_family, SCALE_FAMILIES)
        choice("sigma_family", self.sigma_family, SCALE_FAMILIES)

    def check_structure(self, structure: Structure | CrossedStructure) -> None:
        """Refuse a list whose length does not fit a model of ``structure``:
        ``fixed_loc`` and ``fixed_scale`` need one value per fixed effect (q),
        ``sd_scale`` one per random effect (r; for several random terms, one per SD
        term: every term's effects in order)."""
        s = structure
        if isinstance(s, Structure):
            sds: tuple[str, ...] = s.random
            what = "random effects"
        else:
            sds = tuple(n for b in s.bars for n in b.names()[: b.r])
            what = "random-effect SDs"
        expected = {
            "fixed_loc": (s.q, "coefficients", s.fixed),
            "fixed_scale": (s.q, "coefficients", s.fixed),
            "sd_scale": (len(sds), what, sds),
        }
        for name, (n, what, names) in expected.items():
            value = getattr(self, name)
            if isinstance(value, tuple) and len(value) != n:
                raise OptionError(
                    name,
                    list(value),
                    f"has {len(value)} values for {n} {what} ({', '.join(names)}); "
                    f"give one number or a list of {n} in that order",
                )


@dataclass(frozen=True)
class BayesOptions:
    """Configuration of :class:`BayesEngine`.

    Parameters
    ----------
    parameterization : {"marginal", "centered", "noncentered"}
        ``"marginal"``: random effects integrated out (fast).  The others keep the
        latent u_i (centred ``u ~ MvNormal(0, D)`` or non-centred ``u = L z``).
    sampler : {"nutpie", "pymc"}
        nutpie (compiled once per model shape) or PyMC's NUTS (``pm.sample``).
    chains, draws, tune, cores : int
        Chains, draws kept per chain, tuning draws per chain, chains run in parallel.
    target_accept : float
        Target acceptance rate of the step-size adaptation, in (0, 1).
    level : float
        Probability of the credible interval.
    point : {"mean", "median"}
        Posterior summary reported as the estimate.
    interval : {"eti", "hdi"}
        Equal-tailed or highest-density interval.
    ess_floor : float
        Minimum bulk ESS for a fit to count as converged.
    priors : BayesPriors
    random_effects : bool
        Also draw u_i (from ``u_i | theta, y`` for the marginal model), returned in
        ``extra["random_effects"]`` with dims (chain, draw, group, effect), ``effect``
        the names of the structure's random effects.
    keep_posterior : bool
        Keep the posterior as an ArviZ DataTree in ``FitResult.posterior``.
    algebra : {"auto", "kernel", "unrolled", "batched"}
        Marginal likelihood algebra.  ``"auto"``: the hand-written kernel (value and
        gradient in one Numba loop) for the full q = 2 structure (a correlated random
        intercept and slope) under nutpie, unrolled elementwise for ``r <= 4`` random
        effects, else batched linalg.  ``"kernel"`` needs q = 2 with Z = X (``|`` or ``||``).
    likelihood : {"marginal", "no-logdet"}
        ``"marginal"``: the exact marginal likelihood.  ``"no-logdet"`` drops the
        ``sum_i log|A_i|`` part of ``log|V_i|``, a deliberately wrong model kept only
        to show what simulation-based calibration detects (``study sbc``); it needs
        the marginal parameterization and the unrolled or batched algebra (``"auto"``
        picks unrolled).
    fastmath : bool
        Compile nutpie's log-density with Numba fastmath (about 20% less CPU per
        fit).  Off by default: with it, a function compiled cold and one loaded from
        PyTensor's cache can differ in the last bits, so the same seed can give
        different draws in different processes.
    """

    parameterization: str = "marginal"
    sampler: str = "nutpie"
    chains: int = 4
    draws: int = 1000
    tune: int = 1000
    cores: int = 2
    target_accept: float = 0.8
    level: float = 0.95
    point: str = "mean"
    interval: str = "eti"
    ess_floor: float = 400.0
    priors: BayesPriors = field(default_factory=BayesPriors)
    random_effects: bool = False
    keep_posterior: bool = False
    algebra: str = "auto"
    likelihood: str = field(default="marginal", metadata=OMIT_DEFAULT)
    fastmath: bool = False

    def __post_init__(self) -> None:
        choice("parameterization", self.parameterization, PARAMETERIZATIONS)
        choice("sampler", self.sampler, SAMPLERS)
        choice("point", self.point, ("mean", "median"))
        choice("interval", self.interval, ("eti", "hdi"))
        choice("algebra", self.algebra, ALGEBRAS)
        choice("likelihood", self.likelihood, LIKELIHOODS)
        if self.likelihood != "marginal" and self.parameterization != "marginal":
            raise OptionError(
                "likelihood",
                self.likelihood,
                f'is a variant of the marginal model; set parameterization = "marginal" '
                f'(not {self.parameterization!r}) or likelihood = "marginal"',
            )
        if self.likelihood != "marginal" and self.algebra == "kernel":
            raise OptionError(
                "likelihood",
                self.likelihood,
                'has no hand-written kernel; use algebra = "unrolled", "batched" or "auto"',
            )
        integer("chains", self.chains, low=1)
        integer("draws", self.draws, low=4)
        integer("tune", self.tune, low=0)
        integer("cores", self.cores, low=1)
        number("target_accept", self.target_accept, low=0.0, high=1.0)
        number("level", self.level, low=0.0, high=1.0)
        number("ess_floor", self.ess_floor, low=0.0, low_inclusive=True)
        if not isinstance(self.priors, BayesPriors):
            raise OptionTypeError("priors", self.priors, "must be a BayesPriors (a table)")
        for name in ("random_effects", "keep_posterior", "fastmath"):
            boolean(name, getattr(self, name))

    def with_threads(self, threads: int) -> BayesOptions:
        """These options with chains run on at most ``threads`` cores.

        ``cores`` only says how many chains run at once: each chain's draws depend on
        the seed and the chain index alone, so the results are unchanged.
        """
        integer("threads", threads, low=1)
        return replace(self, cores=min(self.cores, threads))

    def check_structure(self, structure: Structure | CrossedStructure) -> None:
        """Refuse options that do not fit a model of ``structure``: prior lists of the
        wrong length (``priors.fixed_*``: one per fixed effect, ``priors.sd_scale``: one
        per random effect), or ``algebra = "kernel"`` for a structure other than the
        full q = 2 one.  For several random terms (a :class:`models.crossed.
        CrossedStructure`): the prior lists (``sd_scale`` one per SD term), and
        neither a latent ``parameterization``, ``random_effects`` nor the
        ``"no-logdet"`` likelihood (:mod:`models.bayes.crossed`); ``algebra`` is
        for one grouping factor and is not used.

        Raises
        ------
        OptionError
            Keyed relative to these options (``priors.sd_scale = [...]: has 2 values
            for 1 random effects ...``).
        """
        crossed = not isinstance(structure, Structure)
        if crossed and not hasattr(structure, "bars"):
            raise TypeError(
                f"structure must be a Structure or CrossedStructure; got {type(structure).__name__}"
            )
        try:
            self.priors.check_structure(structure)
        except OptionError as err:
            raise err.within("priors") from err
        if crossed:
            why = {
                "parameterization": self.parameterization != "marginal",
                "likelihood": self.likelihood != "marginal",
                "random_effects": self.random_effects,
            }
            for name, bad in why.items():
                if bad:
                    raise OptionError(
                        name,
                        getattr(self, name),
                        "is for one grouping factor; models with several random terms "
                        "are fitted by the marginal model, without draws of the random "
                        "effects",
                    )
            return
        assert isinstance(structure, Structure)
        if self.algebra == "kernel" and not (structure.q == 2 and structure.index == (0, 1)):
            raise OptionError(
                "algebra",
                self.algebra,
                "is for q = 2 with a random intercept and slope (correlated or not), not "
                f"{structure.bar()}; use 'auto', 'unrolled' or 'batched'",
            )
