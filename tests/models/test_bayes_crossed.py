"""Tests of the Bayesian engine on several random terms (models.bayes.crossed, .woodbury).

Data: ``tests/data/crossed.csv`` (24 subjects x 16 items, the project's shared data) and
``nested.csv`` (12 schools x 3 classes x 8 pupils); REML references from
``tests/data/lme4_crossed.toml`` (lme4 1.1-31, as its header says).  The likelihood is
checked against a dense multivariate normal with the explicit N x N covariance, its
gradient against finite differences.  The two crossed models are compiled once for the
module (``engine``) and fitted once each with the default options (``fits``); the fits
of the simulated datasets are behind the ``slow`` marker.
"""

from __future__ import annotations

import pickle
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.linalg as sl
from scipy import stats

from models.bayes import BayesEngine, BayesOptions, BayesPriors
from models.bayes import crossed as bx
from models.bayes import woodbury as wb
from models.bayes.scaled_priors import describe_priors, scaled_priors
from models.crossed import CrossedData, CrossedStructure, crossed_problem
from models.formula import model_data
from models.validate import OptionError

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
FRAME = pd.read_csv(DATA_DIR / "crossed.csv")
NESTED = pd.read_csv(DATA_DIR / "nested.csv")
REF = tomllib.loads((DATA_DIR / "lme4_crossed.toml").read_text())
FORMULAS = {"max": REF["max"]["formula"], "int": REF["int"]["formula"]}


def crossed(formula: str, frame: pd.DataFrame = FRAME) -> CrossedData:
    data, dropped = model_data(frame, formula)
    assert isinstance(data, CrossedData) and dropped == 0
    return data


def dense_loglik(data: CrossedData, values: np.ndarray) -> float:
    """log N(y; X beta, Z G Z' + sigma^2 I) with the explicit N x N covariance."""
    beta, covs, sigma = data.structure.split(values)
    blocks = [
        np.kron(np.eye(k), sds[:, None] * corr * sds[None, :])
        for (sds, corr), k in zip(covs, data.levels, strict=True)
    ]
    Z = data.Z.toarray()
    V = Z @ sl.block_diag(*blocks) @ Z.T + sigma**2 * np.eye(data.n_obs)
    return float(stats.multivariate_normal(data.X @ beta, V).logpdf(data.y))


def random_values(structure: CrossedStructure, rng: np.random.Generator) -> np.ndarray:
    """Term values: beta ~ N(0, 1), SDs in (0.1, 1.5), a random correlation matrix per
    correlated term (rows of a random lower-triangular factor scaled to unit length)."""
    out = list(rng.normal(size=structure.q))
    for b in structure.bars:
        out += list(rng.uniform(0.1, 1.5, size=b.r))
        if b.pairs:
            Lc = np.tril(rng.normal(size=(b.r, b.r)))
            Lc /= np.linalg.norm(Lc, axis=1, keepdims=True)
            corr = Lc @ Lc.T
            out += [corr[i, k] for i, k in b.pairs]
    return np.array([*out, rng.uniform(0.5, 1.5)])


def kernel_inputs(data: CrossedData) -> list[np.ndarray]:
    """The named arrays of ``woodbury.loglik_grad`` for ``data``, then head and cols."""
    plan = bx.plan_of(data)
    arrays = bx.cross_products(data)
    head = np.array([wb.t_offsets(plan.r)[plan.first]])
    cols = wb.layout_columns(plan.r, plan.levels, plan.first)
    return [arrays[k] for k in wb.DATA] + [head, cols]


def three_factors() -> CrossedData:
    """Subjects x items with a third factor (blocks of 4 items) and three correlated
    effects by subject: the rest block holds two terms, the first has r = 3."""
    frame = FRAME.assign(block=[f"b{int(i[1:]) // 5}" for i in FRAME["item"]])
    return crossed("y ~ cond + x + (1 + cond + x | subj) + (1 | item) + (0 + cond | block)", frame)


