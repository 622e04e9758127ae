"""Tests of the REML/ML engine, :mod:`models.reml`.

External reference values: ``tests/data/sleepstudy_lme4.toml``, a fit of
``Reaction ~ Days + (Days | Subject)`` to lme4's ``sleepstudy`` data computed with R 4.2.2
and lme4 1.1-31 (provenance in ``tests/data/README.md``).
"""

from __future__ import annotations

import pickle
import tomllib

import numpy as np
import pandas as pd
import pytest
from helpers import DATA
from scipy import stats

from models.base import RAN_PARS, Engine, FitResult, term_names
from models.data import LMMData
from models.reml import OPTIMIZERS, RemlEngine, RemlOptions, start_covariance

RTOL = 1e-4
RAN_TERMS = ("sd__(Intercept)", "sd__Days", "cor__(Intercept).Days", "sd__Observation")


@pytest.fixture(scope="module")
def sleep() -> LMMData:
    frame = pd.read_csv(DATA / "sleepstudy.csv")
    return LMMData.from_frame(frame, y="Reaction", x=["Days"], group="Subject")


@pytest.fixture(scope="module")
def lme4() -> dict:
    with open(DATA / "sleepstudy_lme4.toml", "rb") as fh:
        return tomllib.load(fh)


@pytest.fixture(scope="module")
def fits(sleep: LMMData) -> dict[str, FitResult]:
    return {m: RemlEngine(RemlOptions(method=m)).fit(sleep) for m in ("reml", "ml")}


