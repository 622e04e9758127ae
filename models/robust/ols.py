"""The ``ols`` engine: pooled ordinary least squares (statsmodels ``OLS``) with
cluster-robust CR1 standard errors and t intervals with ``K - 1`` df.

CR1 is the sandwich ``(X'X)^-1 (sum_g X_g' e_g e_g' X_g) (X'X)^-1`` times
``G / (G - 1) * (N - 1) / (N - p)`` (``G`` clusters, ``N`` rows, ``p`` coefficients):
statsmodels' ``cov_type="cluster"`` with its default ``use_correction=True``, and
Stata's ``vce(cluster)``.  The variance-parameter terms are NaN; ``logLik`` is the
pooled normal log-likelihood (``AIC``/``BIC`` count the coefficients and sigma, as R's
``AIC(lm)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from models.base import FitResult
from models.robust.common import FixedFit, fit_fixed, reference_df
from models.robust.options import OlsOptions

if TYPE_CHECKING:
    from models.data import LMMData

__all__ = ["OlsEngine", "OlsOptions"]


class OlsEngine:
    """Cluster-robust OLS engine (``name = "ols"``); deterministic (``seed`` is ignored)."""

    name = "ols"

    def __init__(self, options: OlsOptions | None = None) -> None:
        self.options = options or OlsOptions()
        if not isinstance(self.options, OlsOptions):
            raise TypeError(f"options must be OlsOptions; got {type(self.options).__name__}")

    def fit(
        self, data: LMMData, *, seed: int | None = None, keep_posterior: bool = False
    ) -> FitResult:
        """Fit ``data``'s fixed effects; a failure is recorded, never raised.

        ``df`` of the fixed effects is ``K - 1`` (t reference) or inf (normal).
        """
        return fit_fixed(data, self.options.level, "ols", self._run)

    def _run(self, data: LMMData) -> FixedFit:
        from statsmodels.regression.linear_model import OLS

        res = OLS(data.y, data.X).fit(cov_type="cluster", cov_kwds={"groups": data.group})
        df, note = reference_df(self.options.reference, data.n_groups - 1)
        return FixedFit(
            np.asarray(res.params, dtype=float),
            np.asarray(res.cov_params(), dtype=float),
            df,
            True,
            "ols",
            (note,) if note else (),
            loglik=float(res.llf),
            n_par=data.q + 1,
        )
