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

Hypothesis tests
----------------
:meth:`RemlEngine.fit_tests` (capability ``tests``) fits once and tests
``H0: beta_j = null_j`` with any of :data:`TESTS`: ``"z"``, ``"t"`` (``K - p`` df, ``p``
the number of fixed effects), ``"satterthwaite"``, ``"kenward-roger"`` (from the fit
itself, whatever ``ci`` says) and ``"lrt"`` (ML fits of the full model and of the model
without ``x_j``, offset ``null_j x_j``, as lme4's ``anova(m0, m1)``).
"""

from __future__ import annotations

import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams

from models.base import FitResult, TestResult
from models.crossed.data import CrossedData
from models.data import LMMData, fit_problem
from models.reml import crossed_fit, ddf, varpar
from models.reml.criterion import (
    SINGULAR_NOTE,
    Criterion,
    Optimum,
    polish,
    psi_to_theta,
    theta_index,
)
from models.reml.options import OPTIMIZERS, TOLERANCES, RemlOptions
from models.structure import Structure

__all__ = ["OPTIMIZERS", "TESTS", "RemlEngine", "RemlOptions", "start_covariance"]

#: the tests :meth:`RemlEngine.fit_tests` offers (``models.builtin.REML_TESTS``)
TESTS: tuple[str, ...] = ("z", "t", "satterthwaite", "kenward-roger", "lrt")


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
        self, data: LMMData | CrossedData, *, seed: int | None = None, keep_posterior: bool = False
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
        return self._fit_once(data)[0]

    def _fit_once(
        self, data: LMMData | CrossedData
    ) -> tuple[FitResult, _Fitted | crossed_fit.CrossedFitted | None]:
        """The result :meth:`fit` returns, and the optimum behind it (``None`` when the
        fit raised), for :meth:`fit_tests` to test from without fitting again."""
        t0 = time.perf_counter()
        structure = getattr(data, "structure", None) or tuple(getattr(data, "predictors", ()))
        fitted: _Fitted | crossed_fit.CrossedFitted | None = None
        # catch_warnings is process-global: run engines in processes, not threads.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                if isinstance(data, CrossedData):
                    fitted = crossed_fit.fit(self.options, data)
                    result = crossed_fit.result(self.options, data, fitted)
                else:
                    fitted = self._fit(data)
                    result = self._result(data, fitted)
            except Exception as err:
                fitted = None
                result = FitResult.failed(
                    structure, f"{type(err).__name__}: {err}", trace=traceback.format_exc()
                )
        notes = _warning_notes(caught)
        result.message = "; ".join(m for m in (result.message, *notes) if m)
        result.fit_seconds = time.perf_counter() - t0
        return result, fitted

    def fit_tests(
        self,
        data: LMMData | CrossedData,
        *,
        terms: Sequence[str],
        null: Sequence[float],
        tests: Sequence[str],
        seed: int | None = None,
    ) -> tuple[FitResult, dict[str, TestResult]]:
        """Fit ``data`` once (exactly as :meth:`fit`) and test ``H0: beta_t = null_t``
        for each ``t`` of ``terms`` with each test of ``tests`` (:data:`TESTS`).

        - ``"z"``: ``(estimate - null) / SE`` against N(0, 1) (df ``inf``);
        - ``"t"``: the same against t with ``K - p`` df (``K`` groups, ``p`` fixed effects,
          the intercept included; NaN when ``K - p <= 0``);
        - ``"satterthwaite"``: against t with lmerTest's Satterthwaite df;
        - ``"kenward-roger"``: pbkrtest's adjusted SE and df (of a REML fit: an engine
          with ``method = "ml"`` refits with REML for it, as pbkrtest does);
        - ``"lrt"``: ``-2 log`` likelihood ratio of ML fits, the full model against the
          model without ``x_t`` and with offset ``null_t x_t`` (lme4's ``anova(m0, m1)``
          after ``update(m1, . ~ . - x_t)``: a random slope on ``x_t`` is kept), against
          chi-square with 1 df.

        The Wald-type tests use this engine's fit (REML, or ML with ``method = "ml"``)
        and its unadjusted SE whatever ``ci`` says; only the tests asked for are
        computed.  The result is the one :meth:`fit` gives.

        Raises
        ------
        ValueError
            For a call that is wrong whatever the data: a test not in :data:`TESTS`
            (or asked twice), a term that is not a fixed effect of ``data.structure``,
            ``null`` not of the length of ``terms``.  A dataset never raises: a fit
            that fails or does not converge gives NaN p-values and says why.
        """
        index, nulls, names = _check_request(data, terms, null, tests)
        result, fitted = self._fit_once(data)
        k = len(index)
        if fitted is None or not result.converged:
            why = "the fit failed" if fitted is None else "the fit did not converge"
            detail = f"{why}: {result.message}" if result.message else why
            refs = {"z": np.inf, "lrt": 1.0, "t": float(data.n_groups - data.q)}
            return result, {n: TestResult.nan(k, detail, refs.get(n, np.nan)) for n in names}
        tester: _Tester | crossed_fit.CrossedTester
        if isinstance(fitted, crossed_fit.CrossedFitted) and isinstance(data, CrossedData):
            tester = crossed_fit.CrossedTester(data, fitted, index, nulls)
        elif isinstance(fitted, _Fitted) and isinstance(data, LMMData):
            tester = _Tester(data, fitted, index, nulls)
        else:  # pragma: no cover - the fit is of the data's kind
            raise TypeError(f"a {type(fitted).__name__} fit of {type(data).__name__}")
        out: dict[str, TestResult] = {}
        for name in names:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    res = tester.run(name)
                except Exception as err:
                    res = TestResult.nan(k, f"{name} test failed: {type(err).__name__}: {err}")
            notes = _warning_notes(caught)
            if notes:
                message = "; ".join(m for m in (res.message, *notes) if m)
                res = TestResult(res.statistic, res.df, res.p_value, message)
            out[name] = res
        return result, out

    def _fit(self, data: LMMData) -> _Fitted:
        """The polished optimum of the engine's criterion, and the fit's message (what
        :meth:`fit` raises through is raised here: tests patch this method to fail)."""
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
        return _Fitted(crit, optimum, index, f"{label}+newton", "; ".join(notes))

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

    def _result(self, data: LMMData, fitted: _Fitted) -> FitResult:
        opts = self.options
        crit, opt, index, message = fitted.crit, fitted.optimum, fitted.index, fitted.message
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
            optimizer=fitted.optimizer,
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


# -- hypothesis tests (RemlEngine.fit_tests) ----------------------------------------------
@dataclass(frozen=True)
class _Fitted:
    """A fit's polished optimum: what its FitResult is made of, and its tests."""

    crit: Criterion
    optimum: Optimum
    index: int  # position in options.optimizers of the start's optimizer (-1: moments)
    optimizer: str
    message: str


