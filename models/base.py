"""The one engine interface and the result every engine returns.

An engine (:class:`Engine`) has a ``name`` and a ``fit(data, *, seed, keep_posterior)``
that returns one :class:`FitResult` and never raises for a dataset.  What else an
engine can do is declared, not probed: its registration record
(:class:`models.registry.EngineSpec`) lists its :class:`Capability` values, each the
promise of one small protocol below (:class:`Compiling`, :class:`PriorEngine`,
:class:`StructureChecked`, :class:`ThreadLimited`, :class:`Testing`: tests of
``H0: beta_j = null_j`` from one fit, each a :class:`TestResult`).  ``docs/engines.md`` shows how to
write one.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from models.structure import FIXED, RAN_PARS, Structure

if TYPE_CHECKING:
    from models.crossed.data import CrossedData
    from models.data import LMMData

__all__ = [
    "FIXED",
    "RAN_PARS",
    "TIDY_COLUMNS",
    "Capability",
    "Compiling",
    "Engine",
    "FitResult",
    "PriorEngine",
    "Structure",
    "StructureChecked",
    "TestResult",
    "Testing",
    "ThreadLimited",
]
# The per-fit schema: what every FitResult carries, name -> description.  The study's
# results Dataset (study/schema.py) stacks these over replicates and engines.
#: Per-term values (NaN where an engine has none).
TERM_FIELDS: dict[str, str] = {
    "estimate": "point estimate (REML/ML estimate; posterior mean or median)",
    "std_error": "standard error (model-based SE; posterior SD)",
    "ci_lower": "lower interval limit at the study level",
    "ci_upper": "upper interval limit at the study level",
    "df": "degrees of freedom of the t reference of the interval (inf: normal; NaN: none)",
}
#: Per-term diagnostics (NaN for engines without them, e.g. REML has no R-hat).
DIAGNOSTIC_FIELDS: dict[str, str] = {
    "rhat": "rank-normalised split R-hat (Bayesian engines only)",
    "ess_bulk": "bulk effective sample size (Bayesian engines only)",
    "ess_tail": "tail effective sample size (Bayesian engines only)",
}
#: Per-fit scalars, with their dtype kind: b(ool), f(loat), U (text).
FIT_FIELDS: dict[str, tuple[str, str]] = {
    "converged": ("b", "fit converged (REML: optimizer; Bayes: R-hat, divergences, ESS floor)"),
    "singular": (
        "b",
        "estimate on the boundary: a random-effect covariance not of full rank, as "
        "lme4::isSingular (False for engines without the notion)",
    ),
    "fit_seconds": ("f", "wall-clock seconds of the fit"),
    "divergences": ("f", "divergent transitions (Bayesian engines only)"),
    "restarts": ("f", "chains restarted by the stuck-chain check (Bayesian engines only)"),
    "loglik": ("f", "log-likelihood at the estimate (restricted for REML fits)"),
    "criterion": ("f", "-2 loglik: the REML criterion, or the deviance of an ML fit"),
    "aic": ("f", "AIC = criterion + 2 (number of parameters)"),
    "bic": ("f", "BIC = criterion + log(nobs) (number of parameters)"),
    "nobs": ("f", "number of observations"),
    "ngroups": ("f", "number of groups"),
    "optimizer": ("U", "optimizer (or sampler) that produced the estimate"),
    "message": ("U", "warnings or error of the fit; empty when clean"),
}


def term_names(predictors: tuple[str, ...] | list[str]) -> tuple[list[str], list[str]]:
    """Term names in broom.mixed style and their effect kind, for the all-slopes model
    (an intercept and ``predictors``, every one with a correlated random effect).

    Returns ``(terms, effects)``: fixed effects ``(Intercept)`` and predictors, then
    ``sd__`` of each random effect, ``cor__A.B`` for each pair (row-major lower
    triangle), and ``sd__Observation``.  Other structures: :class:`Structure`.
    """
    s = Structure.full(predictors)
    return s.terms, s.effects


def split_terms(terms: np.ndarray, q: int):
    """Split values of every term (..., T) of the all-slopes model with ``q`` fixed
    effects into beta (..., q), SDs (..., q), correlation matrices (..., q, q) and sigma
    (...).  Other structures: :meth:`Structure.split`."""
    return Structure.full([f"x{j}" for j in range(1, q)]).split(terms)


def correlation_factor(corr: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of a stack of positive semi-definite matrices (..., q, q)
    (correlation matrices, or covariances relative to sigma^2).

    Plain Cholesky, except that a zero pivot (a semi-definite matrix, e.g. a correlation
    of exactly +-1, or a zero variance) gives a zero column instead of an error.
    """
    q = corr.shape[-1]
    Lc = np.zeros_like(corr)
    for j in range(q):
        d = corr[..., j, j] - np.sum(Lc[..., j, :j] ** 2, axis=-1)
        Lc[..., j, j] = root = np.sqrt(np.maximum(d, 0.0))
        safe = np.where(root > 0, root, 1.0)
        for i in range(j + 1, q):
            off = corr[..., i, j] - np.sum(Lc[..., i, :j] * Lc[..., j, :j], axis=-1)
            Lc[..., i, j] = np.where(root > 0, off / safe, 0.0)
    return Lc


