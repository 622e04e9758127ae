"""Running a study's batches on an existing Dask distributed cluster (``--scheduler``).

The driver submits one task per batch and checkpoints each result as it streams
back; workers keep their engines (built and compiled once per worker process, in
:mod:`study.run.batch`'s per-process cache) and are set up by a worker plugin.
"""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from distributed import Client, as_completed
from distributed.diagnostics.plugin import WorkerPlugin

from study.errors import FitFailed, RunError, UserError
from study.run.batch import PROCESS, BatchResult, Pair, run_batch, span
from study.run.results import package_versions

if TYPE_CHECKING:
    from study.design.config import StudyConfig

#: retries of a batch whose worker was lost
RETRIES = 3
#: seconds to wait for the scheduler to answer
CONNECT_TIMEOUT = 20.0
#: one batch at a time per worker process (fits use process-wide state: warnings
#: filters, the compile cache); a worker's threads are its chains' cores instead
_LOCK = threading.Lock()


class VersionMismatch(RuntimeError):
    """A worker whose packages differ from the driver's (its numbers could differ)."""


@functools.cache
def _installed() -> dict[str, str]:
    """This process's package versions (looked up once, not per batch)."""
    return package_versions()


def check_versions(driver: dict[str, str]) -> None:
    """Refuse to fit on a worker whose packages that shape the results differ from the
    driver's: the same seeds could give other numbers there."""
    here = _installed()
    differ = [f"{k} {here.get(k)} (driver {v})" for k, v in driver.items() if here.get(k) != v]
    if differ:
        raise VersionMismatch(
            f"worker on {socket.gethostname()} has {', '.join(differ)}: install the "
            "driver's environment (the same requirements.lock) on every worker"
        )


def dask_batch(
    config: StudyConfig, batch: list[Pair], versions: dict[str, str], fail_fast: bool = False
) -> BatchResult:
    """The task each Dask batch runs: engines cached in the worker process."""
    check_versions(versions)
    with _LOCK:
        return run_batch(config, batch, fail_fast)


class StudyWorker(WorkerPlugin):
    """Set up each Dask worker process once: a compile directory of its own and
    chains on the worker's threads."""

    name = "lmm-study"

    def setup(self, worker: Any) -> None:
        PROCESS.prepare(f"dask-{worker.name}", max(1, int(worker.state.nthreads)))


class DaskCluster:
    """An existing Dask distributed cluster at ``address`` (``tcp://host:8786``).

    One task per batch with an explicit key (the configuration's hash and the batch's
    first pair and size, so a batch is the same task whoever submits it),
    :data:`RETRIES` retries when a worker is lost, results streamed back as they
    finish, at most a window of twice the workers (at least 16) in flight.  Workers
    need lmm-study installed in the same environment and a shared view of nothing:
    results come back to the driver.  Give each worker ``--nthreads`` equal to the
    cores its chains may use (it runs one batch at a time).
    """

    def __init__(self, address: str, batch_size: int = 10, timeout: float | None = None) -> None:
        try:
            self.client = Client(address, timeout=timeout or CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as err:
            raise UserError(
                f"--scheduler {address}: no Dask scheduler answered ({type(err).__name__}); "
                "start one (`dask scheduler`, or dask-jobqueue) and give its address"
            ) from err
        self.client.register_plugin(StudyWorker(), name="lmm-study")
        self.workers = max(1, len(self.client.scheduler_info().get("workers", {})))
        self.batch_size = batch_size

    fits_here = False

    def map(
        self,
        config: StudyConfig,
        work: Iterator[list[Pair]],
        fail_fast: bool = False,
        size: int | None = None,
    ) -> Iterator[BatchResult]:
        tag = config.hash()[:12]
        versions = package_versions()
        flying: dict[Any, list[Pair]] = {}
        stream = as_completed(loop=self.client.loop)

        def submit(batch: list[Pair]) -> None:
            cid, r = batch[0]
            future = self.client.submit(
                dask_batch,
                config,
                batch,
                versions,
                fail_fast,
                key=f"lmm-study-{tag}-{cid[:8]}-{r}-{len(batch)}",
                retries=0 if fail_fast else RETRIES,
                pure=False,
            )
            flying[future] = batch
            stream.add(future)

        for batch in work:
            submit(batch)
            if len(flying) >= max(16, 2 * self.workers):
                break
        for future in stream:
            batch = flying.pop(future)
            try:
                result = future.result()
            except FitFailed:
                raise
            except Exception as err:
                raise RunError(
                    f"batch of replicates {span(batch)} failed on the cluster after "
                    f"{RETRIES} retries ({type(err).__name__}: {err}); finished replicates "
                    "are saved, run the same command again to resume"
                ) from err
            future.release()
            nxt = next(work, None)
            if nxt is not None:
                submit(nxt)
            yield result

    def close(self, *, cancel: bool = False) -> None:
        self.client.close()
