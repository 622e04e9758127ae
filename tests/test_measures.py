"""Performance measures: hand-computed values, MCSEs against simulated studies, NaNs,
properties, and the xarray layer."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from study.analysis import mcse as m
from study.analysis.measures import compute_measures

EST = np.array([1.0, 2.0, 3.0, 4.0])
SE = np.array([1.0, 1.0, 2.0, 2.0])


def test_hand_computed_values():
    v, s = m.bias(EST, 2.0)
    assert v == pytest.approx(0.5) and s == pytest.approx(np.sqrt(5 / 12))
    v, s = m.empirical_se(EST)
    assert v == pytest.approx(np.sqrt(5 / 3)) and s == pytest.approx(np.sqrt(5 / 3) / np.sqrt(6))
    v, s = m.mse(EST, 2.0)  # squared errors 1, 0, 1, 4
    assert v == pytest.approx(1.5) and s == pytest.approx(np.sqrt(9 / 12))
    v, s = m.model_se(SE)  # se^2 = 1, 1, 4, 4: mean 2.5, var 3
    assert v == pytest.approx(np.sqrt(2.5)) and s == pytest.approx(np.sqrt(3 / (4 * 4 * 2.5)))
    v, s = m.relative_error_model_se(EST, SE)
    ratio = np.sqrt(2.5) / np.sqrt(5 / 3)
    assert v == pytest.approx(100 * (ratio - 1))
    assert s == pytest.approx(100 * ratio * np.sqrt(3 / (4 * 4 * 2.5**2) + 1 / 6))
    v, s = m.relative_bias(EST, 2.0)
    assert v == pytest.approx(0.25) and s == pytest.approx(np.sqrt(5 / 12) / 2)
    assert np.isnan(m.relative_bias(EST, 0.0)[0])


def test_coverage_and_rejection_by_hand():
    lo = np.array([0.0, 1.5, -1.0, 2.1])
    hi = np.array([1.0, 2.5, 3.0, 3.0])
    c, s = m.coverage(lo, hi, 2.0)  # covers: no, yes, yes, no
    assert c == 0.5 and s == pytest.approx(np.sqrt(0.25 / 4))
    r, _ = m.rejection(lo, hi, 0.0)  # excludes 0: no (0 in [0,1]), yes, no, yes
    assert r == 0.5
    bec, _ = m.bias_eliminated_coverage(np.array([1, 2, 3, 2.0]), lo, hi)  # mean 2
    assert bec == 0.5
    w, _ = m.interval_width(lo, hi)
    assert w == pytest.approx(np.mean(hi - lo))


def test_relative_precision_by_hand():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    b = 2 * a  # perfectly correlated, EmpSE twice as large
    v, s, rho = m.relative_precision(b, a)
    assert v == pytest.approx(100 * (0.25 - 1)) and rho == pytest.approx(1.0)
    assert s == pytest.approx(0.0, abs=1e-6)


def test_nan_handling():
    est = np.array([1.0, np.nan, 3.0, 4.0, 2.0])
    se = np.array([1.0, 1.0, np.nan, 2.0, 1.0])
    assert m.count(est) == 4
    np.testing.assert_allclose(m.bias(est, 2.0)[0], np.nanmean(est) - 2)
    # relative error in model SE uses replicates with both estimate and SE
    both = np.isfinite(est) & np.isfinite(se)
    np.testing.assert_allclose(
        m.relative_error_model_se(est, se)[0], m.relative_error_model_se(est[both], se[both])[0]
    )
    assert np.isnan(m.bias(np.full(3, np.nan), 0.0)[0])
    assert np.isnan(m.coverage(np.full(3, np.nan), np.full(3, np.nan), 0.0)[0])


def test_axis_argument():
    x = np.arange(12.0).reshape(3, 4)
    np.testing.assert_allclose(m.bias(x, 0.0, axis=0)[0], x.mean(0))
    np.testing.assert_allclose(
        m.bias(x, np.array([0.0, 1.0, 2.0]), axis=1)[0], x.mean(1) - [0, 1, 2]
    )


def test_mcse_matches_spread_over_studies():
    """Each MCSE formula against the SD of its measure over S independent studies.

    S = 2000 studies of n = 200 replicates: estimates N(theta, 1), model SEs around 1
    (scaled chi), exact normal 95% intervals with the true SD.  The SD of a measure over
    studies is itself estimated with relative error 1/sqrt(2(S-1)) ~ 1.6%, so 10% is
    a tolerance of > 6 of its SEs; coverage must be nominal within 3 MCSE.
    """
    rng = np.random.default_rng(20190401)
    S, n, theta = 2000, 200, 1.5
    est = rng.normal(theta, 1.0, (S, n))
    se = np.sqrt(rng.chisquare(30, (S, n)) / 30)
    z = 1.959963984540054
    lo, hi = est - z, est + z
    for func, args in [
        (m.bias, (est, theta)),
        (m.empirical_se, (est,)),
        (m.mse, (est, theta)),
        (m.model_se, (se,)),
        (m.relative_error_model_se, (est, se)),
        (m.coverage, (lo, hi, theta)),
    ]:
        value, mcse = func(*args, axis=1)
        assert np.mean(mcse) == pytest.approx(np.std(value, ddof=1), rel=0.10), func.__name__
    cov, cov_se = m.coverage(lo.ravel(), hi.ravel(), theta)
    assert abs(cov - 0.95) < 3 * cov_se


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, st.integers(1, 30), elements=st.floats(-1e6, 1e6) | st.just(np.nan)),
    st.floats(0.01, 1e3),
    st.floats(-1e6, 1e6),
)
def test_properties_for_arbitrary_inputs(x, half, theta):
    lo, hi = x - half, x + half
    c, cs = m.coverage(lo, hi, theta)
    n = m.count(x)
    assert 0 <= n <= x.size
    if n == 0:
        assert np.isnan(c)
    else:
        assert 0.0 <= c <= 1.0 and 0.0 <= cs <= 0.5
    for func, args in [(m.bias, (x, theta)), (m.empirical_se, (x,)), (m.mse, (x, theta))]:
        _, s = func(*args)
        assert np.isnan(s) or s >= 0


def _fake_results(rng: np.random.Generator, R: int = 300) -> xr.Dataset:
    terms = ["(Intercept)", "X", "sd__(Intercept)"]
    est = rng.normal(0, 1, (R, 2, 3)) + np.array([1.0, 2.0, 0.5])
    se = np.abs(rng.normal(1, 0.1, (R, 2, 3)))
    conv = np.ones((R, 2), bool)
    conv[:5, 1] = False
    return xr.Dataset(
        {
            "estimate": (("replicate", "engine", "term"), est),
            "std_error": (("replicate", "engine", "term"), se),
            "ci_lower": (("replicate", "engine", "term"), est - 1.96 * se),
            "ci_upper": (("replicate", "engine", "term"), est + 1.96 * se),
            "converged": (("replicate", "engine"), conv),
        },
        coords={
            "replicate": np.arange(R),
            "engine": ["reml", "bayes"],
            "term": terms,
            "effect": ("term", ["fixed", "fixed", "ran_pars"]),
            "true_value": ("term", [1.0, 2.0, 0.5]),
            "true_se": ("term", [1.0, 1.0, np.nan]),
            "cond_value": ("term", [np.nan] * 3),
            "cond_se": ("term", [np.nan] * 3),
        },
    )


def test_xarray_layer_matches_numpy_layer():
    ds = _fake_results(np.random.default_rng(1))
    s = compute_measures(ds)
    assert s["value"].dims == ("measure", "engine", "term")
    for e in range(2):
        for t in range(3):
            x = ds.estimate.values[:, e, t]
            theta = ds.true_value.values[t]
            v, se = m.bias(x, theta)
            assert s.value.sel(measure="bias").values[e, t] == pytest.approx(v)
            assert s.mcse.sel(measure="bias").values[e, t] == pytest.approx(se)
            cov = m.coverage(ds.ci_lower.values[:, e, t], ds.ci_upper.values[:, e, t], theta)[0]
            assert s.value.sel(measure="coverage").values[e, t] == pytest.approx(cov)
    # relative precision is against reml; NaN for reml itself
    rp = s.value.sel(measure="relative_precision")
    assert np.isnan(rp.sel(engine="reml")).all() and np.isfinite(rp.sel(engine="bayes")).all()
    # rejection only for fixed effects; variance scale only for sd__ terms
    assert np.isnan(s.value.sel(measure="rejection", term="sd__(Intercept)")).all()
    assert np.isnan(s.value.sel(measure="bias_variance_scale", term="X")).all()
    assert int(s.nonconverged.sel(engine="bayes")) == 5
    excl = compute_measures(ds, exclude_nonconverged=True)
    assert excl.value.sel(measure="n", engine="bayes").values[0] == 295
    assert s.value.sel(measure="n", engine="bayes").values[0] == 300


def test_unknown_measure_is_refused():
    with pytest.raises(ValueError, match="unknown measure"):
        compute_measures(_fake_results(np.random.default_rng(2)), measures=["biass"])