def one_factor_only(engine: str, data: Any) -> FitResult | None:
    """The failed result an engine without :attr:`Capability.CROSSED` returns for data
    with several grouping factors (a :class:`models.crossed.CrossedData`), else None."""
    groups = getattr(data.structure, "groups", None)
    if groups is None:
        return None
    return FitResult.failed(
        data.structure,
        f"engine {engine} fits one grouping factor only, and this model has "
        f"{len(groups)} ({', '.join(groups)}); use an engine that fits crossed random "
        "effects (e.g. reml)",
    )


#: the columns of :meth:`FitResult.tidy`, in order (broom::tidy plus ``df``)
TIDY_COLUMNS: tuple[str, ...] = (
    "term",
    "effect",
    "estimate",
    "std_error",
    "statistic",
    "df",
    "p_value",
    "ci_lower",
    "ci_upper",
)
#: the columns of :meth:`FitResult.glance` (broom::glance names), in order
GLANCE_COLUMNS: tuple[str, ...] = (
    "nobs",
    "ngroups",
    "sigma",
    "logLik",
    "AIC",
    "BIC",
    "criterion",
    "converged",
    "singular",
    "optimizer",
    "message",
    "fit_seconds",
    "divergences",
    "restarts",
)
#: the residual SD's term name (``sigma`` of :meth:`FitResult.glance`)
SIGMA_TERM = "sd__Observation"


