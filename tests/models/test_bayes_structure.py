"""The Bayesian engine and the numpy log-likelihood with random-effects structures Z != X.

Four structures besides the all-slopes model: ``(1 | g)`` with q = 2, ``(x || g)``
(uncorrelated, no LKJ parameters), ``(x | g)`` in a model with a second fixed predictor
``w`` (q = 3, r = 2) and ``(0 + x | g)``.  For each, the PyMC graph's log-likelihood
(both algebras, at points of the model's own parameter space) equals
``models.loglik.marginal_loglik``, which equals a dense multivariate normal with
``V = Z D Z' + sigma^2 I``; the latent models' densities agree with it through
``p(y | theta) = p(y | u, theta) p(u | theta) / p(u | y, theta)``; prior draws follow
the structure; a random-intercept fit of sleepstudy lands on lme4's REML values; a
compiled model is shared by datasets of one structure.  Fixed seeds throughout.
"""

from __future__ import annotations

import tomllib
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
from helpers import DATA, constant_predictor
from scipy import stats

from models.base import FitResult
from models.bayes import BayesEngine, BayesOptions, BayesPriors
from models.bayes.graph import (
    add_priors,
    build_latent,
    build_marginal,
    draw_random_effects,
)
from models.bayes.marginal import pack_stats
from models.bayes.prior import draw_prior
from models.bayes.scaled_priors import scaled_priors
from models.bayes.start import moment_estimates, start_region
from models.data import LMMData
from models.loglik import marginal_loglik as np_loglik
from models.structure import INTERCEPT, Structure
from models.validate import OptionError

FIXED2 = (INTERCEPT, "x")
FIXED3 = (INTERCEPT, "x", "w")
FIXED_SLEEP = (INTERCEPT, "Days")
STRUCTURES = {
    "(1|g)": Structure(FIXED2, (INTERCEPT,)),
    "(x||g)": Structure(FIXED2, FIXED2, correlated=False),
    "(x|g) q=3": Structure(FIXED3, FIXED2),
    "(0+x|g)": Structure(FIXED2, ("x",)),
    "(0+x|g)+(1|g)": Structure(FIXED2, ("x", INTERCEPT), correlated=False),
}
#: per-comparison KS level, as in test_bayes_prior.py (about 10 comparisons here)
KS_LEVEL = 1e-4


def simulate(rng: np.random.Generator, structure: Structure, n_groups: int = 6) -> LMMData:
    """Small unbalanced dataset (group sizes 1..7) from the model of ``structure``."""
    sizes = rng.integers(1, 8, size=n_groups)
    group = np.repeat(np.arange(n_groups), sizes)
    n = group.size
    X = np.column_stack([np.ones(n), rng.normal(1.0, 2.0, size=(n, structure.q - 1))])
    u = rng.normal(0.0, 0.8, size=(n_groups, structure.r))
    Z = X[:, list(structure.index)]
    y = X @ rng.normal(size=structure.q) + np.sum(Z * u[group], axis=1)
    y = y + 0.6 * rng.standard_normal(n)
    return LMMData(y, X, group, structure.predictors, structure=structure)


def dense_loglik(terms: np.ndarray, data: LMMData) -> float:
    """Sum over groups of N(X_i beta, Z_i D Z_i' + sigma^2 I) log-densities, dense."""
    s = data.structure
    beta, sds, corr, sigma = s.split(terms)
    D = s.covariance(sds, corr)
    total = 0.0
    for i in range(data.n_groups):
        rows = data.group == i
        X, Z, y = data.X[rows], data.Z[rows], data.y[rows]
        cov = Z @ D @ Z.T + sigma**2 * np.eye(len(y))
        total += stats.multivariate_normal(X @ beta, cov).logpdf(y)
    return total


def conditional_u(terms: np.ndarray, data: LMMData) -> tuple[np.ndarray, np.ndarray]:
    """Mean (K, r) and covariance (K, r, r) of u_i | theta, y, dense (D invertible)."""
    s = data.structure
    beta, sds, corr, sigma = s.split(terms)
    D_inv = np.linalg.inv(s.covariance(sds, corr))
    means, covs = [], []
    for i in range(data.n_groups):
        rows = data.group == i
        Z, res = data.Z[rows], data.y[rows] - data.X[rows] @ beta
        cov = np.linalg.inv(Z.T @ Z / sigma**2 + D_inv)
        means.append(cov @ Z.T @ res / sigma**2)
        covs.append(cov)
    return np.array(means), np.array(covs)


