"""Scale-out: results identical whatever way a study ran.

Serial, 2 local worker processes, a Dask cluster on loopback, 3 shards merged, and a
run with workers killed (SIGKILL) and resumed: REML values bit for bit, Bayesian
values identical for the same seeds, kept posteriors identical (only fit_seconds and
the timestamps differ).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import xarray as xr
from helpers import ROOT, comparable

from models.registry import ENGINE_VERSIONS
from study.cli.main import main
from study.design.config import load_config
from study.errors import StoreError
from study.run.executors import LocalProcesses, batches, make_executor
from study.run.runner import all_pairs, run_study
from study.run.shards import Shard, parse_shard
from study.run.store import Store

GRID = """
name = "scale"
replicates = 6
seed = 11
keep_draws = 1

[design]
groups = 6
group_size = 8
beta = [1.0, 0.5]
re_sd = [0.8, 0.4]
re_cor = [[1.0, 0.2], [0.2, 1.0]]
sigma = 1.0

[conditions]
groups = [6, 10]

[engines]
run = ["reml", "bayes"]

[engines.bayes]
chains = 2
draws = 150
tune = 150
"""

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _assert_same_run(a: Path, b: Path) -> None:
    """Same results (fit_seconds and timestamps aside) and the same kept posteriors."""
    with xr.open_dataset(a / "results.nc") as x, xr.open_dataset(b / "results.nc") as y:
        assert bool(x.done.all()) and bool(y.done.all())
        xr.testing.assert_identical(comparable(x.load()), comparable(y.load()))
    kept_a = sorted(p.name for p in (a / "posteriors").iterdir())
    assert kept_a == sorted(p.name for p in (b / "posteriors").iterdir())
    assert len(kept_a) == 2  # bayes, replicate 0, both conditions
    # a grid's kept posteriors say their condition: in the file name and the attributes
    assert [n.split("--")[:2] for n in kept_a] == [["bayes", "groups=10"], ["bayes", "groups=6"]]
    for name in kept_a:
        with xr.open_datatree(a / "posteriors" / name) as tree:
            assert tree.attrs["condition"] == name.split("--")[1]
            assert tree.attrs["replicate"] == 0 and tree.attrs["engine"] == "bayes"
            assert name.endswith(f"--{tree.attrs['condition_id']}-replicate-0000000.nc")
    for name in kept_a:
        ta, tb = (
            xr.open_datatree(a / "posteriors" / name),
            xr.open_datatree(b / "posteriors" / name),
        )
        for group in ("posterior", "sample_stats"):
            xr.testing.assert_identical(
                ta[group].to_dataset().drop_attrs(), tb[group].to_dataset().drop_attrs()
            )


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> tuple[Path, Path]:
    """The configuration file and its serial (in-process) run: the reference."""
    tmp = tmp_path_factory.mktemp("scale")
    cfg = tmp / "grid.toml"
    cfg.write_text(GRID)
    report = run_study(load_config(cfg), tmp / "serial")
    assert report.done == 12 and report.new == 12
    return cfg, tmp / "serial"


def test_two_local_workers_give_the_serial_results(grid, tmp_path):
    cfg, serial = grid
    report = run_study(load_config(cfg), tmp_path / "w2", executor=LocalProcesses(2, 2))
    assert report.new == 12
    _assert_same_run(serial, tmp_path / "w2")


def test_a_loopback_dask_cluster_gives_the_serial_results_when_a_worker_is_lost(grid, tmp_path):
    """A real scheduler and 2 worker processes on loopback; one worker is killed (kill
    -9) once the first batch is back: its nanny restarts it, the plugin sets the new
    process up, lost batches run again, and the results are the serial ones."""
    import dask
    from distributed import Client, LocalCluster

    from study.run.dask_cluster import DaskCluster

    cfg, serial = grid
    with (
        # distributed's 30 s connect timeouts, against a restarted worker that imports
        # the study on two cores shared with other jobs: generous ones instead
        dask.config.set({"distributed.comm.timeouts.connect": "300s"}),
        dask.config.set({"distributed.comm.timeouts.tcp": "300s"}),
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        pids = sorted(client.run(os.getpid).values())
        killed: list[int] = []

        class KillOneWorker:  # a progress display that kills a worker at the first result
            def start(self, total, done, conditions):
                pass

            def advance(self, failures, condition):
                if not killed:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])

            def close(self):
                pass

        executor = DaskCluster(cluster.scheduler_address, batch_size=1)
        assert executor.workers == 2
        report = run_study(
            load_config(cfg), tmp_path / "dask", executor=executor, progress=KillOneWorker()
        )
        assert killed and report.new == 12
        assert pids[0] not in client.run(os.getpid).values()  # a new process took its place
    _assert_same_run(serial, tmp_path / "dask")


def test_three_shards_merged_give_the_serial_results(grid, tmp_path, capsys):
    cfg, serial = grid
    config = load_config(cfg)
    shared = tmp_path / "shared"
    for i in (1, 3):  # two shards into one directory...
        report = run_study(config, shared, shard=Shard(i, 3))
        assert report.total == 4 and not (shared / "results.nc").exists()
    # ...the merge refuses while shard 2 is missing and names its replicates
    assert main(["merge", str(shared)]) == 2
    err = capsys.readouterr().err
    assert "4 of 12 (condition, replicate) pairs are missing" in err and "#1" in err
    assert err.count("\n") == 1 and not (shared / "results.nc").exists()
    # shard 2 in a directory of its own, through the CLI, then merged into the shared one
    own = tmp_path / "own"
    assert main(["run", str(cfg), "--out", str(own), "--shard", "2/3", "--workers", "1"]) == 0
    assert "shard 2/3: 4 of 4 pairs done" in capsys.readouterr().err
    assert main(["merge", str(shared), str(own)]) == 0
    assert "merged 12 of 12 pairs" in capsys.readouterr().err
    _assert_same_run(serial, shared)


def test_merge_refuses_a_shard_of_another_configuration(grid, tmp_path, capsys):
    cfg, serial = grid
    other = tmp_path / "other.toml"
    other.write_text(GRID.replace("seed = 11", "seed = 12"))
    run_study(load_config(other).with_engines(("reml",)), tmp_path / "o", shard=Shard(1, 3))
    before = sorted(p.name for p in (serial / "checkpoints").iterdir())
    assert main(["merge", str(serial), str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "another configuration" in err and "seed" in err and err.count("\n") == 1
    assert sorted(p.name for p in (serial / "checkpoints").iterdir()) == before
    with pytest.raises(StoreError, match=r"overwrite=True with shard=\.\.\."):
        run_study(load_config(cfg), tmp_path / "s", shard=Shard(1, 2), overwrite=True)


def _start_and_wait(cmd: list[str], out: Path, pieces: int) -> tuple[subprocess.Popen, list]:
    """Start `study run` in a session of its own; return once ``pieces`` new checkpoint
    files exist, with the worker processes seen."""
    ck = out / "checkpoints"
    before = len(list(ck.glob("part-*.npz"))) if ck.is_dir() else 0
    proc = subprocess.Popen(
        cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 300  # a hung start-up, not a slow one
    workers: list[psutil.Process] = []
    while not (ck.is_dir() and len(list(ck.glob("part-*.npz"))) >= before + pieces):
        workers = workers or psutil.Process(proc.pid).children(recursive=True)
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"the run ended or hung before {pieces} new pieces")
        time.sleep(0.02)
    workers = workers or psutil.Process(proc.pid).children(recursive=True)
    return proc, workers


@pytest.mark.slow
def test_interrupted_and_killed_runs_with_workers_resume_to_the_serial_results(grid, tmp_path):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it), then kill -9 of the
    driver alone, then a resume: the serial results, and no worker left behind.

    Slow (~80 s on 2 cores): the default suite keeps a SIGTERM to a worker group
    (test_interruption.py) and the slow kill matrix kills 2-worker runs at random.

    40 replicates (80 pairs, ~2 s of fitting once the workers are up): with the grid's
    6 a warm machine finished the run before the signal landed."""
    cfg, _ = grid
    reps = 40
    serial = tmp_path / "serial"
    run_study(load_config(cfg).with_replicates(reps), serial)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "study", "run", str(cfg), "--out", str(out)]
    cmd += ["--workers", "2", "--batch-size", "1", "--replicates", str(reps)]
    proc, workers = _start_and_wait(cmd, out, 2)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted; finished replicates are saved" in err.decode()
    assert "Traceback" not in err.decode()
    _gone, alive = psutil.wait_procs(workers, timeout=60)
    assert not alive, f"workers outlived Ctrl-C: {alive}"
    first = Store(out).load()
    assert first is not None and 2 <= len(first) < 2 * reps, "Ctrl-C came too late"
    assert (out / "results.nc").exists()  # what was done is readable at once

    proc, workers = _start_and_wait(cmd, out, 1)
    proc.send_signal(signal.SIGKILL)  # the driver only: its workers are orphaned
    proc.wait()
    partial = Store(out).load()
    assert partial is not None and len(first) < len(partial) < 2 * reps, "kill came too late"
    _gone, alive = psutil.wait_procs(workers, timeout=60)
    assert not alive, f"worker processes outlived their driver: {alive}"
    subprocess.run(cmd, env=ENV, check=True, capture_output=True)
    _assert_same_run(serial, out)


