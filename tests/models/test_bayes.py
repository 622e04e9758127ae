"""Tests of the Bayesian engine (models.bayes, models.bayes.graph, models.bayes.sample).

Compiled models are session-scoped: the marginal model (q = 2) is compiled once and
re-used for datasets with different numbers of groups; the latent non-centred model
once for its dataset.  Data are simulated with fixed seeds.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy import stats

from models.base import Engine, term_names
from models.bayes import (
    BayesEngine,
    BayesOptions,
    BayesPriors,
    convergence_message,
    resolve_seed,
    summarise,
)
from models.bayes.graph import add_priors, pairs
from models.bayes.marginal import marginal_loglik, pack_stats
from models.data import LMMData


def simulate(
    rng: np.random.Generator,
    n_groups: int,
    n_each: int,
    beta: tuple[float, ...] = (1.0, 0.5),
    sds: tuple[float, ...] = (0.8, 0.5),
    rho: float = 0.3,
    sigma: float = 1.0,
) -> LMMData:
    """Random intercept and slopes, standard-normal predictors, equal group sizes."""
    q = len(beta)
    n = n_groups * n_each
    X = np.column_stack([np.ones(n), rng.standard_normal((n, q - 1))])
    corr = np.full((q, q), rho) + (1 - rho) * np.eye(q)
    u = rng.multivariate_normal(np.zeros(q), np.outer(sds, sds) * corr, size=n_groups)
    group = np.repeat(np.arange(n_groups), n_each)
    y = np.sum(X * (np.asarray(beta) + u[group]), axis=1) + sigma * rng.standard_normal(n)
    return LMMData(y, X, group, tuple(f"x{j}" for j in range(1, q)))


@pytest.fixture(scope="session")
def small_data() -> LMMData:
    return simulate(np.random.default_rng(11), n_groups=20, n_each=8)


@pytest.fixture(scope="session")
def marginal_engine(small_data: LMMData) -> BayesEngine:
    engine = BayesEngine(BayesOptions(keep_posterior=True, random_effects=True))
    engine.compile(small_data)
    return engine


@pytest.fixture(scope="session")
def noncentered_engine(small_data: LMMData) -> BayesEngine:
    options = BayesOptions(
        parameterization="noncentered", target_accept=0.9, keep_posterior=True, random_effects=True
    )
    engine = BayesEngine(options)
    engine.compile(small_data)
    return engine


@pytest.fixture(scope="session")
def small_fits(marginal_engine, noncentered_engine, small_data):
    return marginal_engine.fit(small_data, seed=2), noncentered_engine.fit(small_data, seed=2)


def _draws(result) -> np.ndarray:
    """(chain, draw, term) draws from the kept posterior."""
    post = result.posterior["posterior"]
    return np.stack([post[name].to_numpy() for name in result.terms], axis=-1)


# -- the likelihood and the priors, without sampling -----------------------------------
@pytest.mark.parametrize("q", [1, 2, 3, 5])
@pytest.mark.parametrize("algebra", ["unrolled", "batched"])
def test_marginal_loglik_matches_dense_normal(q: int, algebra: str) -> None:
    """Sufficient-statistic likelihood == sum of dense N(X beta, Z D Z' + s2 I) log-pdfs."""
    import pytensor
    import pytensor.tensor as pt

    rng = np.random.default_rng(q)
    data = simulate(rng, 5, 7, beta=tuple(rng.normal(size=q)), sds=(1.0,) * q, rho=0.2)
    beta, sigma = rng.normal(size=q), 0.7
    L = np.tril(rng.normal(size=(q, q)))
    np.fill_diagonal(L, np.abs(np.diag(L)) + 0.3)
    dense = 0.0
    for i in range(data.n_groups):
        X, y = data.X[data.group == i], data.y[data.group == i]
        cov = X @ L @ L.T @ X.T + sigma**2 * np.eye(len(y))
        dense += stats.multivariate_normal(X @ beta, cov).logpdf(y)
    S, b, s, Lsym = pt.matrix("S"), pt.vector("b"), pt.scalar("s"), pt.matrix("L")
    rows = [[Lsym[i, j] if j <= i else None for j in range(q)] for i in range(q)]
    ll = marginal_loglik(S, [b[k] for k in range(q)], s, rows, algebra)
    f = pytensor.function([S, b, s, Lsym], ll, mode="FAST_COMPILE")
    assert f(pack_stats(data), beta, sigma, L) == pytest.approx(dense, rel=1e-10)


def test_cpc_prior_is_lkj() -> None:
    """Each correlation of LKJ(eta) in q dims is 2 Beta(a, a) - 1, a = eta - 1 + q/2."""
    import pymc as pm

    q, eta = 3, 2.0
    with pm.Model():
        terms = add_priors(q, BayesPriors(lkj_eta=eta))["terms"]
    draws = pm.draw(terms, draws=5_000, random_seed=5)
    a = eta - 1 + q / 2
    for j in range(len(pairs(q))):
        r = draws[:, 2 * q + j]
        assert stats.kstest((r + 1) / 2, stats.beta(a, a).cdf).pvalue > 1e-3


# -- sampling ----------------------------------------------------------------------------
def test_engine_protocol(marginal_engine: BayesEngine) -> None:
    assert isinstance(marginal_engine, Engine)
    assert marginal_engine.name == "bayes"


def test_marginal_and_noncentered_posteriors_agree(small_fits) -> None:
    """Posterior means within 4 combined Monte Carlo SEs, for every term."""
    import arviz as az

    marg, latent = small_fits
    assert marg.converged, marg.message
    assert latent.converged, latent.message
    mcse_m = np.asarray(az.mcse(_draws(marg)))
    mcse_l = np.asarray(az.mcse(_draws(latent)))
    diff = np.abs(marg.estimate - latent.estimate)
    assert np.all(diff <= 4 * np.sqrt(mcse_m**2 + mcse_l**2)), (diff, mcse_m, mcse_l)
    # posterior SDs: the same posterior sampled twice, so they differ only by Monte Carlo
    # error: within 4 combined MCSEs of the SD (az.mcse method="sd"; 4 MCSEs: a false
    # alarm once in ~16,000 terms if the errors are normal)
    draws_m, draws_l = _draws(marg), _draws(latent)
    sd_m, sd_l = draws_m.std(axis=(0, 1)), draws_l.std(axis=(0, 1))
    np.testing.assert_allclose(marg.std_error, sd_m, rtol=1e-3)  # the reported SD is it
    np.testing.assert_allclose(latent.std_error, sd_l, rtol=1e-3)
    mcse_sd = np.hypot(
        np.asarray(az.mcse(draws_m, method="sd")), np.asarray(az.mcse(draws_l, method="sd"))
    )
    assert np.all(np.abs(sd_m - sd_l) <= 4 * mcse_sd), (sd_m - sd_l, mcse_sd)


def test_conditional_random_effects_match_latent(small_fits) -> None:
    """u_i | theta, y drawn after the marginal fit agrees with the latent model's u."""
    import arviz as az

    marg, latent = small_fits
    u_m = marg.extra["random_effects"].to_numpy()
    u_l = latent.extra["random_effects"].to_numpy()
    assert u_m.shape == u_l.shape == (4, 1000, 20, 2)
    mcse = np.sqrt(np.asarray(az.mcse(u_m)) ** 2 + np.asarray(az.mcse(u_l)) ** 2)
    diff = np.abs(u_m.mean(axis=(0, 1)) - u_l.mean(axis=(0, 1)))
    assert np.all(diff <= 5 * mcse)
    # their SDs within 5 combined MCSEs of the SD (40 values: 5, as for the means)
    mcse_sd = np.hypot(np.asarray(az.mcse(u_m, method="sd")), np.asarray(az.mcse(u_l, method="sd")))
    sd_diff = np.abs(u_m.std(axis=(0, 1)) - u_l.std(axis=(0, 1)))
    assert np.all(sd_diff <= 5 * mcse_sd), (sd_diff, mcse_sd)


def test_posterior_near_truth_large_k(marginal_engine: BayesEngine) -> None:
    """K = 200 (a different K from the compiled model's: no recompilation)."""
    data = simulate(np.random.default_rng(7), n_groups=200, n_each=10)
    assert marginal_engine.compile(data) == 0.0
    res = marginal_engine.fit(data, seed=3)
    assert res.converged, res.message
    truth = np.array([1.0, 0.5, 0.8, 0.5, 0.3, 1.0])  # term_names order
    z = (res.estimate - truth) / res.std_error
    assert np.all(np.abs(z) < 3), z
    assert np.all((res.ci_lower < truth) & (truth < res.ci_upper))
    assert res.terms == term_names(("x1",))[0]
    assert np.all(res.rhat < 1.01) and np.all(res.ess_bulk > 1000) and res.divergences == 0


def test_same_seed_same_draws(marginal_engine: BayesEngine, small_data: LMMData) -> None:
    a = marginal_engine.fit(small_data, seed=123)
    b = marginal_engine.fit(small_data, seed=123)
    c = marginal_engine.fit(small_data, seed=124)
    assert np.array_equal(_draws(a), _draws(b))
    assert np.array_equal(a.estimate, b.estimate)
    assert not np.array_equal(a.estimate, c.estimate)
    assert a.extra["seed"] == 123
    np.testing.assert_array_equal(
        a.extra["random_effects"].to_numpy(), b.extra["random_effects"].to_numpy()
    )


def test_nan_data_recorded_not_raised(marginal_engine: BayesEngine, small_data) -> None:
    y = small_data.y.copy()
    y[5] = np.nan
    res = marginal_engine.fit(LMMData(y, small_data.X, small_data.group, ("x1",)), seed=1)
    assert not res.converged
    assert "non-finite" in res.message
    assert np.all(np.isnan(res.estimate)) and len(res.estimate) == 6


def test_sampler_error_recorded_not_raised(small_data: LMMData) -> None:
    # priors no other test uses, so the broken entry in the process-wide cache of
    # compiled models cannot leak into other tests (and it is removed afterwards)
    engine = BayesEngine(BayesOptions(priors=BayesPriors(lkj_eta=3.7)))
    key = engine._key(small_data.q, small_data.n_groups)
    engine._cache[key] = object()  # broken model
    try:
        res = engine.fit(small_data, seed=1)
    finally:
        del engine._cache[key]
    assert not res.converged and "AttributeError" in res.message
    assert np.isfinite(res.fit_seconds)


def test_engine_pickles_without_cache(marginal_engine: BayesEngine) -> None:
    # a pickled engine carries its options only; compiled models stay in the process
    assert marginal_engine.__getstate__() == {"options": marginal_engine.options}
    clone = pickle.loads(pickle.dumps(marginal_engine))
    assert clone.options == marginal_engine.options


# -- summaries and validation, without sampling -----------------------------------------
def test_summarise_point_and_interval_choices() -> None:
    rng = np.random.default_rng(0)
    draws = np.stack([rng.gamma(2.0, size=(4, 500)), rng.normal(size=(4, 500))], axis=-1)
    flat = draws.reshape(-1, 2)
    eti = summarise(draws, level=0.9)
    np.testing.assert_allclose(eti["estimate"], flat.mean(axis=0))
    np.testing.assert_allclose(eti["ci_lower"], np.quantile(flat, 0.05, axis=0))
    np.testing.assert_allclose(eti["std_error"], flat.std(axis=0, ddof=1))
    hdi = summarise(draws, level=0.9, point="median", interval="hdi")
    np.testing.assert_allclose(hdi["estimate"], np.median(flat, axis=0))
    width = hdi["ci_upper"] - hdi["ci_lower"]
    assert width[0] < (eti["ci_upper"] - eti["ci_lower"])[0]  # skewed: HDI is shorter
    assert hdi["ci_lower"][0] < eti["ci_lower"][0]


def test_convergence_message_names_reasons() -> None:
    terms = ["a", "b"]
    ok = {"rhat": np.array([1.0, 1.005]), "ess_bulk": np.array([900.0, 800.0])}
    assert convergence_message(ok, 0, terms, 400) == ""
    bad = {"rhat": np.array([1.0, 1.2]), "ess_bulk": np.array([90.0, 800.0])}
    msg = convergence_message(bad, 3, terms, 400)
    assert (
        "R-hat 1.200 > 1.01 (b)" in msg and "3 divergent" in msg and "ESS_bulk 90 < 400 (a)" in msg
    )
    nan = {"rhat": np.array([np.nan, 1.0]), "ess_bulk": np.array([np.nan, 800.0])}
    assert "R-hat" in convergence_message(nan, 0, terms, 400)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"parameterization": "latent"},
            ValueError,
            "parameterization = 'latent': must be one of marginal",
        ),
        ({"sampler": "stan"}, ValueError, "sampler = 'stan': must be one of nutpie, pymc"),
        ({"chains": 0}, ValueError, "chains = 0: must be >= 1"),
        ({"chains": 2.0}, TypeError, r"chains = 2.0: must be an integer >= 1"),
        ({"level": 1.5}, ValueError, "level = 1.5: must be > 0 and < 1"),
        ({"target_accept": 1.0}, ValueError, "target_accept = 1.0: must be > 0 and < 1"),
        ({"point": "mode"}, ValueError, "point = 'mode': must be one of mean, median"),
        ({"interval": "hpd"}, ValueError, "interval = 'hpd': must be one of eti, hdi"),
        ({"ess_floor": -1}, ValueError, "ess_floor = -1: must be >= 0"),
        ({"priors": {"lkj_eta": 1}}, TypeError, "priors = .*: must be a BayesPriors"),
        ({"keep_posterior": 1}, TypeError, "keep_posterior = 1: must be true or false"),
        ({"fastmath": "yes"}, TypeError, "fastmath = 'yes': must be true or false"),
        ({"algebra": "dense"}, ValueError, "algebra = 'dense': must be one of auto"),
    ],
)
def test_options_validation(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        BayesOptions(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"sd_scale": -1.0}, ValueError, "sd_scale = -1.0: must be > 0"),
        ({"lkj_eta": 0}, ValueError, "lkj_eta = 0: must be > 0"),
        ({"sd_family": "cauchy"}, ValueError, "sd_family = 'cauchy': must be one of halfnormal"),
        ({"fixed_scale": "10"}, TypeError, "fixed_scale = '10': must be a number"),
        ({"fixed_loc": float("nan")}, ValueError, "fixed_loc = nan: must be finite"),
    ],
)
def test_priors_validation(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        BayesPriors(**kwargs)


def test_seed_validation() -> None:
    assert resolve_seed(np.int64(5)) == 5
    assert 0 <= resolve_seed(None) < 2**63
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*64\); got -1"):
        resolve_seed(-1)
    with pytest.raises(TypeError, match="seed must be an int or None"):
        resolve_seed(1.5)
    with pytest.raises(TypeError, match="options must be a BayesOptions"):
        BayesEngine({"draws": 10})  # type: ignore[arg-type]


