"""TrueSE with missing outcomes: the root mean square of the per-replicate truth.

Each replicate observes other rows, so its truth ``observed_true_se`` (condition,
replicate, term) differs; ModSE / TrueSE and EmpSE / TrueSE divide by
``sqrt(mean(se_r^2))`` over the replicates the measure used, the tables' TrueSE by
the same over the replicates fitted; a condition whose per-replicate truth is all NaN
keeps the ``true_se`` coordinate.  Numbers below are computed by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from study.analysis.measures import compute_measures, true_se
from study.analysis.tables import MISSING_NOTE, report_table, summary_text
from study.analysis.tidy import tidy
from study.schema import TERM_VARS

TERMS = ["(Intercept)", "X", "sd__Observation"]


def _results() -> xr.Dataset:
    """Two conditions x 4 replicates x 2 engines: ``a`` with a per-replicate truth
    (X: 0.1, 0.2, 0.2, 0.4, RMS 0.25), ``b`` without (all NaN: its coordinate 0.3)."""
    shape = (2, 4, 2, 3)
    est = np.zeros(shape)
    est[:, :, :, 1] = np.array([0.0, 0.5, 0.0, 0.5])[:, None]  # EmpSE of X: sqrt(0.25 / 3)
    se = np.full(shape, 0.3)
    se[:, :, 1, 1] = 0.2
    se[:, 0, 1, 1] = np.nan  # engine e2 has no SE for X in replicate 0
    se[..., 2] = np.nan
    observed = np.full((2, 4, 3), np.nan)
    observed[0, :, 0] = 0.5
    observed[0, :, 1] = [0.1, 0.2, 0.2, 0.4]
    dims = ("condition", "replicate", "engine", "term")
    return xr.Dataset(
        {
            "estimate": (dims, est),
            "std_error": (dims, se),
            "ci_lower": (dims, est - 1),
            "ci_upper": (dims, est + 1),
            "converged": (dims[:3], np.ones(shape[:3], bool)),
            "done": (dims[:2], np.ones(shape[:2], bool)),
            "message": (dims[:3], np.full(shape[:3], "", dtype=object)),
            "observed_true_se": (("condition", "replicate", "term"), observed),
        },
        coords={
            "condition": ["a", "b"],
            "replicate": np.arange(4),
            "engine": ["e1", "e2"],
            "term": TERMS,
            "effect": ("term", ["fixed", "fixed", "ran_pars"]),
            "true_value": (("condition", "term"), [[0.0, 0.0, 1.0]] * 2),
            "true_se": (("condition", "term"), [[0.4, 0.3, np.nan]] * 2),
        },
        attrs={"level": 0.95, "study": "t", "factors": "[]", "replicates_requested": 4},
    )


def _value(summary: xr.Dataset, measure: str, condition: str, engine: str, term: str) -> float:
    at = {"measure": measure, "condition": condition, "engine": engine, "term": term}
    return float(summary["value"].sel(at))


def test_modse_and_empse_over_the_rms_of_the_replicates_used():
    ds = _results()
    s = compute_measures(ds, measures=["model_se", "empirical_se", "modse_truese", "empse_truese"])
    emp = math.sqrt(0.25 / 3)
    # e1 uses every replicate: TrueSE sqrt((0.01 + 0.04 + 0.04 + 0.16) / 4) = 0.25
    assert _value(s, "modse_truese", "a", "e1", "X") == pytest.approx(0.3 / 0.25, rel=1e-12)
    assert _value(s, "empse_truese", "a", "e1", "X") == pytest.approx(emp / 0.25, rel=1e-12)
    # e2 has no SE in replicate 0: ModSE and its TrueSE over replicates 1-3, sqrt(0.08);
    # its estimates are all finite: EmpSE / TrueSE over all four again
    assert _value(s, "modse_truese", "a", "e2", "X") == pytest.approx(math.sqrt(0.5), rel=1e-12)
    assert _value(s, "empse_truese", "a", "e2", "X") == pytest.approx(emp / 0.25, rel=1e-12)
    assert _value(s, "modse_truese", "a", "e1", "(Intercept)") == pytest.approx(0.6, rel=1e-12)
    # the MCSE is the measure's, over the same TrueSE
    mcse = s["mcse"].sel(condition="a", engine="e1", term="X")
    assert float(mcse.sel(measure="empse_truese")) == pytest.approx(
        float(mcse.sel(measure="empirical_se")) / 0.25, rel=1e-12
    )
    # condition b has no per-replicate truth: the coordinate, 0.3 for X
    assert _value(s, "modse_truese", "b", "e1", "X") == pytest.approx(1.0, rel=1e-12)
    assert _value(s, "empse_truese", "b", "e2", "X") == pytest.approx(emp / 0.3, rel=1e-12)
    assert np.isnan(_value(s, "modse_truese", "a", "e1", "sd__Observation"))


def test_excluded_fits_leave_the_truth_of_their_replicates_out():
    ds = _results()
    ds["converged"][0, 3, 0] = False  # e1's replicate 3 (truth 0.4) did not converge
    s = compute_measures(ds, measures=["modse_truese"], exclude_nonconverged=True)
    # RMS of 0.1, 0.2, 0.2: sqrt(0.03); ModSE 0.3
    assert _value(s, "modse_truese", "a", "e1", "X") == pytest.approx(math.sqrt(3), rel=1e-12)
    kept = compute_measures(ds, measures=["modse_truese"])
    assert _value(kept, "modse_truese", "a", "e1", "X") == pytest.approx(1.2, rel=1e-12)


def test_tables_and_tidy_show_the_rms_truth():
    ds = _results()
    np.testing.assert_allclose(true_se(ds).values, [[0.5, 0.25, np.nan], [0.4, 0.3, np.nan]])
    summary = compute_measures(ds)
    one = report_table(ds.isel(condition=0), summary.isel(condition=0), "e1")
    np.testing.assert_allclose(one["TrueSE"].values, [0.5, 0.25, np.nan])
    text = summary_text(ds, summary, measures=["modse_truese"])
    assert MISSING_NOTE in text
    plain = ds.assign(observed_true_se=ds["observed_true_se"] * np.nan)
    assert MISSING_NOTE not in summary_text(plain, compute_measures(plain), measures=["bias"])
    dims = ds["estimate"].dims
    full = ds.assign(
        {v: (dims, np.full(ds["estimate"].shape, np.nan)) for v in TERM_VARS if v not in ds}
    ).assign(fit_seconds=ds["converged"] * 0.0)
    frame = tidy(full)
    row = frame[(frame.condition == "a") & (frame.replicate == 3) & (frame.term == "X")]
    assert row["observed_true_se"].tolist() == [0.4, 0.4]  # one row per engine
    assert list(frame.columns).index("observed_true_se") == list(frame.columns).index("true_se") + 1
