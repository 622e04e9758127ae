"""Concurrent runs, resource limits, failing fits as data, and --fail-fast.

* One writer per run directory: a second `study run` is refused while one runs; a
  lock left by a process that is gone (kill -9) blocks nothing; the shards of an array
  job write side by side.
* A study that would not fit in memory or on disk is refused before anything is
  written, with the estimate.
* Designs that make fits fail or hit the boundary (a random-slope SD of 0, groups of
  2 rows, a predictor constant within groups) run to the end; every failure has its
  reason, counted by `study info`, `study summarize` and the report.
* `--fail-fast` stops at the first failing fit with its traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from helpers import file_tree

from models.reml.engine import RemlEngine
from study.cli.main import main
from study.design.config import load_config
from study.errors import FitFailed, StoreError, UserError
from study.run.budget import MEMORY_COPIES, check_budget, estimate
from study.run.lock import LOCK, run_lock
from study.run.runner import run_study
from study.run.shards import Shard
from study.run.store import Store

SMALL = """
name = "rel"
replicates = 3
seed = 2

[design]
groups = 6
group_size = 5
beta = [1.0, 0.5]
re_sd = [0.8, 0.4]
re_cor = [[1.0, 0.1], [0.1, 1.0]]

[engines]
run = ["reml"]
"""

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
#: seconds after which a process (or a condition) is taken as hung: generous, since the
#: tests share 2 cores with other heavy jobs; waits poll, so a healthy run never waits
#: this long
HUNG = 300


@pytest.fixture
def small(tmp_path) -> Path:
    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL)
    return cfg


# -- one writer per run directory ------------------------------------------------------------
def test_a_second_run_on_a_busy_directory_is_refused_and_changes_nothing(small, tmp_path, capsys):
    out = tmp_path / "run"
    run_study(load_config(small), out)
    tree = file_tree(out)
    with run_lock(out):  # a run in progress (this process holds the lock)
        held = json.loads((out / LOCK).read_text())
        tree[LOCK] = hashlib.sha256((out / LOCK).read_bytes()).hexdigest()
        assert main(["run", str(small), "--out", str(out), "--replicates", "5"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert f"{out} is in use by" in err and f"pid {held['pid']}" in err
        assert "wait for it to finish" in err
        assert main(["merge", str(out)]) == 2  # a merge would consolidate under it
        assert "is in use by" in capsys.readouterr().err
        assert file_tree(out) == tree  # nothing written, not even the lock's holder
    # reading commands never wait for the lock
    assert main(["summarize", str(out)]) == 0


def test_a_lock_left_by_a_killed_run_does_not_block(small, tmp_path):
    """kill -9 leaves the lock file (naming a dead pid); the kernel dropped the lock."""
    out = tmp_path / "run"
    cfg = load_config(small).with_replicates(400)
    cfg_path = tmp_path / "long.toml"
    cfg_path.write_text(cfg.to_toml())
    cmd = [sys.executable, "-m", "study", "run", str(cfg_path), "--out", str(out)]
    proc = subprocess.Popen([*cmd, "--workers", "1"], env=ENV, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + HUNG
        while len(Store(out).piece_files()) < 2:
            assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before 2 pieces"
            assert time.monotonic() < deadline, "the run wrote no 2 pieces in time"
            time.sleep(0.05)
        # frozen (it keeps the lock): the second run's start-up, however slow on a
        # loaded machine, cannot outlast the first run
        proc.send_signal(signal.SIGSTOP)
        # while it runs, a second run is refused, naming the first
        second = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=HUNG)
        assert second.returncode == 2, second.stderr
        assert f"pid {proc.pid}" in second.stderr and "Traceback" not in second.stderr
    finally:
        proc.send_signal(signal.SIGKILL)  # ends a stopped process too
        proc.wait()
    assert json.loads((out / LOCK).read_text())["pid"] == proc.pid  # stale file left
    report = run_study(cfg.with_replicates(20), out)  # not blocked
    assert report.done == 20


def test_shards_share_a_directory_but_not_a_shard(tmp_path, capsys):
    out = tmp_path / "run"
    with run_lock(out, shard="1/3"), run_lock(out, shard="2/3"):
        with (
            pytest.raises(StoreError, match=r"shard 1/3 of .* is already running"),
            run_lock(out, shard="1/3"),
        ):
            pass
        with pytest.raises(StoreError, match="is in use by"), run_lock(out):
            pass  # a whole run (or merge) waits for the shards
    with run_lock(out):  # all released
        pass


def test_a_refused_run_leaves_no_directory_behind(small, tmp_path, capsys):
    out = tmp_path / "deep" / "er" / "run"
    with pytest.raises(UserError, match="would need about"), run_lock(out):
        check_budget(load_config(small), out, available_memory=10)
    assert not (tmp_path / "deep").exists()


# -- resource limits ---------------------------------------------------------------------------
def test_a_study_too_big_for_memory_or_disk_is_refused_up_front(small, tmp_path, capsys):
    cfg = load_config(small)
    need = estimate(cfg.with_replicates(1000))
    # per pair: 8 per-term variables x 6 terms x 8 bytes + the per-fit fields
    assert 6 * 8 * 8 < need.per_pair < 2000
    assert need.memory == MEMORY_COPIES * 1000 * need.per_pair
    check_budget(cfg, tmp_path, available_memory=need.memory, free_disk=need.disk)
    with pytest.raises(UserError, match=r"would need about .* of memory .* is available"):
        check_budget(cfg.with_replicates(1000), tmp_path, available_memory=need.memory - 1)
    with pytest.raises(UserError, match=r"of disk in .* is free there"):
        check_budget(cfg.with_replicates(1000), tmp_path, free_disk=need.disk - 1)
    # a real refusal on this machine: 400 conditions x 1,000,000 replicates (~10 TB)
    big = tmp_path / "big.toml"
    big.write_text(
        SMALL.replace("replicates = 3", "replicates = 1000000")
        + "\n[conditions]\ngroups = "
        + str(list(range(2, 402)))
        + "\n"
    )
    out = tmp_path / "big-run"
    assert main(["run", str(big), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "400,000,000 (condition, replicate) pairs" in err
    assert "TB of memory" in err and not out.exists()


# -- failing fits are data ---------------------------------------------------------------------
FAILING = """
name = "failing"
replicates = 4
seed = 5