@pytest.mark.slow
def test_pymc_sampler_agrees_with_nutpie(small_fits, small_data: LMMData) -> None:
    """pm.sample on the marginal model gives the same posterior means as nutpie."""
    import arviz as az

    marg, _ = small_fits
    res = BayesEngine(BayesOptions(sampler="pymc", keep_posterior=True)).fit(small_data, seed=4)
    assert res.converged, res.message
    mcse = np.sqrt(np.asarray(az.mcse(_draws(marg))) ** 2 + np.asarray(az.mcse(_draws(res))) ** 2)
    assert np.all(np.abs(res.estimate - marg.estimate) <= 4 * mcse)


def test_posterior_means_close_to_reml_on_large_k(marginal_engine: BayesEngine) -> None:
    """With K = 150 groups the likelihood dominates the weak priors: posterior means of
    the fixed effects and SDs sit within 0.25 posterior SDs of the REML estimates (the
    two differ by O(1/K) in SD units)."""
    from models.reml import RemlEngine

    data = simulate(np.random.default_rng(5), n_groups=150, n_each=10)
    bayes = marginal_engine.fit(data, seed=3)
    reml = RemlEngine().fit(data)
    assert bayes.converged and reml.converged
    for k in (0, 1, 2, 3, 5):  # fixed effects, sd__ terms, residual SD
        z = abs(bayes.estimate[k] - reml.estimate[k]) / bayes.std_error[k]
        assert z < 0.25, (bayes.terms[k], z)
    # posterior SDs of fixed effects close to REML's SEs
    np.testing.assert_allclose(bayes.std_error[:2], reml.std_error[:2], rtol=0.1)


