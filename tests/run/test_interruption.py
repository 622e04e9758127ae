"""Interrupted runs: killed at any moment, stopped by a scheduler or by Ctrl-C.

The kill matrix (slow) SIGKILLs `study run` at random moments (start-up, fitting,
consolidation, the results.nc write), serially and with 2 workers, the whole process
group or the driver alone, checks after every kill that the store can be read and
that no worker outlives its driver, then resumes: the results are the uninterrupted
run's.  The default suite checks the clean stops: SIGTERM (what a cluster scheduler
sends at walltime) and SIGINT exit with one line saying what is saved and how to
resume, and the resumed run gives the uninterrupted results.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest
import xarray as xr

from study.cli.main import main
from study.design.config import load_config
from study.run.runner import run_study
from study.run.store import Store

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
#: seconds after which a process that should have ended (or a condition that should
#: have come) is taken as hung: generous, since a test shares 2 cores with other heavy
#: jobs (imports alone then take ~20 s); waits poll for the condition, so a healthy run
#: never waits this long, and no test asserts an elapsed time
HUNG = 300

#: a progress line of `study run` when stderr is not a terminal
PROGRESS = re.compile(r"^study: \d+/\d+ ")


def config_text(engines: tuple[str, ...], grid: bool, replicates: int) -> str:
    """A small study (6 or 10 groups of 8; 2 short chains): fits take milliseconds."""
    text = f"""
name = "interrupt"
replicates = {replicates}
seed = 23
keep_draws = 1

[design]
groups = 6
group_size = 8
beta = [1.0, 0.5]
re_sd = [0.8, 0.4]
re_cor = [[1.0, 0.2], [0.2, 1.0]]
sigma = 1.0
"""
    if grid:
        text += "\n[conditions]\ngroups = [6, 10]\n"
    text += f"\n[engines]\nrun = {json.dumps(list(engines))}\n"
    if "bayes" in engines:
        text += "\n[engines.bayes]\nchains = 2\ndraws = 150\ntune = 150\n"
    return text


def run_cmd(cfg: Path, out: Path, workers: int) -> list[str]:
    cmd = [sys.executable, "-m", "study", "run", str(cfg), "--out", str(out)]
    cmd += ["--workers", str(workers)]
    return cmd + (["--batch-size", "1"] if workers > 1 else [])


def pieces(out: Path) -> list[Path]:
    ck = out / "checkpoints"
    return sorted(ck.glob("part-*.npz")) if ck.is_dir() else []


def session(sid: int) -> list[psutil.Process]:
    """The live (not zombie) processes of session ``sid``: a `study run` started with
    start_new_session=True and every process it spawned, orphaned or not."""
    found = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getsid(proc.pid) == sid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (OSError, psutil.Error):
            continue
    return found


def wait_session_gone(sid: int, timeout: float) -> list[str]:
    """Wait until no process of session ``sid`` is alive; return the survivors
    (described), after killing them so that nothing is left behind."""
    deadline = time.monotonic() + timeout
    alive = session(sid)
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = session(sid)
    described = []
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            described.append(f"pid {proc.pid}: {' '.join(proc.cmdline())[:160]}")
            proc.kill()
    return described


def stop_session(proc: subprocess.Popen) -> None:
    """Clean-up after a failed test: kill what is left of a run we started."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    wait_session_gone(proc.pid, 0)


