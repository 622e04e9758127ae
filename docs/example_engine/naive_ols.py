"""An example lmm-study engine: pooled OLS with naive (i.i.d.) standard errors.

It ignores the grouping on purpose (its SEs are too small when groups differ), which is
what a simulation study of it would show.  See ``docs/engines.md``.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass

import numpy as np
from scipy import stats

from models.base import FitResult
from models.data import LMMData, fit_problem
from models.spec import EngineSpec
from models.validate import number

__all__ = ["SPEC", "NaiveOlsEngine", "NaiveOlsOptions"]


@dataclass(frozen=True)
class NaiveOlsOptions:
    """Options: only the interval level (set by the study), validated once."""

    level: float = 0.95

    def __post_init__(self) -> None:
        number("level", self.level, low=0.0, high=1.0)


class NaiveOlsEngine:
    """Pooled OLS, ``sigma^2 (X'X)^-1`` SEs, t intervals with ``N - p`` df."""

    name = "naive_ols"

    def __init__(self, options: NaiveOlsOptions) -> None:
        self.options = options

    def fit(
        self, data: LMMData, *, seed: int | None = None, keep_posterior: bool = False
    ) -> FitResult:
        """Fit ``data``; never raises for a dataset (failures are recorded)."""
        start = time.perf_counter()
        problem = fit_problem(data)
        if problem:
            return FitResult.failed(data.structure, problem, time.perf_counter() - start)
        try:
            return self._fit(data, start)
        except Exception as err:
            return FitResult.failed(
                data.structure,
                f"{type(err).__name__}: {err}",
                time.perf_counter() - start,
                traceback.format_exc(),
            )

    def _fit(self, data: LMMData, start: float) -> FitResult:
        s = data.structure
        n, p = data.X.shape
        beta, *_ = np.linalg.lstsq(data.X, data.y, rcond=None)
        resid = data.y - data.X @ beta
        df = n - p
        sigma2 = float(resid @ resid) / df
        se = np.sqrt(sigma2 * np.diag(np.linalg.inv(data.X.T @ data.X)))
        q = stats.t.ppf(0.5 + self.options.level / 2, df)
        pad = np.full(len(s.terms) - p, np.nan)  # the variance parameters: none here
        estimate, std_error = np.r_[beta, pad], np.r_[se, pad]
        return FitResult(
            s.terms,
            s.effects,
            estimate,
            std_error,
            estimate - q * std_error,
            estimate + q * std_error,
            converged=True,
            fit_seconds=time.perf_counter() - start,
            df=np.r_[np.full(p, float(df)), pad],
            nobs=float(n),
            ngroups=float(data.n_groups),
            optimizer="lstsq",
        )


#: the registration record the entry point names
SPEC = EngineSpec(
    name="naive_ols",
    engine="naive_ols:NaiveOlsEngine",
    options="naive_ols:NaiveOlsOptions",
    version=1,
    summary="pooled OLS with naive standard errors (an example engine)",
)
