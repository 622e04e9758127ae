"""Frequentist engine: REML or ML fits, statsmodels ``MixedLM`` polished to the exact optimum.

The model ``y_i = X_i beta + Z_i u_i + e_i``, ``u_i ~ N(0, D)`` with unstructured or
diagonal ``D`` (the data's :class:`models.structure.Structure`; ``Z_i`` a subset of
``X_i``'s columns), ``e ~ N(0, sigma^2 I)`` is fitted from arrays (statsmodels'
``exog_re = Z``; no formula parsing here, see :mod:`models.formula`).  Results are on the
broom.mixed scale: fixed effects, then random-effect SDs, correlations and the residual SD.

Optimisation
------------
statsmodels ``MixedLM`` starts from moment estimates (:func:`start_covariance`) and its
optimizers are tried in turn until one converges (L-BFGS stops at scipy's
``pgtol=1e-5``, which can leave correlations ~1e-3 from the optimum).  Its point is then
polished by Newton's method (trust region) on the profiled criterion in lme4's
``theta`` (:mod:`models.reml.criterion`: sufficient statistics, analytic gradient), to a
gradient below 1e-7: the optimum to machine precision.  ``converged`` is that polish's
verdict; ``singular`` is ``lme4::isSingular`` (a diagonal element of ``Lambda`` below
1e-4), recorded separately (a boundary fit can be a converged fit).  statsmodels only
supplies the start: its warnings and failures (an optimizer that raises is skipped)
are the fit's message only when the polish did not converge.

Inference
---------
Fixed effects (``ci``): ``"wald"`` (normal), ``"t"`` (``K - p`` df),
``"satterthwaite"`` (lmerTest) or ``"kenward-roger"`` (pbkrtest: adjusted SE and df),
see :mod:`models.reml.ddf`.  Variance parameters (``ran_pars_ci``): ``"wald"`` on the
log-SD / atanh-correlation scale, ``"profile"`` likelihood (lme4), or ``"none"``, see
:mod:`models.reml.varpar`.  The ``df`` of each interval is stored (``inf`` for normal).
"""

from __future__ import annotations

import time
import traceback
import warnings
from typing import Any

import numpy as np
from scipy import stats
from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams

from models.base import FitResult
from models.data import LMMData, fit_problem
from models.reml import ddf, varpar
from models.reml.criterion import Criterion, Optimum, polish, psi_to_theta
from models.reml.options import OPTIMIZERS, TOLERANCES, RemlOptions

__all__ = ["OPTIMIZERS", "RemlEngine", "RemlOptions", "start_covariance"]


def start_covariance(data: LMMData) -> tuple[np.ndarray, float]:
    """Moment start values ``(Psi0, sigma2_0)`` from per-group OLS fits.

    Uses the sufficient statistics only: ``b_i = (X_i'X_i)^-1 X_i'y_i`` for groups with
    ``n_i > q`` and full-rank ``X_i'X_i``; pooled residual variance ``sigma2_0``; and
    ``D0 = cov(b_i) - sigma2_0 mean((X_i'X_i)^-1)`` restricted to the random effects
    (diagonal if they are uncorrelated), its eigenvalues floored at a small fraction of
    the total so that it is positive definite.  Returns the relative covariance
    ``Psi0 = D0 / sigma2_0`` (r x r) that statsmodels optimises over; falls back to the
    identity when fewer than ``q + 1`` groups qualify.
    """
    q, r, idx = data.q, data.r, data.z_index
    ok = data.n > q
    if ok.any():
        ok[ok] = np.linalg.matrix_rank(data.XtX[ok]) == q
    if ok.sum() <= q:
        return np.eye(r), 1.0
    xtx_inv = np.linalg.inv(data.XtX[ok])
    b = np.einsum("kij,kj->ki", xtx_inv, data.Xty[ok])
    rss = data.yty[ok] - np.einsum("ki,ki->k", b, data.Xty[ok])
    sigma2 = float(max(rss.sum() / (data.n[ok] - q).sum(), 1e-12))
    D = np.cov(b, rowvar=False) - sigma2 * xtx_inv.mean(axis=0)
    D = np.atleast_2d(D)[np.ix_(idx, idx)]
    if not data.structure.correlated:
        D = np.diag(np.diag(D))
    w, v = np.linalg.eigh((D + D.T) / 2)
    w = np.maximum(w, 1e-3 * max(float(np.abs(w).sum()), sigma2))
    return (v * w) @ v.T / sigma2, sigma2


