"""Tables people and programs read: units, counts, unreliable MCSEs, width, long CSV."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from study.analysis.measures import compute_measures
from study.analysis.tables import FOOTNOTE, long_table, measure_table, render, summary_text


def _results(R: int, seed: int = 3) -> xr.Dataset:
    """A one-condition, one-engine results Dataset with known structure."""
    rng = np.random.default_rng(seed)
    terms = ["(Intercept)", "X", "sd__X"]
    est = np.array([1.0, 2.0, 0.5]) + rng.normal(0, 0.1, (1, R, 1, 3))
    se = np.full((1, R, 1, 3), 0.1)
    se[..., 2] = np.nan  # no SE for the SD, as REML
    se[0, :5, 0, 1] = np.nan  # five replicates without an SE for X
    dims = ("condition", "replicate", "engine", "term")
    return xr.Dataset(
        {
            "estimate": (dims, est),
            "std_error": (dims, se),
            "ci_lower": (dims, est - 100 * se),  # always covers: coverage 1
            "ci_upper": (dims, est + 100 * se),
            "converged": (dims[:3], np.ones((1, R, 1), bool)),
            "done": (dims[:2], np.ones((1, R), bool)),
        },
        coords={
            "condition": ["base"],
            "engine": ["reml"],
            "term": terms,
            "effect": ("term", ["fixed", "fixed", "ran_pars"]),
            "true_value": (("condition", "term"), [[1.0, 2.0, 0.5]]),
            "true_se": (("condition", "term"), [[0.1, 0.1, np.nan]]),
        },
        attrs={"level": 0.95, "study": "t", "factors": "[]", "replicates_requested": R},
    )


def test_units_counts_and_unreliable_marks():
    ds = _results(150)
    summary = compute_measures(ds)
    table = measure_table(summary.isel(condition=0), "reml", ["relative_bias", "coverage", "bias"])
    assert list(table.columns) == [
        "term",
        "n_est",
        "n_se",
        "n_ci",
        "relative_bias (fraction)",
        "coverage (share)",
        "bias",
    ]
    assert table.n_est.tolist() == [150, 150, 150] and table.n_se.tolist() == [150, 145, 0]
    assert table.n_est.dtype.kind == "i"
    # coverage of exactly 1: its binomial MCSE of 0 is flagged, the bias (n = 150) is not
    assert table["coverage (share)"][0] == "1.0000 (0.0000)!"
    assert not table["bias"][0].endswith("!")
    few = measure_table(compute_measures(_results(40)).isel(condition=0), "reml", ["bias"])
    assert few["bias"][0].endswith("!")  # fewer than 100 replicates
    text = summary_text(ds, summary, measures=["bias", "coverage"])
    assert FOOTNOTE in text


def test_wide_text_tables_are_split_to_fit():
    frame = pd.DataFrame(
        {"term": ["a", "b"], **{f"measure_{i}": ["0.1234 (0.0001)"] * 2 for i in range(12)}}
    )
    text = render(frame, "table", width=80)
    blocks = text.split("\n\n")
    assert len(blocks) > 1
    assert all(max(len(line) for line in b.splitlines()) <= 80 for b in blocks)
    assert all(b.startswith("term") for b in blocks)  # the key column repeats
    assert render(frame, "markdown", width=80).count("\n\n") == 0  # markdown is never split


def test_long_csv_reads_back_with_pandas():
    ds = _results(120)
    summary = compute_measures(ds, measures=["bias", "coverage"])
    frame = long_table(ds, summary)
    again = pd.read_csv(pd.io.common.StringIO(frame.to_csv(index=False)))
    assert list(again.columns) == ["condition", "engine", "term", "measure", "value", "mcse", "n"]
    assert len(again) == 1 * 1 * 3 * 2 and again.n.dtype.kind == "i"
    cov = again[(again.term == "X") & (again.measure == "coverage")].iloc[0]
    assert cov.value == 1.0 and cov.n == 115  # the 5 replicates without an SE drop out