def edge_points(rng: np.random.Generator, s: Structure) -> np.ndarray:
    """Prior draws plus an SD of exactly 0 and (correlated r >= 2) a correlation of 1."""
    terms = draw_prior(BayesPriors(), s, rng, size=4)
    sd = slice(s.q, s.q + s.r)
    terms[:, sd] = np.minimum(terms[:, sd], 3.0)  # keep V_i well scaled
    terms[:, -1] = np.clip(terms[:, -1], 0.3, 3.0)
    terms[1, s.q] = 0.0
    if s.pairs:
        terms[3, s.q + s.r : -1] = 1.0  # rank-one correlation matrix
    return terms


@pytest.fixture(scope="module", params=list(STRUCTURES))
def case(request) -> tuple[Structure, LMMData]:
    s = STRUCTURES[request.param]
    return s, simulate(np.random.default_rng(len(request.param) + 10 * s.q), s)


# -- the structure's data and terms -------------------------------------------------------
def test_structures_have_their_terms() -> None:
    assert STRUCTURES["(1|g)"].terms == [INTERCEPT, "x", "sd__(Intercept)", "sd__Observation"]
    uncorrelated = [INTERCEPT, "x", "sd__(Intercept)", "sd__x", "sd__Observation"]
    assert STRUCTURES["(x||g)"].terms == uncorrelated
    assert "cor__(Intercept).x" in STRUCTURES["(x|g) q=3"].terms
    assert STRUCTURES["(0+x|g)"].terms == [INTERCEPT, "x", "sd__x", "sd__Observation"]


# -- the log-likelihood: numpy == dense == the graph ---------------------------------------
def test_numpy_loglik_matches_dense_normal(case) -> None:
    s, data = case
    terms = edge_points(np.random.default_rng(1), s)
    got = np_loglik(terms, data)
    assert got.shape == (4,)
    for row in range(len(terms)):
        assert got[row] == pytest.approx(dense_loglik(terms[row], data), rel=1e-9)
    with pytest.raises(ValueError, match=f"T = {len(s.terms)} for the structure"):
        np_loglik(terms[:, :-1], data)


@pytest.mark.parametrize("algebra", ["unrolled", "batched"])
def test_graph_loglik_matches_numpy_and_dense(case, algebra: str) -> None:
    """At random points of the model's unconstrained space (and an SD of 0), the
    model's ``loglik`` potential equals the numpy log-likelihood of its ``terms``
    (so the map from the free variables to L and the terms is checked too) and the
    dense normal.  The model's logp is its priors plus that potential."""
    check_graph_loglik(*case, algebra)


def test_kernel_with_uncorrelated_effects_matches_numpy_and_dense() -> None:
    """The q = 2 kernel serves (x || g) too, with L10 held at 0."""
    s = STRUCTURES["(x||g)"]
    check_graph_loglik(s, simulate(np.random.default_rng(3), s), "kernel")


def check_graph_loglik(s: Structure, data: LMMData, algebra: str) -> None:
    model = build_marginal(s, BayesPriors(), algebra, pack_stats(data))
    shapes = {k: np.shape(v) for k, v in model.initial_point().items()}
    expected = {"beta", "sd_log__", "sigma_log__"} | ({"cpc_logodds__"} if s.pairs else set())
    assert set(shapes) == expected
    outs = model.replace_rvs_by_values([model["terms"], model["loglik"]])
    outs += [model.logp(vars=model.free_RVs), model.logp()]
    fn = model.compile_fn(outs, inputs=model.value_vars, mode="FAST_COMPILE")
    rng = np.random.default_rng(7)
    for k in range(4):
        point = {name: rng.normal(0.0, 0.7, size=shape) for name, shape in shapes.items()}
        if k == 3:
            point["sd_log__"][0] = -np.inf  # an SD of exactly 0
        terms, potential, priors, logp = fn(point)
        assert len(terms) == len(s.terms)
        if k == 3:
            assert terms[s.q] == 0.0
        assert float(potential) == pytest.approx(float(np_loglik(terms, data)), rel=1e-9)
        assert float(potential) == pytest.approx(dense_loglik(terms, data), rel=1e-9)
        if k < 3:
            assert float(logp) == pytest.approx(float(priors) + float(potential), rel=1e-12)