def test_scaled_priors_follow_the_data_scale() -> None:
    from models.bayes.scaled_priors import scaled_priors

    rng = np.random.default_rng(0)
    base = simulate(rng, n_groups=10, n_each=6)
    big = LMMData(100 * base.y, base.X, base.group, base.predictors)
    p1, p100 = scaled_priors(base), scaled_priors(big)
    np.testing.assert_allclose(np.array(p100["fixed_scale"]), 100 * np.array(p1["fixed_scale"]))
    assert p100["sigma_scale"] == pytest.approx(100 * p1["sigma_scale"])
    assert p1["fixed_loc"][1:] == [0.0]
    BayesPriors(**{k: tuple(v) if isinstance(v, list) else v for k, v in p1.items()})
    with pytest.raises(ValueError, match=r"fixed_scale\[1\] = -2.0: must be > 0"):
        BayesPriors(fixed_scale=(1.0, -2.0))


_REPLAY = """
import sys
import numpy as np
sys.path.insert(0, {root!r})
from models.bayes import BayesEngine
from models.data import LMMData
rng = np.random.default_rng(11)
X = np.column_stack([np.ones(160), rng.standard_normal(160)])
group = np.repeat(np.arange(20), 8)
y = X @ [1.0, 0.5] + rng.standard_normal(20)[group] + rng.standard_normal(160)
res = BayesEngine().fit(LMMData(y, X, group, ("x1",)), seed=9)
print(" ".join(float(v).hex() for v in res.estimate))
"""