@dataclass
class FitResult:
    """What one engine says about one dataset.

    Arrays are aligned with ``terms``.  Values an engine cannot provide are NaN.
    ``message`` is empty for a clean fit, otherwise warnings or the error, joined by
    ``"; "``.

    Three typed fields carry what the run layer needs beyond the results table:
    ``traceback`` (the text of the exception of a fit that raised, else ``""``),
    ``posterior`` (the posterior as an ArviZ ``xarray.DataTree``, when the fit was asked
    to keep it) and ``draws`` (posterior draws of every term, an array of shape
    (chain, draw, term), from engines with :attr:`Capability.PRIOR`).  ``extra`` holds
    only engine-specific objects (the Bayesian engine's ``random_effects``, REML's
    optimizer ``iterations``) that no caller may rely on.
    """

    terms: list[str]
    effects: list[str]
    estimate: np.ndarray
    std_error: np.ndarray
    ci_lower: np.ndarray
    ci_upper: np.ndarray
    converged: bool
    fit_seconds: float
    message: str = ""
    rhat: np.ndarray | None = None
    ess_bulk: np.ndarray | None = None
    ess_tail: np.ndarray | None = None
    divergences: float = float("nan")
    extra: dict[str, object] = field(default_factory=dict)
    df: np.ndarray | None = None
    singular: bool = False
    restarts: float = float("nan")
    loglik: float = float("nan")
    criterion: float = float("nan")
    aic: float = float("nan")
    bic: float = float("nan")
    nobs: float = float("nan")
    ngroups: float = float("nan")
    optimizer: str = ""
    traceback: str = ""
    posterior: Any | None = field(default=None, repr=False)
    draws: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        k = len(self.terms)
        for name in (*TERM_FIELDS, *DIAGNOSTIC_FIELDS):
            value = getattr(self, name)
            arr = np.full(k, np.nan) if value is None else np.asarray(value, dtype=float)
            if arr.shape != (k,):
                raise ValueError(f"{name} must have one value per term ({k}), got {arr.shape}")
            setattr(self, name, arr)
        if self.draws is not None:
            draws = np.asarray(self.draws, dtype=float)
            if draws.ndim != 3 or draws.shape[-1] != k:
                raise ValueError(
                    f"draws must have shape (chain, draw, term) with {k} terms, got "
                    f"{draws.shape}; pass None when the engine has no draws"
                )
            self.draws = draws

    @classmethod
    def failed(
        cls,
        structure: Any,
        message: str,
        fit_seconds: float = float("nan"),
        trace: str = "",
    ) -> FitResult:
        """A result for a fit that raised: every value NaN, not converged; the
        exception's traceback text (if any) in ``traceback``.  ``structure``: the
        model's :class:`Structure` (or any structure with ``terms`` and ``effects``, e.g.
        :class:`models.crossed.CrossedStructure`), or the predictors of the all-slopes
        model."""
        if not hasattr(structure, "terms"):  # the predictors of the all-slopes model
            structure = Structure.full(structure)
        terms, effects = structure.terms, structure.effects
        nan = np.full(len(terms), np.nan)
        return cls(terms, effects, nan, nan, nan, nan, False, fit_seconds, message, traceback=trace)

    def take_posterior(self) -> Any | None:
        """The kept posterior, removed from this result (it is large, and no part of
        the results table): ``None`` when there is none."""
        posterior, self.posterior = self.posterior, None
        return posterior

    def tidy(self, *, diagnostics: bool = False):  # -> pandas.DataFrame
        """One row per term, as ``broom::tidy``: :data:`TIDY_COLUMNS`.

        ``statistic`` is ``estimate / std_error`` and ``p_value`` its two-sided p-value
        against t with ``df`` degrees of freedom (the normal when ``df`` is inf), for
        the fixed effects; both NaN for the variance parameters (``ran_pars``) and where
        the engine gives no ``df`` (NaN, e.g. a posterior).  With ``diagnostics`` the
        columns ``rhat``, ``ess_bulk`` and ``ess_tail`` follow.
        """
        import pandas as pd
        from scipy import stats

        fixed = np.asarray(self.effects) == FIXED
        with np.errstate(invalid="ignore", divide="ignore"):
            stat = np.where(fixed, self.estimate / self.std_error, np.nan)
            p = np.where(fixed, 2 * stats.t.sf(np.abs(stat), self.df), np.nan)
        columns: dict[str, Any] = {
            "term": list(self.terms),
            "effect": list(self.effects),
            "estimate": self.estimate,
            "std_error": self.std_error,
            "statistic": stat,
            "df": self.df,
            "p_value": p,
            "ci_lower": self.ci_lower,
            "ci_upper": self.ci_upper,
        }
        if diagnostics:
            columns.update({name: getattr(self, name) for name in DIAGNOSTIC_FIELDS})
        return pd.DataFrame(columns)

    def glance(self):  # -> pandas.DataFrame
        """A one-row summary of the fit, as ``broom::glance``: :data:`GLANCE_COLUMNS`.

        ``sigma`` is the estimate of the residual SD (term ``sd__Observation``; NaN for
        engines without it), ``logLik`` the (restricted, for REML) log-likelihood,
        ``criterion`` ``-2 logLik``; values an engine does not have are NaN
        (``divergences`` and ``restarts`` are the Bayesian engine's).
        """
        import pandas as pd

        sigma = (
            float(self.estimate[self.terms.index(SIGMA_TERM)])
            if SIGMA_TERM in self.terms
            else float("nan")
        )
        row: dict[str, Any] = {
            "nobs": self.nobs,
            "ngroups": self.ngroups,
            "sigma": sigma,
            "logLik": self.loglik,
            "AIC": self.aic,
            "BIC": self.bic,
            "criterion": self.criterion,
            "converged": bool(self.converged),
            "singular": bool(self.singular),
            "optimizer": self.optimizer,
            "message": self.message,
            "fit_seconds": self.fit_seconds,
            "divergences": self.divergences,
            "restarts": self.restarts,
        }
        return pd.DataFrame({k: [v] for k, v in row.items()})

    def aligned(self, terms: list[str], effects: list[str]) -> FitResult:
        """This result on another term list (a superset of its own, e.g. the union of
        several structures' terms): NaN for terms this model does not have (in
        ``draws`` too)."""
        if list(terms) == self.terms:
            return self
        missing = [t for t in self.terms if t not in terms]
        if missing:
            raise ValueError(f"terms {missing} of the fit are not in the term list {terms}")
        pos = {t: i for i, t in enumerate(self.terms)}
        take = np.array([pos.get(t, -1) for t in terms], dtype=np.int64)

        def spread(values: np.ndarray) -> np.ndarray:
            return np.where(take >= 0, np.append(values, np.nan)[take], np.nan)

        per_term: dict[str, Any] = {
            name: spread(getattr(self, name)) for name in (*TERM_FIELDS, *DIAGNOSTIC_FIELDS)
        }
        if self.draws is not None:
            draws = np.concatenate([self.draws, np.full((*self.draws.shape[:2], 1), np.nan)], -1)
            per_term["draws"] = np.where(take >= 0, draws[..., take], np.nan)
        return dataclasses.replace(self, terms=list(terms), effects=list(effects), **per_term)

    def to_frame(self):  # -> pandas.DataFrame
        """broom::tidy-shaped table: term, effect, estimate, std_error, ci_lower, ci_upper."""
        import pandas as pd

        return pd.DataFrame(
            {
                "term": self.terms,
                "effect": self.effects,
                **{name: getattr(self, name) for name in TERM_FIELDS},
            }
        )


