"""Every generator feature of issue 25 against brute force: the analytic truth equals
the empirical SD of the GLS estimator with the true V over 20,000 generated replicates
(within 3 Monte Carlo SEs), and the generated u and e have the mean, variance and
skewness they claim.

The GLS estimator is computed per replicate from the generated data through the same
Woodbury algebra per group as the truth (never an n_i x n_i inverse), but on the
replicate's own rows and y: ``beta_hat = A sum_i (X_i'R_i^-1 y_i - H_i M_i^-1
X_i'R_i^-1 y_i)``.  The MCSE of an SD ``s`` from R draws is ``sqrt(m4 - s^4) / (2 s
sqrt(R))`` (delta method on the sample variance, ``m4`` the fourth central moment).
"""

from __future__ import annotations

import numpy as np
import pytest
import tomli_w
from helpers import gls_estimates as _gls
from helpers import sd_and_mcse as _sd_and_mcse

from study.design.config import config_from_text
from study.design.generate import Design
from study.design.truth import compute_truth

REPLICATES = 20_000


def _design(design: dict, seed: int = 7) -> Design:
    table = {"name": "t", "seed": seed, "design": design, "engines": {"run": ["reml"]}}
    text = tomli_w.dumps(table)
    config = config_from_text(text, default_name="t", label="t")
    return Design.from_study(config)


def _check_truth(design: Design, truth_se: np.ndarray | None = None) -> np.ndarray:
    estimates, observed, ys = [], [], []
    for r in range(REPLICATES):
        sample = design.sample(r)
        if sample.observed_cov is not None:  # its own rows: one at a time
            d = sample.data
            estimates.append(_gls(design, d.X, d.group, d.y[None])[0])
            observed.append(np.diag(sample.observed_cov))
        else:
            ys.append(sample.data.y)
    est = np.array(estimates) if estimates else _gls(design, design.X, design.group, np.array(ys))
    q = design.config.q
    if truth_se is None and observed:  # missing: the root mean square of the replicates'
        truth_se = np.sqrt(np.mean(observed, axis=0))
    elif truth_se is None:
        truth_se = compute_truth(design).se[:q]
    sd, mcse = _sd_and_mcse(est)
    assert np.all(np.abs(sd - truth_se) < 3 * mcse), (sd, truth_se, mcse)
    mean_mcse = sd / np.sqrt(REPLICATES)
    assert np.all(np.abs(est.mean(axis=0) - design.beta) < 3.5 * mean_mcse)
    return est


CLUSTER_TRIAL = {
    "groups": 12,
    "group_size": 8,
    "fixed": "treat * age",
    "beta": {"(Intercept)": 1.0, "treat": 0.3, "age": 0.2, "treat:age": -0.1},
    "random": "(1 + age | g)",
    "re_sd": [0.7, 0.3],
    "predictors": {
        "treat": {"level": "group", "distribution": "balanced", "share": 0.5},
        "age": {"distribution": "normal", "mean": 40.0, "sd": 2.0, "center": "grand"},
    },
}


def test_cluster_level_treatment_and_cross_level_interaction():
    design = _design(CLUSTER_TRIAL)
    treat = design.X[:, 1].reshape(12, 8)
    assert (treat == treat[:, :1]).all() and treat[:, 0].sum() == 6  # exactly half
    assert abs(design.X[:, 2].mean()) < 1e-12  # grand-centred
    _check_truth(design)


def test_categorical_bernoulli_and_correlated_normal_predictors():
    design = _design(
        {
            "groups": 10,
            "group_size": 10,
            "fixed": "site + smoker + a + b",
            "beta": [0.5, 0.2, -0.2, 0.4, 0.1, -0.3],
            "random": "(1 | g)",
            "re_sd": [0.8],
            "predictors": {
                "site": {"distribution": "categorical", "levels": ["x", "y", "z"]},
                "smoker": {"distribution": "bernoulli", "p": 0.3},
                "a": {"distribution": "normal", "cor": {"b": 0.6}},
                "b": {"distribution": "normal", "center": "group"},
            },
        }
    )
    assert design.config.structure.fixed == ("(Intercept)", "sitey", "sitez", "smoker", "a", "b")
    _check_truth(design)


def test_correlated_predictors_have_their_correlation():
    design = _design(
        {
            "groups": 50,
            "group_size": 200,
            "fixed": "a + b",
            "beta": [0.0, 0.0, 0.0],
            "random": "(1 | g)",
            "re_sd": [1.0],
            "predictors": {
                "a": {"distribution": "normal", "cor": {"b": 0.6}},
                "b": {"distribution": "normal", "mean": 3.0, "sd": 2.0},
            },
        }
    )
    a, b = design.X[:, 1], design.X[:, 2]
    n = a.size  # 10,000 values: the SE of r is (1 - r^2) / sqrt(n) = 0.0064
    assert abs(np.corrcoef(a, b)[0, 1] - 0.6) < 3 * (1 - 0.36) / np.sqrt(n)
    assert abs(b.mean() - 3.0) < 3 * 2.0 / np.sqrt(n) and abs(b.std() - 2.0) < 0.05


