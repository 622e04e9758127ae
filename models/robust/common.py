"""What the ``gee`` and ``ols`` engines share: the checks, failure handling and the
:class:`~models.base.FitResult` of a fixed-effects-only fit."""

from __future__ import annotations

import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from models.base import FitResult, one_factor_only
from models.data import LMMData, fit_problem

__all__ = ["FixedFit", "fit_fixed", "reference_df"]


@dataclass(frozen=True)
class FixedFit:
    """The fixed effects of one fit and what else it knows (NaN: unknown)."""

    beta: np.ndarray
    cov: np.ndarray
    df: float
    converged: bool
    optimizer: str
    notes: tuple[str, ...] = ()
    loglik: float = float("nan")
    n_par: int = 0


def reference_df(reference: str, df: float) -> tuple[float, str]:
    """The df of the intervals (inf for ``"normal"``) and a note when a t reference
    has no positive df (then NaN: no interval)."""
    if reference == "normal":
        return float("inf"), ""
    if not df > 0:
        return float("nan"), f"t reference needs df > 0, got {df:g}"
    return float(df), ""


def fit_fixed(
    data: Any, level: float, optimizer: str, run: Callable[[LMMData], FixedFit]
) -> FitResult:
    """Fit the fixed effects of ``data`` with ``run`` and build the result on the data's
    structure's terms (variance parameters NaN).  Never raises for a dataset: a data
    problem, an exception (its traceback kept) or a warning is recorded in the result.
    """
    start = time.perf_counter()
    refused = one_factor_only(optimizer, data)
    if refused is not None:
        refused.fit_seconds = time.perf_counter() - start
        return refused
    structure = data.structure
    nobs, ngroups = float(data.n_obs), float(data.n_groups)
    problem = fit_problem(data)
    if problem:
        return _failed(data, problem, start, optimizer, "")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = run(data)
    except Exception as err:  # failures are data: record, never raise
        message = f"{type(err).__name__}: {err}".strip()
        return _failed(data, message, start, optimizer, traceback.format_exc())
    notes = list(fit.notes)
    for w in caught:
        text = f"{w.category.__name__}: {w.message}"
        if text not in notes:
            notes.append(text)
    q, k = structure.q, len(structure.terms)
    se = np.sqrt(np.diag(fit.cov)) if fit.cov.shape == (q, q) else np.full(q, np.nan)
    finite = bool(np.all(np.isfinite(fit.beta)) and np.all(np.isfinite(se)))
    if not finite:
        notes.append("fixed-effect estimates or covariance not finite")
    with np.errstate(invalid="ignore"):
        crit = float(stats.t.ppf(0.5 + level / 2, fit.df))
    pad = np.full(k - q, np.nan)
    estimate = np.concatenate([fit.beta, pad])
    std_error = np.concatenate([se, pad])
    df = np.concatenate([np.full(q, fit.df), pad])
    criterion = -2 * fit.loglik
    return FitResult(
        structure.terms,
        structure.effects,
        estimate,
        std_error,
        estimate - crit * std_error,
        estimate + crit * std_error,
        converged=fit.converged and finite,
        fit_seconds=time.perf_counter() - start,
        message="; ".join(notes),
        df=df,
        loglik=fit.loglik,
        criterion=criterion,
        aic=criterion + 2 * fit.n_par,
        bic=criterion + np.log(nobs) * fit.n_par,
        nobs=nobs,
        ngroups=ngroups,
        optimizer=optimizer,
    )


def _failed(data: LMMData, message: str, start: float, optimizer: str, trace: str) -> FitResult:
    result = FitResult.failed(data.structure, message, time.perf_counter() - start, trace)
    result.nobs, result.ngroups = float(data.n_obs), float(data.n_groups)
    result.optimizer = optimizer
    return result
