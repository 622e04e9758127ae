"""The default executor: this process first, worker processes only when worth it.

Defect 1e of issue 24: with one worker a core by default, `make study`'s 50 replicates
took 34.8 s against 28.4 s with `--workers 1` (each worker first pays ~20 s of imports
and compiling).  The default now fits in this process and starts the workers only when
the work left takes longer here than starting them and sharing it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from toy_kind import TOY_TOML, MeanOfY

from study.design.config import config_from_text
from study.run import executors
from study.run.batch import PROCESS
from study.run.executors import Adaptive, InProcess, LocalProcesses, batches, make_executor
from study.run.kinds import KINDS
from study.run.runner import all_pairs


@pytest.fixture
def toy(monkeypatch):
    kind = MeanOfY()
    monkeypatch.setitem(KINDS, kind.name, kind)
    return config_from_text(TOY_TOML, default_name="toy", label="toy").with_replicates(40)


def test_the_default_is_adaptive_and_an_explicit_count_is_obeyed(monkeypatch):
    monkeypatch.setattr(executors, "cpu_count", lambda: 2)
    assert isinstance(make_executor(), Adaptive) and make_executor().workers == 2
    assert isinstance(make_executor(1), InProcess)
    chosen = make_executor(2)
    assert isinstance(chosen, LocalProcesses) and not isinstance(chosen, Adaptive)
    monkeypatch.setattr(executors, "cpu_count", lambda: 1)
    assert isinstance(make_executor(), InProcess)


def test_workers_start_only_when_the_work_left_outlasts_their_start_up(monkeypatch):
    monkeypatch.setattr(PROCESS, "warm_seconds", 10.0)
    ex = Adaptive(2)
    assert ex.startup_seconds() == pytest.approx(28.0)
    # 100 pairs at 0.2 s: 20 s here, against 28 s of start-up + 10 s shared
    assert not ex.worth_starting(0.2, 100)
    # the 1000-replicate default study: 200 s here, against 28 + 100 s
    assert ex.worth_starting(0.2, 1000)


class _Threads(Adaptive):
    """Adaptive with threads for worker processes (the toy kind fits nothing, so
    threads are safe), to follow what the driver hands out."""

    def _start(self, config, processes):
        self._pool = ThreadPoolExecutor(processes)
        return self._pool

    def close(self, *, cancel=False):
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _run(ex, cfg, size):
    work = batches(all_pairs(cfg), ex.batch_size)
    results = list(ex.map(cfg, work, size=size))
    ex.close()
    pairs = [p for r in results for p in zip(r.piece.condition, r.piece.replicate, strict=True)]
    values = {
        int(r): v
        for b in results
        for r, v in zip(b.piece.replicate, b.piece.values["mean_y"], strict=True)
    }
    return pairs, values


def test_a_small_run_stays_in_this_process(toy):
    ex = _Threads(2)
    pairs, _ = _run(ex, toy, size=40)
    assert not ex.started and len(pairs) == len(set(pairs)) == 40


def test_a_large_run_starts_the_workers_and_every_pair_runs_once(toy, monkeypatch):
    monkeypatch.setattr(Adaptive, "PROBE_SECONDS", 0.0)
    monkeypatch.setattr(Adaptive, "worth_starting", lambda self, t, left: True)
    serial = _run(InProcess(), toy, size=40)
    ex = _Threads(2)
    pairs, values = _run(ex, toy, size=40)
    assert ex.started
    assert len(pairs) == len(set(pairs)) == 40  # none lost, none twice
    assert values == serial[1]  # results never depend on where a pair ran
    assert np.isfinite(list(values.values())).all()
