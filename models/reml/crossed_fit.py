"""REML/ML fits and tests of models with several random terms (crossed or nested).

:class:`models.reml.engine.RemlEngine` sends a :class:`models.crossed.data.CrossedData`
here.  The optimum: Newton's method with a trust region on the profiled criterion
(:mod:`models.reml.crossed`, analytic gradient) from an L-BFGS approach from lme4's
start ``T_f = I``, with the
boundary handling of :func:`models.reml.criterion.polish` (the one-factor engine's
polish: the same optimality conditions, the same ``converged``).  statsmodels is not
needed for the start: its variance-components ``MixedLM`` is slower than this whole fit.

Inference as the one-factor engine's (:mod:`models.reml.crossed_inference`): Wald, ``t``
(``K - p`` df for the tests and ``K - (p - 1)`` for ``ci = "t"``, as the one-factor
engine, ``K`` the fewest levels of any grouping factor), Satterthwaite (lmerTest),
Kenward-Roger (pbkrtest), likelihood-ratio tests of ML fits (a random slope on the
dropped predictor kept), Wald intervals of the variance parameters.  Profile intervals
of the variance parameters are not implemented for several grouping factors: asked for,
they are NaN and the message says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.optimize import minimize

from models.base import FitResult, TestResult
from models.crossed.data import CrossedData, crossed_problem
from models.reml import crossed_inference as inf
from models.reml import ddf
from models.reml.criterion import SINGULAR_NOTE, Optimum, polish
from models.reml.crossed import CrossedCriterion
from models.reml.options import RemlOptions

PROFILE_NOTE = (
    "profile intervals of the variance parameters are not available for several grouping "
    'factors; use ran_pars_ci = "wald"'
)


@dataclass(frozen=True)
class CrossedFitted:
    """A polished optimum and the fit's message."""

    crit: CrossedCriterion
    optimum: Optimum
    message: str

    @property
    def optimizer(self) -> str:
        return "newton"


def fit(options: RemlOptions, data: CrossedData) -> CrossedFitted:
    """The polished optimum; ``ValueError`` for data no engine can fit."""
    problem = crossed_problem(data)
    if problem:
        raise ValueError(problem)
    crit = CrossedCriterion(data, reml=options.method == "reml")
    opt = polish(crit, _approach(crit))
    notes = []
    if not opt.converged:
        notes.append(opt.message)
    elif crit.singular(opt.theta):
        notes.append(SINGULAR_NOTE)
    elif opt.message:
        notes.append(opt.message)
    return CrossedFitted(crit, opt, "; ".join(notes))


def _approach(crit: CrossedCriterion) -> np.ndarray:
    """A point near the optimum for the Newton polish: L-BFGS (analytic gradient) from
    lme4's start.  Its steps cost one gradient each where a Newton step costs ``2
    n_theta + 1`` (a finite-difference Hessian), so the fit needs about half the
    evaluations (``benchmarks/bench_crossed.py``); the polish decides convergence."""
    start = crit.start()
    with np.errstate(all="ignore"):
        res = minimize(
            crit.value_theta,
            start,
            jac=crit.grad_theta,
            method="L-BFGS-B",
            options={"gtol": 1e-6, "maxiter": 200},
        )
    if not np.all(np.isfinite(res.x)) or not res.fun <= crit.value_theta(start):
        return start
    return np.asarray(res.x, dtype=float)


def _join(message: str, note: str) -> str:
    return f"{message}; {note}" if message else note


