"""Frequentist engine: REML or ML fits with statsmodels ``MixedLM``.

The model ``y_i = X_i beta + X_i u_i + e_i``, ``u_i ~ N(0, D)`` with unstructured ``D``,
``e ~ N(0, sigma^2 I)`` is fitted from arrays (no formula parsing).  Results are on the
broom.mixed scale: fixed effects, then random-effect SDs, correlations and the residual SD.

Optimisation
------------
Start values are moment estimates from per-group OLS fits (:func:`start_covariance`);
on the study design they cut a fit from ~8 to ~2 L-BFGS iterations (and, on balanced
designs, are the REML solution already).  Optimizers are tried in turn until one
converges with a usable fixed-effect covariance; if none does, the attempt with the
highest log-likelihood is reported with ``converged=False``.  ``MixedLM.fit`` does not
pass ``pgtol``/``factr`` to L-BFGS, so lbfgs stops at scipy's ``pgtol=1e-5`` on
``-loglik/N``: enough for 1e-4 agreement with lme4 on sleepstudy, but on 2,000-row study
data SDs can sit ~5e-4 (relative) and correlations ~1e-3 (absolute) from the optimum;
``optimizers=("bfgs", ...)`` (``gtol=1e-7``) gets within ~1e-5 at ~3x the cost.

Standard errors of variance parameters
--------------------------------------
statsmodels profiles ``sigma^2`` out of the likelihood and optimises over the relative
covariance ``Psi = D / sigma^2``.  ``cov_params()[k_fe:, k_fe:]`` is the inverse negative
Hessian of the profiled (restricted) log-likelihood in the lower triangle of ``Psi``
(row-major ``tril`` order), i.e. the asymptotic covariance of ``Psi_hat``; it was checked
against a numerical Hessian of the full likelihood in ``(D, sigma^2)`` by the delta method.
Nothing is provided for ``sigma^2`` or its covariance with ``Psi``.  (``bse_re`` is
``sqrt(scale * diag)``, which is the SE of neither ``Psi`` nor ``D``, so it is not used.)
Hence only the correlations, which are functions of ``Psi`` alone, get a standard error
(delta method, ``cor = Psi_jk / sqrt(Psi_jj Psi_kk)``; NaN unless that covariance block is
positive definite; very large near ``|cor| = 1``); the SDs get NaN.  Variance parameters
never get intervals.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams

from models.base import FitResult, term_names
from models.data import LMMData, fit_problem
from models.validate import OptionTypeError, choice, integer, number

METHODS = ("reml", "ml")
CI_KINDS = ("wald", "t")
OPTIMIZERS = ("lbfgs", "bfgs", "cg", "powell")
#: Tolerances tighter than statsmodels' defaults, per optimizer (the objective is
#: -loglik / N).  statsmodels' MixedLM.fit does not pass pgtol/factr, so lbfgs keeps
#: scipy's defaults.
TOLERANCES: dict[str, dict[str, float]] = {
    "bfgs": {"gtol": 1e-7},
    "cg": {"gtol": 1e-6},
    "powell": {"ftol": 1e-10},
}


@dataclass(frozen=True)
class RemlOptions:
    """Configuration of :class:`RemlEngine`.

    Parameters
    ----------
    method : {"reml", "ml"}
        Restricted or full maximum likelihood.
    ci : {"wald", "t"}
        Fixed-effect intervals from the normal quantile, or from a t quantile with
        ``K - p`` degrees of freedom (``K`` groups, ``p`` predictors besides the intercept).
    level : float
        Interval coverage, in (0, 1).
    optimizers : tuple of str
        statsmodels optimizers tried in turn until one converges with usable SEs.
    maxiter : int
        Iteration limit per optimizer.
    """

    method: str = "reml"
    ci: str = "wald"
    level: float = 0.95
    optimizers: tuple[str, ...] = ("lbfgs", "bfgs", "cg", "powell")
    maxiter: int = 500

    def __post_init__(self) -> None:
        choice("method", self.method, METHODS)
        choice("ci", self.ci, CI_KINDS)
        number("level", self.level, low=0.0, high=1.0)
        opts = self.optimizers
        if isinstance(opts, str) or not isinstance(opts, tuple | list) or not opts:
            raise OptionTypeError(
                "optimizers", opts, f"must be a non-empty list drawn from {', '.join(OPTIMIZERS)}"
            )
        for i, name in enumerate(opts):
            choice(f"optimizers[{i}]", name, OPTIMIZERS)
        object.__setattr__(self, "optimizers", tuple(opts))
        integer("maxiter", self.maxiter, low=1)

    def describe(self) -> str:
        """Short description, e.g. ``"REML, 95% Wald intervals"``."""
        kind = "Wald" if self.ci == "wald" else "t (df = K - p)"
        return f"{self.method.upper()}, {100 * self.level:g}% {kind} intervals"


def start_covariance(data: LMMData) -> tuple[np.ndarray, float]:
    """Moment start values ``(Psi0, sigma2_0)`` from per-group OLS fits.

    Uses the sufficient statistics only: ``b_i = (X_i'X_i)^-1 X_i'y_i`` for groups with
    ``n_i > q`` and full-rank ``X_i'X_i``; pooled residual variance ``sigma2_0``; and
    ``D0 = cov(b_i) - sigma2_0 mean((X_i'X_i)^-1)``, its eigenvalues floored at a small
    fraction of the total so that it is positive definite.  Returns the relative
    covariance ``Psi0 = D0 / sigma2_0`` that statsmodels optimises over; falls back to
    the identity when fewer than ``q + 1`` groups qualify.
    """
    q = data.q
    ok = data.n > q
    if ok.any():
        ok[ok] = np.linalg.matrix_rank(data.XtX[ok]) == q
    if ok.sum() <= q:
        return np.eye(q), 1.0
    xtx_inv = np.linalg.inv(data.XtX[ok])
    b = np.einsum("kij,kj->ki", xtx_inv, data.Xty[ok])
    rss = data.yty[ok] - np.einsum("ki,ki->k", b, data.Xty[ok])
    sigma2 = float(max(rss.sum() / (data.n[ok] - q).sum(), 1e-12))
    D = np.cov(b, rowvar=False) - sigma2 * xtx_inv.mean(axis=0)
    w, v = np.linalg.eigh((D + D.T) / 2)
    w = np.maximum(w, 1e-3 * max(float(np.abs(w).sum()), sigma2))
    return (v * w) @ v.T / sigma2, sigma2


class RemlEngine:
    """REML/ML engine over statsmodels ``MixedLM`` (see the module docstring).

    Parameters
    ----------
    options : RemlOptions, optional
        Defaults to REML with 95% Wald intervals.
    """

    name = "reml"

    def __init__(self, options: RemlOptions | None = None) -> None:
        self.options = options or RemlOptions()

    def fit(
        self, data: LMMData, *, seed: int | None = None, keep_posterior: bool = False
    ) -> FitResult:
        """Fit ``data``; never raises (failures come back as ``converged=False``).

        Parameters
        ----------
        data : LMMData
            One dataset.
        seed : int, optional
            Ignored: the fit is deterministic.
        keep_posterior : bool
            Ignored: REML has no posterior.

        Returns
        -------
        FitResult
            ``message`` holds captured warnings and, after a fallback, which optimizers
            failed.  ``extra`` holds floats: ``criterion`` (-2 log-likelihood, restricted
            for REML), ``iterations`` (NaN where the optimizer does not report them),
            ``fcalls`` and ``optimizer_index`` (position in ``options.optimizers``).
        """
        t0 = time.perf_counter()
        predictors = tuple(getattr(data, "predictors", ()))
        # catch_warnings is process-global: run engines in processes, not threads.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = self._fit(data)
            except Exception as err:
                result = FitResult.failed(predictors, f"{type(err).__name__}: {err}")
        notes = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
        result.message = "; ".join(m for m in (result.message, *notes) if m)
        result.fit_seconds = time.perf_counter() - t0
        return result

    def _fit(self, data: LMMData) -> FitResult:
        opts = self.options
        _check_data(data)
        model = MixedLM(data.y, data.X, data.group, exog_re=data.X)
        psi0, _ = start_covariance(data)
        start = MixedLMParams.from_components(np.zeros(data.q), cov_re=psi0)
        reasons: list[str] = []
        best: tuple[Any, int] | None = None
        for index, method in enumerate(opts.optimizers):
            res = model.fit(
                start_params=start.copy(),
                reml=opts.method == "reml",
                method=[method],
                maxiter=opts.maxiter,
                full_output=True,
                **TOLERANCES.get(method, {}),
            )
            problem = _problem(res)
            if not problem:
                note = "; ".join([*reasons, f"{method} converged"]) if reasons else ""
                return self._result(data, res, index, note)
            reasons.append(f"{method}: {problem}")
            if np.isfinite(res.llf) and (best is None or res.llf > best[0].llf):
                best = (res, index)
        why = "not converged (" + "; ".join(reasons) + ")"
        if best is None or _problem(best[0], check_converged=False):
            return FitResult.failed(data.predictors, why)
        return self._result(data, best[0], best[1], why, converged=False)

    def _result(
        self, data: LMMData, res: Any, index: int, message: str, converged: bool = True
    ) -> FitResult:
        opts = self.options
        q = data.q
        terms, effects = term_names(data.predictors)
        beta = np.asarray(res.fe_params, dtype=float)
        cov = np.asarray(res.cov_params(), dtype=float)
        se_beta = np.sqrt(np.diag(cov)[:q])
        if opts.ci == "wald":
            crit = float(stats.norm.ppf(0.5 + opts.level / 2))
        else:
            df = data.n_groups - (q - 1)
            crit = float(stats.t.ppf(0.5 + opts.level / 2, df)) if df > 0 else np.nan
            if df <= 0:
                note = f"t interval needs K - p > 0, got {df}"
                message = f"{message}; {note}" if message else note
        D = np.asarray(res.cov_re, dtype=float)
        sd = np.sqrt(np.diag(D))
        rows, cols = np.tril_indices(q, -1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cor = D[rows, cols] / (sd[rows] * sd[cols])
        ran_est = np.concatenate([sd, cor, [np.sqrt(res.scale)]])
        ran_se = np.concatenate([np.full(q, np.nan), _cor_se(res, q), [np.nan]])
        nan_ran = np.full(ran_est.size, np.nan)
        retvals = res.hist[-1] if res.hist else {}
        extra: dict[str, object] = {
            "criterion": float(-2.0 * res.llf),
            "iterations": float(retvals.get("iterations", np.nan)),
            "fcalls": float(retvals.get("fcalls", np.nan)),
            "optimizer_index": float(index),
        }
        return FitResult(
            terms,
            effects,
            np.concatenate([beta, ran_est]),
            np.concatenate([se_beta, ran_se]),
            np.concatenate([beta - crit * se_beta, nan_ran]),
            np.concatenate([beta + crit * se_beta, nan_ran]),
            converged,
            float("nan"),
            message,
            extra=extra,
        )


def _check_data(data: LMMData) -> None:
    """Reject data the model cannot be fitted to (the error becomes the fit's message)."""
    problem = fit_problem(data)
    if problem:
        raise ValueError(problem)
    K, N, q = data.n_groups, data.n_obs, data.q
    if K * q >= N:
        raise ValueError(
            f"need more rows than random effects, got K={K} groups, "
            f"N={N} rows for K*q={K * q} random effects"
        )


def _problem(res: Any, check_converged: bool = True) -> str:
    """Why a statsmodels result is unusable ('' if it is fine)."""
    if check_converged and not res.converged:
        return "optimizer did not converge"
    values = [res.llf, res.scale, *np.ravel(res.fe_params), *np.ravel(res.cov_re)]
    if not np.all(np.isfinite(values)) or not res.scale > 0:
        return "non-finite estimates"
    var_fe = np.diag(np.asarray(res.cov_params(), dtype=float))[: res.k_fe]
    if not np.all(np.isfinite(var_fe) & (var_fe > 0)):
        return "fixed-effect covariance not positive definite"
    return ""


def _cor_se(res: Any, q: int) -> np.ndarray:
    """Delta-method SEs of the correlations from the covariance of ``Psi = D / sigma^2``."""
    psi = np.asarray(res.cov_re_unscaled, dtype=float)
    cov_psi = np.asarray(res.cov_params(), dtype=float)[res.k_fe :, res.k_fe :]
    if not np.all(np.isfinite(cov_psi)) or np.linalg.eigvalsh(cov_psi).min() <= 0:
        return np.full(q * (q - 1) // 2, np.nan)  # not a covariance: Hessian not definite
    pos = np.zeros((q, q), dtype=int)
    pos[np.tril_indices(q)] = np.arange(q * (q + 1) // 2)  # statsmodels' packing order
    out = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for j, k in zip(*np.tril_indices(q, -1), strict=True):
            grad = np.zeros(cov_psi.shape[0])
            rho = psi[j, k] / np.sqrt(psi[j, j] * psi[k, k])
            grad[pos[j, k]] = 1.0 / np.sqrt(psi[j, j] * psi[k, k])
            grad[pos[j, j]] = -rho / (2.0 * psi[j, j])
            grad[pos[k, k]] = -rho / (2.0 * psi[k, k])
            var = float(grad @ cov_psi @ grad)
            out.append(np.sqrt(var) if np.isfinite(var) and var > 0 else np.nan)
    return np.asarray(out, dtype=float)
