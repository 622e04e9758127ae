"""The study driver: what is left to do, where it runs, what is saved.

The unit of work is a batch of (condition, replicate) pairs that any process can
execute from ``(config, pairs)`` alone (:func:`study.run.batch.run_batch`); an
executor (:mod:`study.run.executors`: in this process, local worker processes, a
Dask cluster) runs the batches still to do, and :func:`run_study` checkpoints each
one as it comes back and merges the pieces into ``results.nc`` at the end.  A shard
(``--shard I/N``, :mod:`study.run.shards`) runs its own subset and leaves the merge
to ``study merge``.
"""

from __future__ import annotations

import contextlib
import errno
import signal
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from study.design.config import differences, with_registry
from study.errors import Interrupted, RunError, StoreError
from study.run.batch import PROCESS, Pair
from study.run.budget import check_budget
from study.run.dataset import requested_counts, sparse_counts
from study.run.executors import Executor, InProcess, batches, cpu_count
from study.run.integrity import Warn, load_repairing, recover_manifest, stamp_of, warn_stderr
from study.run.kinds import kind_of
from study.run.lock import run_lock
from study.run.results import dataset_of, store_for, stored_config
from study.run.store import Store

if TYPE_CHECKING:
    from models.registry import Registry
    from models.spec import EngineSpec
    from study.design.config import StudyConfig
    from study.run.shards import Shard


class StopRequest:
    """A request to stop a running study, made by a signal handler (the CLI's SIGINT
    and SIGTERM handler calls :meth:`__call__`).

    Calling it raises :class:`~study.errors.Interrupted` at once, so a driver waiting
    for results stops, and remembers the signal, because Python swallows an
    exception raised while a finalizer or weakref callback runs ("Exception ignored
    in ..."): the runner then stops after the next batch it saves.
    """

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int) -> None:
        self.signum = int(signum)
        raise Interrupted(signum)


#: consolidate checkpoint pieces when there are more than this many
CONSOLIDATE_EVERY = 200


def all_pairs(config: StudyConfig, replicates: int | None = None) -> Iterator[Pair]:
    """Every (condition id, replicate) pair of a study, replicate by replicate (so a
    partial run has whole replicates of every condition), lazily: each condition while
    ``r`` is below its count (:meth:`StudyConfig.count`; ``replicates``: that many of
    every condition)."""
    if replicates is None:
        counts = list(config.counts.items())
    else:
        counts = [(c.id, replicates) for c in config.conditions]
    for r in range(max(n for _, n in counts)):
        for cid, n in counts:
            if r < n:
                yield cid, r


class Progress(Protocol):
    """What the runner tells a progress display: ``total`` and ``done`` count
    (condition, replicate) pairs; ``advance`` names the condition just finished."""

    def start(self, total: int, done: int, conditions: int) -> None: ...
    def advance(self, failures: int, condition: str) -> None: ...
    def close(self) -> None: ...


class _Silent:
    def start(self, total: int, done: int, conditions: int) -> None:
        pass

    def advance(self, failures: int, condition: str) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class RunReport:
    """What a run did (``total``, ``done``, ``new`` count (condition, replicate) pairs)."""

    path: Path
    total: int
    done: int
    new: int
    failures: int
    complete: bool
    #: the results file the run (re)writes (results.nc, sbc.nc: its kind's)
    results: Path | None = None


