"""Conditions: grids of designs in one study (expansion, seeds, truth, measures, resume)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import tomllib

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from helpers import study_toml

from study.analysis.measures import compute_measures
from study.analysis.tidy import tidy
from study.api import is_partial, open_results
from study.cli.main import main
from study.design.config import config_from_dict, config_from_text, load_config
from study.design.generate import Design
from study.design.truth import compute_truth
from study.errors import ConfigError
from study.run.batch import run_batch
from study.run.runner import run_study
from study.run.store import Store

LEVELS = {"groups": [4, 6], "group_size": [5, 8]}


def _text(conditions: dict | None = None, *, replicates: int = 4, **design) -> str:
    """The module's base study (K = 6 groups of 8, seed 5), a design change, a grid."""
    return study_toml(
        name="grid",
        replicates=replicates,
        seed=5,
        design={"groups": 6, "group_size": 8} | design,
        conditions=conditions,
    )


BASE = _text()
GRID = _text(LEVELS)
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _cfg(text: str):
    return config_from_text(text, default_name="grid", label="test")


def _estimates(cfg, label: str, replicates=(0, 1, 2)) -> np.ndarray:
    cond = next(c for c in cfg.conditions if c.label == label)
    piece = run_batch(cfg, [(cond.id, r) for r in replicates]).piece
    return piece.values["estimate"]


# -- grid expansion --------------------------------------------------------------------------
def test_crossed_grid_in_order_with_base_for_the_rest():
    cfg = _cfg(GRID)
    assert [c.label for c in cfg.conditions] == [
        "groups=4, group_size=5",
        "groups=4, group_size=8",
        "groups=6, group_size=5",
        "groups=6, group_size=8",
    ]
    assert all(c.design.re_sd == (0.8, 0.4) for c in cfg.conditions)
    assert [(c.design.groups, c.design.group_size) for c in cfg.conditions][1] == (4, 8)
    assert len({c.id for c in cfg.conditions}) == 4 and cfg.multi


def test_exclude_and_add():
    text = _text(
        LEVELS
        | {
            "exclude": [{"groups": 4, "group_size": 8}],
            "add": [{"groups": 12, "group_size": 3, "sigma": 2.0}],
        }
    )
    labels = [c.label for c in _cfg(text).conditions]
    assert labels == [
        "groups=4, group_size=5",
        "groups=6, group_size=5",
        "groups=6, group_size=8",
        "groups=12, group_size=3, sigma=2.0",
    ]
    only = _cfg(_text({"add": [{"groups": 3}, {"groups": 9}]}))
    assert [c.label for c in only.conditions] == ["groups=3", "groups=9"]