CASES = {
    "max": lambda: crossed(FORMULAS["max"]),
    "int": lambda: crossed(FORMULAS["int"]),
    "uncorrelated": lambda: crossed("y ~ cond + (cond || subj) + (1 | item)"),
    "unbalanced": lambda: crossed(FORMULAS["max"], FRAME.iloc[::3].iloc[:-7]),
    "nested": lambda: crossed("y ~ x + (1 + x | school) + (1 | school:class)", NESTED),
    "three": three_factors,
}


# -- the likelihood --------------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_woodbury_equals_the_dense_multivariate_normal(case):
    data = CASES[case]()
    rng = np.random.default_rng(5)
    for _ in range(3):
        values = random_values(data.structure, rng)
        ref = dense_loglik(data, values)
        assert bx.loglik_at(data, values) == pytest.approx(ref, abs=1e-8)
        theta = bx.theta_of(data.structure, values)
        python, _ = wb.loglik_grad(*kernel_inputs(data), theta)
        assert python == pytest.approx(ref, abs=1e-8)


@pytest.mark.parametrize("case", ["max", "nested", "three"])
def test_gradient_matches_finite_differences(case):
    data = CASES[case]()
    inputs = kernel_inputs(data)
    theta = bx.theta_of(data.structure, random_values(data.structure, np.random.default_rng(8)))
    # every entry of each T_f, the structural zeros above the diagonal included
    theta[data.q : -1] += np.random.default_rng(9).uniform(-0.3, 0.3, theta.size - data.q - 1)
    _, grad = wb.loglik_grad(*inputs, theta)
    flat, ints = bx.pack(data)[bx.DATA], bx.ints_of(bx.plan_of(data))
    logp_c, grad_c = wb.loglik_grad_compiled(flat, ints, theta)
    assert logp_c == pytest.approx(wb.loglik_grad(*inputs, theta)[0], abs=1e-9)
    np.testing.assert_allclose(grad_c, grad, rtol=1e-9, atol=1e-9)
    eps = 1e-6
    fd = np.empty_like(theta)
    for i in range(theta.size):
        up, down = theta.copy(), theta.copy()
        up[i] += eps
        down[i] -= eps
        fd[i] = (wb.loglik_grad(*inputs, up)[0] - wb.loglik_grad(*inputs, down)[0]) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5 * np.abs(fd).max())


def test_the_model_potential_is_the_kernel_and_not_positive_definite_is_minus_inf():
    import pytensor
    import pytensor.tensor as pt

    data = CASES["max"]()
    plan = bx.plan_of(data)
    theta = pt.dvector("theta")
    flat = pt.constant(bx.pack(data)[bx.DATA])
    out = wb.crossed_loglik_op(flat, pt.constant(bx.ints_of(plan)), theta)[0]
    fn = pytensor.function([theta], [out, pytensor.grad(out, theta)], mode="NUMBA")
    values = random_values(data.structure, np.random.default_rng(2))
    logp, grad = fn(bx.theta_of(data.structure, values))
    assert logp == pytest.approx(dense_loglik(data, values), abs=1e-8)
    assert grad.shape == (data.q + 8 + 1,) and np.isfinite(grad).all()
    bad = bx.theta_of(data.structure, values)
    bad[-1] = -1.0  # sigma^2 < 0
    logp, grad = fn(bad)
    assert logp == -np.inf and np.isnan(grad).all()


def test_elimination_order_and_layout():
    plan = bx.plan_of(three_factors())
    assert plan.r == (3, 1, 1) and plan.levels == (24, 16, 4)
    assert plan.first == 0 and plan.rest == (1, 2)
    cols = wb.layout_columns(plan.r, plan.levels, plan.first)
    # rest block: 16 item intercepts then 4 block slopes; T offsets 0 (3x3), 9, 10
    assert cols.shape == (20, 4)
    assert tuple(cols[0]) == (9, 1, 0, 0) and tuple(cols[15]) == (9, 1, 15, 0)
    assert tuple(cols[16]) == (10, 1, 16, 0)


