"""The unit of work: a batch of (condition, replicate) pairs, fitted in any process.

:func:`run_batch` needs nothing but ``(config, pairs)`` and returns the batch's
checkpoint piece and the posteriors to keep, so the process that runs it (this one, a
local worker, a Dask worker on another machine) never touches the run directory: the
driver writes what comes back.  Engines are built, and compiled, once per process
(:func:`get_engine`).  :func:`prepare_process` makes a process a worker: its own
PyTensor compile directory, single-threaded BLAS, and chains on at most its share of
the cores.
"""

from __future__ import annotations

import os
import re
import sys
import time
import traceback
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.base import Engine, FitResult
from models.registry import build_engine, limit_threads
from study.design.generate import Design
from study.design.seeds import engine_seed
from study.errors import FitFailed
from study.run.results import piece_from_fits
from study.run.sbc import sbc_piece, simulate_and_rank
from study.run.store import Piece

if TYPE_CHECKING:
    from study.design.config import StudyConfig

#: a unit of work: (condition id, replicate index)
Pair = tuple[str, int]

#: engines built in this process, keyed by (name, options object): compiled once each
_ENGINE_CACHE: dict[tuple[str, Any], Engine] = {}
#: cores an engine of this process may use (None: as its options say)
_THREADS: list[int | None] = [None]
#: designs built in this process, keyed by (root seed, condition id): drawn once each
_DESIGNS: dict[tuple[int, str], Design] = {}
#: threadpoolctl controller of this process (made at the first fit, after BLAS loads)
_BLAS: list[Any] = []


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


def prepare_process(slot: str | None, threads: int | None) -> None:
    """Set this process up to fit: engines on at most ``threads`` cores and (for a
    worker, ``slot`` not None) a compile directory of its own.

    The compile directory can only be chosen before PyTensor is first imported; a
    worker process imports it later, when its first engine is built.
    """
    if slot is not None and "pytensor" not in sys.modules:
        flags = os.environ.get("PYTENSOR_FLAGS", "")
        kept = [f for f in flags.split(",") if f and not f.startswith("base_compiledir=")]
        os.environ["PYTENSOR_FLAGS"] = ",".join([*kept, f"base_compiledir={compile_dir(slot)}"])
    _THREADS[0] = threads


def one_blas_thread() -> Any:
    """A context in which BLAS runs on one thread (15 us to enter).

    Every fit runs in one: workers share the cores, and a product split over a number
    of threads that depends on the machine could change REML's last bits between ways
    of running the same study.
    """
    if not _BLAS:
        from threadpoolctl import ThreadpoolController

        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=1, user_api="blas")


def get_engine(config: StudyConfig, name: str) -> Engine:
    """The engine ``name`` configured as in ``config``, built once per process."""
    options = config.engine_options[name]
    if _THREADS[0] is not None:
        options = limit_threads(options, _THREADS[0])
    key = (name, options)
    if key not in _ENGINE_CACHE:
        _ENGINE_CACHE[key] = build_engine(name, options)
    return _ENGINE_CACHE[key]


def get_engines(config: StudyConfig) -> list[Engine]:
    """The configured engines, in ``config.engines`` order (built once per process)."""
    return [get_engine(config, name) for name in config.engines]


def get_design(config: StudyConfig, condition_id: str) -> Design:
    """The design of condition ``condition_id`` of ``config``, built once per process
    (its fixed X, and u when fixed, are drawn once, not per batch)."""
    key = (config.seed, condition_id)
    if key not in _DESIGNS:
        match = [c for c in config.conditions if c.id == condition_id]
        if not match:
            raise ValueError(f"condition {condition_id!r} is not one of this study's")
        _DESIGNS[key] = Design.from_study(config, match[0])
    return _DESIGNS[key]


def warm_up(config: StudyConfig) -> float:
    """Build the engines and compile them for every condition's data shape.

    Engines that compile (those with a ``compile(data)`` method) do it here rather
    than inside a first fit; returns the seconds spent.
    """
    t0 = time.perf_counter()
    for name, engine in zip(config.engines, get_engines(config), strict=True):
        compile_ = getattr(engine, "compile", None)
        if compile_ is None:
            continue
        structure = config.structure_of(name)
        for c in config.conditions:
            compile_(get_design(config, c.id).sample(0).data.with_structure(structure))
    return time.perf_counter() - t0


def fit_replicate(
    config: StudyConfig,
    design: Design,
    engines: list[Engine],
    replicate: int,
    fail_fast: bool = False,
) -> tuple[list[FitResult], list[tuple[str, Any]]]:
    """Generate replicate ``replicate`` of ``design`` and fit it with every engine.

    Returns the fits and, for the first ``config.keep_draws`` replicates of each
    condition, the posteriors to keep as ``(engine name, DataTree)``.  An engine that
    raises despite its contract is recorded as a failed fit with the exception text;
    the study goes on, unless ``fail_fast``: then the first fit that failed or did
    not converge raises :class:`~study.errors.FitFailed` with its traceback.
    """
    sample = design.sample(replicate)
    keep = replicate < config.keep_draws
    terms, effects = config.terms()
    fits, kept = [], []
    for name, engine in zip(config.engines, engines, strict=True):
        t0 = time.perf_counter()
        seed = engine_seed(config.seed, design.id, replicate, name)
        structure = config.structure_of(name)
        data = sample.data
        if structure != data.structure:  # a misspecified fit: same data, other Z
            data = data.with_structure(structure)
        try:
            fit = engine.fit(data, seed=seed, keep_posterior=keep)
        except Exception as err:  # errors are data, never a crashed study
            last = traceback.extract_tb(err.__traceback__)[-1]
            fit = FitResult.failed(
                structure,
                f"{type(err).__name__}: {err} (at {Path(last.filename).name}:{last.lineno})",
                time.perf_counter() - t0,
                traceback.format_exc(),
            )
        if fail_fast and not fit.converged:
            label = next((c.label for c in config.conditions if c.id == design.id), design.id)
            where = f"replicate {replicate}" + (
                f" of condition {label}" if len(config.conditions) > 1 else ""
            )
            what = "failed" if fit.extra.get("traceback") else "did not converge"
            raise FitFailed(
                f"--fail-fast: {name} {what} at {where}: {fit.message or 'no reason given'}",
                str(fit.extra.get("traceback", "")),
            )
        posterior = fit.extra.pop("posterior", None)
        if keep and posterior is not None:
            kept.append((name, posterior))
        fits.append(fit.aligned(terms, effects))
    return fits, kept


def iter_batches(
    config: StudyConfig, pairs: Iterable[Pair], fail_fast: bool = False
) -> Iterator[BatchResult]:
    """Fit ``pairs`` in turn, yielding a one-pair :class:`BatchResult` for each."""
    engines = get_engines(config)
    for cid, r in pairs:
        if config.sbc is not None:  # simulation-based calibration: ranks, not fits
            with one_blas_thread():
                values = simulate_and_rank(config, get_design(config, cid), engines, r, fail_fast)
            yield BatchResult(sbc_piece([(cid, r)], [values]))
            continue
        with one_blas_thread():
            fits, kept = fit_replicate(config, get_design(config, cid), engines, r, fail_fast)
        yield BatchResult(
            piece_from_fits([(cid, r)], [fits]),
            [(name, cid, r, tree) for name, tree in kept],
        )


def run_batch(config: StudyConfig, pairs: Sequence[Pair], fail_fast: bool = False) -> BatchResult:
    """Fit the (condition id, replicate) ``pairs`` of ``config``: the unit any worker
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
