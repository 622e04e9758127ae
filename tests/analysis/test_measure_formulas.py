"""Tests that a wrong measure or MCSE formula cannot pass (issue 24, item 8).

Two kinds: every MCSE against the spread of its measure over many simulated studies,
at a tolerance from that spread's own Monte Carlo error; and small arrays whose values
are computed by hand from the formulas of Morris, White & Crowther (2019), Table 6
(docs: design.md section 5), for the MCSEs of RMSE and relative precision and for the
measures against the conditional truth, which only ``measures_golden.nc`` (made by the
project's own older code) guarded before.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from study.analysis import mcse as m
from study.analysis.measures import compute_measures

Z = 1.959963984540054


def test_mcse_matches_spread_over_studies():
    """Each MCSE against the SD of its measure over S independent studies.

    S = 4000 studies of n = 200 replicates: estimates N(theta, 1), model SEs around 1
    (scaled chi, 30 df), normal 95% intervals ``est +- z se``, and a second engine
    correlated with the first (rho ~ 0.66 < 1, so the relative-precision MCSE is not 0).
    The SD over studies is estimated with relative SE 1 / sqrt(2 (S - 1)) = 1.1%, so
    the tolerance is 4 of those SEs (4.5%); the formulas' own O(1/n) approximation error
    (at most ~1.5% here, relative precision) fits inside.  A 10% error in any MCSE fails.
    """
    rng = np.random.default_rng(20190401)
    S, n, theta = 4000, 200, 1.5
    est = rng.normal(theta, 1.0, (S, n))
    se = np.sqrt(rng.chisquare(30, (S, n)) / 30)
    other = 0.8 * est + rng.normal(0, 0.9, (S, n))
    lo, hi = est - Z * se, est + Z * se
    tol = 4 / math.sqrt(2 * (S - 1))
    cases = {
        "bias": (m.bias, (est, theta)),
        "relative_bias": (m.relative_bias, (est, theta)),
        "empirical_se": (m.empirical_se, (est,)),
        "mse": (m.mse, (est, theta)),
        "rmse": (m.rmse, (est, theta)),
        "model_se": (m.model_se, (se,)),
        "relative_error_model_se": (m.relative_error_model_se, (est, se)),
        "coverage": (m.coverage, (lo, hi, theta)),
        "bias_eliminated_coverage": (m.bias_eliminated_coverage, (est, lo, hi)),
        "rejection": (m.rejection, (lo, hi, 0.0)),
        "interval_width": (m.interval_width, (lo, hi)),
        "relative_precision": (m.relative_precision, (other, est)),
    }
    for name, (func, args) in cases.items():
        value, mcse, *rest = func(*args, axis=1)
        if rest:  # relative precision: the correlation is well inside (0, 1)
            assert 0.5 < float(np.mean(rest[0])) < 0.8
        spread = np.std(value, ddof=1)
        assert np.mean(mcse) / spread == pytest.approx(1.0, abs=tol), name
    # the shares are far from 0 and 1, where a binomial MCSE says little
    assert 0.9 < np.mean(m.coverage(lo, hi, theta, axis=1)[0]) < 0.97
    assert 0.2 < np.mean(m.rejection(lo, hi, 0.0, axis=1)[0]) < 0.5


def test_rmse_and_its_mcse_by_hand():
    """est 1, 2, 3, 4 against theta 2: errors -1, 0, 1, 2, squared 1, 0, 1, 4.

    MSE = 6/4 = 1.5; MCSE(MSE) = sqrt(sum (d^2 - 1.5)^2 / (n (n - 1)))
    = sqrt((0.25 + 2.25 + 0.25 + 6.25) / 12) = sqrt(3/4); RMSE = sqrt(1.5) and, by the
    delta method, MCSE(RMSE) = MCSE(MSE) / (2 RMSE) = sqrt(3/4) / (2 sqrt(3/2))
    = sqrt(1/2) / 2.
    """
    v, s = m.rmse(np.array([1.0, 2.0, 3.0, 4.0]), 2.0)
    assert v == pytest.approx(math.sqrt(1.5), rel=1e-12)
    assert s == pytest.approx(math.sqrt(0.5) / 2, rel=1e-12)


def test_relative_precision_and_its_mcse_by_hand():
    """Reference A = 1..5, B = 2, 1, 4, 3, 6 (rho < 1).

    A: deviations -2..2, sum of squares 10, var 10/4.  B: mean 3.2, deviations -1.2,
    -2.2, 0.8, -0.2, 2.8, sum of squares 14.8, var 14.8/4.  Cross products sum to 10:
    rho^2 = 100 / (10 x 14.8) = 25/37.  (EmpSE_A / EmpSE_B)^2 = 10/14.8 = 25/37, so the
    relative precision is 100 (25/37 - 1) and its MCSE
    200 (25/37) sqrt((1 - 25/37) / 4) = 200 (25/37) sqrt(3/37).
    """
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    b = np.array([2.0, 1.0, 4.0, 3.0, 6.0])
    v, s, rho = m.relative_precision(b, a)
    assert rho == pytest.approx(math.sqrt(25 / 37), rel=1e-12)
    assert v == pytest.approx(100 * (25 / 37 - 1), rel=1e-12)
    assert s == pytest.approx(200 * 25 / 37 * math.sqrt(3 / 37), rel=1e-12)


def _conditional_results() -> xr.Dataset:
    """Two engines, one fixed-effect term, four replicates, fixed u:

    estimates 1, 2, 3, 4 (reml) and 2, 1, 4, 3 (other), SEs 1, 1, 2, 2, intervals
    ``est -+ 1``; conditional truth E[est | u] = 2.5 with SD[est | u] = 0.5, marginal
    truth 2 with true SE 1.25.
    """
    est = np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 4.0], [4.0, 3.0]])[:, :, None]
    se = np.array([1.0, 1.0, 2.0, 2.0])[:, None, None] * np.ones((1, 2, 1))
    dims = ("replicate", "engine", "term")
    return xr.Dataset(
        {
            "estimate": (dims, est),
            "std_error": (dims, se),
            "ci_lower": (dims, est - 1.0),
            "ci_upper": (dims, est + 1.0),
            "converged": (dims[:2], np.ones((4, 2), bool)),
        },
        coords={
            "engine": ["reml", "other"],
            "term": ["slope"],
            "effect": ("term", ["fixed"]),
            "true_value": ("term", [2.0]),
            "true_se": ("term", [1.25]),
            "cond_value": ("term", [2.5]),
            "cond_se": ("term", [0.5]),
        },
        attrs={"level": 0.95},
    )


def test_conditional_measures_by_hand():
    """On :func:`_conditional_results`, for both engines (same values in another order):

    cond_bias = mean 2.5 - 2.5 = 0, MCSE sqrt(sum (est - 2.5)^2 / (4 x 3)) = sqrt(5/12);
    cond_coverage: [est - 1, est + 1] holds 2.5 for est 2 and 3 only: 2/4, MCSE
    sqrt(0.25 / 4) = 1/4; ModSE = sqrt(mean(1, 1, 4, 4)) = sqrt(5/2), MCSE
    sqrt(var(se^2) / (4 n ModSE^2)) = sqrt(3 / (16 x 5/2)) = sqrt(3/40), over 0.5;
    EmpSE = sqrt(5/3), MCSE EmpSE / sqrt(2 x 3), over 0.5.  Against the marginal
    truth: bias 0.5, ModSE / true SE and EmpSE / true SE over 1.25; the relative
    precision of ``other`` against reml is 100 (5/3 / (5/3) - 1) = 0 with rho = 0.6
    (cross products 3 of sums of squares 5), MCSE 200 sqrt(0.64 / 3).
    """
    s = compute_measures(_conditional_results())
    v, se = s["value"].sel(term="slope"), s["mcse"].sel(term="slope")
    emp, emp_se = math.sqrt(5 / 3), math.sqrt(5 / 3) / math.sqrt(6)
    mod, mod_se = math.sqrt(5 / 2), math.sqrt(3 / 40)
    expected = {
        "cond_bias": (0.0, math.sqrt(5 / 12)),
        "cond_coverage": (0.5, 0.25),
        "modse_condse": (mod / 0.5, mod_se / 0.5),
        "empse_condse": (emp / 0.5, emp_se / 0.5),
        "bias": (0.5, math.sqrt(5 / 12)),
        "modse_truese": (mod / 1.25, mod_se / 1.25),
        "empse_truese": (emp / 1.25, emp_se / 1.25),
        "coverage": (0.75, math.sqrt(0.75 * 0.25 / 4)),  # 2 is in [est -+ 1] for 1, 2, 3
    }
    for measure, (value, mcse) in expected.items():
        for engine in ("reml", "other"):
            got = (
                float(v.sel(measure=measure, engine=engine)),
                float(se.sel(measure=measure, engine=engine)),
            )
            assert got == pytest.approx((value, mcse), rel=1e-12, abs=1e-15), (measure, engine)
    assert float(v.sel(measure="relative_precision", engine="other")) == pytest.approx(
        0.0, abs=1e-12
    )
    assert float(se.sel(measure="relative_precision", engine="other")) == pytest.approx(
        200 * math.sqrt(0.64 / 3), rel=1e-12
    )
    assert float(v.sel(measure="correlation_with_reference", engine="other")) == pytest.approx(0.6)
    # without conditional truth the conditional measures are NaN, never made up
    bare = compute_measures(_conditional_results().drop_vars(["cond_value", "cond_se"]))
    cond = ["cond_bias", "cond_coverage", "modse_condse", "empse_condse"]
    assert np.isnan(bare["value"].sel(measure=cond)).all()