def test_random_group_sizes_and_icc():
    design = _design(
        {
            "groups": 15,
            "group_size": {"distribution": "uniform", "low": 2, "high": 12},
            "random": "(1 | g)",
            "icc": 0.3,
            "re_sd": [],
            "sigma": 1.5,
        }
    )
    assert design.sizes.min() >= 2 and design.sizes.max() <= 12 and len(set(design.sizes)) > 3
    sd0 = compute_truth(design).value[2]
    assert sd0 == pytest.approx(1.5 * np.sqrt(0.3 / 0.7))
    _check_truth(design)


def test_poisson_group_sizes_keep_their_minimum_and_mean():
    design = _design(
        {
            "groups": 4000,
            "group_size": {"distribution": "poisson", "mean": 6.0, "min": 3},
            "random": "(1 | g)",
            "re_sd": [1.0],
        }
    )
    sizes = design.sizes
    assert sizes.min() >= 3
    assert abs(sizes.mean() - 6.0) < 3 * np.sqrt(3.0 / sizes.size)  # min + Poisson(3)


@pytest.mark.parametrize(
    "shape",
    [
        {"distribution": "skewed", "df": 2.0},
        {"distribution": "bimodal", "separation": 4.0},
        {"distribution": "t", "df": 5.0},
        {"distribution": "laplace"},
    ],
    ids=lambda s: s["distribution"],
)
def test_non_normal_random_effects_and_residuals(shape):
    design = _design(
        {
            "groups": 10,
            "group_size": 6,
            "random": "(1 + X | g)",
            "re_sd": [1.0, 0.3],
            "random_effects": shape,
            "residuals": shape,
        }
    )
    est = _check_truth(design)
    assert est.shape == (REPLICATES, 2)
    _check_moments(design, shape)


def _check_moments(design: Design, shape: dict) -> None:
    """u (standardised by its SDs) and e have mean 0, variance 1 and the shape's skewness."""
    cfg = design.config
    us, es = [], []
    for r in range(2000):
        s = design.sample(r)
        us.append(s.u[:, list(design.structure.index)] / np.array(cfg.sds))
        fitted = design.X @ design.beta + np.einsum("nq,nq->n", design.X, s.u[design.group])
        es.append((s.data.y - fitted) / cfg.sigma)
    from study.design.distributions import Shape

    target = Shape.from_table(shape, "x")
    for values in (np.concatenate(us).ravel(), np.concatenate(es)):
        n = values.size
        m, v = values.mean(), values.var()
        skew = ((values - m) ** 3).mean() / v**1.5
        assert abs(m) < 3.5 / np.sqrt(n)
        kurt = ((values - m) ** 4).mean() / v**2 - 3
        assert abs(v - 1) < 3.5 * np.sqrt((kurt + 2) / n)
        m6 = ((values - m) ** 6).mean() / v**3
        # delta-method SE of the sample skewness, from the sample's own moments
        skew_se = np.sqrt(max(m6 - 6 * (kurt + 3) + 9, 6.0) / n)
        if shape["distribution"] != "t":  # t(5): skewness has infinite variance
            assert abs(skew - target.skewness) < 4 * skew_se, (skew, target.skewness)


def test_heteroscedastic_residuals_group_sd_and_by_predictor():
    for residuals in ({"group_sd": 0.6}, {"by": "X", "delta": 0.08}):
        design = _design(
            {
                "groups": 10,
                "group_size": 6,
                "random": "(1 | g)",
                "re_sd": [0.5],
                "residuals": residuals,
            }
        )
        assert design.row_sd is not None and design.row_sd.std() > 0.1
        _check_truth(design)
        # the residuals' SD is sigma_ij: e / sigma_ij has variance 1
        e = np.concatenate(
            [
                (s.data.y - design.X @ design.beta - s.u[design.group, 0]) / design.row_sd
                for s in map(design.sample, range(2000))
            ]
        )
        assert abs(e.var() - 1) < 3.5 * np.sqrt(2 / e.size)


def test_heteroscedastic_truth_is_not_the_homoscedastic_one():
    base = {"groups": 10, "group_size": 6, "random": "(1 | g)", "re_sd": [0.5]}
    homo = compute_truth(_design(base)).se[:2]
    hetero = compute_truth(_design({**base, "residuals": {"group_sd": 0.6}})).se[:2]
    # 8% and 10% apart: far beyond the 0.5% MCSE of an SD from 20,000 replicates, so the
    # brute-force test above tells the heteroscedastic truth from the homoscedastic one
    assert np.all(np.abs(hetero / homo - 1) > 0.05)


@pytest.mark.parametrize(
    "missing",
    [
        {"mechanism": "mcar", "share": 0.3},
        {"mechanism": "mar", "by": "X", "intercept": -3.0, "slope": 0.25},
    ],
    ids=["mcar", "mar"],
)
def test_missing_outcomes(missing):
    design = _design(
        {
            "groups": 10,
            "group_size": 6,
            "random": "(1 | g)",
            "re_sd": [0.5],
            "predictor": {"distribution": "uniform", "low": 1.0, "high": 20.0},
            "missing": missing,
        }
    )
    nobs = [design.sample(r).data.n_obs for r in range(500)]
    share = 1 - np.mean(nobs) / design.X.shape[0]
    expected = np.mean(design.config.missing.probability(design.X, design.config.effects))
    assert abs(share - expected) < 3.5 * np.sqrt(expected * (1 - expected) / (500 * 60))
    _check_truth(design)