class Capability(enum.StrEnum):
    """An optional ability an engine declares in its registration
    (:attr:`models.registry.EngineSpec.capabilities`), each the promise of one protocol.

    The study layer uses an ability only when it is declared (never by looking for an
    attribute), through the helpers of :mod:`models.registry`; registering an engine
    that declares an ability its classes lack is refused when it is first built.
    """

    #: the engine compiles once per process and data shape: :class:`Compiling`;
    #: the study calls it before the first fit (:func:`models.registry.compile_engine`)
    COMPILE = "compile"
    #: the engine's options check that they fit a model structure:
    #: :class:`StructureChecked` (:func:`models.registry.check_structure`)
    STRUCTURE_CHECK = "structure_check"
    #: the engine's options can cap the cores a fit uses: :class:`ThreadLimited`
    #: (:func:`models.registry.limit_threads`)
    THREADS = "threads"
    #: the engine has a prior to draw from and its fits carry ``draws``:
    #: :class:`PriorEngine` (simulation-based calibration needs it)
    PRIOR = "prior"
    #: the engine tests ``H0: beta_j = null_j`` for fixed effects from one fit:
    #: :class:`Testing`; the names of its tests are :attr:`models.spec.EngineSpec.tests`
    TESTS = "tests"
    #: the engine fits models with several grouping factors (crossed or nested): its
    #: ``fit`` accepts a :class:`models.crossed.CrossedData`
    CROSSED = "crossed"


@runtime_checkable
class Engine(Protocol):
    """An engine fits one dataset and returns one :class:`FitResult`.

    Engines must never raise for a failing fit: they record it in the result
    (``converged=False``, NaN values, a ``message``, the exception text in
    ``traceback``).  ``name`` is the engine's registered name (``"reml"``,
    ``"bayes"``).  An engine is built from its options object alone
    (``EngineClass(options)``), and must be picklable (studies ship engines to worker
    processes).
    """

    name: str

    def fit(
        self, data: LMMData | CrossedData, *, seed: int | None = None, keep_posterior: bool = False
    ) -> FitResult:
        """Fit ``data``; ``seed`` drives any randomness (ignored by deterministic engines).

        ``data`` has one grouping factor (:class:`LMMData`), or several
        (:class:`models.crossed.CrossedData`) for an engine that declares
        :attr:`Capability.CROSSED`; an engine that does not returns a failed result for
        it (:func:`one_factor_only`), and the study refuses such a pairing before it runs.

        With ``keep_posterior`` an engine that has draws returns them as an ArviZ
        ``xarray.DataTree`` in :attr:`FitResult.posterior`.
        """
        ...


@runtime_checkable
class Compiling(Protocol):
    """:attr:`Capability.COMPILE`: an engine that prepares (compiles) a model once per
    process and data shape, so that the first fit is not slowed by it."""

    def compile(self, data: LMMData) -> float:
        """Prepare fits of data shaped like ``data``; return the seconds spent (0 when
        already prepared).  Must not change the results of later fits."""
        ...