class RemlEngine:
    """REML/ML engine (see the module docstring).

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
            With the fit statistics (``loglik``, ``criterion``, ``aic``, ``bic``,
            ``nobs``, ``ngroups``, ``singular``, ``optimizer``) and ``df`` per term.
            ``message`` is empty for a clean fit.  What statsmodels says while it
            finds the start point (its warnings, optimizers that failed or raised) is
            moot once the polish converged to a regular optimum, and kept only when
            the polish did not converge; a converged boundary fit says
            :data:`SINGULAR_NOTE`; warnings of the polish and of the inference are
            always kept.  ``extra`` holds floats: ``iterations`` (Newton steps of the
            polish), ``gradient`` (max |gradient| at the optimum) and
            ``optimizer_index`` (position in ``options.optimizers`` of the statsmodels
            optimizer that gave the start).
        """
        t0 = time.perf_counter()
        structure = getattr(data, "structure", None) or tuple(getattr(data, "predictors", ()))
        # catch_warnings is process-global: run engines in processes, not threads.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = self._fit(data)
            except Exception as err:
                result = FitResult.failed(
                    structure, f"{type(err).__name__}: {err}", trace=traceback.format_exc()
                )
        notes = _warning_notes(caught)
        result.message = "; ".join(m for m in (result.message, *notes) if m)
        result.fit_seconds = time.perf_counter() - t0
        return result

    def _fit(self, data: LMMData) -> FitResult:
        opts = self.options
        _check_data(data)
        psi0, _ = start_covariance(data)
        correlated = data.structure.correlated
        # statsmodels only finds the start point: what it says on the way (warnings,
        # failed optimizers) is kept only if the polished fit needs explaining
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            best, reasons = self._start(data, psi0)
        crit = Criterion(data, reml=opts.method == "reml")
        if best is None:
            theta0, index, label = psi_to_theta(psi0, correlated), -1, "moments"
        else:
            cov_re = np.atleast_2d(np.asarray(best[0].cov_re_unscaled, dtype=float))
            theta0 = psi_to_theta(cov_re, correlated)
            index, label = best[1], opts.optimizers[best[1]]
        optimum = polish(crit, theta0)
        notes = []
        if not optimum.converged:
            # the start-up's troubles explain a fit that did not converge
            notes += [f"{r} (polished from {label})" for r in reasons]
            notes += [*_warning_notes(caught), optimum.message]
        elif crit.singular(optimum.theta):
            notes.append(SINGULAR_NOTE)
        elif optimum.message:
            notes.append(optimum.message)
        return self._result(data, crit, optimum, index, f"{label}+newton", "; ".join(notes))

    def _start(self, data: LMMData, psi0: np.ndarray) -> tuple[tuple[Any, int] | None, list[str]]:
        """The best statsmodels fit to polish from (``None``: start from the moments)
        and why the optimizers tried before it were no good.  An optimizer that raises
        (e.g. ``LinAlgError`` when a group-level predictor meets a huge variance on the
        way) is one that failed: the next one, or the moments, give the start."""
        opts = self.options
        model = MixedLM(data.y, data.X, data.group, exog_re=data.Z)
        start = MixedLMParams.from_components(np.zeros(data.q), cov_re=psi0)
        # uncorrelated random effects (lme4 ||): statsmodels fits a diagonal cov_re
        free = (
            {}
            if data.structure.correlated
            else {"free": MixedLMParams.from_components(np.ones(data.q), np.eye(data.r))}
        )
        reasons: list[str] = []
        best: tuple[Any, int] | None = None
        for index, method in enumerate(opts.optimizers):
            try:
                with np.errstate(all="ignore"):
                    res = model.fit(
                        start_params=start.copy(),
                        reml=opts.method == "reml",
                        method=[method],
                        maxiter=opts.maxiter,
                        full_output=True,
                        **free,
                        **TOLERANCES.get(method, {}),
                    )
            except Exception as err:
                reasons.append(f"{method}: {type(err).__name__}: {err}")
                continue
            problem = _problem(res)
            if not problem:
                return (res, index), reasons
            reasons.append(f"{method}: {problem}")
            if _problem(res, check_converged=False) == "" and (
                best is None or res.llf > best[0].llf
            ):
                best = (res, index)
        return best, reasons

    def _result(
        self, data: LMMData, crit: Criterion, opt: Optimum, index: int, optimizer: str, message: str
    ) -> FitResult:
        opts = self.options
        q = data.q
        structure = data.structure
        terms, effects = structure.terms, structure.effects
        parts, sigma2 = crit.at(opt.theta)
        singular = crit.singular(opt.theta)
        beta = parts.beta
        phi = sigma2 * parts.H
        # -- fixed effects ---------------------------------------------------------------
        df = np.full(q, np.inf)
        cov = phi
        if opts.ci == "t":
            df[:] = data.n_groups - (q - 1)
            if df[0] <= 0:
                message = _join(message, f"t interval needs K - p > 0, got {df[0]:g}")
                df[:] = np.nan
        elif opts.ci in ("satterthwaite", "kenward-roger"):
            blocks = ddf.blocks(crit, parts, sigma2)
            if opts.ci == "satterthwaite":
                df = ddf.satterthwaite_df(crit, blocks, ddf.gamma_of(crit, parts, sigma2))
            else:
                cov, W = ddf.kenward_roger(blocks)
                df = np.array([ddf.kr_df(blocks, W, row) for row in np.eye(q)])
        se_beta = np.sqrt(np.diag(cov))
        with np.errstate(invalid="ignore"):
            crit_q = stats.t.ppf(0.5 + opts.level / 2, df)
        if not np.all(np.isfinite(se_beta)):
            message = _join(message, "fixed-effect covariance not positive definite")
        # -- variance parameters -----------------------------------------------------------
        nat = varpar.natural_from(parts.psi * sigma2, sigma2, structure.pairs).values
        dev = varpar.Deviance(crit)
        nan = np.full(nat.size, np.nan)
        ran_df = np.full(nat.size, np.nan)
        wald = varpar.wald(dev, nat, opts.level, singular)
        ran_se, ran_lo, ran_hi = wald.se, nan, nan
        if opts.ran_pars_ci == "wald":
            ran_lo, ran_hi = wald.lower, wald.upper
            ran_df = np.where(np.isfinite(wald.lower), np.inf, np.nan)
        elif opts.ran_pars_ci == "profile":
            try:
                ran_lo, ran_hi = self._profile(data, crit, nat, opt, wald.se)
            except Exception as err:
                # the fit stands; only its profile intervals are missing, and why
                message = _join(message, f"profile intervals failed: {type(err).__name__}: {err}")
        # -- fit statistics ----------------------------------------------------------------
        n_par = q + structure.n_cov + 1
        value = float(opt.value)
        return FitResult(
            terms,
            effects,
            np.concatenate([beta, nat]),
            np.concatenate([se_beta, ran_se]),
            np.concatenate([beta - crit_q * se_beta, ran_lo]),
            np.concatenate([beta + crit_q * se_beta, ran_hi]),
            opt.converged,
            float("nan"),
            message,
            extra={
                "iterations": float(opt.iterations),
                "gradient": float(opt.gradient),
                "optimizer_index": float(index),
            },
            df=np.concatenate([df, ran_df]),
            singular=singular,
            loglik=-value / 2,
            criterion=value,
            aic=value + 2 * n_par,
            bic=value + np.log(data.n_obs) * n_par,
            nobs=float(data.n_obs),
            ngroups=float(data.n_groups),
            optimizer=optimizer,
        )

    def _profile(
        self, data: LMMData, crit: Criterion, nat: np.ndarray, opt: Optimum, wald_se: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """lme4's profile intervals: the ML deviance profiled around the ML optimum."""
        q = data.r
        if crit.reml:
            crit = Criterion(data, reml=False)
            opt = polish(crit, opt.theta)
            parts, s2 = crit.at(opt.theta)
            nat = varpar.natural_from(parts.psi * s2, s2, data.structure.pairs).values
        # march in steps of half a Wald SE on the unconstrained scale
        with np.errstate(all="ignore"):
            step = 0.5 * wald_se / varpar.dvalues_dphi(nat, q)
        prof = varpar.profile(varpar.Deviance(crit), nat, self.options.level, opt.value, step)
        return prof.lower, prof.upper


#: the message of a converged fit on the boundary (``singular``), as lme4 says it
SINGULAR_NOTE = (
    "boundary (singular) fit: a random-effect SD at 0 or a correlation at +-1 (lme4::isSingular)"
)


def _warning_notes(caught: list[warnings.WarningMessage]) -> list[str]:
    """Distinct warnings as ``Category: text``, in the order first seen."""
    return list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))


def _join(message: str, note: str) -> str:
    return f"{message}; {note}" if message else note


def _check_data(data: LMMData) -> None:
    """Reject data the model cannot be fitted to (the error becomes the fit's message)."""
    problem = fit_problem(data)
    if problem:
        raise ValueError(problem)
    K, N, r = data.n_groups, data.n_obs, data.r
    if K * r >= N:
        raise ValueError(
            f"need more rows than random effects, got K={K} groups, "
            f"N={N} rows for K*r={K * r} random effects"
        )


def _problem(res: Any, check_converged: bool = True) -> str:
    """Why a statsmodels result is no good as a start ('' if it is fine)."""
    if check_converged and not res.converged:
        return "optimizer did not converge"
    values = [res.llf, res.scale, *np.ravel(res.fe_params), *np.ravel(res.cov_re)]
    if not np.all(np.isfinite(values)) or not res.scale > 0:
        return "non-finite estimates"
    return ""