# -- fits of crossed.csv ---------------------------------------------------------------
@pytest.fixture(scope="module")
def datasets() -> dict[str, CrossedData]:
    return {key: crossed(formula) for key, formula in FORMULAS.items()}


@pytest.fixture(scope="module")
def engine(datasets) -> BayesEngine:
    engine = BayesEngine(BayesOptions())
    for data in datasets.values():
        engine.compile(data)
    return engine


@pytest.fixture(scope="module")
def fits(engine, datasets):
    """Default options (4 chains x 1000 draws after 1000 tuning draws)."""
    return {key: engine.fit(data, seed=20261125) for key, data in datasets.items()}


@pytest.mark.parametrize("key", list(FORMULAS))
def test_converged_with_the_default_options(fits, key):
    fit = fits[key]
    assert fit.converged and fit.message == ""
    assert np.max(fit.rhat) <= 1.01
    assert fit.divergences == 0 and fit.restarts == 0
    assert np.min(fit.ess_bulk) >= 400


@pytest.mark.parametrize("key", list(FORMULAS))
def test_result_has_the_terms_in_order_and_intervals_around_the_estimates(fits, datasets, key):
    fit, data = fits[key], datasets[key]
    assert fit.terms == data.structure.terms and fit.effects == data.structure.effects
    for name in ("estimate", "std_error", "ci_lower", "ci_upper", "rhat", "ess_bulk", "ess_tail"):
        assert np.isfinite(getattr(fit, name)).all(), name
    assert np.all(fit.ci_lower < fit.estimate) and np.all(fit.estimate < fit.ci_upper)
    assert np.all(fit.std_error > 0)
    assert fit.nobs == 384 and fit.ngroups == 16 and fit.optimizer == "nutpie"
    assert fit.draws.shape == (4, 1000, len(fit.terms))
    tidy = fit.tidy(diagnostics=True)
    assert list(tidy["term"]) == fit.terms
    assert fit.glance()["sigma"].iloc[0] == fit.estimate[-1]


@pytest.mark.parametrize("key", list(FORMULAS))
def test_posterior_agrees_with_reml(fits, key):
    """Tolerances, in posterior SDs (the posterior's own scale):

    * beta: the posterior mean averages the GLS estimate over the variance parameters'
      posterior, while REML (lme4) gives GLS at their mode; with the fixed effects'
      Normal(0, 10) prior nearly flat the two differ by a few hundredths of a posterior
      SD (here 0.00 to 0.02), and the Monte Carlo error of the mean is SD / sqrt(ESS) <
      0.03 SD (ESS >= 2,000 here): |mean - REML| < 0.1 SD;
    * beta's posterior SD against the REML SE: it carries the variance parameters'
      uncertainty too (ratio 1.0 to 1.1 here), and its Monte Carlo error is about
      1 / sqrt(2 ESS) < 2%: between 0.95 and 1.3 times the SE;
    * the SDs: REML is the mode of the restricted likelihood, the posterior mean of a
      scale parameter sits above its mode (right skew, and the half-t prior's pull),
      by 0.1 to 0.45 SD here (most for sd__cond|item, 0.15 by REML, the least
      identified): |mean - REML| < 1 SD.  Correlations are not compared: LKJ(2)
      shrinks the weakly identified item correlation from REML's 0.52 to a posterior
      mean of 0.11 (posterior SD 0.41).
    """
    fit, ref = fits[key], REF[key]
    for term, row in ref["fixed"].items():
        i = fit.terms.index(term)
        assert abs(fit.estimate[i] - row["estimate"]) < 0.1 * fit.std_error[i], term
        assert 0.95 * row["se"] <= fit.std_error[i] <= 1.3 * row["se"], term
    for term, value in ref["ran_pars"].items():
        if term.startswith("sd__"):
            i = fit.terms.index(term)
            assert abs(fit.estimate[i] - value) < fit.std_error[i], term