@pytest.mark.parametrize(
    ("name", "centered"),
    [("(x|g) q=3", True), ("(1|g)", False), ("(x||g)", True), ("(0+x|g)", False)],
)
def test_latent_models_integrate_to_the_marginal(name: str, centered: bool) -> None:
    """log p(y | u, theta) + log p(u | theta) - log p(u | y, theta) is log p(y | theta)
    at any u: the latent graph (mu = X beta + Z u[group], u's prior) against the
    numpy marginal likelihood, with u | y, theta computed densely."""
    s = STRUCTURES[name]
    data = simulate(np.random.default_rng(40), s, n_groups=5)
    model = build_latent(s, data.n_groups, BayesPriors(), centered, data)
    lp_y = model.logp(vars=[model["y_obs"]])
    terms, u = model.replace_rvs_by_values([model["terms"], model["u"]])
    outs = [terms, u, lp_y]
    if centered:
        outs.append(model.logp(vars=[model["u"]], jacobian=False))
    fn = model.compile_fn(outs, inputs=model.value_vars, mode="FAST_COMPILE")
    shapes = {k: np.shape(v) for k, v in model.initial_point().items()}
    rng = np.random.default_rng(41)
    for _ in range(3):
        point = {k: rng.normal(0.0, 0.5, size=shape) for k, shape in shapes.items()}
        got = fn(point)
        theta, u_val, log_y = got[0], got[1], float(got[2])
        assert u_val.shape == (data.n_groups, s.r)
        _, sds, corr, _ = s.split(theta)
        prior_u = stats.multivariate_normal(np.zeros(s.r), s.covariance(sds, corr))
        log_u = float(np.sum(prior_u.logpdf(u_val)))
        if centered:
            assert float(got[3]) == pytest.approx(log_u, rel=1e-9)
        mean, cov = conditional_u(theta, data)
        log_post = sum(
            stats.multivariate_normal(mean[i], cov[i]).logpdf(u_val[i])
            for i in range(data.n_groups)
        )
        want = float(np_loglik(theta, data))
        assert log_y + log_u - log_post == pytest.approx(want, rel=1e-8)


@pytest.mark.parametrize("name", ["(x|g) q=3", "(0+x|g)"])
def test_random_effects_draws_follow_their_conditional(name: str) -> None:
    """draw_random_effects: u_i | theta, y has the dense conditional mean and covariance
    (8,000 draws at one theta: means within 4.5 Monte Carlo SEs, SDs within 5%)."""
    s = STRUCTURES[name]
    data = simulate(np.random.default_rng(50), s, n_groups=4)
    theta = draw_prior(BayesPriors(), s, np.random.default_rng(51))
    theta[s.q : s.q + s.r] = np.clip(theta[s.q : s.q + s.r], 0.3, 2.0)
    theta[-1] = 0.8
    u = draw_random_effects(np.tile(theta, (8_000, 1)), data, np.random.default_rng(52))
    assert u.shape == (8_000, data.n_groups, s.r)
    mean, cov = conditional_u(theta, data)
    sd = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
    assert np.all(np.abs(u.mean(axis=0) - mean) < 4.5 * sd / np.sqrt(8_000))
    np.testing.assert_allclose(u.std(axis=0), sd, rtol=0.05)


# -- priors ------------------------------------------------------------------------------
def test_prior_draws_follow_the_structure(case) -> None:
    s, _ = case
    draws = draw_prior(BayesPriors(), s, np.random.default_rng(3), size=2_000)
    assert draws.shape == (2_000, len(s.terms))
    assert np.all(draws[:, s.q : s.q + s.r] > 0) and np.all(draws[:, -1] > 0)
    n_cor = len(draws[0]) - s.q - s.r - 1
    assert n_cor == (1 if s.pairs else 0)
    if not s.correlated:
        assert not any(t.startswith("cor__") for t in s.terms)
    engine = BayesEngine()
    np.testing.assert_array_equal(
        engine.draw_prior(s, np.random.default_rng(4)),
        draw_prior(BayesPriors(), s, np.random.default_rng(4)),
    )
    import pymc as pm

    with pm.Model():
        p = add_priors(s, BayesPriors())
    assert (len(p["beta"]), len(p["sds"]), len(p["cors"])) == (s.q, s.r, n_cor)