def quiet_main(argv: list[str]) -> tuple[int, str]:
    """`study ARGV` in this process; the exit code and what it printed."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        code = main(argv)
    return code, buf.getvalue()


def assert_same_results(ref: Path, out: Path) -> None:
    """The results of ``out`` are those of the uninterrupted ``ref`` (fit_seconds and
    attrs aside), and so are the kept posteriors."""
    with xr.open_dataset(ref / "results.nc") as a, xr.open_dataset(out / "results.nc") as b:
        assert bool(a.done.all()) and bool(b.done.all()), "the run is not complete"
        xr.testing.assert_identical(
            b.load().drop_vars("fit_seconds").drop_attrs(),
            a.load().drop_vars("fit_seconds").drop_attrs(),
        )
    kept = sorted(p.name for p in (ref / "posteriors").glob("*.nc"))
    assert sorted(p.name for p in (out / "posteriors").glob("*.nc")) == kept
    for name in kept:
        with (
            xr.open_datatree(ref / "posteriors" / name) as ta,
            xr.open_datatree(out / "posteriors" / name) as tb,
        ):
            for group in ("posterior", "sample_stats"):
                xr.testing.assert_identical(
                    tb[group].to_dataset().drop_attrs(), ta[group].to_dataset().drop_attrs()
                )


def assert_store_usable(out: Path, cfg: Path) -> str:
    """What a killed run left is usable: `study info` reads it (and `study summarize`
    when a checkpoint exists); before the manifest, nothing is half-written.
    Returns what was there."""
    if not out.exists():
        return "nothing"
    if (out / "manifest.json").exists():
        code, text = quiet_main(["info", str(out)])
        assert code == 0, f"study info after the kill: exit {code}\n{text}"
        if not pieces(out):
            return "manifest, no checkpoint"
        code, text = quiet_main(["summarize", str(out)])
        assert code == 0, f"study summarize after the kill: exit {code}\n{text}"
        saved = Store(out).load()
        n = 0 if saved is None else len(saved)
        return f"{n} pairs saved" + (", results.nc" if (out / "results.nc").exists() else "")
    for path in out.rglob("*"):
        if path.is_dir() or path.name == ".lock" or re.fullmatch(r"\..*\.tmp", path.name):
            continue
        if path.name == "study.toml" and path.parent == out:  # written (whole) first
            assert load_config(path).hash() == load_config(cfg).hash(), path.read_text()
            continue
        raise AssertionError(f"{path} exists before the manifest: {sorted(out.rglob('*'))}")
    return "no manifest yet"


def assert_finished_store(out: Path) -> None:
    """A completed resume leaves no temporary file and set nothing aside (atomic
    writes: a kill leaves every file absent or whole)."""
    assert not Store(out).leftover_temporaries(), Store(out).leftover_temporaries()
    assert not (out / "damaged").exists(), sorted((out / "damaged").iterdir())


# -- the kill matrix ------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    engines: tuple[str, ...]
    grid: bool
    replicates: int
    workers: int
    kills: int
    #: SIGKILL the whole process group (else the driver alone, orphaning its workers)
    group: bool = False


SCENARIOS = (
    Scenario("serial reml grid", ("reml",), True, 100, 1, 4),
    Scenario("serial bayes", ("bayes",), False, 150, 1, 3),
    Scenario("serial reml+bayes grid", ("reml", "bayes"), True, 40, 1, 3),
    Scenario("2 workers reml+bayes grid, group killed", ("reml", "bayes"), True, 40, 2, 3, True),
    Scenario("2 workers reml+bayes grid, driver killed", ("reml", "bayes"), True, 40, 2, 3),
)


@dataclass
class Reference:
    """An uninterrupted run through the CLI: its directory and how long it took."""

    out: Path
    seconds: float


def timed_run(cmd: list[str]) -> float:
    start = time.monotonic()
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return time.monotonic() - start


def kill_once(
    cmd: list[str], out: Path, delay: float, group: bool, log: Path, after: int = 0
) -> str | None:
    """Start `study run`, SIGKILL it ``delay`` seconds later (counted from the moment
    ``after`` checkpoint pieces are on disk, when ``after`` > 0: a kill mid-fitting),
    the whole process group or the driver alone; check that no process of it survives;
    ``None`` when the run had finished by then (it must have succeeded)."""
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
    start = time.monotonic()
    try:
        while after and proc.poll() is None and len(pieces(out)) < after:
            time.sleep(0.005)
        start = time.monotonic() if after else start
        while proc.poll() is None and time.monotonic() - start < delay:
            time.sleep(0.005)
        others = len(session(proc.pid)) - 1
        state = f"{len(pieces(out))} pieces on disk, {others} other processes"
        try:
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        code = proc.wait(timeout=HUNG)
        if code != -signal.SIGKILL:
            assert code == 0, f"the run failed before the kill (exit {code}): {log.read_text()}"
            return None
        left = wait_session_gone(proc.pid, HUNG)
        assert not left, f"processes outlived their killed driver: {left}"
        return state
    finally:
        stop_session(proc)


@pytest.mark.slow
def test_kill_matrix_resumes_to_the_uninterrupted_results(tmp_path):
    """At least 12 runs SIGKILLed at random moments, each followed by checks of the
    store, then a resume to the uninterrupted results.  Odd kills land uniformly in
    0..1.1x the run's uninterrupted duration (start-up, fitting, consolidation,
    results.nc); even ones after a random share of the pairs still to do (mid-fitting,
    which start-up would otherwise crowd out)."""
    rng = np.random.default_rng(3)
    references: dict[tuple[str, int], Reference] = {}
    results_ref: dict[str, Path] = {}
    survived = 0
    failures: list[str] = []
    for k, sc in enumerate(SCENARIOS):
        text = config_text(sc.engines, sc.grid, sc.replicates)
        cfg = tmp_path / f"config-{k}.toml"
        cfg.write_text(text)
        key = (text, sc.workers)
        if key not in references:  # the uninterrupted run of this config and way of running
            out = tmp_path / f"reference-{len(references)}"
            seconds = timed_run(run_cmd(cfg, out, sc.workers))
            references[key] = Reference(out, seconds)
            print(f"reference {sc.name}: {seconds:.1f} s")
        reference = references[key]
        expected = results_ref.setdefault(text, reference.out)  # the first of this config
        out, log = tmp_path / f"run-{k}", tmp_path / f"run-{k}.log"
        cmd = run_cmd(cfg, out, sc.workers)
        try:
            killed = attempts = 0
            pairs = sc.replicates * (2 if sc.grid else 1)
            while killed < sc.kills and attempts <= sc.kills:  # one more if one was late
                attempts += 1
                if attempts % 2:  # any moment of the run: start-up to the last write
                    after, delay = 0, float(rng.uniform(0.0, 1.1 * reference.seconds))
                else:  # mid-fitting: after a random share of the pairs still to do
                    saved = Store(out).load() if pieces(out) else None
                    left = pairs - (0 if saved is None else len(saved))
                    after = len(pieces(out)) + int(rng.integers(1, max(2, left)))
                    delay = float(rng.uniform(0.0, 0.2))
                state = kill_once(cmd, out, delay, sc.group, log, after)
                when = f"{delay:.1f} s" + (f" after piece {after}" if after else "")
                if state is None:
                    print(f"{sc.name}: at {when} the run had finished")
                    continue
                found = assert_store_usable(out, cfg)
                killed += 1
                survived += 1
                print(
                    f"{sc.name}: killed at {when} (run of {reference.seconds:.1f} s; "
                    f"{state}); left: {found}"
                )
            done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"the resume failed: {done.stderr}"
            assert_finished_store(out)
            assert_same_results(expected, out)
            if expected != reference.out:  # this way of running, uninterrupted, too
                assert_same_results(expected, reference.out)
            stderr = log.read_text() + done.stderr
            # (a driver killed with -9 may leave multiprocessing's resource_tracker
            # warning about leaked semaphores: Python's, not a study warning)
            assert "Traceback" not in stderr and "study: warning" not in stderr, stderr
        except (AssertionError, subprocess.TimeoutExpired) as err:
            failures.append(f"{sc.name}: {err}")
    print(f"kills survived: {survived}")
    assert not failures, "\n\n".join(failures)
    assert survived >= 12, f"only {survived} runs were killed before they finished"


# -- clean stops: SIGTERM and SIGINT --------------------------------------------------

#: replicates of the clean-stop runs: ~2 s of REML fits, serially, after start-up
CLEAN_REPLICATES = 50


@pytest.fixture(scope="module")
def reml_study(tmp_path_factory) -> tuple[Path, Path]:
    """A REML-only study and its uninterrupted run (in this process)."""
    tmp = tmp_path_factory.mktemp("interrupt")
    cfg = tmp / "reml.toml"
    cfg.write_text(config_text(("reml",), False, CLEAN_REPLICATES))
    report = run_study(load_config(cfg), tmp / "reference")
    assert report.complete and report.done == CLEAN_REPLICATES
    return cfg, tmp / "reference"


def start_mid_run(cmd: list[str], out: Path, log: Path) -> subprocess.Popen:
    """Start `study run` in a session of its own; return once 2 checkpoint pieces
    exist (the run is mid-way)."""
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
    deadline = time.monotonic() + HUNG
    while len(pieces(out)) < 2:
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_session(proc)
            raise AssertionError(f"the run ended before it was mid-way: {log.read_text()}")
        time.sleep(0.01)
    return proc


def assert_one_stop_line(err: str) -> None:
    """Beside the progress lines, one line: the run stopped, the finished replicates
    are saved, and how to resume; no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip() and not PROGRESS.match(line)]
    assert len(lines) == 1, err
    line = lines[0]
    assert re.search(r"(?i)interrupt|stop|terminat|sigterm|signal", line), line
    assert "saved" in line, line
    assert "resume" in line or "run the same command again" in line, line