def result(options: RemlOptions, data: CrossedData, fitted: CrossedFitted) -> FitResult:
    """The :class:`FitResult` of a polished optimum (terms of ``data.structure``)."""
    crit, opt, message = fitted.crit, fitted.optimum, fitted.message
    structure = data.structure
    q = data.q
    parts, s2 = crit.at(opt.theta)
    singular = crit.singular(opt.theta)
    beta = parts.beta
    cov = s2 * parts.H
    comps = inf.Components(data)
    gamma = inf.gamma_of(crit, comps, opt.theta, s2)
    df = np.full(q, np.inf)
    if options.ci == "t":
        df[:] = data.n_groups - (q - 1)
        if df[0] <= 0:
            message = _join(message, f"t interval needs K - p > 0, got {df[0]:g}")
            df[:] = np.nan
    elif options.ci in ("satterthwaite", "kenward-roger"):
        b = inf.kr_blocks(crit, comps, gamma)
        if options.ci == "satterthwaite":
            df = inf.satterthwaite(crit, comps, gamma, b)
        else:
            cov, W = ddf.kenward_roger(b)
            df = np.array([ddf.kr_df(b, W, row) for row in np.eye(q)])
    with np.errstate(invalid="ignore"):
        se_beta = np.sqrt(np.diag(cov))
        crit_q = stats.t.ppf(0.5 + options.level / 2, df)
    if not np.all(np.isfinite(se_beta)):
        message = _join(message, "fixed-effect covariance not positive definite")
    nat = structure.values_of(beta, crit.covariances(opt.theta, s2), float(np.sqrt(s2)))[q:]
    nan = np.full(nat.size, np.nan)
    ran_se, ran_lo, ran_hi = inf.wald(crit, comps, nat, options.level, singular)
    ran_df = np.where(np.isfinite(ran_lo), np.inf, np.nan)
    if options.ran_pars_ci == "none":
        ran_lo, ran_hi, ran_df = nan, nan, nan.copy()
    elif options.ran_pars_ci == "profile":
        ran_lo, ran_hi, ran_df = nan, nan, nan.copy()
        message = _join(message, PROFILE_NOTE)
    n_par = q + structure.n_cov + 1
    value = float(opt.value)
    return FitResult(
        structure.terms,
        structure.effects,
        np.concatenate([beta, nat]),
        np.concatenate([se_beta, ran_se]),
        np.concatenate([beta - crit_q * se_beta, ran_lo]),
        np.concatenate([beta + crit_q * se_beta, ran_hi]),
        opt.converged,
        float("nan"),
        message,
        extra={"iterations": float(opt.iterations), "gradient": float(opt.gradient)},
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


#: relative size of a negative deviance difference taken as rounding (clipped to 0)
LRT_TOLERANCE = 1e-8


class CrossedTester:
    """The tests of one crossed fit (as :class:`models.reml.engine._Tester`)."""

    def __init__(
        self, data: CrossedData, fitted: CrossedFitted, index: np.ndarray, null: np.ndarray
    ) -> None:
        self.data, self.fitted, self.index, self.null = data, fitted, index, null
        self.crit = fitted.crit
        self.parts, self.sigma2 = self.crit.at(fitted.optimum.theta)
        self.beta = self.parts.beta[index]
        with np.errstate(invalid="ignore"):
            self.se = np.sqrt(np.diag(self.sigma2 * self.parts.H))[index]
        self.comps = inf.Components(data)
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

    def gamma(self, crit: CrossedCriterion, theta: np.ndarray) -> np.ndarray:
        return inf.gamma_of(crit, self.comps, theta, crit.at(theta)[1])

    def blocks(self) -> ddf.Blocks:
        if self._blocks is None:
            gamma = self.gamma(self.crit, self.fitted.optimum.theta)
            self._blocks = inf.kr_blocks(self.crit, self.comps, gamma)
        return self._blocks

    _wald = staticmethod(ddf.wald_test)

    def z(self) -> TestResult:
        return self._wald(self.beta, self.se, self.null, np.inf)

    def t(self) -> TestResult:
        df = float(self.data.n_groups - self.data.q)
        if df <= 0:
            why = f"t test needs K - p > 0 (K levels of the smallest factor), got {df:g}"
            return self._wald(self.beta, self.se, self.null, np.nan, why)
        return self._wald(self.beta, self.se, self.null, df)

    def satterthwaite(self) -> TestResult:
        gamma = self.gamma(self.crit, self.fitted.optimum.theta)
        df = inf.satterthwaite(self.crit, self.comps, gamma, self.blocks())[self.index]
        why = (
            ""
            if np.all(np.isfinite(df))
            else "Satterthwaite df not defined: the Hessian in the variance parameters is "
            "not positive definite (a boundary fit?)"
        )
        return self._wald(self.beta, self.se, self.null, df, why)

    def kenward_roger(self) -> TestResult:
        crit, beta = self.crit, self.beta
        if not crit.reml:
            crit = CrossedCriterion(self.data, reml=True)
            opt = polish(crit, self.fitted.optimum.theta)
            if not opt.converged:
                why = f"the REML refit for Kenward-Roger did not converge: {opt.message}"
                return TestResult.nan(len(self.index), why)
            beta = crit.at(opt.theta)[0].beta[self.index]
            b = inf.kr_blocks(crit, self.comps, self.gamma(crit, opt.theta))
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
            full = CrossedCriterion(self.data, reml=False)
            opt = polish(full, theta)
        else:
            full, opt = self.crit, self.fitted.optimum
        if not opt.converged:
            return TestResult.nan(k, f"ML fit of the full model did not converge: {opt.message}", 1)
        notes: list[str] = []
        reduced: list[Optimum | None] = []
        for j, c in zip(self.index, self.null, strict=True):
            name = self.data.structure.fixed[j]
            red = CrossedCriterion(self.data.without_fixed(int(j), float(c)), reml=False)
            o = polish(red, opt.theta)
            if not o.converged:
                notes.append(f"{name}: ML fit of the reduced model did not converge: {o.message}")
            reduced.append(o if o.converged else None)
        # nested models: a reduced optimum below the full one means the full fit stopped
        # at a local optimum; polish it from there
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
