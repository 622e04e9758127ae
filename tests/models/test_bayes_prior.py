"""numpy prior draws (models/bayes/prior.py) and likelihood (models/loglik.py).

Both are numpy re-implementations of what the PyMC model declares (for simulation-based
calibration, where compiling a model per dataset would dominate), so each is checked
against the model itself: the log-likelihood against a dense multivariate normal, the
PyTensor graph and the model's ``loglik`` potential; the prior draws against
``pm.draw`` of the model's ``terms`` by two-sample KS tests.  Fixed seeds throughout,
so every test is deterministic.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from models.base import split_terms, term_names
from models.bayes.graph import add_priors, build_marginal
from models.bayes.marginal import marginal_loglik, pack_stats
from models.bayes.options import BayesPriors
from models.bayes.prior import draw_prior
from models.data import LMMData
from models.loglik import marginal_loglik as np_loglik

#: Per-comparison KS level.  The KS comparisons below number about 80; under a correct
#: implementation the chance that any fails is at most 80 x 1e-4 = 0.8% (Bonferroni),
#: and with fixed seeds the outcome is deterministic, so a chance failure would have
#: shown once when the test was written instead of flaking later.  A stricter level
#: (e.g. 0.001 / 80 ~ 1e-5) would only cost power: at these sample sizes p > 1e-4 still
#: flags a 25% error in a prior scale or an LKJ eta off by 0.5 (test_ks_level_has_power;
#: the smallest p of the matching comparisons is about 0.004).
KS_LEVEL = 1e-4
N_NUMPY, N_PYMC = 20_000, 4_000


def n_terms(q: int) -> int:
    return 2 * q + q * (q - 1) // 2 + 1


def random_data(rng: np.random.Generator, q: int, n_groups: int = 5) -> LMMData:
    """Small unbalanced dataset (group sizes 1..7, some below q) from a random LMM."""
    sizes = rng.integers(1, 8, size=n_groups)
    group = np.repeat(np.arange(n_groups), sizes)
    n = group.size
    X = np.column_stack([np.ones(n), rng.normal(1.0, 2.0, size=(n, q - 1))])
    u = rng.normal(0.0, 0.8, size=(n_groups, q))
    y = np.sum(X * (rng.normal(size=q) + u[group]), axis=1) + 0.6 * rng.standard_normal(n)
    return LMMData(y, X, group, tuple(f"x{j}" for j in range(1, q)))


def edge_points(rng: np.random.Generator, q: int) -> np.ndarray:
    """Prior draws plus edge cases: an SD of exactly 0, and (q > 1) all correlations 1."""
    terms = draw_prior(BayesPriors(), q, rng, size=4)
    terms[:, q : 2 * q] = np.minimum(terms[:, q : 2 * q], 3.0)  # keep V_i well scaled
    terms[:, -1] = np.clip(terms[:, -1], 0.3, 3.0)
    terms[1, q] = 0.0  # intercept SD 0
    terms[2, 2 * q - 1] = 0.0  # last SD 0
    if q > 1:
        terms[3, 2 * q : -1] = 1.0  # rank-one correlation matrix (semi-definite)
    return terms


def dense_loglik(terms: np.ndarray, data: LMMData) -> float:
    """Sum over groups of N(X_i beta, X_i D X_i' + sigma^2 I) log-densities, dense."""
    beta, sds, corr, sigma = split_terms(terms, data.q)
    D = np.outer(sds, sds) * corr
    total = 0.0
    for i in range(data.n_groups):
        X, y = data.X[data.group == i], data.y[data.group == i]
        cov = X @ D @ X.T + sigma**2 * np.eye(len(y))
        total += stats.multivariate_normal(X @ beta, cov).logpdf(y)
    return total


def chol_factor(terms: np.ndarray, q: int) -> np.ndarray:
    """L = diag(sd) chol(C), with a zero column at a zero pivot (C semi-definite)."""
    _, sds, corr, _ = split_terms(terms, q)
    Lc = np.zeros((q, q))
    for j in range(q):
        Lc[j, j] = np.sqrt(max(corr[j, j] - Lc[j, :j] @ Lc[j, :j], 0.0))
        for i in range(j + 1, q):
            off = corr[i, j] - Lc[i, :j] @ Lc[j, :j]
            Lc[i, j] = off / Lc[j, j] if Lc[j, j] > 0 else 0.0
    return sds[:, None] * Lc


# -- the likelihood ---------------------------------------------------------------------
@pytest.mark.parametrize("q", [1, 2, 3])
def test_loglik_matches_dense_normal(q: int) -> None:
    rng = np.random.default_rng(100 + q)
    data = random_data(rng, q)
    terms = edge_points(rng, q)
    got = np_loglik(terms, data)
    assert got.shape == (len(terms),)
    for s in range(len(terms)):
        assert got[s] == pytest.approx(dense_loglik(terms[s], data), rel=1e-8)
        one = np_loglik(terms[s], data)  # one row: a 0-d array
        assert one.shape == () and float(one) == pytest.approx(got[s], rel=1e-12)


@pytest.mark.parametrize("q", [1, 2, 3])
def test_loglik_matches_graph(q: int) -> None:
    """Same value as the PyTensor graph of models.bayes.graph on constants."""
    import pytensor.tensor as pt

    rng = np.random.default_rng(200 + q)
    data = random_data(rng, q, n_groups=6)
    terms = edge_points(rng, q)
    got = np_loglik(terms, data)
    packed = pt.as_tensor(pack_stats(data))
    for s in range(len(terms)):
        beta, _, _, sigma = split_terms(terms[s], q)
        Lm = chol_factor(terms[s], q)
        L = [[float(Lm[i, j]) if j <= i else None for j in range(q)] for i in range(q)]
        for algebra in ("unrolled", "batched"):
            ref = marginal_loglik(packed, [float(b) for b in beta], float(sigma), L, algebra)
            assert got[s] == pytest.approx(float(ref.eval()), rel=1e-8), (s, algebra)


@pytest.mark.parametrize("q", [2, 3])
def test_loglik_matches_model_potential(q: int) -> None:
    """At random points of the model, loglik(terms) == the model's loglik potential.

    This also checks the map from terms to the model's L (CPC vine) against
    L = diag(sd) chol(C): the terms come out of the model at the same point.
    """
    rng = np.random.default_rng(300 + q)
    data = random_data(rng, q, n_groups=6)
    model = build_marginal(q, BayesPriors(), "unrolled", pack_stats(data))
    outs = model.replace_rvs_by_values([model["terms"], model["loglik"]])
    fn = model.compile_fn(outs, inputs=model.value_vars, mode="FAST_COMPILE")
    shapes = {k: np.shape(v) for k, v in model.initial_point().items()}
    assert set(shapes) == {"beta", "sd_log__", "sigma_log__", "cpc_logodds__"}
    for s in range(5):
        point = {k: rng.normal(0.0, 1.0, size=shape) for k, shape in shapes.items()}
        if s == 4:
            point["sd_log__"][0] = -np.inf  # an SD of exactly 0
        terms, potential = fn(point)
        if s == 4:
            assert terms[q] == 0.0
        assert float(np_loglik(terms, data)) == pytest.approx(float(potential), rel=1e-8)


def test_loglik_refuses_bad_terms() -> None:
    rng = np.random.default_rng(4)
    data = random_data(rng, 2)
    good = draw_prior(BayesPriors(), 2, rng)
    with pytest.raises(ValueError, match=r"shape \(T,\) or \(S, T\) with T = 6"):
        np_loglik(good[:-1], data)
    for j, value, what in [
        (2, -0.1, "negative random-effect SD"),
        (5, 0.0, "sigma <= 0"),
        (4, 1.5, "no correlation matrix"),
        (0, np.nan, "non-finite"),
    ]:
        bad = np.stack([good, good])
        bad[1, j] = value
        with pytest.raises(ValueError, match=f"terms row 1 has .*{what}"):
            np_loglik(bad, data)


# -- the prior ----------------------------------------------------------------------------
def prior_settings(q: int) -> dict[str, BayesPriors]:
    """Defaults (half-t SD and sigma, LKJ(2)) and two others covering every family."""
    return {
        "default": BayesPriors(),
        "halfnormal-exponential": BayesPriors(
            fixed_loc=tuple(np.linspace(-1.0, 2.0, q)),
            fixed_scale=tuple(np.linspace(0.5, 3.0, q)),
            sd_family="halfnormal",
            sd_scale=tuple(np.linspace(0.3, 1.5, q)),
            lkj_eta=1.0,
            sigma_family="exponential",
            sigma_scale=0.7,
        ),
        "exponential-halfnormal": BayesPriors(
            sd_family="exponential",
            sd_scale=0.8,
            sd_df=7.0,  # ignored by these families
            lkj_eta=0.6,
            sigma_family="halfnormal",
            sigma_scale=1.3,
        ),
    }


def joint(draws: np.ndarray, q: int) -> list[np.ndarray]:
    """Statistics of the correlations jointly: det C, and (q = 3) cor01 cor02 cor12."""
    _, _, corr, _ = split_terms(draws, q)
    out = [np.linalg.det(corr)]
    if q == 3:
        out.append(corr[:, 0, 1] * corr[:, 0, 2] * corr[:, 1, 2])
    return out


def pymc_draws(q: int, priors: BayesPriors, seed: int) -> np.ndarray:
    import pymc as pm

    with pm.Model():
        terms = add_priors(q, priors)["terms"]
    return pm.draw(terms, draws=N_PYMC, random_seed=seed)


@pytest.mark.parametrize("q", [2, 3])
@pytest.mark.parametrize("setting", ["default", "halfnormal-exponential", "exponential-halfnormal"])
def test_draw_prior_matches_pymc(q: int, setting: str) -> None:
    priors = prior_settings(q)[setting]
    ours = draw_prior(priors, q, np.random.default_rng(400 + q), size=N_NUMPY)
    theirs = pymc_draws(q, priors, seed=500 + q)
    names, _ = term_names([f"x{j}" for j in range(1, q)])
    assert ours.shape == (N_NUMPY, len(names)) and theirs.shape == (N_PYMC, len(names))
    for j, name in enumerate(names):
        p = stats.ks_2samp(ours[:, j], theirs[:, j]).pvalue
        assert p > KS_LEVEL, f"{setting} q={q} {name}: KS p = {p:.2g}"
    # the dependence between correlations, which the marginals miss (e.g. an LKJ eta
    # off by 0.5, or CPCs taken for correlations): det C, and for q = 3 their product
    ours_joint, theirs_joint = joint(ours, q), joint(theirs, q)
    for j, what in enumerate(["det C", "cor product"][: len(ours_joint)]):
        p = stats.ks_2samp(ours_joint[j], theirs_joint[j]).pvalue
        assert p > KS_LEVEL, f"{setting} q={q} {what}: KS p = {p:.2g}"
    # each correlation of LKJ(eta) in q dims: (r + 1) / 2 ~ Beta(a, a), a = eta - 1 + q / 2
    a = priors.lkj_eta - 1 + q / 2
    for j in range(2 * q, n_terms(q) - 1):
        p = stats.kstest((ours[:, j] + 1) / 2, stats.beta(a, a).cdf).pvalue
        assert p > KS_LEVEL, f"{setting} q={q} {names[j]} vs LKJ marginal: p = {p:.2g}"


def test_ks_level_has_power() -> None:
    """At these sample sizes and KS_LEVEL, a 25% error in the SD and sigma scales shows,
    and so does an LKJ eta off by 0.5 (through det C; the marginals barely move)."""
    q, priors = 2, BayesPriors()
    wrong = draw_prior(priors, q, np.random.default_rng(7), size=N_NUMPY, scale=1.25)
    theirs = pymc_draws(q, priors, seed=8)
    for j in [*range(q, 2 * q), n_terms(q) - 1]:
        assert stats.ks_2samp(wrong[:, j], theirs[:, j]).pvalue < KS_LEVEL
    q = 3
    wrong = draw_prior(BayesPriors(lkj_eta=2.5), q, np.random.default_rng(1), size=N_NUMPY)
    theirs = pymc_draws(q, priors, seed=2)
    assert stats.ks_2samp(joint(wrong, q)[0], joint(theirs, q)[0]).pvalue < KS_LEVEL


def test_scale_multiplies_prior_scales_only() -> None:
    q = 3
    priors = prior_settings(q)["halfnormal-exponential"]
    loc = np.asarray(priors.fixed_loc)
    sd, cor = slice(q, 2 * q), slice(2 * q, -1)
    one = draw_prior(priors, q, np.random.default_rng(9), size=5_000)
    two = draw_prior(priors, q, np.random.default_rng(9), size=5_000, scale=2.0)
    # same seed, same underlying variates: scales exactly doubled, the rest untouched
    np.testing.assert_allclose(two[:, sd], 2 * one[:, sd], rtol=1e-14)
    np.testing.assert_allclose(two[:, -1], 2 * one[:, -1], rtol=1e-14)
    np.testing.assert_allclose(two[:, :q] - loc, 2 * (one[:, :q] - loc), rtol=1e-12)
    np.testing.assert_array_equal(two[:, cor], one[:, cor])
    # and in distribution, from independent seeds
    other = draw_prior(priors, q, np.random.default_rng(10), size=5_000, scale=2.0)
    halved = np.column_stack([(other[:, :q] - loc) / 2 + loc, other[:, q:-1], other[:, -1] / 2])
    halved[:, sd] /= 2
    for j in range(n_terms(q)):
        assert stats.ks_2samp(halved[:, j], one[:, j]).pvalue > KS_LEVEL, j


@pytest.mark.parametrize("q", [1, 2, 3, 4])
def test_draw_prior_shape_and_support(q: int) -> None:
    rng = np.random.default_rng(11)
    T = len(term_names([f"x{j}" for j in range(1, q)])[0])
    assert n_terms(q) == T
    one = draw_prior(BayesPriors(), q, rng)
    many = draw_prior(BayesPriors(), q, rng, size=3_000)
    assert one.shape == (T,) and many.shape == (3_000, T)
    assert draw_prior(BayesPriors(), q, rng, size=0).shape == (0, T)
    assert np.all(np.isfinite(many))
    assert np.all(many[:, q : 2 * q] > 0) and np.all(many[:, -1] > 0)
    cors = many[:, 2 * q : -1]
    assert np.all(np.abs(cors) <= 1)
    _, _, corr, _ = split_terms(many, q)
    assert np.linalg.eigvalsh(corr).min() > -1e-12  # every draw a correlation matrix
    # reproducible, and one draw is the first of a batch with the same seed
    np.testing.assert_array_equal(
        draw_prior(BayesPriors(), q, np.random.default_rng(3)),
        draw_prior(BayesPriors(), q, np.random.default_rng(3), size=1)[0],
    )


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf"), "big"])
def test_draw_prior_refuses_bad_scale(scale) -> None:
    with pytest.raises(ValueError, match="scale must be a positive"):
        draw_prior(BayesPriors(), 2, np.random.default_rng(0), scale=scale)


def test_draw_prior_refuses_wrong_coefficient_count() -> None:
    with pytest.raises(ValueError, match=r"priors\.sd_scale has 2 values for 3 random effects"):
        draw_prior(BayesPriors(sd_scale=(1.0, 2.0)), 3, np.random.default_rng(0))


def test_numpy_modules_do_not_import_pymc() -> None:
    code = (
        "import sys, models.loglik, models.bayes.prior; "
        "assert not {'pymc', 'pytensor'} & set(sys.modules), 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
