"""Defect 1d (issue 24): a grid's text table split to fit the terminal keeps its key
columns (the grid's factors and the term) in every block.

Before the fix the blocks repeated the first ``len(factors) + 2`` columns, which with
the ``singular`` column are factors, ``not_conv`` and ``singular``: no ``term``.
"""

from __future__ import annotations

import json
import os
from unittest import mock

import numpy as np
import pandas as pd
import xarray as xr

from study.analysis.measures import compute_measures
from study.analysis.tables import render, summary_text


def _grid_results(R: int = 30) -> xr.Dataset:
    """Two conditions (factor ``groups``), one engine, a predictor named ``treat``."""
    rng = np.random.default_rng(11)
    terms = ["(Intercept)", "treat", "sd__(Intercept)"]
    truth = np.array([1.0, 2.0, 0.5])
    est = truth + rng.normal(0, 0.1, (2, R, 1, 3))
    se = np.full((2, R, 1, 3), 0.1)
    dims = ("condition", "replicate", "engine", "term")
    return xr.Dataset(
        {
            "estimate": (dims, est),
            "std_error": (dims, se),
            "ci_lower": (dims, est - 0.2),
            "ci_upper": (dims, est + 0.2),
            "converged": (dims[:3], np.ones((2, R, 1), bool)),
            "singular": (dims[:3], np.zeros((2, R, 1), bool)),
            "done": (dims[:2], np.ones((2, R), bool)),
        },
        coords={
            "condition": ["groups=6", "groups=10"],
            "groups": ("condition", [6, 10]),
            "engine": ["reml"],
            "term": terms,
            "effect": ("term", ["fixed", "fixed", "ran_pars"]),
            "true_value": (("condition", "term"), [truth, truth]),
            "true_se": (("condition", "term"), [[0.1, 0.1, np.nan]] * 2),
        },
        attrs={"level": 0.95, "study": "g", "factors": json.dumps(["groups"])},
    )


def _blocks(text: str) -> list[list[str]]:
    """The header cells of every table block of a text summary."""
    heads = []
    lines = text.splitlines()
    for i, line in enumerate(lines[1:], start=1):
        if line.startswith("--") and set(line) <= {"-", " "}:
            heads.append(lines[i - 1].split())
    return heads


def test_every_block_of_a_split_grid_table_keeps_factors_and_term():
    ds = _grid_results()
    summary = compute_measures(ds)
    measures = ["bias", "empirical_se", "model_se", "coverage", "rmse", "modse_truese"]
    size = os.terminal_size((90, 24))
    with mock.patch("shutil.get_terminal_size", return_value=size):
        text = summary_text(ds, summary, measures=measures)
    heads = _blocks(text)
    assert len(heads) > 1  # the table was split
    for head in heads:
        assert head[:1] == ["groups"] and "term" in head, head
    # the key columns are not repeated as data columns in a block
    assert all(head.count("term") == 1 for head in heads)


def test_render_keeps_named_key_columns_in_their_order():
    frame = pd.DataFrame(
        {
            "g": [1, 2],
            "flag": [0, 0],
            "term": ["a", "b"],
            **{f"measure_{i:02d}_(unit)": ["0.1234 (0.0001)"] * 2 for i in range(10)},
        }
    )
    blocks = render(frame, "table", width=70, keep=["g", "term"]).split("\n\n")
    assert len(blocks) > 1
    first = blocks[0].splitlines()[0].split()
    assert first[:3] == ["g", "flag", "term"]  # the first block as the frame is ordered
    for b in blocks[1:]:
        assert b.splitlines()[0].split()[:2] == ["g", "term"]
    assert all(max(len(line) for line in b.splitlines()) <= 70 for b in blocks)


def test_by_default_the_columns_up_to_term_repeat():
    """``study truth`` of a grid renders factor columns, then ``term``: before, only the
    first factor repeated and the continuation blocks had no term."""
    frame = pd.DataFrame(
        {
            "groups": [5, 5],
            "group_size": [5, 20],
            "term": ["(Intercept)", "treat"],
            **{f"truth_{i:02d}_column": [0.123456, 0.654321] for i in range(8)},
        }
    )
    blocks = render(frame, "table", digits=6, width=80).split("\n\n")
    assert len(blocks) > 1
    for b in blocks:
        assert b.splitlines()[0].split()[:3] == ["groups", "group_size", "term"]
    plain = frame.drop(columns=["groups", "group_size"]).rename(columns={"term": "name"})
    for b in render(plain, "table", digits=6, width=60).split("\n\n"):
        assert b.startswith("name")  # no term column: the first column repeats