def _check_request(
    data: LMMData | CrossedData, terms: Sequence[str], null: Sequence[float], tests: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Positions of ``terms`` in ``X``, the null values and the test names, or a
    ``ValueError`` for a request that is wrong whatever the data."""
    if isinstance(tests, str) or isinstance(terms, str):
        raise ValueError("terms and tests must be sequences of names, not one string")
    names = tuple(tests)
    unknown = [t for t in names if t not in TESTS]
    if unknown:
        raise ValueError(
            f"tests {unknown!r}: not tests of the reml engine; choose from {', '.join(TESTS)}"
        )
    twice = sorted({t for t in names if names.count(t) > 1})
    if twice:
        raise ValueError(f"tests {twice!r} are asked more than once")
    fixed = data.structure.fixed
    outside = [t for t in terms if t not in fixed]
    if outside:
        raise ValueError(
            f"terms {outside!r}: not fixed effects of the model; choose from {list(fixed)}"
        )
    nulls = np.asarray(null, dtype=float).reshape(-1)
    if nulls.size != len(terms):
        raise ValueError(f"null has {nulls.size} values for {len(terms)} terms; give one per term")
    if not np.all(np.isfinite(nulls)):
        raise ValueError(f"null = {nulls.tolist()}: must be finite")
    return np.array([fixed.index(t) for t in terms], dtype=np.int64), nulls, names


class _Tester:
    """The tests of one fit; what several tests share (the blocks of the information)
    is computed once, and only when a test asked for needs it."""

    def __init__(self, data: LMMData, fitted: _Fitted, index: np.ndarray, null: np.ndarray):
        self.data, self.fitted, self.index, self.null = data, fitted, index, null
        self.crit = fitted.crit
        self.parts, self.sigma2 = self.crit.at(fitted.optimum.theta)
        self.beta = self.parts.beta[index]
        with np.errstate(invalid="ignore"):
            self.se = np.sqrt(np.diag(self.sigma2 * self.parts.H))[index]
        self._blocks: ddf.Blocks | None = None
        self._runs: dict[str, Callable[[], TestResult]] = {
            "z": self.z,
            "t": self.t,
            "satterthwaite": self.satterthwaite,
            "kenward-roger": self.kenward_roger,
            "lrt": self.lrt,
        }

    def run(self, name: str) -> TestResult:
        return self._runs[name]()

    def blocks(self) -> ddf.Blocks:
        if self._blocks is None:
            self._blocks = ddf.blocks(self.crit, self.parts, self.sigma2)
        return self._blocks

    _wald = staticmethod(ddf.wald_test)

    def z(self) -> TestResult:
        return self._wald(self.beta, self.se, self.null, np.inf)

    def t(self) -> TestResult:
        df = float(self.data.n_groups - self.data.q)
        if df <= 0:
            why = f"t test needs K - p > 0 (K groups, p fixed effects), got {df:g}"
            return self._wald(self.beta, self.se, self.null, np.nan, why)
        return self._wald(self.beta, self.se, self.null, df)

    def satterthwaite(self) -> TestResult:
        gamma = ddf.gamma_of(self.crit, self.parts, self.sigma2)
        df = ddf.satterthwaite_df(self.crit, self.blocks(), gamma)[self.index]
        why = (
            ""
            if np.all(np.isfinite(df))
            else "Satterthwaite df not defined: the Hessian in the variance parameters is "
            "not positive definite (a boundary fit?)"
        )
        return self._wald(self.beta, self.se, self.null, df, why)

    def kenward_roger(self) -> TestResult:
        crit, parts, sigma2, beta = self.crit, self.parts, self.sigma2, self.beta
        if not crit.reml:
            # Kenward-Roger is defined for REML fits: pbkrtest refits an ML model by REML
            crit = Criterion(self.data, reml=True)
            opt = polish(crit, self.fitted.optimum.theta)
            if not opt.converged:
                why = f"the REML refit for Kenward-Roger did not converge: {opt.message}"
                return TestResult.nan(len(self.index), why)
            parts, sigma2 = crit.at(opt.theta)
            beta = parts.beta[self.index]
            b = ddf.blocks(crit, parts, sigma2)
        else:
            b = self.blocks()
        cov, W = ddf.kenward_roger(b)
        eye = np.eye(crit.q)
        df = np.array([ddf.kr_df(b, W, eye[j]) for j in self.index])
        with np.errstate(invalid="ignore"):
            se = np.sqrt(np.diag(cov))[self.index]
        return self._wald(beta, se, self.null, df)

    def lrt(self) -> TestResult:
        k = len(self.index)
        theta = self.fitted.optimum.theta
        if self.crit.reml:
            full = Criterion(self.data, reml=False)
            opt = polish(full, theta)
        else:
            full, opt = self.crit, self.fitted.optimum
        if not opt.converged:
            return TestResult.nan(k, f"ML fit of the full model did not converge: {opt.message}", 1)
        reduced: list[Optimum | None] = []
        notes: list[str] = []
        for j, c in zip(self.index, self.null, strict=True):
            name = self.data.structure.fixed[j]
            red = _reduced_criterion(self.data, int(j), float(c))
            o = polish(red, opt.theta)
            if not o.converged:
                notes.append(f"{name}: ML fit of the reduced model did not converge: {o.message}")
            reduced.append(o if o.converged else None)
        # the reduced model is nested in the full one: a reduced optimum below the full
        # one means the full fit stopped at a local optimum; polish it from there
        best = min((o for o in reduced if o is not None), key=lambda o: o.value, default=None)
        if best is not None and best.value < opt.value:
            cand = polish(full, best.theta)
            if cand.converged and cand.value < opt.value:
                opt = cand
        stat = np.full(k, np.nan)
        for i, fit_i in enumerate(reduced):
            if fit_i is None:
                continue
            d = fit_i.value - opt.value
            if d < -LRT_TOLERANCE * max(1.0, abs(opt.value)):
                name = self.data.structure.fixed[self.index[i]]
                notes.append(f"{name}: the reduced model's ML deviance is below the full one's")
                continue
            stat[i] = max(d, 0.0)
        return TestResult(stat, np.ones(k), stats.chi2.sf(stat, 1), "; ".join(notes))


#: relative size of a negative deviance difference taken as rounding (clipped to 0)
LRT_TOLERANCE = 1e-8


def _reduced_criterion(data: LMMData, j: int, null: float) -> Criterion:
    """ML criterion of the model without fixed effect ``j`` and with offset
    ``null x_j`` (``y - null x_j`` as the response), the random part unchanged."""
    keep = [k for k in range(data.q) if k != j]
    y = data.y - null * data.X[:, j]
    s = data.structure
    if s.fixed[j] not in s.random and keep:
        structure = Structure(tuple(s.fixed[k] for k in keep), s.random, s.correlated)
        reduced = LMMData(
            y, data.X[:, keep], data.group, structure.predictors, data.group_labels, structure
        )
        return Criterion(reduced, reml=False)
    # a random slope on x_j stays (lme4's update(. ~ . - x_j)): Z is then no subset of
    # X's columns, which LMMData cannot express; the criterion only needs the products
    return _FreeZCriterion(y, data.X[:, keep], data.Z, data.n, s)


class _FreeZCriterion(Criterion):
    """:class:`Criterion` (ML) of ``y ~ X + (Z | g)`` with ``Z`` not made of ``X``'s
    columns: the same pieces as ``Criterion.__init__`` makes, from the arrays."""

    def __init__(
        self, y: np.ndarray, X: np.ndarray, Z: np.ndarray, n: np.ndarray, structure: Structure
    ) -> None:
        q, r = X.shape[1], Z.shape[1]
        self.structure = structure  # the full model's: the random part is the same
        self.r, self.correlated = r, structure.correlated
        self.q, self.N, self.p, self.K = q, y.shape[0], q, n.shape[0]
        self.reml = False
        self.nu = float(self.N)
        self.n = n.astype(float)
        starts = np.concatenate(([0], np.cumsum(n)[:-1]))

        def per_group(values: np.ndarray) -> np.ndarray:
            return np.add.reduceat(values, starts, axis=0)

        A = per_group(X[:, :, None] * X[:, None, :])
        self.beta0 = np.linalg.solve(A.sum(axis=0), X.T @ y)
        res = y - X @ self.beta0
        self.A = A
        self.B = per_group(Z[:, :, None] * X[:, None, :])
        self.C = per_group(Z[:, :, None] * Z[:, None, :])
        self.Bt = np.swapaxes(self.B, 1, 2)
        bx = per_group(X * res[:, None])
        self.b = per_group(Z * res[:, None])
        self.c = per_group(res * res)
        self.A_sum, self.bx_sum, self.c_sum = A.sum(axis=0), bx.sum(axis=0), float(self.c.sum())
        self.eye = np.eye(r)
        self.rows, self.cols = theta_index(r, self.correlated)
        self.n_theta = self.rows.size
