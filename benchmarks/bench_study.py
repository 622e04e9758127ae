"""Benchmark of whole studies: `study run` as a user runs it, compile included.

Runs, each as a fresh ``study run`` process into a new directory, both engines with
their default settings (4 chains x 1000 draws after 1000 tuning):

* ``default`` at ``--replicates`` (1000) with ``--workers`` (2);
* ``seed`` (100,000 rows a replicate) at ``--replicates`` with ``--workers``;
* ``default`` at ``--speedup-replicates`` with 1 worker and with 2, one after the
  other, for the speed-up of 2 workers over 1 measured in the same run; and 1 worker
  pinned to one core, for the scale-out from one core to two.  (``--workers 1`` runs
  in the study process with the 4 chains of a fit on every core it may use, so on 2
  cores it already runs the Bayesian engine, most of the CPU, on both.)

and prints, per run: wall seconds, CPU seconds (the process and its workers), peak
memory (the largest sum of resident memory over the process tree, sampled every
0.1 s), seconds per replicate overall and the median fit seconds per engine, and the
size of results.nc; then the targets of issue 11 and whether each was met.

Usage::

    .venv/bin/python benchmarks/bench_study.py                 # the full benchmark
    .venv/bin/python benchmarks/bench_study.py --replicates 100 --speedup-replicates 100
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import xarray as xr

STUDY = str(Path(sys.executable).with_name("study"))
#: issue 11's targets on a 2-core machine
TARGETS = {"default_wall": 120.0, "seed_wall": 200.0, "speedup": 1.6, "memory_gb": 2.0}
RESULTS_MB = 10.0


@dataclass
class Run:
    label: str
    replicates: int
    wall: float
    cpu: float
    peak_gb: float
    results_mb: float
    fit_median: dict[str, float]
    failures: dict[str, int]

    def row(self) -> str:
        fits = ", ".join(f"{e} {s:.3f}" for e, s in self.fit_median.items())
        bad = ", ".join(f"{e} {n}" for e, n in self.failures.items())
        return (
            f"{self.label:<26} {self.wall:8.1f} {self.cpu:8.1f} {self.peak_gb:7.2f} "
            f"{self.wall / self.replicates:9.3f} {self.results_mb:7.2f}   "
            f"median fit s: {fits}; not converged: {bad}"
        )


def _tree_rss(proc: psutil.Process) -> int:
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def run(
    preset: str, replicates: int, workers: int, label: str, cpus: set[int] | None = None
) -> Run:
    """One `study run` in a fresh directory, measured from outside (on ``cpus`` only,
    when given: the process and its workers see that many cores)."""
    out = Path(tempfile.mkdtemp(prefix=f"bench-{preset}-")) / "run"
    cmd = [STUDY, "run", preset, "--replicates", str(replicates), "--workers", str(workers)]
    cmd += ["--out", str(out)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    pin = None if cpus is None else (lambda: os.sched_setaffinity(0, cpus))
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=pin
    )
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        ps = psutil.Process(proc.pid)
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(ps))
            time.sleep(0.1)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    watcher.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    results = out / "results.nc"
    with xr.open_dataset(results) as ds:
        fit_median = {
            str(e): float(ds.fit_seconds.sel(engine=e).median()) for e in ds.engine.values
        }
        failures = {str(e): int((~ds.converged.sel(engine=e)).sum()) for e in ds.engine.values}
    return Run(
        label,
        replicates,
        wall,
        cpu,
        peak[0] / 1e9,
        results.stat().st_size / 1e6,
        fit_median,
        failures,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--speedup-replicates", type=int, default=1000)
    parser.add_argument("--skip", default="", help="comma-separated: default,seed,speedup")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    cores = len(psutil.Process().cpu_affinity() or [])
    print(f"machine: {cores} cores; python {sys.version.split()[0]}; {STUDY}")
    print(
        f"{'run':<26} {'wall s':>8} {'cpu s':>8} {'peak GB':>7} {'s/rep':>9} {'nc MB':>7}",
        flush=True,
    )
    runs: dict[str, Run] = {}
    one_core = {min(os.sched_getaffinity(0))}
    plan: list[tuple[str, str, int, int, set[int] | None]] = [
        ("default", "default", args.replicates, args.workers, None),
        ("seed", "seed", args.replicates, args.workers, None),
        ("speedup-1", "default", args.speedup_replicates, 1, None),
        ("speedup-2", "default", args.speedup_replicates, 2, None),
        ("speedup-1core", "default", args.speedup_replicates, 1, one_core),
    ]
    for key, preset, n, workers, cpus in plan:
        if key.split("-")[0] in skip:
            continue
        label = f"{preset} x{n}, {workers} worker{'s' if workers > 1 else ''}"
        label += ", 1 core" if cpus else ""
        r = run(preset, n, workers, label, cpus)
        runs[key] = r
        print(r.row(), flush=True)
    print("\ntargets (issue 11, 2-core machine):")
    checks = []
    if "default" in runs and args.replicates == 1000:
        checks.append(("default 1000 wall <= 120 s", runs["default"].wall, TARGETS["default_wall"]))
    if "seed" in runs and args.replicates == 1000:
        checks.append(("seed 1000 wall <= 200 s", runs["seed"].wall, TARGETS["seed_wall"]))
    for r in runs.values():
        checks.append((f"{r.label}: peak GB <= 2", r.peak_gb, TARGETS["memory_gb"]))
        checks.append((f"{r.label}: results.nc MB <= 10", r.results_mb, RESULTS_MB))
    for name, value, bound in checks:
        print(f"  {name:<55} {value:8.2f}  {'met' if value <= bound else 'MISSED'}")
    for base, what in (("speedup-1", "1 (all cores)"), ("speedup-1core", "1 on 1 core")):
        if base in runs and "speedup-2" in runs:
            speedup = runs[base].wall / runs["speedup-2"].wall
            ok = "met" if speedup >= TARGETS["speedup"] else "MISSED"
            print(f"  {f'speed-up of 2 workers over {what} >= 1.6x':<55} {speedup:8.2f}  {ok}")


if __name__ == "__main__":
    main()
