"""Options of the ``gee`` and ``ols`` engines (validated once, frozen)."""

from __future__ import annotations

from dataclasses import dataclass

from models.validate import choice, integer, number

__all__ = ["GEE_COV_TYPES", "REFERENCES", "GeeOptions", "OlsOptions"]

#: GEE covariances: the robust sandwich (Liang & Zeger 1986) or the Mancl-DeRouen (2001)
#: bias-reduced sandwich (statsmodels ``GEE.fit(cov_type=...)``)
GEE_COV_TYPES = ("robust", "bias_reduced")
#: reference distributions of the intervals: normal, or t with the engine's df
REFERENCES = ("normal", "t")


@dataclass(frozen=True)
class GeeOptions:
    """Configuration of :class:`~models.robust.gee.GeeEngine`.

    Parameters
    ----------
    cov_type : {"robust", "bias_reduced"}
        The covariance of the fixed effects: the sandwich, or the Mancl-DeRouen
        bias-reduced sandwich (better with few clusters).
    reference : {"normal", "t"}
        Reference distribution of the intervals: normal, or t with ``K - p`` df (``K``
        clusters, ``p`` predictors besides the intercept, as the REML engine's
        ``ci = "t"``).
    level : float
        Interval coverage, in (0, 1).
    maxiter : int
        Iteration limit of the GEE estimating equations.
    """

    cov_type: str = "robust"
    reference: str = "normal"
    level: float = 0.95
    maxiter: int = 60

    def __post_init__(self) -> None:
        choice("cov_type", self.cov_type, GEE_COV_TYPES)
        choice("reference", self.reference, REFERENCES)
        number("level", self.level, low=0.0, high=1.0)
        integer("maxiter", self.maxiter, low=1)

    def describe(self) -> str:
        """Short description, e.g. ``"GEE exchangeable, robust SEs, 95% normal intervals"``."""
        ref = "normal" if self.reference == "normal" else "t (df = K - p)"
        cov = "robust" if self.cov_type == "robust" else "bias-reduced (Mancl-DeRouen)"
        return f"GEE exchangeable, {cov} SEs, {100 * self.level:g}% {ref} intervals"


@dataclass(frozen=True)
class OlsOptions:
    """Configuration of :class:`~models.robust.ols.OlsEngine`.

    Parameters
    ----------
    reference : {"t", "normal"}
        Reference distribution of the intervals: t with ``K - 1`` df (``K`` clusters,
        as Stata's and statsmodels' cluster-robust inference), or normal.
    level : float
        Interval coverage, in (0, 1).
    """

    reference: str = "t"
    level: float = 0.95

    def __post_init__(self) -> None:
        choice("reference", self.reference, REFERENCES)
        number("level", self.level, low=0.0, high=1.0)

    def describe(self) -> str:
        """Short description, e.g. ``"OLS, CR1 cluster-robust SEs, 95% t ... intervals"``."""
        ref = "normal" if self.reference == "normal" else "t (df = K - 1)"
        return f"OLS, CR1 cluster-robust SEs, {100 * self.level:g}% {ref} intervals"
