"""Analytic truth: dense cross-check, Monte Carlo check, and the 2018 report's values."""

from __future__ import annotations

import numpy as np
import pytest

from study.cli.main import main
from study.design.config import DesignConfig, PredictorSpec, load_config
from study.design.generate import Design
from study.design.truth import compute_truth, conditional_moments, marginal_cov


def _dense(design: Design):
    """Direct computation with the n_i x n_i matrices V_i (only for small designs)."""
    cfg = design.config
    D, s2 = cfg.D, cfg.sigma**2
    info = np.zeros((cfg.q, cfg.q))
    blocks = []
    for k in range(cfg.groups):
        Xk = design.X[design.group == k]
        Vinv = np.linalg.inv(Xk @ D @ Xk.T + s2 * np.eye(len(Xk)))
        info += Xk.T @ Vinv @ Xk
        blocks.append((Xk, Vinv))
    A = np.linalg.inv(info)
    mean = design.beta.copy()
    middle = np.zeros_like(info)
    if design.fixed_u is not None:
        for k, (Xk, Vinv) in enumerate(blocks):
            mean += A @ Xk.T @ Vinv @ Xk @ design.fixed_u[k]
            middle += Xk.T @ Vinv @ (s2 * np.eye(len(Xk))) @ Vinv @ Xk
    return A, mean, A @ middle @ A


@pytest.mark.parametrize("fixed", [False, True])
def test_truth_equals_dense_computation(small_design, fixed):
    import dataclasses

    cfg = dataclasses.replace(small_design, fixed_random_effects=fixed, repeats=2)
    design = Design(cfg, 3)
    A, mean, cond = _dense(design)
    np.testing.assert_allclose(marginal_cov(design.XtX, cfg.D, cfg.sigma), A, rtol=1e-10)
    truth = compute_truth(design)
    np.testing.assert_allclose(truth.se[: cfg.q], np.sqrt(np.diag(A)), rtol=1e-10)
    if fixed:
        np.testing.assert_allclose(truth.cond_value[: cfg.q], mean, rtol=1e-10)
        np.testing.assert_allclose(truth.cond_cov, cond, rtol=1e-10)
    else:
        assert np.isnan(truth.cond_value).all() and truth.cond_cov is None


def _gls(data, D, sigma):
    """GLS estimate with known V, from the sufficient statistics (Woodbury)."""
    s2 = sigma**2
    M = data.XtX + s2 * np.linalg.inv(D)[None]
    W = (data.XtX - data.XtX @ np.linalg.solve(M, data.XtX)) / s2
    Wy = (
        data.Xty
        - np.einsum("kab,kb->ka", data.XtX, np.linalg.solve(M, data.Xty[..., None])[..., 0])
    ) / s2
    return np.linalg.solve(W.sum(0), Wy.sum(0))


@pytest.mark.parametrize("fixed", [False, True])
def test_truth_matches_monte_carlo_variance_of_gls(fixed):
    """The MC covariance of GLS-with-known-V estimates matches the analytic one.

    With R = 3000 replicates the MC SE of a sample variance is var * sqrt(2 / (R - 1));
    of a mean, sd / sqrt(R).  Allow 4 MC SEs.
    """
    cfg = DesignConfig(
        groups=8,
        group_size=6,
        beta=(1.0, 2.0),
        re_sd=(1.0, 0.5),
        re_cor=((1.0, -0.4), (-0.4, 1.0)),
        sigma=1.5,
        fixed_random_effects=fixed,
        predictor=PredictorSpec(distribution="uniform", low=0.0, high=3.0),
    )
    design = Design(cfg, 77)
    R = 3000
    est = np.array([_gls(design.sample(r).data, cfg.D, cfg.sigma) for r in range(R)])
    truth = compute_truth(design)
    if fixed:
        mean, cov = truth.cond_value[:2], truth.cond_cov
    else:
        mean, cov = truth.value[:2], truth.cov
    assert cov is not None
    var = np.diag(cov)
    np.testing.assert_array_less(np.abs(est.mean(0) - mean), 4 * np.sqrt(var / R))
    np.testing.assert_array_less(np.abs(est.var(0, ddof=1) - var), 4 * var * np.sqrt(2 / (R - 1)))


def test_seed_preset_reproduces_the_report():
    """The 2018 report: true SEs about 0.165 (intercept) and 0.316 (slope), computed
    from the formula on its 40 x 50 design (one copy of each class)."""
    truth = compute_truth(Design.from_study(load_config("seed")))
    assert truth.report_se is not None
    np.testing.assert_allclose(truth.report_se[:2], [0.165, 0.316], rtol=0.03)
    # the marginal truth of the 100,000-row data actually generated is smaller for the
    # intercept, and conditional on the fixed u the spread is far smaller still
    assert truth.se[0] < truth.report_se[0]
    assert truth.cond_se[0] < 0.1 * truth.se[0]
    default = compute_truth(Design.from_study(load_config("default")))
    np.testing.assert_allclose(default.se[:2], [0.165, 0.316], rtol=0.03)


def test_conditional_moments_reduce_when_u_zero():
    XtX = np.array([[[3.0, 1.0], [1.0, 2.0]], [[4.0, 0.5], [0.5, 1.0]]])
    D, beta = np.diag([1.0, 0.5]), np.array([1.0, 2.0])
    mean, _ = conditional_moments(XtX / 1.0**2, D, beta, np.zeros((2, 2)))
    np.testing.assert_allclose(mean, beta)


def test_cli_truth_prints_tables(capsys):
    assert main(["truth", "seed"]) == 0
    out = capsys.readouterr().out
    assert "(Intercept)" in out and "cond_se" in out and "report_se" in out
    assert main(["truth", "default", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "term,effect,true_value,true_se"


def test_ran_pars_truth_has_no_se(default_config):
    truth = compute_truth(Design.from_study(default_config))
    assert np.isnan(truth.se[2:]).all()
    np.testing.assert_allclose(truth.value[2:], [1.0, 2.0, 0.0, 1.0])


def test_cluster_trial_truth_is_the_closed_form_of_a_balanced_two_arm_trial():
    # Var(treatment effect) = 4 (sigma_b^2 + sigma^2 / m) / K for K clusters of m, half
    # of them treated: the difference of two means of K / 2 cluster means each
    from study.usecases.truth import truth

    config = load_config("cluster-trial")
    frame = truth(config).frame
    rows = frame[frame.term == "treat"]
    assert len(rows) == len(config.conditions) == 16
    for _, row in rows.iterrows():
        icc, K, m, sigma = row["icc"], row["groups"], 30, 1.0
        sigma_b2 = sigma**2 * icc / (1 - icc)
        assert row["true_se"] == pytest.approx(
            np.sqrt(4 * (sigma_b2 + sigma**2 / m) / K), rel=1e-12
        )
    # the allocation is the same at both effect sizes (X is keyed by what defines it)
    for c0, c3 in zip(config.conditions[0::2], config.conditions[1::2], strict=True):
        assert c0.factors["beta.treat"] == 0.0 and c3.factors["beta.treat"] == 0.3
        np.testing.assert_array_equal(
            Design.from_study(config, c0).X, Design.from_study(config, c3).X
        )