def test_fit_tests_decide_from_the_crossed_posterior(engine, datasets, fits):
    fit, out = engine.fit_tests(
        datasets["max"], terms=["cond"], null=[0.0], tests=["interval", "sign"], seed=20261125
    )
    assert fit.terms == fits["max"].terms
    np.testing.assert_array_equal(fit.estimate, fits["max"].estimate)  # same seed, same draws
    i = fit.terms.index("cond")
    assert out["interval"].reject[0] == float(not fit.ci_lower[i] <= 0.0 <= fit.ci_upper[i])
    assert 0.0 <= out["sign"].p_value[0] <= 1.0 and out["sign"].reject[0] == 1.0


def test_a_new_replicate_of_the_design_reuses_the_compiled_model(engine, datasets):
    data = datasets["int"]
    other = data.with_response(data.y[::-1].copy())
    assert engine.compile(other) == 0.0
    short = BayesEngine(BayesOptions(draws=200, tune=300))
    first, again = short.fit(other, seed=3), short.fit(other, seed=3)
    np.testing.assert_array_equal(first.estimate, again.estimate)  # same seed, same draws
    assert first.extra["compile_seconds"] == 0.0  # the cache is per process, not per engine
    kept = short.fit(other, seed=3, keep_posterior=True)
    assert set(kept.posterior["posterior"].data_vars) == set(kept.terms)
    assert pickle.loads(pickle.dumps(short)).options == short.options


# -- refusals --------------------------------------------------------------------------
def refused_datasets() -> dict[str, CrossedData]:
    one_subject = FRAME[FRAME["subj"] == "s01"]
    few = FRAME.iloc[:40]  # 40 rows: 24 subjects x 2 effects = 48 random effects
    return {
        "one level": crossed(FORMULAS["int"], one_subject),
        "too many effects": crossed("y ~ cond + (1 + cond | subj) + (1 | item)", few),
    }


@pytest.mark.parametrize("case", ["one level", "too many effects"])
def test_a_refused_dataset_gives_a_failed_result(case):
    data = refused_datasets()[case]
    problem = crossed_problem(data)
    assert problem
    engine = BayesEngine(BayesOptions(draws=50, tune=50))
    fit = engine.fit(data, seed=1)
    assert not fit.converged and fit.message == problem
    assert fit.terms == data.structure.terms and np.isnan(fit.estimate).all()
    assert fit.nobs == data.n_obs
    fit, out = engine.fit_tests(data, terms=["cond"], null=[0.0], tests=["interval"])
    assert np.isnan(out["interval"].p_value).all() and problem in out["interval"].message


@pytest.mark.parametrize(
    ("options", "word"),
    [
        ({"parameterization": "noncentered"}, "parameterization"),
        ({"random_effects": True}, "random_effects"),
        ({"likelihood": "no-logdet"}, "likelihood"),
        ({"priors": BayesPriors(sd_scale=(1.0, 2.0))}, "sd_scale"),
    ],
)
def test_options_for_one_factor_are_refused_for_crossed_data(datasets, options, word):
    opts = BayesOptions(**options)
    with pytest.raises(OptionError, match=word):
        opts.check_structure(datasets["max"].structure)
    fit = BayesEngine(opts).fit(datasets["max"], seed=1)
    assert not fit.converged and word in fit.message and np.isnan(fit.estimate).all()


# -- priors and starting points --------------------------------------------------------
def test_sd_scale_per_sd_term_and_scaled_priors(datasets):
    data = datasets["max"]
    s = data.structure
    BayesPriors(sd_scale=(1.0, 2.0, 3.0, 4.0)).check_structure(s)
    table = scaled_priors(data)
    s_y, s_c = np.std(data.y, ddof=1), np.std(data.X[:, 1], ddof=1)
    np.testing.assert_allclose(table["sd_scale"], [s_y, s_y / s_c, s_y, s_y / s_c])
    BayesPriors(**table).check_structure(s)
    text = describe_priors(table, s)
    assert "sd__cond|item: half-t(3" in text and "(1 + cond | subj): LKJ(2)" in text


