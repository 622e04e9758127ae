"""The power kind: null twins on the replicate's own draws, tests per engine, and power
against the theory of a balanced cluster-randomised trial (issue 26).

Theory: in a balanced two-arm trial with a cluster-level treatment and a random
intercept, the REML t test of the treatment is the t test of the cluster means, so the
Kenward-Roger and Satterthwaite tests (whose df is K - 2 there) have the power of the
noncentral t with K - 2 df and noncentrality delta / sqrt(4 (sigma_b^2 + sigma^2 / m) / K).
Rejection rates are compared within 3 Monte Carlo SEs, sqrt(p (1 - p) / n).  That
equality needs the REML estimate of sigma_b^2 inside the parameter space: where the
between-cluster mean square falls below the within one, REML truncates sigma_b^2 at 0
and its test is more conservative than the cluster-means t test (seen at K = 6, m = 10,
ICC 0.1: 0.13 against 0.235).  So the designs here make truncation rare (m x ICC / (1 -
ICC) large: the F ratio of the mean squares expects 1 + m sigma_b^2 / sigma^2 >= 4.3).
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from study.analysis.power import power_summary
from study.design.config import config_from_text
from study.design.generate import Design
from study.run.kinds.power import null_twin
from study.run.runner import run_study


def trial_toml(groups: list[int], m: int, delta: float, icc: float, reps: int, tests: str) -> str:
    return f"""
name = "trial"
replicates = {reps}
seed = 20261202

[design]
groups = {groups[0]}
group_size = {m}
fixed = "treat"
beta = {{ "(Intercept)" = 0.0, treat = {delta} }}
random = "(1 | cluster)"
icc = {icc}
sigma = 1.0

[design.predictors.treat]
level = "group"
distribution = "balanced"
share = 0.5

[conditions]
groups = {groups}

[engines]
run = ["reml"]

