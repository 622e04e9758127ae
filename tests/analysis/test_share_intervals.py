"""Defect 1d (issue 24): error bars of shares (coverage, rejection, bias-eliminated
coverage) stay inside [0, 1]: the 95% Wilson interval, not value +-1.96 MCSE.

Before the fix a coverage of 5/6 from 6 replicates had the Wald bar
0.833 +- 1.96 x 0.152, up to 1.13.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from matplotlib.collections import LineCollection
from statsmodels.stats.proportion import proportion_confint

from study.analysis import mcse as m
from study.analysis.measures import compute_measures
from study.analysis.plots import grid
from study.analysis.plots import measures as pm


def test_wilson_interval_equals_statsmodels():
    """Reference: statsmodels' ``proportion_confint(method="wilson")``, an independent
    implementation of Wilson (1927)."""
    for k, n in [(5, 6), (6, 6), (0, 10), (50, 100), (949, 1000), (1, 3)]:
        lo, hi = m.wilson_interval(k / n, n)
        ref = proportion_confint(k, n, alpha=0.05, method="wilson")
        np.testing.assert_allclose([lo, hi], ref, rtol=0, atol=1e-12)
    lo, hi = m.wilson_interval(np.array([1.0, np.nan]), np.array([4, 4]))
    assert 0 < lo[0] < hi[0] == 1.0 and np.isnan(lo[1]) and np.isnan(hi[1])
    assert np.isnan(m.wilson_interval(0.5, 0)[0])  # no trials: no interval
    # it holds the share itself, also where rounding would put an end past it
    n = np.arange(1, 2001)
    for p in (0.0, 1.0):
        lo, hi = m.wilson_interval(np.full(n.size, p), n)
        assert (lo <= p).all() and (hi >= p).all()


def _results(conditions: int, R: int = 6) -> xr.Dataset:
    """Intervals that cover the truth in 5 of 6 replicates (coverage 5/6, n = 6) and
    exclude 0 in all (rejection 1)."""
    terms = ["(Intercept)", "treat"]
    truth = np.array([1.0, 2.0])
    est = np.broadcast_to(truth, (conditions, R, 1, 2)).copy()
    est[:, 0] += 1.0  # replicate 0 misses by 1 with half-width 0.5
    dims = ("condition", "replicate", "engine", "term")
    return xr.Dataset(
        {
            "estimate": (dims, est),
            "std_error": (dims, np.full(est.shape, 0.25)),
            "ci_lower": (dims, est - 0.5),
            "ci_upper": (dims, est + 0.5),
            "converged": (dims[:3], np.ones((conditions, R, 1), bool)),
        },
        coords={
            "condition": [f"groups={g}" for g in range(5, 5 + conditions)],
            "groups": ("condition", list(range(5, 5 + conditions))),
            "engine": ["reml"],
            "term": terms,
            "effect": ("term", ["fixed", "fixed"]),
            "true_value": ("term", truth),
            "true_se": ("term", [0.25, 0.25]),
        },
        attrs={"level": 0.95, "factors": json.dumps(["groups"])},
    )


def _bar_ends(ax, axis: int) -> list[tuple[float, float]]:
    """(low, high) of every error bar segment drawn on ``ax`` along ``axis``."""
    return [
        (float(seg[:, axis].min()), float(seg[:, axis].max()))
        for c in ax.collections
        if isinstance(c, LineCollection)
        for seg in c.get_segments()
    ]


def test_coverage_figure_bars_are_wilson_intervals_inside_0_1():
    summary = compute_measures(_results(1))
    assert float(summary["value"].sel(measure="coverage")[0, 0, 1]) == pytest.approx(5 / 6)
    fig = pm.coverage(summary)
    ends = _bar_ends(fig.axes[0], 0)
    assert len(ends) == 2  # a bar per fixed term
    ref = proportion_confint(5, 6, alpha=0.05, method="wilson")
    for lo, hi in ends:
        assert lo >= 0.0 and hi <= 1.0
        np.testing.assert_allclose([lo, hi], ref, atol=1e-9)


@pytest.mark.parametrize("measure", ["coverage", "bias_eliminated_coverage", "rejection"])
def test_grid_lines_bars_of_shares_stay_inside_0_1(measure):
    summary = compute_measures(_results(2))
    fig = grid.grid_lines(summary, measure)
    ends = _bar_ends(fig.axes[0], 1)
    assert len(ends) == 2  # a bar per condition
    value = summary["value"].sel(measure=measure, term="treat").values.ravel()
    for (lo, hi), v in zip(ends, value, strict=True):
        assert 0.0 <= lo <= v <= hi <= 1.0
        k = round(v * 6)
        np.testing.assert_allclose([lo, hi], proportion_confint(k, 6, method="wilson"), atol=1e-9)


def test_zip_plot_draws_the_wilson_interval_of_its_coverage():
    ds = _results(1)
    fig = pm.zip_plot(ds, engine="reml", term="treat")
    (ax,) = fig.axes
    dotted = sorted(ln.get_ydata()[0] for ln in ax.lines if ln.get_linestyle() == ":")
    ref = proportion_confint(5, 6, alpha=0.05, method="wilson")
    np.testing.assert_allclose(dotted, 100 * np.array(ref), atol=1e-9)