def assert_results_hold_the_pieces(out: Path) -> int:
    """results.nc exists and marks done exactly the pairs of the checkpoint pieces."""
    saved = Store(out).load()
    assert saved is not None
    with xr.open_dataset(out / "results.nc") as ds:
        assert int(ds.done.sum()) == len(saved)
    return len(saved)


def test_sigterm_stops_a_serial_run_cleanly_and_it_resumes(reml_study, tmp_path):
    """SIGTERM (a scheduler's walltime) mid-run: exit 143 with one line saying what is
    saved and how to resume; results.nc holds what was done; the same command again
    gives the uninterrupted results."""
    cfg, reference = reml_study
    out, log = tmp_path / "run", tmp_path / "stderr.log"
    cmd = run_cmd(cfg, out, 1)
    proc = start_mid_run(cmd, out, log)
    try:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=HUNG)
    finally:
        stop_session(proc)
    err = log.read_text()
    assert code == 128 + signal.SIGTERM, f"exit {code}; stderr:\n{err}"
    assert_one_stop_line(err)
    done = assert_results_hold_the_pieces(out)
    assert 2 <= done < CLEAN_REPLICATES, "SIGTERM came too late"
    subprocess.run(cmd, env=ENV, check=True, capture_output=True, timeout=300)
    assert_same_results(reference, out)