@pytest.mark.slow
def test_same_seed_same_draws_across_processes(tmp_path) -> None:
    """A cold (fresh compile cache) and a warm process give bit-identical estimates."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={tmp_path / 'pytensor'}"}
    code = _REPLAY.format(root=root)
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    ]
    assert runs[0] and runs[0] == runs[1]


def test_summarise_diagnostics_match_arviz_summary() -> None:
    """Stored R-hat, ESS bulk and ESS tail equal az.summary's for the same draws (its
    tail ESS uses quantiles 0.11 and 0.89, arviz-stats' default stats.ci_prob, not
    5%/95%: the old code stored 2367 where az.summary says 1823).  A user's rcParams do
    not change what is stored."""
    import arviz as az

    rng = np.random.default_rng(20240611)
    chains, n, phi = 4, 1000, np.array([0.5, 0.8, 0.3])
    draws = np.empty((chains, n, 3))
    draws[:, 0] = rng.standard_normal((chains, 3))
    eps = rng.standard_normal((chains, n, 3))
    for t in range(1, n):  # AR(1) chains with unit marginal variance
        draws[:, t] = phi * draws[:, t - 1] + np.sqrt(1 - phi**2) * eps[:, t]
    draws[..., 2] += np.array([0.0, 0.2, 0.4, 0.6])[:, None]  # chains disagree on term 2
    names = ["a", "b", "c"]
    tree = az.from_dict({"posterior": {name: draws[..., j] for j, name in enumerate(names)}})
    ours = summarise(draws, level=0.9)
    ref = az.summary(tree, kind="diagnostics", round_to="none").loc[names]
    assert ours["rhat"][2] > 1.01
    with az.rc_context({"stats.ci_prob": 0.94}):
        np.testing.assert_array_equal(summarise(draws, level=0.9)["ess_tail"], ours["ess_tail"])
    for key, col in (("rhat", "r_hat"), ("ess_bulk", "ess_bulk"), ("ess_tail", "ess_tail")):
        np.testing.assert_allclose(ours[key], ref[col].to_numpy(dtype=float), rtol=1e-12)