def test_prior_draws_match_pymc_for_a_subset_structure() -> None:
    """(x | g) with q = 3: per-term KS tests of the numpy draws against pm.draw of the
    model's terms, with per-effect lists; the correlation of LKJ(eta) in r = 2
    dimensions is 2 Beta(eta, eta) - 1 (r, not q: a vine built on q would show)."""
    import pymc as pm

    s = STRUCTURES["(x|g) q=3"]
    priors = BayesPriors(
        fixed_loc=(1.0, -1.0, 0.5),
        fixed_scale=(2.0, 0.5, 1.0),
        sd_family="halfnormal",
        sd_scale=(0.4, 1.5),
        lkj_eta=1.5,
        sigma_family="exponential",
        sigma_scale=0.7,
    )
    ours = draw_prior(priors, s, np.random.default_rng(60), size=20_000)
    with pm.Model():
        terms = add_priors(s, priors)["terms"]
    theirs = pm.draw(terms, draws=4_000, random_seed=61)
    assert ours.shape[1] == theirs.shape[1] == len(s.terms)
    for j, name in enumerate(s.terms):
        p = stats.ks_2samp(ours[:, j], theirs[:, j]).pvalue
        assert p > KS_LEVEL, f"{name}: KS p = {p:.2g}"
    cor = s.terms.index("cor__(Intercept).x")
    for draws in (ours, theirs):
        p = stats.kstest((draws[:, cor] + 1) / 2, stats.beta(1.5, 1.5).cdf).pvalue
        assert p > KS_LEVEL


def test_prior_lists_are_checked_per_effect() -> None:
    s = STRUCTURES["(1|g)"]
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"priors\.sd_scale has 2 values for 1 random effects"):
        draw_prior(BayesPriors(sd_scale=(1.0, 2.0)), s, rng)
    with pytest.raises(ValueError, match=r"priors\.fixed_scale has 3 values for 2 coefficients"):
        draw_prior(BayesPriors(fixed_scale=(1.0, 2.0, 3.0)), s, rng)
    assert draw_prior(BayesPriors(sd_scale=(1.0,)), s, rng).shape == (4,)
    with pytest.raises(OptionError, match=r"priors\.sd_scale = \[1.0, 2.0\]: has 2 values for 1"):
        BayesOptions(priors=BayesPriors(sd_scale=(1.0, 2.0))).check_structure(s)
    BayesOptions(priors=BayesPriors(sd_scale=(1.0,))).check_structure(s)
    q3 = STRUCTURES["(x|g) q=3"]
    BayesOptions(
        priors=BayesPriors(fixed_scale=(1.0, 2.0, 3.0), sd_scale=(1.0, 2.0))
    ).check_structure(q3)
    with pytest.raises(OptionError, match=r"algebra = 'kernel': is for q = 2 with a random"):
        BayesOptions(algebra="kernel").check_structure(STRUCTURES["(1|g)"])
    BayesOptions(algebra="kernel").check_structure(STRUCTURES["(x||g)"])
    BayesOptions(algebra="kernel").check_structure(Structure.full(("x",)))


def test_auto_algebra_keeps_the_kernel_for_q2_with_z_equal_to_x() -> None:
    engine = BayesEngine()
    assert engine._algebra(Structure.full(("x",))) == "kernel"
    # (0 + x | g) + (1 | g): Z = X with its columns swapped is not the kernel's layout
    swapped = Structure(FIXED2, ("x", INTERCEPT), correlated=False)
    assert engine._algebra(swapped) == "unrolled"
    with pytest.raises(OptionError, match="algebra = 'kernel'"):
        BayesOptions(algebra="kernel").check_structure(swapped)
    for name, s in STRUCTURES.items():
        assert engine._algebra(s) == ("kernel" if name == "(x||g)" else "unrolled")
    assert engine._algebra(Structure.full([f"x{j}" for j in range(5)])) == "batched"
    assert engine._algebra(Structure((*FIXED3, "v", "t"), ("x",))) == "unrolled"


