"""The unit of work: a batch of (condition, replicate) pairs, fitted in any process.

:func:`run_batch` needs nothing but ``(config, pairs)`` and returns the batch's
checkpoint piece and the posteriors to keep, so the process that runs it (this one, a
local worker, a Dask worker on another machine) never touches the run directory: the
driver writes what comes back.  What a pair is (fits and their fields, SBC ranks, ...)
is the study kind's business (:mod:`study.run.kinds`).  Engines are built, and
compiled, once per process (:class:`ProcessState`); ``PROCESS.prepare`` makes a
process a worker: its own PyTensor compile directory, single-threaded BLAS, and
chains on at most its share of the cores.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from models.base import Engine
from models.data import LMMData
from study.design.generate import AnyDesign, data_for, design_of
from study.run.kinds import kind_of, piece_of
from study.run.store import Piece

if TYPE_CHECKING:
    from study.design.config import StudyConfig

#: a unit of work: (condition id, replicate index)
Pair = tuple[str, int]


@dataclass
class BatchResult:
    """What a batch gives back: its piece and the posteriors to keep, as
    ``(engine, condition id, replicate, DataTree)``."""

    piece: Piece
    posteriors: list[tuple[str, str, int, Any]] = field(default_factory=list)


def compile_dir(slot: str) -> Path:
    """PyTensor's base compile directory for worker ``slot`` (stable across runs, so a
    worker finds its own cache again; separate per slot, because PyTensor's cache is not
    safe to share between processes compiling at once: PyMC issue 7819)."""
    base = os.environ.get("LMM_STUDY_COMPILEDIR") or str(Path.home() / ".pytensor")
    return Path(base) / f"lmm-study-{re.sub(r'[^A-Za-z0-9_.-]', '_', slot)}"


class ProcessState:
    """What one process keeps between the batches it fits: engines built (and
    compiled) once each, designs drawn once each, the cores its engines may use, and
    its BLAS thread controller.

    A worker process (local, Dask) receives only ``(config, pairs)`` per task, so
    what it reuses between tasks can only live with the process: this object,
    :data:`PROCESS`, is that one place (nothing else in the package keeps state).
    """

    def __init__(self) -> None:
        self.threads: int | None = None
        #: seconds the last :meth:`warm_up` took
        self.warm_seconds = 0.0
        #: this process's age when its last :meth:`warm_up` ended: its imports, the
        #: designs and the compile, what a new worker process repeats before it fits
        self.ready_seconds = 0.0
        self._engines: dict[tuple[str, Any], Engine] = {}
        self._designs: dict[tuple[int, str], AnyDesign] = {}
        self._blas: Any = None

    def prepare(self, slot: str | None, threads: int | None) -> None:
        """Set this process up to fit: engines on at most ``threads`` cores and (for a
        worker, ``slot`` not None) a compile directory of its own.

        The compile directory can only be chosen before PyTensor is first imported; a
        worker process imports it later, when its first engine is built.
        """
        if slot is not None and "pytensor" not in sys.modules:
            flags = os.environ.get("PYTENSOR_FLAGS", "")
            kept = [f for f in flags.split(",") if f and not f.startswith("base_compiledir=")]
            flags = ",".join([*kept, f"base_compiledir={compile_dir(slot)}"])
            os.environ["PYTENSOR_FLAGS"] = flags
        self.threads = threads

    def one_blas_thread(self) -> Any:
        """A context in which BLAS runs on one thread (15 us to enter).

        Every fit runs in one: workers share the cores, and a product split over a
        number of threads that depends on the machine could change REML's last bits
        between ways of running the same study.
        """
        if self._blas is None:
            from threadpoolctl import ThreadpoolController

            self._blas = ThreadpoolController()
        return self._blas.limit(limits=1, user_api="blas")

    def engine(self, config: StudyConfig, name: str) -> Engine:
        """The engine ``name`` configured as in ``config``, built once per process."""
        options = config.engine_options[name]
        if self.threads is not None:
            options = config.registry.limit_threads(name, options, self.threads)
        key = (name, options)
        if key not in self._engines:
            self._engines[key] = config.registry.build_engine(name, options)
        return self._engines[key]

    def engines(self, config: StudyConfig) -> list[Engine]:
        """The configured engines, in ``config.engines`` order."""
        return [self.engine(config, name) for name in config.engines]

    def design(self, config: StudyConfig, condition_id: str) -> AnyDesign:
        """The design of condition ``condition_id`` of ``config``, built once per
        process (its fixed X, and u when fixed, are drawn once, not per batch)."""
        key = (config.seed, condition_id)
        if key not in self._designs:
            match = [c for c in config.conditions if c.id == condition_id]
            if not match:
                raise ValueError(f"condition {condition_id!r} is not one of this study's")
            self._designs[key] = design_of(config, match[0])
        return self._designs[key]

    def warm_up(self, config: StudyConfig) -> float:
        """Build the engines and compile them for every condition's data shape
        (engines that compile do it here rather than inside a first fit); returns the
        seconds spent."""
        t0 = time.perf_counter()
        for name, engine in zip(config.engines, self.engines(config), strict=True):
            structure = config.structure_of(name)
            for c in config.conditions:
                data = data_for(self.design(config, c.id).sample(0).data, structure)
                if isinstance(data, LMMData):  # (compile_engine takes one-factor data only)
                    config.registry.compile_engine(name, engine, data)
        self.warm_seconds = time.perf_counter() - t0
        self.ready_seconds = time.time() - psutil.Process().create_time()
        return self.warm_seconds


#: the state of this process (see :class:`ProcessState`)
PROCESS = ProcessState()


def iter_batches(
    config: StudyConfig, pairs: Iterable[Pair], fail_fast: bool = False
) -> Iterator[BatchResult]:
    """Run ``pairs`` in turn (as the study's kind says), a one-pair
    :class:`BatchResult` for each."""
    kind = kind_of(config)
    engines = PROCESS.engines(config)
    for cid, r in pairs:
        with PROCESS.one_blas_thread():
            out = kind.run_pair(config, PROCESS.design(config, cid), engines, r, fail_fast)
        yield BatchResult(
            piece_of(kind.layout, [(cid, r)], [out]),
            [(name, cid, r, tree) for name, tree in out.posteriors],
        )


def run_batch(config: StudyConfig, pairs: Sequence[Pair], fail_fast: bool = False) -> BatchResult:
    """Run the (condition id, replicate) ``pairs`` of ``config``: the unit any worker
    can execute.

    The result depends only on ``(config, pairs)``, never on which process runs it or
    in which order batches finish.
    """
    if not pairs:
        raise ValueError("pairs = []: give at least one (condition id, replicate) pair")
    results = list(iter_batches(config, pairs, fail_fast))
    piece = Piece.concat([b.piece for b in results])
    assert piece is not None
    return BatchResult(piece, [p for b in results for p in b.posteriors])


def span(batch: list[Pair]) -> str:
    """The replicates of a batch, for messages: ``3`` or ``3-7``."""
    reps = sorted({r for _, r in batch})
    return f"{reps[0]}-{reps[-1]}" if len(reps) > 1 else str(reps[0])