def test_no_conditions_is_one_base_condition():
    cfg = _cfg(BASE)
    assert [c.label for c in cfg.conditions] == ["base"] and not cfg.multi
    assert cfg.conditions[0].design == cfg.design


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        ("groups = [1, 6]\n", r"condition groups=1: design.groups = 1: must be >= 2"),
        ("sigma = [1.0, -2.0]\n", r"condition sigma=-2.0: design.sigma = -2.0: must be > 0"),
        (
            "re_sd = [[1.0, 2.0], [1.0]]\n",
            r"condition re_sd=\[1.0\]: design.re_sd = \[1.0\]: must have 2 values",
        ),
        ("predictors = [['A']]\n", r"conditions.predictors = .*cannot vary"),
        ("groups = 5\n", r"conditions.groups = 5: must be a non-empty list of levels"),
        ("colour = [1]\n", r"unknown key conditions.colour; allowed keys in \[conditions\]"),
        ("groups = [5, 5]\n", r"conditions = 'groups=5': is the same design as condition groups=5"),
        ("groups = [5]\nexclude = [{groups = 6}]\n", r"conditions.exclude\[0\] = .*matches no"),
        ("groups = [5]\nexclude = [{groups = 5}]\n", r"excludes every condition"),
        ("add = [{sigma = 0}]\n", r"condition sigma=0: design.sigma = 0: must be > 0"),
    ],
)
def test_validation_names_condition_and_key(extra, pattern, write_config, capsys):
    path = write_config(_text(tomllib.loads(extra)))
    with pytest.raises(ConfigError, match=pattern):
        load_config(path)
    assert main(["truth", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1


def test_conditions_round_trip_and_enter_the_hash(write_config):
    cfg = _cfg(GRID)
    again = load_config(write_config(cfg.to_toml(), "rt.toml"))
    assert [c.id for c in again.conditions] == [c.id for c in cfg.conditions]
    assert again.hash() == cfg.hash() != _cfg(BASE).hash()


# -- seeds: a condition's data depend on its values, not its place -----------------------------
def test_condition_results_do_not_depend_on_the_grid():
    grid = _cfg(GRID)
    label = "groups=6, group_size=5"
    in_grid = _estimates(grid, label)
    reordered = _cfg(_text(LEVELS | {"groups": [6, 4]}))
    extended = _cfg(_text(LEVELS | {"group_size": [8, 5, 3]}))
    alone = _cfg(_text(group_size=5))
    np.testing.assert_array_equal(_estimates(reordered, label), in_grid)
    np.testing.assert_array_equal(_estimates(extended, label), in_grid)
    np.testing.assert_array_equal(_estimates(alone, "base"), in_grid)
    # and conditions do differ from one another
    assert not np.array_equal(_estimates(grid, "groups=6, group_size=8"), in_grid)


def test_truth_per_condition_equals_single_condition_truth(tmp_path):
    grid = _cfg(GRID)
    run_study(grid.with_replicates(2), tmp_path / "R")
    ds = open_results(tmp_path / "R")
    for c in grid.conditions:
        alone = _cfg(_text(groups=c.design.groups, group_size=c.design.group_size))
        truth = compute_truth(Design.from_study(alone))
        np.testing.assert_array_equal(ds.true_se.sel(condition=c.label).values, truth.se)
        np.testing.assert_array_equal(ds.true_value.sel(condition=c.label).values, truth.value)


def test_measures_per_condition_equal_single_condition_measures(tmp_path):
    grid = _cfg(GRID)
    run_study(grid, tmp_path / "grid")
    alone = _cfg(_text(groups=4, group_size=5))
    run_study(alone, tmp_path / "alone")
    label = "groups=4, group_size=5"
    g = compute_measures(open_results(tmp_path / "grid")).sel(condition=label)
    a = compute_measures(open_results(tmp_path / "alone")).isel(condition=0)
    for var in ("value", "mcse", "nonconverged", "replicates"):
        np.testing.assert_array_equal(g[var].values, a[var].values)


# -- results: selection, tidy, CLI --------------------------------------------------------------
def test_dataset_factor_coordinates_tidy_and_cli(tmp_path, capsys):
    grid = _cfg(GRID)
    run_study(grid.with_replicates(2), tmp_path / "R")
    ds = open_results(tmp_path / "R")
    assert ds.estimate.dims == ("condition", "replicate", "engine", "term")
    assert ds.true_se.dims == ("condition", "term")
    sub = ds.sel(condition=ds.groups == 6)
    assert list(sub.condition.values) == ["groups=6, group_size=5", "groups=6, group_size=8"]
    picked = ds.set_xindex(["groups", "group_size"]).sel(groups=4, group_size=8)
    assert picked.estimate.dims == ("replicate", "engine", "term")  # one condition picked
    np.testing.assert_array_equal(
        picked.estimate.values, ds.estimate.sel(condition="groups=4, group_size=8").values
    )
    frame = tidy(ds)
    assert len(frame) == 4 * 2 * 1 * 6
    assert list(frame.columns[:4]) == ["condition", "groups", "group_size", "replicate"]
    by = frame[frame.term == "X"].groupby(["groups", "group_size"]).estimate.count()
    assert by.to_dict() == {(4, 5): 2, (4, 8): 2, (6, 5): 2, (6, 8): 2}
    assert main(["summarize", str(tmp_path / "R"), "--format", "csv"]) == 0
    long = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(long.columns) == [
        "condition",
        "groups",
        "group_size",
        "engine",
        "term",
        "measure",
        "value",
        "mcse",
        "n",
    ]
    assert len(long) == 4 * 1 * 6 * 9  # conditions x engines x terms x default measures
    x = long[(long.groups == 6) & (long.group_size == 8) & (long.term == "X")]
    s = compute_measures(ds).sel(condition="groups=6, group_size=8", engine="reml", term="X")
    for _, row in x.iterrows():
        assert row.value == pytest.approx(float(s.value.sel(measure=row.measure)), nan_ok=True)
        assert row.n == int(s.n.sel(measure=row.measure))
    assert main(["summarize", str(tmp_path / "R")]) == 0
    assert "2 replicates of each of 4" in capsys.readouterr().out
    assert main(["truth", "small-groups", "--format", "csv"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    assert lines[0].startswith("groups,group_size,term") and len(lines) == 1 + 8 * 6


def test_partial_grid_counts_only_fitted_pairs(tmp_path):
    grid = _cfg(GRID)
    out = tmp_path / "R"
    run_study(grid.with_replicates(2), out)
    store = Store(out)
    files = store.piece_files()
    assert len(files) == 1  # consolidated at the end
    piece = store.load()
    assert piece is not None
    keep = ~((piece.replicate == 1) & (piece.condition == grid.conditions[3].id))
    for f in files:
        f.unlink()
    from study.run.store import Piece

    store.write_piece(
        Piece(
            piece.condition[keep],
            piece.replicate[keep],
            {k: v[keep] for k, v in piece.values.items()},
        )
    )
    ds = open_results(out)
    assert is_partial(ds) and int(ds.done.sum()) == 7
    assert ds.message.sel(condition=grid.conditions[3].label, replicate=1).item() == "not run"
    summary = compute_measures(ds)
    assert int(summary.nonconverged.sum()) == 0
    assert summary.replicates.sel(condition=grid.conditions[3].label).item() == 1
    # resuming fills the hole, identically to an uninterrupted run
    run_study(grid.with_replicates(2), out)
    run_study(grid.with_replicates(2), tmp_path / "clean")
    a, b = open_results(out), open_results(tmp_path / "clean")
    xr.testing.assert_identical(
        a.drop_vars("fit_seconds").drop_attrs(), b.drop_vars("fit_seconds").drop_attrs()
    )
    # extending the grid run adds replicates to every condition, the old ones untouched
    report = run_study(grid.with_replicates(3), out)
    assert report.new == 4 and report.done == 12
    ext = open_results(out)
    xr.testing.assert_identical(
        ext.estimate.sel(replicate=[0, 1]), a.estimate.sel(replicate=[0, 1])
    )


@pytest.mark.slow
def test_killed_grid_run_resumes_to_the_uninterrupted_dataset(tmp_path):
    """Slow (~36 s): the slow kill matrix (test_interruption.py) kills 2-condition grid
    runs too; the default suite keeps tests/run/test_runner.py's kill and resume."""
    cfg = tmp_path / "grid.toml"
    cfg.write_text(_text(LEVELS, replicates=12))
    cmd = [sys.executable, "-m", "study", "run", str(cfg), "--workers", "1"]
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen(
        [*cmd, "--out", str(killed)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ck = killed / "checkpoints"
        if ck.is_dir() and len(list(ck.glob("part-*.npz"))) >= 6:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = Store(killed).load()
    assert partial is not None and 6 <= len(partial) < 48, "kill came too late to test resume"
    for out in (killed, clean):
        subprocess.run([*cmd, "--out", str(out)], env=ENV, check=True, capture_output=True)
    with xr.open_dataset(killed / "results.nc") as a, xr.open_dataset(clean / "results.nc") as b:
        assert a.sizes["condition"] == 4 and a.sizes["replicate"] == 12 and bool(a.done.all())
        xr.testing.assert_identical(
            a.load().drop_vars("fit_seconds").drop_attrs(),
            b.load().drop_vars("fit_seconds").drop_attrs(),
        )


def test_config_from_dict_accepts_a_conditions_table():
    cfg = config_from_dict({"conditions": {"sigma": [0.5, 2.0]}}, default_name="x")
    assert [c.design.sigma for c in cfg.conditions] == [0.5, 2.0]


def test_run_batch_takes_pairs_of_any_condition():
    grid = _cfg(GRID)
    pairs = [(grid.conditions[2].id, 1), (grid.conditions[0].id, 0)]
    piece = run_batch(grid, pairs).piece
    assert sorted(piece.pairs()) == sorted(pairs)


def test_labels_of_added_conditions_name_them_and_survive_a_round_trip():
    """An ``add`` entry's label names its condition, is kept in the written TOML (the
    entries were once stripped of it in place) and is not in the hash (a name only)."""
    from study.design.config import config_from_text, load_config

    config = load_config("robustness")
    assert [c.label for c in config.conditions][:3] == ["normal", "skewed u", "bimodal u"]
    again = config_from_text(config.to_toml(), default_name="r", label="r")
    assert [c.label for c in again.conditions] == [c.label for c in config.conditions]
    assert again.hash() == config.hash()
    renamed = config.to_toml().replace('"skewed u"', '"chi-square u"')
    assert config_from_text(renamed, default_name="r", label="r").hash() == config.hash()