# -- starting points and data-scaled priors ------------------------------------------------
def test_start_region_follows_the_structure(case) -> None:
    s, data = case
    region = start_region(data)
    assert region.centre["beta"].shape == (s.q,)
    assert region.centre["sd"].shape == region.width["sd"].shape == (s.r,)
    assert region.centre["cpc"].shape == (len(s.pairs),)
    assert np.all(region.centre["sd"] > 0)


def test_moment_start_with_a_between_group_predictor() -> None:
    """(1 | g) with a predictor constant within groups: no group has a full-rank X_i'X_i,
    so per-group fits of the pooled residuals on Z (the intercept) give the start; with
    K = 300 it lands near the truth (intercept SD 2, sigma 1)."""
    rng = np.random.default_rng(80)
    K, n = 300, 6
    group = np.repeat(np.arange(K), n)
    dose = rng.integers(0, 4, size=K)[group].astype(float)
    X = np.column_stack([np.ones(K * n), dose])
    y = X @ [1.0, 0.5] + 2.0 * rng.standard_normal(K)[group] + rng.standard_normal(K * n)
    data = LMMData(y, X, group, ("dose",), structure=Structure((INTERCEPT, "dose"), (INTERCEPT,)))
    beta, se, D, sigma2 = moment_estimates(data)
    assert D.shape == (1, 1) and se.shape == (2,)
    assert np.all(np.abs(beta - [1.0, 0.5]) < 4 * se), (beta, se)
    assert np.sqrt(D[0, 0]) == pytest.approx(2.0, rel=0.15)
    assert np.sqrt(sigma2) == pytest.approx(1.0, rel=0.1)


def test_scaled_priors_have_one_sd_scale_per_random_effect(sleepstudy: LMMData) -> None:
    full = scaled_priors(sleepstudy)
    for random in [("Days",), (INTERCEPT,), ("Days", INTERCEPT)]:
        table = scaled_priors(sleepstudy.with_structure(Structure(FIXED_SLEEP, random)))
        assert table["fixed_scale"] == full["fixed_scale"]
        assert table["sd_scale"] == [full["sd_scale"][FIXED_SLEEP.index(n)] for n in random]


# -- fits --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sleepstudy() -> LMMData:
    frame = pd.read_csv(DATA / "sleepstudy.csv")
    return LMMData.from_frame(frame, "Reaction", ["Days"], "Subject")


@pytest.fixture(scope="module")
def lme4() -> dict:
    return tomllib.loads((DATA / "lme4_formulas.toml").read_text())


@pytest.fixture(scope="module")
def sleep_engine(sleepstudy: LMMData) -> BayesEngine:
    """Priors scaled to sleepstudy (study fit's), with one SD scale for every random
    effect, so that structures with one or two random effects share the priors and
    differ in the compile cache by their structure alone."""
    table = scaled_priors(sleepstudy)
    table["sd_scale"] = table["sigma_scale"]
    kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}
    priors = BayesPriors(**kwargs)
    return BayesEngine(BayesOptions(priors=priors, random_effects=True, keep_posterior=True))


def sleep_structure(random: tuple[str, ...], correlated: bool = True) -> Structure:
    return Structure(FIXED_SLEEP, random, correlated)


@pytest.fixture(scope="module")
def intercept_fit(sleep_engine: BayesEngine, sleepstudy: LMMData) -> FitResult:
    return sleep_engine.fit(sleepstudy.with_structure(sleep_structure((INTERCEPT,))), seed=1)


