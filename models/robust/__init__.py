"""Fixed-effects-only engines from statsmodels with cluster-robust inference: ``gee``
(GEE, exchangeable working correlation) and ``ols`` (pooled OLS, CR1 SEs).

They answer the few-clusters comparisons of McNeish & Stapleton (2016) beside the
mixed model: the fixed effects with a robust covariance; every variance-parameter term
is NaN (these models have none).  Importing this package is light (the options only).
"""

from __future__ import annotations

from models.robust.options import GEE_COV_TYPES, REFERENCES, GeeOptions, OlsOptions

__all__ = ["GEE_COV_TYPES", "REFERENCES", "GeeOptions", "OlsOptions"]