@runtime_checkable
class PriorEngine(Engine, Protocol):
    """:attr:`Capability.PRIOR`: an engine with a prior it can draw from (the Bayesian
    engine), what simulation-based calibration needs.  Its fits return the posterior
    draws of every term in :attr:`FitResult.draws`, shape (chain, draw, term)."""

    def draw_prior(
        self, structure: Structure, rng: np.random.Generator, scale: float = 1.0
    ) -> np.ndarray:
        """One draw of every term (``structure.terms`` order) from the engine's priors
        for a model of that structure, each prior scale multiplied by ``scale``."""
        ...


@runtime_checkable
class StructureChecked(Protocol):
    """:attr:`Capability.STRUCTURE_CHECK`: options with settings per coefficient or per
    random effect, checked against the model they will serve."""

    def check_structure(self, structure: Structure) -> None:
        """Raise :class:`models.validate.OptionError` (keyed relative to the options)
        when these options do not fit a model of ``structure``."""
        ...


@runtime_checkable
class ThreadLimited(Protocol):
    """:attr:`Capability.THREADS`: options of an engine that runs work in parallel."""

    def with_threads(self, threads: int) -> Any:
        """These options with at most ``threads`` cores used by a fit; the results of a
        fit must not depend on it."""
        ...


@dataclass(frozen=True)
class TestResult:
    """One test of ``H0: beta_t = null_t`` for each tested term (in the order asked).

    Arrays (float, one value per tested term): ``statistic`` (a Wald-type test's
    ``(estimate - null) / SE``; the LRT's deviance difference), ``df`` (the t
    reference's df; ``inf`` for a normal reference; the chi-square df, 1, for the
    LRT) and ``p_value`` (two-sided; NaN where the test could not be made).
    ``message`` is ``""`` when every test was made cleanly, otherwise why not (or what
    to know about a value), ``"; "``-joined.
    """

    __test__: ClassVar[bool] = False  # not a pytest test class

    statistic: np.ndarray
    df: np.ndarray
    p_value: np.ndarray
    message: str = ""
    #: the decision per term (1 reject, 0 not, NaN none) of a rule that has no p-value
    #: of its own (a Bayesian interval rule); None: reject where ``p_value < alpha``
    reject: np.ndarray | None = None

    def __post_init__(self) -> None:
        shapes = set()
        for name in ("statistic", "df", "p_value"):
            arr = np.atleast_1d(np.asarray(getattr(self, name), dtype=float))
            if arr.ndim != 1:
                raise ValueError(f"{name} must be one-dimensional (one value per term)")
            shapes.add(arr.shape)
            object.__setattr__(self, name, arr)
        if len(shapes) != 1:
            raise ValueError(f"statistic, df and p_value must have one shape, got {shapes}")
        if self.reject is not None:
            object.__setattr__(self, "reject", np.atleast_1d(np.asarray(self.reject, float)))

    @classmethod
    def nan(cls, n_terms: int, message: str, df: float = float("nan")) -> TestResult:
        """A test that could not be made for any term: NaN values, and why."""
        nan = np.full(n_terms, np.nan)
        return cls(nan, np.full(n_terms, df), nan.copy(), message)


@runtime_checkable
class Testing(Engine, Protocol):
    """:attr:`Capability.TESTS`: an engine that tests hypotheses on the fixed effects
    from one fit (a power study's p-values).  The names of its tests are declared in
    its registration (:attr:`models.spec.EngineSpec.tests`)."""

    def fit_tests(
        self,
        data: LMMData,
        *,
        terms: Sequence[str],
        null: Sequence[float],
        tests: Sequence[str],
        seed: int | None = None,
    ) -> tuple[FitResult, dict[str, TestResult]]:
        """Fit ``data`` once and test ``H0: beta_t = null_t`` for each ``t`` of
        ``terms`` (fixed-effect names of ``data.structure``) with each test named in
        ``tests`` (a subset of the engine's declared test names).

        Returns the fit (what :meth:`Engine.fit` returns) and, per test name in the
        order asked, its :class:`TestResult`.  Never raises for a dataset: a failed fit
        gives its FitResult (``converged`` False) and NaN p-values.  Raises
        ``ValueError`` for a call that is wrong whatever the data (a test the engine
        does not offer, a term that is not a fixed effect, ``null`` of another length).
        """
        ...