[design]
groups = 8
group_size = 6
beta = [1.0, 0.5]
re_sd = [0.8, 0.4]
re_cor = [[1.0, 0.0], [0.0, 1.0]]

[conditions]
add = [{re_sd = [0.8, 0.0]}, {group_size = 2}, {group_size = 1, repeats = 4}]

[engines]
run = ["reml", "bayes"]

[engines.bayes]
chains = 2
draws = 200
tune = 200
"""


@pytest.fixture(scope="module")
def failing_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("failing")
    cfg = tmp / "failing.toml"
    cfg.write_text(FAILING)
    out = tmp / "run"
    report = run_study(load_config(cfg), out)
    assert report.complete and report.done == 12  # 3 conditions (add only) x 4
    return out


def test_failing_designs_run_to_the_end_with_every_failure_explained(failing_run, capsys):
    with xr.open_dataset(failing_run / "results.nc") as ds:
        ds = ds.load()
    assert bool(ds.done.all())
    failed = ~ds.converged.astype(bool)
    assert int(failed.sum()) > 0
    assert all(str(m).strip() for m in ds.message.values[failed.values])  # every one has a reason
    reml = ds.sel(engine="reml")
    # groups of 2 rows with a random slope: N = K q, refused per fit as lme4 does
    pairs = reml.sel(condition="group_size=2")
    assert not bool(pairs.converged.any())
    assert all("need more rows than random effects" in str(m) for m in pairs.message.values)
    # a random-slope SD of 0, and a predictor constant within groups: boundary fits
    for label in ("re_sd=[0.8, 0.0]", "group_size=1, repeats=4"):
        assert int(reml.sel(condition=label).singular.sum()) >= 2, label
    # the correlation of an absent random effect has no true value
    assert np.isnan(ds.true_value.sel(condition="re_sd=[0.8, 0.0]", term="cor__(Intercept).X"))
    # info lists the reasons with counts, per engine and condition
    assert main(["info", str(failing_run)]) == 0
    text = capsys.readouterr().out
    assert "reml   not converged 4 of 12" in text
    assert "4  ValueError: need more rows than random effects, got K=# groups" in text
    assert "by condition: group_size=2 4" in text
    # summarize: n and failure counts per engine and condition, and the reasons
    assert main(["summarize", str(failing_run)]) == 0
    out = capsys.readouterr().out
    assert "engine reml: 4 of 12 fits not converged (kept)" in out
    assert "reasons: 4 x ValueError: need more rows than random effects" in out
    assert "not_conv" in out and "n_est" in out


def test_the_report_tables_the_failure_reasons(failing_run, capsys):
    assert main(["report", str(failing_run)]) == 0
    capsys.readouterr()
    md = (failing_run / "report.md").read_text()
    assert "## Failed fits, by reason" in md
    assert (
        "| reml | group_size=2 | 4 | 4 | 4 | ValueError: need more rows than random effects" in md
    )


# -- --fail-fast -----------------------------------------------------------------------------
def test_fail_fast_stops_at_the_first_failure_with_its_traceback(
    small, tmp_path, monkeypatch, capsys
):
    def boom(self, data):
        raise RuntimeError("boom in the polish")

    monkeypatch.setattr(RemlEngine, "_fit", boom)
    out = tmp_path / "run"
    # without it, failures are data: the study completes
    report = run_study(load_config(small), out)
    assert report.complete and report.failures == 3
    assert main(["info", str(out)]) == 0
    assert "3  RuntimeError: boom in the polish" in capsys.readouterr().out
    # with it, the first failing fit stops the run, traceback and all
    with pytest.raises(FitFailed, match="reml failed at replicate 0: RuntimeError: boom") as exc:
        run_study(load_config(small), tmp_path / "ff", fail_fast=True)
    assert "in boom" in exc.value.trace and "Traceback" in exc.value.trace
    argv = ["run", str(small), "--out", str(tmp_path / "ff2"), "--fail-fast", "--workers", "1"]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback (most recent call last)" in err and "boom in the polish" in err
    assert err.strip().splitlines()[-1].startswith("study: --fail-fast: reml failed at replicate 0")


def test_fail_fast_also_stops_on_a_fit_that_did_not_converge(tmp_path):
    cfg = tmp_path / "pairs.toml"
    cfg.write_text(SMALL.replace("group_size = 5", "group_size = 2"))
    with pytest.raises(FitFailed, match="reml failed at replicate 0: ValueError: need more rows"):
        run_study(load_config(cfg), tmp_path / "run", fail_fast=True)
    # the replicates before it are saved (none here) and the store is usable
    assert Store(tmp_path / "run").exists()


def test_fail_fast_with_workers_brings_the_traceback_home(small, tmp_path, monkeypatch):
    cfg = tmp_path / "pairs.toml"
    cfg.write_text(SMALL.replace("group_size = 5", "group_size = 2"))
    from study.run.executors import LocalProcesses

    with pytest.raises(FitFailed, match="need more rows") as exc:
        run_study(
            load_config(cfg),
            tmp_path / "run",
            fail_fast=True,
            executor=LocalProcesses(2, 1),
        )
    assert "Traceback" in exc.value.trace and "_check_data" in exc.value.trace


def test_shard_lock_is_taken_by_a_shard_run(small, tmp_path):
    out = tmp_path / "run"
    with run_lock(out, shard="1/2"):
        with pytest.raises(StoreError, match=r"shard 1/2 .* is already running"):
            run_study(load_config(small), out, shard=Shard(1, 2))
        report = run_study(load_config(small), out, shard=Shard(2, 2))  # side by side
    assert report.done == 1


def test_two_shards_running_at_once_into_one_directory_merge_to_the_serial_run(small, tmp_path):
    cfg = load_config(small).with_replicates(8)
    cfg_path = tmp_path / "eight.toml"
    cfg_path.write_text(cfg.to_toml())
    serial = tmp_path / "serial"
    run_study(cfg, serial)
    out = tmp_path / "shared"
    base = [sys.executable, "-m", "study", "run", str(cfg_path), "--out", str(out)]
    procs = [
        subprocess.Popen(
            [*base, "--shard", f"{i}/2", "--workers", "1"],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (1, 2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=HUNG)
        assert proc.returncode == 0, err
    assert main(["merge", str(out)]) == 0
    with xr.open_dataset(out / "results.nc") as a, xr.open_dataset(serial / "results.nc") as b:
        xr.testing.assert_identical(
            a.load().drop_vars("fit_seconds").drop_attrs(),
            b.load().drop_vars("fit_seconds").drop_attrs(),
        )


def test_a_shard_leaves_other_writers_temporaries_a_whole_run_removes_a_killed_runs(
    small, tmp_path
):
    out = tmp_path / "run"
    run_study(load_config(small), out, shard=Shard(1, 2))
    in_flight = out / "checkpoints" / ".part-0000001-00001-abcd.npz.x1y2.tmp"
    in_flight.write_bytes(b"another shard's piece, half written")
    summary_tmp = out / ".summary.nc.q9.tmp"  # a `study summarize` writing beside it
    summary_tmp.write_bytes(b"...")
    run_study(load_config(small), out, shard=Shard(2, 2))
    assert in_flight.exists() and summary_tmp.exists()
    run_study(load_config(small), out)  # exclusive: the killed write is garbage now
    assert not in_flight.exists() and summary_tmp.exists()