def check_near_lme4(fit: FitResult, ref: dict) -> None:
    """Posterior means against lme4's REML estimates, in posterior SDs.

    Fixed effects: within 0.1 SD.  sleepstudy is balanced (every subject has days
    0..9), so the GLS estimate does not depend on the variance parameters and the
    posterior mean of beta is it up to the priors' pull (< 0.001 SD with scales of
    ~50 and ~260) and the Monte Carlo error (ESS > 2,000: SE < 0.025 SD); 0.1 SD is
    four of those.  SDs: within 0.5 SD.  With 18 subjects the posterior of an SD is
    right-skewed, so its mean sits above the REML estimate (a mode) by a third of a
    posterior SD or so (measured 0.27 for sd__(Intercept), 0.13 for sigma in
    (1 | Subject); 0.36 for sd__Days in (Days || Subject)), which 0.5 covers with the
    Monte Carlo error to spare; a wrong likelihood (e.g. a missing log-det, or
    Z = X) moves them by several SDs.
    """
    assert fit.converged, fit.message
    for j, term in enumerate(fit.terms):
        value = ref[term][0] if isinstance(ref[term], list) else ref[term]
        z = abs(fit.estimate[j] - value) / fit.std_error[j]
        assert z < (0.1 if fit.effects[j] == "fixed" else 0.5), (term, fit.estimate[j], value, z)


def test_random_intercept_fit_of_sleepstudy_matches_lme4(intercept_fit: FitResult, lme4) -> None:
    fit = intercept_fit
    assert fit.terms == [INTERCEPT, "Days", "sd__(Intercept)", "sd__Observation"]
    assert fit.effects == ["fixed", "fixed", "ran_pars", "ran_pars"]
    check_near_lme4(fit, lme4["sleepstudy_1"])
    assert np.all(np.asarray(fit.rhat) < 1.01) and fit.divergences == 0
    assert np.all(np.asarray(fit.ess_bulk) > 1000)
    extra: Any = fit.extra
    assert fit.draws is not None and fit.draws.shape == (4, 1000, 4)
    u = extra["random_effects"]
    assert u.shape == (4, 1000, 18, 1) and list(u.effect.values) == [INTERCEPT]
    post = fit.posterior["posterior"]
    assert list(post["u"].effect.values) == [INTERCEPT]


def test_compile_cache_is_per_structure(
    sleep_engine: BayesEngine, sleepstudy: LMMData, intercept_fit: FitResult, lme4
) -> None:
    """Another dataset of the same structure (other names, another K) reuses the
    compiled model; another structure with the same q and priors compiles a new one."""
    engine = sleep_engine
    assert cast(float, intercept_fit.extra["compile_seconds"]) > 0
    cached = len(engine._cache)
    other = simulate(np.random.default_rng(70), STRUCTURES["(1|g)"], n_groups=9)
    assert other.structure.fixed != sleepstudy.structure.fixed  # x, not Days
    assert engine.compile(other) == 0.0 and len(engine._cache) == cached
    uncorrelated = sleepstudy.with_structure(sleep_structure((INTERCEPT, "Days"), False))
    assert engine._key(uncorrelated.structure, 18) != engine._key(other.structure, 18)
    assert engine.compile(uncorrelated) > 0 and len(engine._cache) == cached + 1
    fit = engine.fit(uncorrelated, seed=2)
    assert fit.extra["compile_seconds"] == 0.0
    assert fit.terms == [INTERCEPT, "Days", "sd__(Intercept)", "sd__Days", "sd__Observation"]
    check_near_lme4(fit, lme4["sleepstudy_2"])
    u: Any = fit.extra["random_effects"]
    assert list(u.effect.values) == [INTERCEPT, "Days"]


def test_failed_fit_has_the_structure_terms(sleep_engine: BayesEngine, sleepstudy) -> None:
    data = sleepstudy.with_structure(sleep_structure(("Days",)))
    y = data.y.copy()
    y[3] = np.nan
    bad = LMMData(y, data.X, data.group, data.predictors, data.group_labels, data.structure)
    res = sleep_engine.fit(bad, seed=1)
    assert not res.converged and "non-finite" in res.message
    assert res.terms == [INTERCEPT, "Days", "sd__Days", "sd__Observation"]


def test_bayes_refuses_rank_deficient_design_like_reml() -> None:
    """Review defect 5: a constant predictor is refused before sampling, as REML does."""
    fit = BayesEngine(BayesOptions(draws=20, tune=20)).fit(constant_predictor(), seed=1)
    assert not fit.converged and "rank deficient" in fit.message
    assert np.isnan(fit.estimate).all() and "sampling_seconds" not in fit.extra
