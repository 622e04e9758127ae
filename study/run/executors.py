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
from study.run.batch import PROCESS, BatchResult, Pair, run_batch, span

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
    #: whether batches are (or may be) fitted in this process: the runner then builds
    #: and compiles the engines here first
    fits_here: bool

    def map(
        self,
        config: StudyConfig,
        work: Iterator[list[Pair]],
        fail_fast: bool = False,
        size: int | None = None,
    ) -> Iterator[BatchResult]:
        """Run the batches of ``work`` (``size``: the pairs it holds, when known)."""
        ...

    def close(self, *, cancel: bool = False) -> None: ...


class InProcess:
    """Fit in this process, one pair per batch (a checkpoint per replicate)."""

    workers = 1
    batch_size = 1
    fits_here = True

    def map(
        self,
        config: StudyConfig,
        work: Iterator[list[Pair]],
        fail_fast: bool = False,
        size: int | None = None,
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
    PROCESS.prepare(f"worker-{slot_queue.get()}", threads)
    PROCESS.warm_up(config)


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

    fits_here = False

    def __init__(self, workers: int, batch_size: int = 2, cores: int | None = None) -> None:
        if workers < 2:
            raise ValueError(f"workers = {workers}: LocalProcesses needs >= 2 (1 is InProcess)")
        self.workers = workers
        self.batch_size = batch_size
        self.threads = max(1, (cores or cpu_count()) // workers)
        self._pool: ProcessPoolExecutor | None = None

    def _start(self, config: StudyConfig, processes: int) -> ProcessPoolExecutor:
        """Start ``processes`` spawned workers (each compiles its engines first)."""
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        slots = ctx.Queue()
        for i in range(self.workers):
            slots.put(i)
        self._pool = ProcessPoolExecutor(
            processes,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(slots, self.threads, config, os.getpid()),
        )
        return self._pool

    def map(
        self,
        config: StudyConfig,
        work: Iterator[list[Pair]],
        fail_fast: bool = False,
        size: int | None = None,
    ) -> Iterator[BatchResult]:
        head = list(itertools.islice(work, self.workers))
        if not head:  # nothing to do: start no process
            return
        work = itertools.chain(head, work)
        pool = self._start(config, len(head))
        for future, batch in _windowed(
            lambda b: pool.submit(run_batch, config, b, fail_fast), work, 2 * self.workers
        ):
            yield _result(future, batch)

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


def _result(future: Future[Any], batch: list[Pair]) -> BatchResult:
    """A worker's result; a worker that died (or could not start) is a :class:`RunError`."""
    try:
        return future.result()
    except FitFailed:
        raise
    except Exception as err:  # a worker died (BrokenProcessPool) or could not start
        raise RunError(
            f"a worker process failed on replicates {span(batch)} "
            f"({type(err).__name__}: {err}); finished replicates are saved, "
            "run the same command again to resume"
        ) from err


class Adaptive(LocalProcesses):
    """The default executor: fit in this process at once, and start ``workers`` worker
    processes only when the work left would take longer than starting them.

    Starting a worker costs its imports and its compile (about 20 s here), which a
    small study never wins back: it then runs in this process alone.  A large one
    starts the workers after a first estimate of the time per pair, and this process
    goes on fitting until the first worker result comes back (the workers are ready),
    then leaves the fitting to them.  So the default is never much slower than one
    worker, nor than N.  Results never depend on it (seeds are per pair).
    """

    fits_here = True
    #: seconds of fitting here before the time per pair is trusted
    PROBE_SECONDS = 2.0

    def __init__(self, workers: int, batch_size: int = 2, cores: int | None = None) -> None:
        super().__init__(workers, batch_size, cores)
        self.started = False

    def startup_seconds(self) -> float:
        """The expected start-up of the workers: imports and a compile each, at once
        on shared cores (twice this process's own compile, plus the imports)."""
        return 8.0 + 2.0 * PROCESS.warm_seconds

    def worth_starting(self, seconds_per_pair: float, left: int) -> bool:
        """Whether ``left`` pairs at ``seconds_per_pair`` here take longer than
        starting the workers and sharing the rest with them."""
        alone = left * seconds_per_pair
        shared = self.startup_seconds() + alone / self.workers
        return alone > shared

    def map(
        self,
        config: StudyConfig,
        work: Iterator[list[Pair]],
        fail_fast: bool = False,
        size: int | None = None,
    ) -> Iterator[BatchResult]:
        fitted, seconds = 0, 0.0
        pending: dict[Future[Any], list[Pair]] = {}
        pool: ProcessPoolExecutor | None = None
        exhausted = False

        def fill() -> None:
            nonlocal exhausted
            while pool is not None and len(pending) < 2 * self.workers:
                batch = next(work, None)
                if batch is None:
                    exhausted = True
                    return
                pending[pool.submit(run_batch, config, batch, fail_fast)] = batch

        while True:
            ready = pool is not None and any(f.done() for f in pending)
            if pool is not None and (ready or exhausted):
                break  # the workers are ready: they fit the rest
            batch = next(work, None)
            if batch is None:
                exhausted = True
                break
            t0 = time.perf_counter()
            yield run_batch(config, batch, fail_fast)
            seconds += time.perf_counter() - t0
            fitted += len(batch)
            left = None if size is None else size - fitted
            if (
                pool is None
                and seconds >= self.PROBE_SECONDS
                and left is not None
                and self.worth_starting(seconds / fitted, left)
            ):
                pool = self._start(config, self.workers)
                self.started = True
            fill()
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for future in done:
                yield _result(future, pending.pop(future))
            fill()


def make_executor(
    workers: int | None = None, scheduler: str | None = None, batch_size: int | None = None
) -> Executor:
    """The executor for ``--workers`` / ``--scheduler``; by default this process, with
    one worker a core started when the work is worth it (:class:`Adaptive`)."""
    if scheduler is not None:
        from study.run.dask_cluster import DaskCluster

        return DaskCluster(scheduler, batch_size or 10)
    if workers is None:
        n = cpu_count()
        return InProcess() if n <= 1 else Adaptive(n, batch_size or 2)
    if workers <= 1:
        return InProcess()
    return LocalProcesses(workers, batch_size or 2)
