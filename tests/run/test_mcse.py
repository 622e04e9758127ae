"""Per-condition replicate counts and runs to a Monte Carlo SE target (``--mcse``).

Small studies (REML, K = 6 groups of 5, two conditions that differ in the residual
SD), so the whole module runs in well under a minute on one core.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import comparable, study_toml

from models.validate import OptionError
from study.analysis.kinds.base import is_partial
from study.design.config import config_from_text
from study.errors import UserError
from study.run.executors import InProcess, LocalProcesses
from study.run.results import open_results
from study.run.runner import all_pairs, run_study
from study.run.store import Store
from study.usecases.precision import plan
from study.usecases.running import PrecisionReport, run

GRID = study_toml(
    name="grid",
    replicates=4,
    design={"groups": 6, "group_size": 5, "re_sd": [0.1, 0.05]},
    conditions={"sigma": [0.3, 3.0]},
)


@pytest.fixture
def grid():
    return config_from_text(GRID, default_name="grid", label="grid")


def test_counts_reach_the_pairs_and_are_validated(grid):
    low, high = (c.id for c in grid.conditions)
    cfg = grid.with_counts({low: 2, grid.conditions[1].label: 5})
    assert cfg.counts == {low: 2, high: 5} and cfg.pairs == 7
    assert list(all_pairs(cfg)) == [
        (low, 0), (high, 0), (low, 1), (high, 1), (high, 2), (high, 3), (high, 4)
    ]  # fmt: skip
    assert cfg.hash() == grid.hash()  # counts never change a replicate's results
    back = config_from_text(cfg.to_toml(), default_name="grid", label="grid")
    assert back.counts == cfg.counts
    with pytest.raises(OptionError, match=r"replicates_by_condition\.nope"):
        grid.with_counts({"nope": 3})
    with pytest.raises(OptionError, match="replicates_by_condition"):
        grid.with_counts({low: 0})


def test_counts_reach_the_dataset_resume_and_workers(grid, tmp_path):
    low, high = (c.id for c in grid.conditions)
    cfg = grid.with_counts({low: 2, high: 5})
    report = run_study(cfg, tmp_path / "a", executor=InProcess())
    assert (report.total, report.new) == (7, 7)
    ds = open_results(tmp_path / "a")
    assert ds["replicates_requested"].values.tolist() == [2, 5]
    assert ds["done"].sum("replicate").values.tolist() == [2, 5] and not is_partial(ds)
    manifest = Store(tmp_path / "a").read_manifest()
    assert manifest["replicates_by_condition"] == {low: 2, high: 5}
    # a resume with fewer keeps the larger counts and fits nothing
    again = run_study(grid.with_counts({low: 1, high: 3}), tmp_path / "a")
    assert again.new == 0
    assert Store(tmp_path / "a").read_manifest()["replicates_by_condition"] == {low: 2, high: 5}
    # a partial condition is partial by its own count
    run_study(grid.with_counts({low: 2, high: 1}), tmp_path / "b")
    manifest = Store(tmp_path / "b").read_manifest()
    manifest["replicates_by_condition"] = {low: 2, high: 5}
    Store(tmp_path / "b").write_manifest(manifest, Store(tmp_path / "b").config_text())
    assert is_partial(open_results(tmp_path / "b"))
    # worker processes make the same numbers
    run_study(cfg, tmp_path / "w", executor=LocalProcesses(2))
    w = open_results(tmp_path / "w")
    assert comparable(w).identical(comparable(ds))


def _bias_mcse(ds) -> np.ndarray:
    """The bias MCSE recomputed from the raw estimates: sd / sqrt(n), worst term."""
    est = ds["estimate"].where(ds["done"]).isel(engine=0).values  # (condition, rep, term)
    n = np.isfinite(est).sum(1)
    sd = np.nanstd(est, axis=1, ddof=1)
    return np.nanmax(sd / np.sqrt(n), axis=1)


def test_mcse_run_meets_targets_or_caps_and_a_rerun_fits_nothing(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text(GRID)
    lines: list[str] = []
    report = run(path, tmp_path / "r", workers=1, mcse={"bias": 0.25}, notify=lines.append)
    assert isinstance(report, PrecisionReport) and report.plan is not None
    ds = open_results(tmp_path / "r")
    n = ds["done"].sum("replicate").values
    worst = _bias_mcse(ds)
    cap = report.plan.max_replicates
    assert cap == 80
    assert all(m <= 0.25 or k == cap for m, k in zip(worst, n, strict=True)), (worst, n)
    assert n[0] < n[1]  # the noisier condition needed more
    assert ds["replicates_requested"].values.tolist() == n.tolist() and not is_partial(ds)
    assert lines[-1].startswith(f"round {report.rounds}: done")
    status = report.plan.frame()["status"].tolist()
    assert status[0] == "met" and status[1] in ("met", f"capped at {cap}")
    again = run(path, tmp_path / "r", workers=1, mcse={"bias": 0.25})
    assert again.new == 0 and again.rounds == 1


def test_plan_counts_are_the_formula(grid, tmp_path):
    run_study(grid, tmp_path / "p")
    ds = open_results(tmp_path / "p")
    got = plan(tmp_path / "p", {"bias": 0.05, "coverage": 0.2}, max_replicates=30)
    lo, hi = (ds[v].isel(engine=0) for v in ("ci_lower", "ci_upper"))
    theta = ds["true_value"]
    valid = (lo.notnull() & hi.notnull()).values
    hit = ((lo <= theta) & (theta <= hi)).values & valid
    p = hit.sum(1) / valid.sum(1)
    cov_mcse = np.nanmax(np.sqrt(p * (1 - p) / valid.sum(1)), axis=1)
    for row, b, c in zip(got.rows, _bias_mcse(ds), cov_mcse, strict=True):
        assert row.replicates == 4
        assert row.mcse["bias"] == pytest.approx(b)
        assert row.mcse["coverage"] == pytest.approx(c)
        needs = [math.ceil(4 * (b / 0.05) ** 2)]
        needs.append(math.ceil(4 * (c / 0.2) ** 2) if c > 0 else 4)
        assert row.needed == max(needs)
        assert row.met == (b <= 0.05 and c <= 0.2)
        assert row.capped == (not row.met and row.needed > 30)


def test_a_kind_without_mcse_measures_is_refused(tmp_path):
    from study.analysis.kinds import views_of
    from study.usecases.precision import check_targets

    with pytest.raises(UserError, match="no measure with a Monte Carlo SE"):
        check_targets(views_of("sbc"), {"coverage": 0.01})