def simulate(seed: int, sd: tuple[float, float] = (1.0, 2.0), K: int = 20, n: int = 10) -> LMMData:
    """The study's design in miniature: X = round(U(1, 20)), beta = (5, 2), sigma = 1."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.uniform(1, 20, size=K * n))
    g = np.repeat(np.arange(K), n)
    u = rng.normal(size=(K, 2)) * np.asarray(sd)
    y = 5 + 2 * x + u[g, 0] + u[g, 1] * x + rng.normal(size=K * n)
    return LMMData(y, np.column_stack([np.ones_like(x), x]), g, ("X",))


def values(fit: FitResult, field: str = "estimate") -> dict[str, float]:
    return dict(zip(fit.terms, getattr(fit, field), strict=True))


def extra(fit: FitResult, key: str) -> float:
    value = fit.extra[key]
    assert isinstance(value, float), (key, value)
    return value


def check_against_lme4(fit: FitResult, ref: dict, method: str) -> None:
    est, se = values(fit), values(fit, "std_error")
    for term in ("(Intercept)", "Days"):
        assert est[term] == pytest.approx(ref["fixed"][term], rel=RTOL), term
        assert se[term] == pytest.approx(ref["std_error"][term], rel=RTOL), f"SE {term}"
    for term in RAN_TERMS:
        assert est[term] == pytest.approx(ref[term], rel=RTOL), term
    # statsmodels and lme4 use the same constant in the (restricted) log-likelihood, so
    # no adjustment is needed.  With V = sigma^2 V_psi, r = y - X beta_hat and p fixed
    # effects, statsmodels profiles sigma^2 = r'V_psi^-1 r / (N - p) out of
    #   -2 l_R = (N - p) log(2 pi sigma^2) + log|V| - (N - p) log sigma^2 ... ,
    # giving (MixedLM.loglike)
    #   -2 l_R = log|V_psi| + log|X'V_psi^-1 X| + (N - p) (1 + log(2 pi r'V_psi^-1 r / (N - p))).
    # lme4's profiled REML criterion (Bates et al. 2015, J. Stat. Softw. 67(1), eq. 42) is
    #   log|L_theta|^2 + log|R_X|^2 + (N - p) (1 + log(2 pi r^2 / (N - p)))
    # with |L_theta|^2 = |I + Lambda'Z'Z Lambda| = |V_psi|, R_X'R_X = X'V_psi^-1 X (Schur
    # complement) and r^2 = r'V_psi^-1 r: term for term the same.  ML likewise, with N.
    if method == "reml":
        assert fit.criterion == pytest.approx(ref["reml_criterion"], rel=RTOL)
    else:
        assert fit.loglik == pytest.approx(ref["log_likelihood"], rel=RTOL)


def test_is_an_engine() -> None:
    engine = RemlEngine()
    assert isinstance(engine, Engine)
    assert engine.name == "reml"


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_sleepstudy_matches_lme4(fits: dict[str, FitResult], lme4: dict, method: str) -> None:
    fit = fits[method]
    assert fit.converged, fit.message
    assert fit.message == ""
    assert fit.terms == term_names(("Days",))[0]
    assert fit.fit_seconds > 0
    check_against_lme4(fit, lme4[method], method)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_reaches_lme4_ml(sleep: LMMData, lme4: dict, optimizer: str) -> None:
    # ML, because for REML on this balanced design the moment start values already are the
    # REML solution, so REML would not exercise the optimizer.
    fit = RemlEngine(RemlOptions(method="ml", optimizers=(optimizer,))).fit(sleep)
    assert fit.converged, fit.message
    check_against_lme4(fit, lme4["ml"], "ml")


def test_fallback_to_next_optimizer(sleep: LMMData, lme4: dict) -> None:
    # cg needs more than 8 iterations for this fit, lbfgs 7.
    fit = RemlEngine(RemlOptions(method="ml", optimizers=("cg", "lbfgs"), maxiter=8)).fit(sleep)
    assert fit.converged, fit.message
    # the fallback is recorded in optimizer / optimizer_index; cg's failure is moot for
    # the polished optimum, so it is not the fit's message (issue 24, 1c)
    assert fit.message == ""
    assert extra(fit, "optimizer_index") == 1.0
    assert fit.optimizer == "lbfgs+newton"
    check_against_lme4(fit, lme4["ml"], "ml")


def test_polish_reaches_the_optimum_from_a_failed_start(sleep: LMMData, lme4: dict) -> None:
    # statsmodels stops after 2 iterations; the Newton polish still gets to lme4's optimum
    fit = RemlEngine(RemlOptions(method="ml", optimizers=("lbfgs",), maxiter=2)).fit(sleep)
    assert fit.converged
    assert fit.message == ""  # statsmodels' failure is moot once the polish converged
    check_against_lme4(fit, lme4["ml"], "ml")


def test_non_convergence_is_flagged(sleep: LMMData, monkeypatch: pytest.MonkeyPatch) -> None:
    import models.reml.criterion as criterion

    monkeypatch.setattr(criterion, "GTOL", 0.0)  # a gradient of exactly 0 is never reached
    fit = RemlEngine(RemlOptions(method="ml")).fit(sleep)
    assert not fit.converged
    assert "Newton polish stopped with max |gradient|" in fit.message
    # a fit that did not converge keeps what statsmodels said on the way
    slow = RemlEngine(RemlOptions(method="ml", optimizers=("lbfgs",), maxiter=2)).fit(sleep)
    assert not slow.converged
    assert "lbfgs: optimizer did not converge (polished from lbfgs)" in slow.message
    assert np.all(np.isfinite(fit.estimate))  # the best attempt's values, flagged


def test_t_intervals_are_wider_with_k_minus_p_df(sleep: LMMData) -> None:
    wald = RemlEngine(RemlOptions(ci="wald", level=0.9)).fit(sleep)
    t = RemlEngine(RemlOptions(ci="t", level=0.9)).fit(sleep)
    fixed = slice(0, 2)
    np.testing.assert_array_equal(t.estimate, wald.estimate)
    np.testing.assert_array_equal(t.std_error, wald.std_error)
    df = sleep.n_groups - len(sleep.predictors)  # K - p = 18 - 1
    for fit, quantile in ((wald, stats.norm.ppf(0.95)), (t, stats.t.ppf(0.95, df))):
        half = (fit.ci_upper - fit.ci_lower)[fixed] / 2
        np.testing.assert_allclose(half, quantile * fit.std_error[fixed], rtol=1e-12)
        np.testing.assert_allclose((fit.ci_upper + fit.ci_lower)[fixed] / 2, fit.estimate[fixed])
    assert np.all((t.ci_upper - t.ci_lower)[fixed] > (wald.ci_upper - wald.ci_lower)[fixed])


def test_variance_parameters_intervals_none(sleep: LMMData) -> None:
    fit = RemlEngine(RemlOptions(ran_pars_ci="none")).fit(sleep)
    ran = np.asarray(fit.effects) == RAN_PARS
    assert np.all(np.isnan(fit.ci_lower[ran])) and np.all(np.isnan(fit.ci_upper[ran]))
    assert np.all(np.isnan(fit.df[ran]))
    assert np.all(np.isfinite(fit.ci_lower[~ran]))
    assert np.all(np.isfinite(fit.std_error[ran]))  # the Wald SEs are still given


def _bad(kind: str) -> LMMData:
    d = simulate(0)
    if kind == "constant y":
        return LMMData(np.full(d.n_obs, 3.0), d.X, d.group, d.predictors)
    if kind == "nan in y":
        return LMMData(np.where(np.arange(d.n_obs) == 7, np.nan, d.y), d.X, d.group, ("X",))
    if kind == "one group":
        return LMMData(d.y[:10], d.X[:10], d.group[:10], d.predictors)
    assert kind == "constant predictor"
    return LMMData(d.y, np.ones_like(d.X), d.group, d.predictors)


@pytest.mark.parametrize("kind", ["constant y", "nan in y", "one group", "constant predictor"])
@pytest.mark.parametrize("method", ["reml", "ml"])
def test_failing_fit_is_recorded_not_raised(kind: str, method: str) -> None:
    fit = RemlEngine(RemlOptions(method=method)).fit(_bad(kind))
    assert not fit.converged
    assert fit.message
    assert np.all(np.isnan(fit.estimate)) and np.all(np.isnan(fit.std_error))
    assert np.all(np.isnan(fit.ci_lower)) and np.all(np.isnan(fit.ci_upper))
    assert np.isfinite(fit.fit_seconds) and fit.fit_seconds >= 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"method": "REML"}, ValueError, "method = 'REML': must be one of reml, ml"),
        (
            {"ci": "profile"},
            ValueError,
            "ci = 'profile': must be one of wald, t, satterthwaite, kenward-roger",
        ),
        ({"ran_pars_ci": "t"}, ValueError, "ran_pars_ci = 't': must be one of wald, profile"),
        ({"level": 95}, ValueError, "level = 95: must be > 0 and < 1"),
        ({"level": "0.95"}, TypeError, "level = '0.95': must be a number"),
        (
            {"optimizers": "lbfgs"},
            TypeError,
            "optimizers = 'lbfgs': must be a non-empty list drawn from lbfgs",
        ),
        ({"optimizers": ()}, ValueError, r"optimizers = \(\): must be a non-empty list"),
        (
            {"optimizers": ("lbfgs", "newton")},
            ValueError,
            r"optimizers\[1\] = 'newton': must be one of lbfgs, bfgs, cg, powell",
        ),
        ({"maxiter": 0}, ValueError, "maxiter = 0: must be >= 1"),
        ({"maxiter": 10.0}, TypeError, "maxiter = 10.0: must be an integer >= 1"),
    ],
)
def test_options_validation(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        RemlOptions(**kwargs)


def test_options_list_becomes_tuple_and_describe() -> None:
    opts = RemlOptions(optimizers=["bfgs", "lbfgs"])  # type: ignore[arg-type]
    assert opts.optimizers == ("bfgs", "lbfgs")
    assert RemlOptions(ci="t", level=0.9).describe() == "REML, 90% t (df = K - p) intervals"


@pytest.mark.parametrize("data", ["sleepstudy", "typical", "zero random effects"])
@pytest.mark.parametrize("method", ["reml", "ml"])
def test_variance_se_positive_or_nan(sleep: LMMData, data: str, method: str) -> None:
    if data == "sleepstudy":
        d = sleep
    else:
        d = simulate(1) if data == "typical" else simulate(2, sd=(0.0, 0.0))
    fit = RemlEngine(RemlOptions(method=method)).fit(d)
    assert fit.converged, fit.message
    ran = np.asarray(fit.effects) == RAN_PARS
    se = fit.std_error[ran]
    assert np.all(np.isnan(se) | (se > 0)), se
    if data == "zero random effects":
        # the estimate sits on the boundary (here cor = -1): singular, and no Wald SE
        # for the correlation (the SDs, not at 0, keep theirs)
        assert fit.singular
        assert abs(values(fit)["cor__(Intercept).X"]) == pytest.approx(1.0, abs=1e-6)
        assert np.isnan(se[2]) and np.all(np.isfinite(se[[0, 1, 3]]))
    else:
        assert not fit.singular and np.all(np.isfinite(se))


def _loglik(data: LMMData, theta: np.ndarray, reml: bool) -> float:
    """Independent (restricted) log-likelihood in (D00, D10, D11, sigma^2), K x q x q work.

    With M_i = X_i'X_i + s2 D^-1: V_i^-1 = (I - X_i M_i^-1 X_i') / s2 and
    log|V_i| = log|M_i| + log|D| + (n_i - q) log s2.
    """
    d00, d10, d11, s2 = theta
    D = np.array([[d00, d10], [d10, d11]])
    XtX, Xty, q = data.XtX, data.Xty, data.q
    Minv = np.linalg.inv(XtX + s2 * np.linalg.inv(D))
    XtVX = (XtX - XtX @ Minv @ XtX).sum(axis=0) / s2
    XtVy = (Xty - np.einsum("kij,kjl,kl->ki", XtX, Minv, Xty)).sum(axis=0) / s2
    b = np.linalg.solve(XtVX, XtVy)
    Xtr = Xty - XtX @ b
    rtr = data.yty - 2 * Xty @ b + np.einsum("i,kij,j->k", b, XtX, b)
    quad = (rtr - np.einsum("ki,kij,kj->k", Xtr, Minv, Xtr)).sum() / s2
    logdet = (
        -np.linalg.slogdet(Minv)[1].sum()
        + data.n_groups * np.linalg.slogdet(D)[1]
        + (data.n - q).sum() * np.log(s2)
    )
    n_eff = data.n_obs - q if reml else data.n_obs
    extra = np.linalg.slogdet(XtVX)[1] if reml else 0.0
    return float(-0.5 * (logdet + quad + extra + n_eff * np.log(2 * np.pi)))


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_cor_se_matches_full_likelihood_hessian(
    sleep: LMMData, fits: dict[str, FitResult], method: str
) -> None:
    """The delta-method correlation SE agrees with a numerical Hessian of the full likelihood."""
    fit, reml = fits[method], method == "reml"
    est = values(fit)
    s0, s1, rho, sigma = (est[t] for t in RAN_TERMS)
    theta = np.array([s0**2, rho * s0 * s1, s1**2, sigma**2])
    assert -2 * _loglik(sleep, theta, reml) == pytest.approx(fit.criterion, rel=1e-10)
    h = 1e-3 * np.abs(theta)  # smaller steps drown in rounding error
    H = np.empty((4, 4))
    for i in range(4):
        for j in range(4):
            ei, ej = np.eye(4)[i] * h[i], np.eye(4)[j] * h[j]
            f = [_loglik(sleep, theta + a * ei + b * ej, reml) for a, b in ((1, 1), (1, -1))]
            g = [_loglik(sleep, theta + a * ei + b * ej, reml) for a, b in ((-1, 1), (-1, -1))]
            H[i, j] = (f[0] - f[1] - g[0] + g[1]) / (4 * h[i] * h[j])
    cov = np.linalg.inv(-H)
    grad = np.array([-rho / (2 * theta[0]), 1 / (s0 * s1), -rho / (2 * theta[2]), 0.0])
    expected = np.sqrt(grad @ cov @ grad)
    assert values(fit, "std_error")["cor__(Intercept).Days"] == pytest.approx(expected, rel=1e-4)
    # and the SDs' (delta method from the variances): d sd / d var = 1 / (2 sd)
    se = values(fit, "std_error")
    for k, (term, v) in enumerate(
        (("sd__(Intercept)", 0), ("sd__Days", 2), ("sd__Observation", 3))
    ):
        g = np.zeros(4)
        g[v] = 1 / (2 * np.sqrt(theta[v]))
        assert se[term] == pytest.approx(np.sqrt(g @ cov @ g), rel=1e-4), (k, term)


def test_start_values_positive_definite_and_help(sleep: LMMData) -> None:
    psi0, sigma2 = start_covariance(sleep)
    assert np.all(np.linalg.eigvalsh(psi0) > 0) and sigma2 > 0
    fit = RemlEngine().fit(simulate(3))
    assert fit.converged and extra(fit, "iterations") <= 5


def test_result_is_small_and_picklable(fits: dict[str, FitResult]) -> None:
    fit = fits["reml"]
    assert set(fit.extra) == {"iterations", "gradient", "optimizer_index"}
    assert all(isinstance(v, float) for v in fit.extra.values())
    again = pickle.loads(pickle.dumps(fit))
    np.testing.assert_array_equal(again.estimate, fit.estimate)
