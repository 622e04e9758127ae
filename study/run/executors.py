"""Where batches run: in this process, in local worker processes, or on a Dask cluster.

An executor takes the study's configuration and an iterator of batches (lists of
(condition id, replicate) pairs) and yields each batch's :class:`BatchResult` as it
finishes, in any order; the driver (:mod:`study.run.runner`) checkpoints each one.
Batches are submitted a few at a time (a window of twice the workers), so a study of
a million replicates never holds a million tasks.  Results never depend on the
executor: a pair's seeds come from the seed policy alone.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Protocol

from study.errors import FitFailed, RunError
from study.run.batch import BatchResult, Pair, prepare_process, run_batch, span, warm_up

if TYPE_CHECKING:
    from study.design.config import StudyConfig


def cpu_count() -> int:
    """Cores this process may use (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def batches(pairs: Iterable[Pair], size: int) -> Iterator[list[Pair]]:
    """``pairs`` cut into consecutive lists of at most ``size``, lazily."""
    batch: list[Pair] = []
    for pair in pairs:
        batch.append(pair)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class Executor(Protocol):
    """Runs batches somewhere; see the module docstring."""

    #: processes fitting at once (1 for in-process)
    workers: int
    #: pairs per batch that suits it
    batch_size: int

    def map(
        self, config: StudyConfig, work: Iterator[list[Pair]], fail_fast: bool = False
    ) -> Iterator[BatchResult]: ...
    def close(self, *, cancel: bool = False) -> None: ...


class InProcess:
    """Fit in this process, one pair per batch (a checkpoint per replicate)."""

    workers = 1
    batch_size = 1

    def map(
        self, config: StudyConfig, work: Iterator[list[Pair]], fail_fast: bool = False
    ) -> Iterator[BatchResult]:
        for batch in work:
            yield run_batch(config, batch, fail_fast)

    def close(self, *, cancel: bool = False) -> None:
        pass


def _exit_with_parent(parent: int) -> None:
    """Leave when the driver is gone (killed with -9, say): an orphaned worker would
    otherwise wait for work forever."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def _init_worker(slot_queue: Any, threads: int, config: StudyConfig, driver: int) -> None:
    """Process initializer: ignore Ctrl-C and SIGTERM (the driver stops the workers:
    a terminal sends Ctrl-C, and a scheduler SIGTERM, to every process of the job),
    follow the driver's death, take a compile slot, and build and compile the engines
    once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # the driver's pid comes from the driver: had it died before this line,
    # os.getppid() would already name the new parent and the watch would never fire
    threading.Thread(target=_exit_with_parent, args=(driver,), daemon=True).start()
    prepare_process(f"worker-{slot_queue.get()}", threads)
    warm_up(config)


def _windowed(
    submit: Any, work: Iterator[list[Pair]], window: int
) -> Iterator[tuple[Future[Any], list[Pair]]]:
    """Yield (future, batch) pairs as futures finish, keeping ``window`` in flight."""
    pending: dict[Future[Any], list[Pair]] = {}

    def fill() -> None:
        while len(pending) < window:
            batch = next(work, None)
            if batch is None:
                return
            pending[submit(batch)] = batch

    fill()
    while pending:
        done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for future in done:
            yield future, pending.pop(future)
        fill()


class LocalProcesses:
    """``workers`` local processes (spawned, so nothing compiled or threaded is shared);
    each builds and compiles its engines once, in its initializer, with its own
    PyTensor compile directory, and runs its chains on ``cores // workers`` cores (at
    least one) so N workers on N cores do not oversubscribe."""

    def __init__(self, workers: int, batch_size: int = 2, cores: int | None = None) -> None:
        if workers < 2:
            raise ValueError(f"workers = {workers}: LocalProcesses needs >= 2 (1 is InProcess)")
        self.workers = workers
        self.batch_size = batch_size
        self.threads = max(1, (cores or cpu_count()) // workers)
        self._pool: ProcessPoolExecutor | None = None

    def map(
        self, config: StudyConfig, work: Iterator[list[Pair]], fail_fast: bool = False
    ) -> Iterator[BatchResult]:
        import multiprocessing

        head = list(itertools.islice(work, self.workers))
        if not head:  # nothing to do: start no process
            return
        work = itertools.chain(head, work)
        ctx = multiprocessing.get_context("spawn")
        slots = ctx.Queue()
        for i in range(self.workers):
            slots.put(i)
        self._pool = ProcessPoolExecutor(
            len(head),
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(slots, self.threads, config, os.getpid()),
        )
        pool = self._pool
        for future, batch in _windowed(
            lambda b: pool.submit(run_batch, config, b, fail_fast), work, 2 * self.workers
        ):
            try:
                yield future.result()
            except FitFailed:
                raise
            except Exception as err:  # a worker died (BrokenProcessPool) or could not start
                raise RunError(
                    f"a worker process failed on replicates {span(batch)} "
                    f"({type(err).__name__}: {err}); finished replicates are saved, "
                    "run the same command again to resume"
                ) from err

    def close(self, *, cancel: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if cancel:
            processes = list(getattr(pool, "_processes", {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:  # a fit in flight would run on: stop it
                process.kill()  # (workers ignore SIGTERM)
            for process in processes:
                process.join(5)
        else:
            pool.shutdown(wait=True)


def make_executor(
    workers: int | None = None, scheduler: str | None = None, batch_size: int | None = None
) -> Executor:
    """The executor for ``--workers`` / ``--scheduler`` (default: one worker a core)."""
    if scheduler is not None:
        from study.run.dask_cluster import DaskCluster

        return DaskCluster(scheduler, batch_size or 10)
    n = cpu_count() if workers is None else workers
    if n <= 1:
        return InProcess()
    return LocalProcesses(n, batch_size or 2)