[power]
terms = ["treat"]
tests = {tests}
"""


def noncentral_t_power(K: int, m: int, delta: float, icc: float, alpha: float = 0.05) -> float:
    """Power of the two-sided t test with K - 2 df of a balanced two-arm trial."""
    sb2 = icc / (1 - icc)
    ncp = delta / np.sqrt(4 * (sb2 + 1 / m) / K)
    df = K - 2
    crit = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))


def test_null_twin_is_the_same_draws_with_the_effect_at_the_null(tmp_path):
    toml = trial_toml([8], 6, 0.5, 0.1, 4, '["z", "lrt", "wald"]')
    toml = toml.replace('run = ["reml"]', 'run = ["reml", "gee"]')
    cfg = config_from_text(toml, default_name="t", label="t")
    design = Design(cfg.conditions[0].design, cfg.seed)
    data = design.sample(0).data
    twin = null_twin(data, [1], np.array([0.5]))
    np.testing.assert_allclose(data.y - twin.y, 0.5 * data.X[:, 1], atol=1e-12)
    np.testing.assert_array_equal(twin.X, data.X)
    run_study(cfg, tmp_path / "run")
    ds = xr.open_dataset(tmp_path / "run" / "power.nc")
    assert list(ds["hypothesis"].values) == ["alternative", "null"]
    assert list(ds["test"].values) == ["reml/z", "reml/lrt", "gee/wald"]
    # shifting y by X b leaves the residuals, hence the variance estimates, unchanged:
    # every estimate moves by exactly the effect, its SE does not move
    est = ds["estimate"].sel(term="treat")
    np.testing.assert_allclose(
        est.sel(hypothesis="alternative") - est.sel(hypothesis="null"), 0.5, atol=1e-5
    )
    se = ds["std_error"].sel(term="treat")
    np.testing.assert_allclose(
        se.sel(hypothesis="alternative"), se.sel(hypothesis="null"), rtol=1e-4
    )
    # the null value and the truth ride along
    assert float(ds["null_value"].sel(term="treat")) == 0.0
    assert float(ds["true_value"].sel(term="treat").item()) == 0.5


def test_wald_of_an_engine_without_tests_is_its_interval_excluding_the_null(tmp_path):
    toml = trial_toml([8], 6, 0.8, 0.1, 30, '["wald"]')
    toml = toml.replace('run = ["reml"]', 'run = ["gee", "ols"]')
    run_study(config_from_text(toml, default_name="t", label="t"), tmp_path / "run")
    ds = xr.open_dataset(tmp_path / "run" / "power.nc")
    assert list(ds["test"].values) == ["gee/wald", "ols/wald"]
    for name in ("gee", "ols"):
        p = ds["p_value"].sel(test=f"{name}/wald", term="treat").values
        t = ds["statistic"].sel(test=f"{name}/wald", term="treat").values
        se = ds["std_error"].sel(engine=name, term="treat").values
        est = ds["estimate"].sel(engine=name, term="treat").values
        np.testing.assert_allclose(t, est / se, rtol=1e-12)
        df = ds["df"].sel(test=f"{name}/wald", term="treat").values
        crit = np.where(np.isinf(df), stats.norm.ppf(0.975), stats.t.ppf(0.975, df))
        # rejects exactly when the 95% interval est +- crit se excludes 0
        np.testing.assert_array_equal(p < 0.05, np.abs(est) > crit * se)
        assert np.isfinite(p).all()


def _check_theory(ds: xr.Dataset, m: int, delta: float, icc: float) -> None:
    summary = power_summary(ds)
    alpha = 0.05
    for K in ds["groups"].values:
        expected = noncentral_t_power(int(K), m, delta, icc)
        c = f"groups={K}"
        for test in ("reml/satterthwaite", "reml/kenward-roger"):
            one = summary.sel(condition=c, test=test, term="treat")
            power = one.sel(hypothesis="alternative")
            n = int(power["n"])
            mcse = np.sqrt(expected * (1 - expected) / n)
            assert abs(float(power["rejection"]) - expected) <= 3 * mcse, (c, test, expected)
            t1 = one.sel(hypothesis="null")
            band = 3 * np.sqrt(alpha * (1 - alpha) / int(t1["n"]))
            assert abs(float(t1["rejection"]) - alpha) <= band, (c, test)


def test_kr_and_satterthwaite_power_is_the_noncentral_t_power(tmp_path):
    m, delta, icc = 20, 1.0, 0.3
    toml = trial_toml([6, 10], m, delta, icc, 200, '["satterthwaite", "kenward-roger"]')
    cfg = config_from_text(toml, default_name="t", label="t")
    run_study(cfg, tmp_path / "run")
    ds = xr.open_dataset(tmp_path / "run" / "power.nc")
    # balanced: the df is K - 2 in every replicate that was fitted
    df = ds["df"].sel(test="reml/kenward-roger", term="treat", hypothesis="alternative")
    K = ds["groups"].broadcast_like(df)
    ok = np.isfinite(df)
    np.testing.assert_allclose(df.values[ok.values], (K - 2).values[ok.values], rtol=1e-6)
    _check_theory(ds, m, delta, icc)


@pytest.mark.slow
def test_kr_and_satterthwaite_power_full(tmp_path):
    m, delta, icc = 30, 0.3, 0.1
    toml = trial_toml([10, 20, 40, 60], m, delta, icc, 1000, '["satterthwaite", "kenward-roger"]')
    cfg = config_from_text(toml, default_name="t", label="t")
    run_study(cfg, tmp_path / "run")
    _check_theory(xr.open_dataset(tmp_path / "run" / "power.nc"), m, delta, icc)


def _analytic_k(m: int, delta: float, icc: float, target: float = 0.8) -> int:
    return next(K for K in range(4, 1000, 2) if noncentral_t_power(K, m, delta, icc) >= target)


@pytest.mark.slow
def test_search_interval_contains_the_analytic_number_of_clusters(tmp_path):
    from study.usecases.searching import search

    m, delta, icc = 10, 1.0, 0.3
    toml = trial_toml([20], m, delta, icc, 100, '["kenward-roger"]').replace(
        "[conditions]\ngroups = [20]\n", ""
    )
    path = tmp_path / "c.toml"
    path.write_text(toml)
    result = search(path, "groups", low=4, high=100, out=tmp_path / "search", confirm=500)
    truth = _analytic_k(m, delta, icc)
    assert result.step == 2 and result.answer % 2 == 0
    assert result.interval[0] <= truth <= result.interval[1], (result.interval, truth)
    c = result.confirmation
    assert abs(c.power - noncentral_t_power(c.value, m, delta, icc)) <= 3 * c.mcse
    assert (tmp_path / "search" / "search.json").is_file()


def test_null_twin_truth_is_the_gls_estimator_with_the_true_v():
    """The twin's analytic truth (true value = the null, the condition's true SE) against
    brute force: the GLS estimator with the true V on 4,000 generated twins."""
    from helpers import gls_estimates, sd_and_mcse

    cfg = config_from_text(trial_toml([8], 6, 0.5, 0.1, 4, '["z"]'), default_name="t", label="t")
    design = Design(cfg.conditions[0].design, cfg.seed)
    twins = [null_twin(design.sample(r).data, [1], np.array([0.5])).y for r in range(4000)]
    est = gls_estimates(design, design.X, design.group, np.array(twins))[:, 1]
    run = cfg.conditions[0].design
    from study.run.kinds.power import POWER

    truth = POWER.context(cfg, lambda cid: Design(run, cfg.seed))[cfg.conditions[0].id]
    sd, mcse = sd_and_mcse(est[:, None])
    assert abs(float(sd[0]) - float(truth["se"][0])) < 3 * float(mcse[0])
    assert abs(est.mean()) < 3.5 * float(sd[0]) / np.sqrt(est.size)  # centred on the null
