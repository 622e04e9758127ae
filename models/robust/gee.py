"""The ``gee`` engine: generalized estimating equations (statsmodels ``GEE``), Gaussian
family, exchangeable working correlation within groups.

The fixed effects' covariance is the robust sandwich (Liang & Zeger 1986) or, with
``cov_type = "bias_reduced"``, the Mancl-DeRouen (2001) bias-reduced sandwich; intervals
use the normal or t with ``K - p`` df (``K`` groups, ``p`` predictors besides the
intercept).  The model has no variance parameters of the mixed model: those terms are
NaN, as are the likelihood statistics (GEE has none).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from models.base import FitResult
from models.robust.common import FixedFit, fit_fixed, reference_df
from models.robust.options import GeeOptions

if TYPE_CHECKING:
    from models.data import LMMData

__all__ = ["GeeEngine", "GeeOptions"]


class GeeEngine:
    """GEE engine (``name = "gee"``); deterministic (``seed`` is ignored)."""

    name = "gee"

    def __init__(self, options: GeeOptions | None = None) -> None:
        self.options = options or GeeOptions()
        if not isinstance(self.options, GeeOptions):
            raise TypeError(f"options must be GeeOptions; got {type(self.options).__name__}")

    def fit(
        self, data: LMMData, *, seed: int | None = None, keep_posterior: bool = False
    ) -> FitResult:
        """Fit ``data``'s fixed effects; a failure is recorded, never raised.

        ``df`` of the fixed effects is inf (normal reference) or ``K - p``;
        ``converged`` is statsmodels' verdict on the estimating equations.
        """
        return fit_fixed(data, self.options.level, "gee", self._run)

    def _run(self, data: LMMData) -> FixedFit:
        from statsmodels.genmod import families
        from statsmodels.genmod.cov_struct import Exchangeable
        from statsmodels.genmod.generalized_estimating_equations import GEE

        o = self.options
        model = GEE(
            data.y,
            data.X,
            groups=data.group,
            family=families.Gaussian(),
            cov_struct=Exchangeable(),
        )
        res = model.fit(maxiter=o.maxiter, cov_type=o.cov_type)
        df, note = reference_df(o.reference, data.n_groups - (data.q - 1))
        notes = [note] if note else []
        if not res.converged:
            notes.append(f"GEE did not converge in {o.maxiter} iterations")
        return FixedFit(
            np.asarray(res.params, dtype=float),
            np.asarray(res.cov_params(), dtype=float),
            df,
            bool(res.converged),
            "gee",
            tuple(notes),
        )