@pytest.mark.slow
def test_a_run_on_a_dask_cluster_stopped_by_sigterm_then_killed_resumes(grid, tmp_path):
    """The interruption guarantees with --scheduler: SIGTERM to the driver exits 143
    with the resume line, kill -9 of the driver loses only batches in flight, and the
    resume (on the same cluster) gives the serial results."""
    from distributed import LocalCluster

    cfg, _ = grid
    reps = 40
    serial = tmp_path / "serial"
    run_study(load_config(cfg).with_replicates(reps), serial)
    out = tmp_path / "dask"
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        cmd = [sys.executable, "-m", "study", "run", str(cfg), "--out", str(out)]
        cmd += ["--scheduler", cluster.scheduler_address, "--batch-size", "1"]
        cmd += ["--replicates", str(reps)]
        proc, _ = _start_and_wait(cmd, out, 2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143, err
        assert "stopped by SIGTERM; finished replicates are saved" in err.decode()
        assert "Traceback" not in err.decode()
        first = Store(out).load()
        assert first is not None and 2 <= len(first) < 2 * reps, "SIGTERM came too late"
        proc, _ = _start_and_wait(cmd, out, 1)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        partial = Store(out).load()
        assert partial is not None and len(first) < len(partial) < 2 * reps
        subprocess.run(cmd, env=ENV, check=True, capture_output=True)
    _assert_same_run(serial, out)


def test_parse_shard_and_slurm_task_ids():
    assert parse_shard("2/10") == Shard(2, 10)
    env = {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0"}
    assert parse_shard("slurm/4", env) == Shard(1, 4)  # --array=0-3
    env = {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1"}
    assert parse_shard("slurm/4", env) == Shard(4, 4)  # --array=1-4
    for bad, why in [
        ("0/3", "shard 0 is not in 1..3"),
        ("4/3", "shard 4 is not in 1..3"),
        ("1/0", "N must be >= 1"),
        ("a/b", "give I/N"),
        ("slurm/3", "SLURM_ARRAY_TASK_ID is not set"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_shard(bad, {})


def test_shards_partition_the_pairs_and_keep_them_when_extended(grid):
    cfg, _ = grid
    config = load_config(cfg)
    pairs = list(all_pairs(config))
    owned = [[p for p in pairs if Shard(i, 3).owns(p)] for i in (1, 2, 3)]
    assert sorted(p for shard in owned for p in shard) == sorted(pairs)
    bigger = list(all_pairs(config.with_replicates(30)))
    assert [p for p in bigger if Shard(2, 3).owns(p) and p[1] < 6] == owned[1]


def test_batches_are_cut_lazily():
    cut = batches(iter([("a", 0), ("a", 1), ("a", 2)]), 2)
    assert next(cut) == [("a", 0), ("a", 1)] and next(cut) == [("a", 2)]
    assert next(cut, None) is None


def test_cli_refuses_bad_scale_out_options(tmp_path, capsys, monkeypatch):
    for args, why in [
        (["--workers", "0"], "'0': must be a whole number from 1 to 256"),
        (["--workers", "two"], "'two': must be a whole number from 1 to 256"),
        (["--shard", "4/3"], "shard 4 is not in 1..3"),
        (["--batch-size", "0"], "'0': must be a whole number from 1 to 10,000"),
        (["--workers", "2", "--scheduler", "tcp://x:1"], "not allowed with argument"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            main(["run", "default", "--out", str(tmp_path / "x"), *args])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert why in err and err.count("\n") == 1, err
    monkeypatch.setattr("study.run.dask_cluster.CONNECT_TIMEOUT", 1.0)
    assert (
        main(["run", "default", "--out", str(tmp_path / "x"), "--scheduler", "tcp://127.0.0.1:9"])
        == 2
    )
    err = capsys.readouterr().err
    assert "no Dask scheduler answered" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_default_workers_is_one_per_core():
    executor = make_executor()
    assert executor.workers == max(1, len(os.sched_getaffinity(0)))
    assert make_executor(1).workers == 1


def test_eta_counts_fitted_pairs_not_the_compile(monkeypatch):
    """A one-minute run whose first 20 s are compile shows an ETA from the fit rate."""
    from study.cli import progress

    clock = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    bar = progress.PlainProgress(stream=open(os.devnull, "w"))  # noqa: SIM115
    bar.start(total=100, done=0, conditions=1)
    clock[0] += 20.0  # the compile: nothing comes back
    assert "ETA ?" in bar.line()
    bar.advance(0)  # the first result starts the clock
    for _ in range(10):
        clock[0] += 0.4
        bar.advance(0)
    assert bar.rate == pytest.approx(2.5)
    assert "ETA 00:36" in bar.line()  # 89 left at 2.5/s, not 89 at 11/24 per s


def test_a_run_of_another_engine_version_is_neither_resumed_nor_merged(grid, tmp_path, capsys):
    """The same configuration run by an engine that now computes other numbers."""
    cfg, _ = grid
    config = load_config(cfg).with_engines(("reml",)).with_replicates(2)
    old, new = tmp_path / "old", tmp_path / "new"
    for out, shard in ((old, Shard(1, 2)), (new, Shard(2, 2))):
        run_study(config, out, shard=shard)
    store = Store(old)
    manifest = store.read_manifest()
    manifest["engine_versions"] = {"reml": 0}
    store.write_manifest(manifest, store.config_text())
    now = ENGINE_VERSIONS["reml"]
    with pytest.raises(StoreError, match=rf"other engine versions \(reml 0 -> {now}"):
        run_study(config, old)
    assert main(["merge", str(new), str(old)]) == 2
    assert "different engine versions" in capsys.readouterr().err
    assert not (new / "results.nc").exists()


def test_the_readme_sbatch_script_parses(monkeypatch):
    """The README's array-job script: its `study run` line is a valid command for
    every array task."""
    import re
    import shlex

    from study.cli.main import build_parser

    readme = (ROOT / "README.md").read_text()
    script = re.search(r"```sh\n(#!/bin/bash\n.*?)```", readme, re.S)
    assert script is not None and "#SBATCH --array=1-100" in script.group(1)
    line = script.group(1).split(".venv/bin/study ", 1)[1].replace("\\\n", " ")
    words = shlex.split(line.split("\n")[0])
    words = [w.replace("$SLURM_CPUS_PER_TASK", "2") for w in words]
    for task in ("1", "100"):
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", task)
        monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
        args = build_parser().parse_args(words)
        assert args.shard == Shard(int(task), 100) and args.workers == 2


def test_each_worker_compiles_in_a_directory_of_its_own(tmp_path):
    """PyTensor's compile cache is not shared between worker slots (PyMC issue 7819):
    PROCESS.prepare points PyTensor at a slot's own base_compiledir before it loads."""
    code = (
        "from study.run.batch import PROCESS\n"
        "PROCESS.prepare('worker-3', 1)\n"
        "import pytensor\n"
        "print(pytensor.config.base_compiledir)\n"
    )
    env = {**ENV, "LMM_STUDY_COMPILEDIR": str(tmp_path), "PYTENSOR_FLAGS": "floatX=float64"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(tmp_path / "lmm-study-worker-3")


def test_a_dask_worker_with_other_package_versions_refuses_to_fit(grid):
    """The driver sends its package versions with every batch: a worker whose numbers
    could differ (another PyMC, say) fails the batch with the reason, fitting nothing."""
    from study.run.dask_cluster import VersionMismatch, check_versions, dask_batch
    from study.run.results import package_versions

    cfg, _ = grid
    here = package_versions()
    check_versions(here)  # the same environment: nothing to say
    driver = {**here, "pymc": "5.0.0"}
    with pytest.raises(VersionMismatch, match=r"has pymc .* \(driver 5\.0\.0\): install the"):
        dask_batch(load_config(cfg), [(load_config(cfg).conditions[0].id, 0)], driver)
