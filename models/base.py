"""The one engine interface and the result every engine returns."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from models.structure import FIXED, RAN_PARS, Structure

if TYPE_CHECKING:
    from models.data import LMMData

__all__ = ["FIXED", "RAN_PARS", "Engine", "FitResult", "PriorEngine", "Structure"]
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
    """Lower Cholesky factors of a stack of correlation matrices (..., q, q).

    Plain Cholesky, except that a zero pivot (a semi-definite matrix, e.g. a correlation
    of exactly +-1) gives a zero column instead of an error.
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


@dataclass
class FitResult:
    """What one engine says about one dataset.

    Arrays are aligned with ``terms``.  Values an engine cannot provide are NaN.
    ``message`` is empty for a clean fit, otherwise warnings or the error, joined by
    ``"; "``.  ``extra`` holds engine-specific objects (e.g. a posterior) that are not
    part of the common results table.
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
    #: the traceback of an exception that ended the fit (empty otherwise)
    traceback: str = ""
    #: posterior draws of every term, shape (chain, draw, term), for engines with
    #: draws (what simulation-based calibration ranks); not stored in the results
    draws: np.ndarray | None = None
    #: the posterior as an ArviZ ``xarray.DataTree`` when the fit was asked to keep it
    posterior: Any = None

    def __post_init__(self) -> None:
        k = len(self.terms)
        for name in (*TERM_FIELDS, *DIAGNOSTIC_FIELDS):
            value = getattr(self, name)
            arr = np.full(k, np.nan) if value is None else np.asarray(value, dtype=float)
            if arr.shape != (k,):
                raise ValueError(f"{name} must have one value per term ({k}), got {arr.shape}")
            setattr(self, name, arr)

    @classmethod
    def failed(
        cls,
        structure: Structure | tuple[str, ...],
        message: str,
        fit_seconds: float = float("nan"),
        trace: str = "",
    ) -> FitResult:
        """A result for a fit that raised: every value NaN, not converged; the
        exception's traceback text (if any) in ``extra["traceback"]``.  ``structure``:
        the model's :class:`Structure`, or the predictors of the all-slopes model."""
        if not isinstance(structure, Structure):
            structure = Structure.full(structure)
        terms, effects = structure.terms, structure.effects
        nan = np.full(len(terms), np.nan)
        return cls(terms, effects, nan, nan, nan, nan, False, fit_seconds, message, traceback=trace)

    def aligned(self, terms: list[str], effects: list[str]) -> FitResult:
        """This result on another term list (a superset of its own, e.g. the union of
        several structures' terms): NaN for terms this model does not have."""
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


@runtime_checkable
class Engine(Protocol):
    """An engine fits one dataset and returns one :class:`FitResult`.

    Engines must never raise for a failing fit: they record it in the result
    (``converged=False``, NaN values, a ``message``).  ``name`` is the engine's
    coordinate label in the results (``"reml"``, ``"bayes"``).
    """

    name: str

    def fit(
        self, data: LMMData, *, seed: int | None = None, keep_posterior: bool = False
    ) -> FitResult:
        """Fit ``data``; ``seed`` drives any randomness (ignored by deterministic engines).

        With ``keep_posterior`` an engine that has draws returns them as an ArviZ
        ``xarray.DataTree`` in ``extra["posterior"]``.
        """
        ...


@runtime_checkable
class PriorEngine(Engine, Protocol):
    """An engine with a prior it can draw from (the Bayesian engine): what
    simulation-based calibration needs.  Its fits return the posterior draws of every
    term in ``extra["draws"]``, shape (chain, draw, term)."""

    def draw_prior(
        self, structure: Structure, rng: np.random.Generator, scale: float = 1.0
    ) -> np.ndarray:
        """One draw of every term (``structure.terms`` order) from the engine's priors
        for a model of that structure, each prior scale multiplied by ``scale``."""
        ...