def test_the_model_declares_the_one_factor_priors_per_term(datasets):
    import pymc as pm

    data = datasets["max"]
    plan = bx.plan_of(data)
    priors = BayesPriors(sd_scale=(1.0, 2.0, 3.0, 4.0), lkj_eta=3.0)
    model = bx.build(data.structure, plan, priors, bx.pack(data))
    assert {rv.name for rv in model.free_RVs} == {"beta", "sd", "sigma", "cpc"}
    point = {"beta": np.zeros(2), "sd_log__": np.zeros(4), "sigma_log__": 0.0}
    point["cpc_logodds__"] = np.zeros(2)
    sd_logp = model.compile_logp(vars=[model["sd"]], jacobian=False)(point)
    expected = sum(stats.t(3, scale=sc).logpdf(1.0) + np.log(2) for sc in (1.0, 2.0, 3.0, 4.0))
    assert sd_logp == pytest.approx(expected)
    cpc_logp = model.compile_logp(vars=[model["cpc"]], jacobian=False)(point)
    assert cpc_logp == pytest.approx(2 * stats.beta(3.0, 3.0).logpdf(0.5))
    assert isinstance(model, pm.Model)


def test_start_region_is_near_the_reml_estimates(datasets):
    beta, _se, Ds, sigma2 = bx.moment_estimates(datasets["max"])
    ref = REF["max"]
    for j, term in enumerate(("(Intercept)", "cond")):
        assert abs(beta[j] - ref["fixed"][term]["estimate"]) < 2 * ref["fixed"][term]["se"]
    assert np.sqrt(sigma2) == pytest.approx(ref["ran_pars"]["sd__Observation"], rel=0.1)
    assert np.sqrt(Ds[0][0, 0]) == pytest.approx(ref["ran_pars"]["sd__(Intercept)|subj"], rel=0.3)
    region = bx.start_region(datasets["max"])
    assert region.centre["sd"].shape == (4,) and region.centre["cpc"].shape == (2,)
    assert np.all((region.centre["cpc"] > 0) & (region.centre["cpc"] < 1))


# -- simulated datasets ----------------------------------------------------------------
def simulated_frame(rng: np.random.Generator) -> pd.DataFrame:
    """24 subjects x 16 items, cond +-0.5 Latin square, SDs 0.6 / 0.3 (subject) and
    0.4 / 0.2 (item), correlations 0.3 / 0.2, sigma 1, beta (0, 0.3)."""
    s = np.repeat(np.arange(24), 16)
    i = np.tile(np.arange(16), 24)
    cond = np.where((s + i) % 2 == 0, -0.5, 0.5)

    def cov(a, b, rho):
        return np.array([[a * a, rho * a * b], [rho * a * b, b * b]])

    us = rng.multivariate_normal(np.zeros(2), cov(0.6, 0.3, 0.3), 24)
    ui = rng.multivariate_normal(np.zeros(2), cov(0.4, 0.2, 0.2), 16)
    y = 0.3 * cond + us[s, 0] + us[s, 1] * cond + ui[i, 0] + ui[i, 1] * cond
    y = y + rng.standard_normal(s.size)
    return pd.DataFrame({"subj": s.astype(str), "item": i.astype(str), "cond": cond, "y": y})


@pytest.mark.slow
@pytest.mark.parametrize("key", list(FORMULAS))
def test_converges_on_ten_simulated_datasets(engine, key):
    """The issue's criterion on the crossed preset's design, default options."""
    root = np.random.SeedSequence(27)
    for k, child in enumerate(root.spawn(10)):
        data = crossed(FORMULAS[key], simulated_frame(np.random.default_rng(child)))
        fit = engine.fit(data, seed=k)
        assert fit.converged, (k, fit.message)
        assert np.max(fit.rhat) <= 1.01 and fit.divergences == 0
        assert np.min(fit.ess_bulk) >= 400