def test_sigterm_to_the_process_group_stops_workers_cleanly(reml_study, tmp_path):
    """SIGTERM to every process of a `--workers 2` run (what Slurm does at walltime):
    exit 143 with the one line, no worker left alive, and a resume gives the
    uninterrupted results."""
    cfg, reference = reml_study
    out, log = tmp_path / "run", tmp_path / "stderr.log"
    proc = start_mid_run(run_cmd(cfg, out, 2), out, log)
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=HUNG)
        left = wait_session_gone(proc.pid, HUNG)
    finally:
        stop_session(proc)
    err = log.read_text()
    assert code == 128 + signal.SIGTERM, f"exit {code}; stderr:\n{err}"
    assert not left, f"worker processes outlived the SIGTERM: {left}"
    assert_one_stop_line(err)
    done = assert_results_hold_the_pieces(out)
    assert 2 <= done < CLEAN_REPLICATES, "SIGTERM came too late"
    warnings: list[str] = []
    report = run_study(load_config(cfg), out, warn=warnings.append)  # resume, in process
    assert report.complete and report.new == CLEAN_REPLICATES - done and not warnings
    assert_same_results(reference, out)


def test_sigint_stops_a_serial_run_with_the_resume_message(reml_study, tmp_path):
    """Ctrl-C mid-run: exit 130, the one line, no traceback, results.nc of what is done."""
    cfg, _ = reml_study
    out, log = tmp_path / "run", tmp_path / "stderr.log"
    proc = start_mid_run(run_cmd(cfg, out, 1), out, log)
    try:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=HUNG)
    finally:
        stop_session(proc)
    err = log.read_text()
    assert code == 130, f"exit {code}; stderr:\n{err}"
    assert_one_stop_line(err)
    assert 2 <= assert_results_hold_the_pieces(out) < CLEAN_REPLICATES


def test_a_stopped_run_leaves_even_if_shutdown_hangs():
    """The watchdog of a stopped run with workers: exit hooks that never return (what a
    killed ProcessPoolExecutor can leave) do not keep the process, nor change its code."""
    # the hook hangs for an hour: the process ends only if the watchdog ends it.  No
    # bound on the elapsed time (the import alone can take 20 s on a loaded machine):
    # the generous timeout only stops a hung process (subprocess.run kills it)
    code = (
        "import atexit, sys, time\n"
        "import study.cli.run as run\n"
        "run.EXIT_GRACE = 0.5\n"
        "atexit.register(time.sleep, 3600)\n"
        "class Pool:\n"
        "    workers = 2\n"
        "sys.exit(run._stopped(143, Pool()))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], timeout=HUNG, capture_output=True)
    assert proc.returncode == 143, proc.stderr.decode()


def test_a_stop_request_swallowed_by_a_finalizer_still_stops_the_run(reml_study, tmp_path):
    """A signal handler's exception that lands in a finalizer or weakref callback is
    swallowed by Python (seen in 1 of 4 Ctrl-C's to a --workers run): the runner still
    stops after the next batch it saves, with the signal's Interrupted."""
    from study.errors import Interrupted
    from study.run.executors import InProcess
    from study.run.runner import StopRequest

    stop = StopRequest()

    class Swallowed:
        def __del__(self):
            stop(signal.SIGTERM)  # raised here, and swallowed

    class StopAfterTwo(InProcess):
        def map(self, config, work, fail_fast=False, size=None):
            for i, result in enumerate(super().map(config, work, fail_fast, size)):
                if i == 2:
                    Swallowed()
                yield result

    cfg, _ = reml_study
    hooks = sys.unraisablehook
    sys.unraisablehook = lambda info: None  # what the CLI installs: no traceback printed
    try:
        with pytest.raises(Interrupted) as stopped:
            run_study(load_config(cfg), tmp_path / "run", executor=StopAfterTwo(), stop=stop)
    finally:
        sys.unraisablehook = hooks
    assert stopped.value.signum == signal.SIGTERM
    assert stopped.value.report.done == 3  # the batch in hand is saved, then it stops