def _manifest(config: StudyConfig, terms: list[str], effects: list[str]) -> dict[str, object]:
    return {
        "kind": kind_of(config).name,
        "study": config.name,
        "config_hash": config.hash(),
        "root_seed": config.seed,
        "engines": list(config.engines),
        "engine_versions": {e: config.engine_version(e) for e in config.engines},
        "terms": terms,
        "effects": effects,
        "replicates": config.replicates,
        "replicates_by_condition": sparse_counts(config.counts, config.replicates),
        "conditions": len(config.conditions),
        "axes": kind_of(config).axes(config),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def open_run(
    config: StudyConfig,
    store: Store,
    *,
    overwrite: bool = False,
    warn: Warn = warn_stderr,
) -> dict[str, object]:
    """Create the run directory or check that it holds a run of the same configuration.

    A manifest that is missing beside checkpoints, or does not parse, is rebuilt when
    the run is confirmed to be of ``config`` (:func:`study.run.integrity.recover_manifest`).
    Returns the manifest (its replicate count raised to ``config.replicates``, and each
    condition's count to ``config``'s).
    """
    terms, effects = kind_of(config).terms(config)
    fresh = _manifest(config, terms, effects)
    if store.exists() and overwrite:
        store.clear()
    has_run = store.exists() or bool(store.piece_files())
    if has_run and not overwrite:
        try:
            old = store.read_manifest()
        except StoreError:
            problem = "does not parse" if store.exists() else "is missing beside checkpoints"
            return recover_manifest(
                store,
                config,
                fresh,
                problem=problem,
                stored_hash=_stored_hash(store, config.registry),
                warn=warn,
            )
        if old["config_hash"] != config.hash():
            try:
                changed = differences(
                    stored_config(store, config.registry).hashed_settings(),
                    config.hashed_settings(),
                )
            except StoreError:
                changed = []
            what = "; ".join(changed[:3]) if changed else f"hash {old['config_hash']}"
            raise StoreError(
                f"{store.path} holds a run of a different configuration ({what}); "
                "use overwrite=True to replace it or out=... for a new directory"
            )
        versions = store.engine_versions()
        now = {e: config.engine_version(e) for e in config.engines}
        stale = [
            f"{e} {versions.get(e, 1)} -> {now[e]}"
            for e in config.engines
            if versions.get(e, 1) != now[e]
        ]
        if stale:
            raise StoreError(
                f"{store.path} was run by other engine versions ({'; '.join(stale)}: the same "
                "seeds now give other numbers, and a resumed run would mix them); use "
                "overwrite=True to rerun it or out=... for a new directory"
            )
        if (
            _stored_hash(store, config.registry) != config.hash()
        ):  # study.toml lost or damaged: rewrite it
            if store.config_path.exists():
                dest = store.set_aside(store.config_path)
                warn(f"{store.config_path} is damaged; moved to {dest} and rewritten")
            text = config.to_toml()
        else:
            text = store.config_text()
        counts = _larger_counts(old, config)
        old["replicates"] = max(int(old["replicates"]), config.replicates)
        old["replicates_by_condition"] = sparse_counts(counts, int(old["replicates"]))
        store.write_manifest(old, text)
        return old
    if store.results_path.exists() and not overwrite:
        raise StoreError(
            f"{store.path} has a {store.results_path.name} but no manifest or checkpoints; "
            "use overwrite=True to start afresh or out=... for a new directory"
        )
    if overwrite:
        store.clear()
    store.write_manifest(fresh, config.to_toml())
    return fresh


def _larger_counts(manifest: Mapping[str, Any], config: StudyConfig) -> dict[str, int]:
    """Per condition, the larger of the count the manifest records (a manifest written
    before per-condition counts: its ``replicates``) and ``config``'s."""
    stored = requested_counts(config, manifest)
    return {cid: max(stored[cid], n) for cid, n in config.counts.items()}


def _stored_hash(store: Store, registry: Registry) -> str | None:
    """The hash of the run's study.toml (``None`` when it is missing or invalid)."""
    try:
        return stored_config(store, registry).hash()
    except StoreError:
        return None


def finish_run(
    config: StudyConfig, store: Store, manifest: dict[str, object], context: Any
) -> Path | None:
    """Consolidate the pieces and (re)write the results file (its kind's: results.nc,
    sbc.nc); ``None`` when nothing is done.  ``context``: the kind's run context."""
    piece = store.consolidate(stamp_of(config))
    if piece is None:
        return None
    return store.write_results(dataset_of(piece, config, manifest, context))


def _out_of_space(err: OSError, store: Store) -> RunError:
    return RunError(
        f"no space left to write in {store.path} ({err.strerror or err}); the finished "
        "replicates are saved: free space (or give another out=...) and run the same "
        "command again to resume"
    )


def run_study(
    config: StudyConfig,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
    executor: Executor | None = None,
    shard: Shard | None = None,
    fail_fast: bool = False,
    warn: Warn = warn_stderr,
    stop: StopRequest | None = None,
    engines: Sequence[EngineSpec] = (),
) -> RunReport:
    """Run (or resume, or extend) a study of any kind; results in ``out`` (default: its
    kind's, e.g. outputs/<name>).

    Every batch is checkpointed as soon as it comes back, so an interruption (Ctrl-C,
    SIGTERM, kill -9) loses at most the batches in flight, and running again resumes;
    a resume sets damaged checkpoints aside and fits their replicates again.
    ``executor`` says where batches run (default: in this process); ``shard`` runs
    only that shard's replicates and writes no ``results.nc`` (``study merge`` does).
    The results never depend on either.  The run directory is locked while the run
    writes (:mod:`study.run.lock`); a study that would not fit in memory or on disk
    is refused before anything is written (:mod:`study.run.budget`).  With
    ``fail_fast`` the first fit that fails or does not converge stops the run
    (:class:`~study.errors.FitFailed`, with the engine's traceback).  ``stop`` is the
    :class:`StopRequest` a caller's signal handlers call.  ``engines`` registers
    engines of one's own for this run (:class:`~models.spec.EngineSpec`, as an entry
    point would; ``docs/engines.md``): ``config`` may name them.  Local worker
    processes import them by their references, so define them in an importable
    module, not in ``__main__``.

    Raises
    ------
    Interrupted
        On Ctrl-C or SIGTERM (a KeyboardInterrupt), after saving what is finished;
        ``report`` says how much.
    """
    if shard is not None and overwrite:
        raise StoreError(
            "overwrite=True with shard=... would delete the other shards' work; clear the run "
            "directory once before submitting the array job"
        )
    if engines:
        config = with_registry(config, config.registry.with_engines(*engines))
    store = store_for(config, out)
    if store.path.exists() and not store.path.is_dir():
        raise StoreError(f"out={store.path} is a file; give a directory")
    with run_lock(store.path, shard=None if shard is None else str(shard)):
        check_budget(config, store.path)  # a refusal leaves nothing behind
        # what the whole run needs (the truth of every condition), before anything is
        # written and after the budget allows the designs to be drawn
        context = kind_of(config).context(config, lambda cid: PROCESS.design(config, cid))
        return _run_locked(
            config,
            store,
            context,
            overwrite,
            progress,
            executor,
            shard,
            fail_fast,
            warn,
            stop or StopRequest(),
        )


def _run_locked(
    config: StudyConfig,
    store: Store,
    context: Any,
    overwrite: bool,
    progress: Progress | None,
    executor: Executor | None,
    shard: Shard | None,
    fail_fast: bool,
    warn: Warn,
    stop: StopRequest,
) -> RunReport:
    manifest = open_run(config, store, overwrite=overwrite, warn=warn)
    stamp = stamp_of(config)
    existing = load_repairing(store, manifest, stamp, warn, exclusive=shard is None)
    finished = set() if existing is None else existing.pairs()
    mine = (lambda p: True) if shard is None else shard.owns
    total = sum(1 for p in all_pairs(config) if mine(p))
    done = sum(1 for p in finished if p[1] < config.count(p[0]) and mine(p))
    todo = (p for p in all_pairs(config) if p not in finished and mine(p))  # lazy
    schema = store.layout.schema
    assert schema is not None
    failures = 0 if existing is None else int(schema.failures(existing.values).sum())
    executor = executor or InProcess()
    progress = progress or _Silent()
    labels = {c.id: c.label for c in config.conditions}
    written = 0
    try:
        if executor.fits_here and done < total:
            PROCESS.prepare(None, cpu_count())  # chains on the cores this process may use
            PROCESS.warm_up(config)  # the compile stays out of the progress rate
        progress.start(total, done, len(config.conditions))
        pieces = len(store.piece_files())  # counted here, not listed again per batch
        work = batches(todo, executor.batch_size)
        for result in executor.map(config, work, fail_fast, size=total - done):
            piece = result.piece
            piece.stamp = stamp
            for name, cid, r, tree in result.posteriors:
                label = labels[cid] if config.multi else ""
                store.write_posterior(name, cid, r, tree, label)
            store.write_piece(piece)  # after its posteriors: a piece means "all saved"
            written += len(piece)
            bad = schema.failures(piece.values)
            for i, cid in enumerate(piece.condition.tolist()):
                failures += int(bad[i])
                progress.advance(failures, labels[str(cid)])
            pieces += 1
            if shard is None and pieces > CONSOLIDATE_EVERY:
                store.consolidate(stamp)
                pieces = 1
            if stop.signum is not None:  # a stop request whose exception was swallowed
                raise Interrupted(stop.signum)
    except BaseException as err:
        progress.close()
        executor.close(cancel=True)
        if shard is None:
            with contextlib.suppress(OSError):  # e.g. the disk is full: the pieces stand
                finish_run(config, store, manifest, context)  # results.nc of what is done
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _out_of_space(err, store) from err
        if isinstance(err, KeyboardInterrupt):
            report = RunReport(
                store.path, total, done + written, written, failures, False, store.results_path
            )
            raise Interrupted(getattr(err, "signum", signal.SIGINT), report) from err
        raise
    progress.close()
    executor.close()
    if shard is None:
        try:
            finish_run(config, store, manifest, context)
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _out_of_space(err, store) from err
            raise
    return RunReport(store.path, total, done + written, written, failures, True, store.results_path)
