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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from models.registry import ENGINE_VERSIONS, engine_kind
from study.design.config import differences
from study.design.truth import compute_truth
from study.errors import Interrupted, RunError, StoreError
from study.run.batch import Pair, get_design, prepare_process, warm_up
from study.run.budget import check_budget
from study.run.executors import Executor, InProcess, batches, cpu_count
from study.run.integrity import Warn, load_repairing, recover_manifest, stamp_of, warn_stderr
from study.run.lock import run_lock
from study.run.results import dataset_of, default_out, run_kind, run_terms, stored_config
from study.run.store import Store

if TYPE_CHECKING:
    from study.design.config import StudyConfig
    from study.design.truth import Truth
    from study.run.shards import Shard

#: the signal that asked the running study to stop (:func:`request_stop`), if any
_STOP: list[int | None] = [None]


def request_stop(signum: int) -> None:
    """Ask the running study to stop (the CLI's SIGINT and SIGTERM handler): raise
    :class:`~study.errors.Interrupted` here, so a driver waiting for results stops at
    once, and remember it, because Python swallows an exception raised while a
    finalizer or weakref callback runs ("Exception ignored in ..."): the runner then
    stops after the next batch it saves."""
    _STOP[0] = int(signum)
    raise Interrupted(signum)


#: consolidate checkpoint pieces when there are more than this many
CONSOLIDATE_EVERY = 200


def all_pairs(config: StudyConfig, replicates: int | None = None) -> Iterator[Pair]:
    """Every (condition id, replicate) pair of a study, replicate by replicate (so a
    partial run has whole replicates of every condition), lazily."""
    ids = [c.id for c in config.conditions]
    for r in range(config.replicates if replicates is None else replicates):
        for cid in ids:
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


def _manifest(config: StudyConfig, terms: list[str], effects: list[str]) -> dict[str, object]:
    kind = {} if config.sbc is None else {"kind": "sbc"}  # study runs: as before the field
    return {
        **kind,
        "study": config.name,
        "config_hash": config.hash(),
        "root_seed": config.seed,
        "engines": list(config.engines),
        "engine_versions": {e: ENGINE_VERSIONS[engine_kind(e)] for e in config.engines},
        "terms": terms,
        "effects": effects,
        "replicates": config.replicates,
        "conditions": len(config.conditions),
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
    Returns the manifest (its replicate count raised to ``config.replicates``).
    """
    terms, effects = run_terms(config)
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
                store, config, fresh, problem=problem, stored_hash=_stored_hash(store), warn=warn
            )
        if old["config_hash"] != config.hash():
            try:
                changed = differences(
                    stored_config(store).hashed_settings(), config.hashed_settings()
                )
            except StoreError:
                changed = []
            what = "; ".join(changed[:3]) if changed else f"hash {old['config_hash']}"
            raise StoreError(
                f"{store.path} holds a run of a different configuration ({what}); "
                "use --overwrite to replace it or --out for a new directory"
            )
        versions = store.engine_versions()
        now = {e: ENGINE_VERSIONS[engine_kind(e)] for e in config.engines}
        stale = [
            f"{e} {versions.get(e, 1)} -> {now[e]}"
            for e in config.engines
            if versions.get(e, 1) != now[e]
        ]
        if stale:
            raise StoreError(
                f"{store.path} was run by other engine versions ({'; '.join(stale)}: the same "
                "seeds now give other numbers, and a resumed run would mix them); use "
                "--overwrite to rerun it or --out for a new directory"
            )
        if _stored_hash(store) != config.hash():  # study.toml lost or damaged: rewrite it
            if store.config_path.exists():
                dest = store.set_aside(store.config_path)
                warn(f"{store.config_path} is damaged; moved to {dest} and rewritten")
            text = config.to_toml()
        else:
            text = store.config_text()
        old["replicates"] = max(int(old["replicates"]), config.replicates)
        store.write_manifest(old, text)
        return old
    if store.results_path.exists() and not overwrite:
        raise StoreError(
            f"{store.path} has a {store.results_path.name} but no manifest or checkpoints; "
            "use --overwrite to start afresh or --out for a new directory"
        )
    if overwrite:
        store.clear()
    store.write_manifest(fresh, config.to_toml())
    return fresh


def _stored_hash(store: Store) -> str | None:
    """The hash of the run's study.toml (``None`` when it is missing or invalid)."""
    try:
        return stored_config(store).hash()
    except StoreError:
        return None


def finish_run(
    config: StudyConfig, store: Store, manifest: dict[str, object], truths: Mapping[str, Truth]
) -> Path | None:
    """Consolidate the pieces and (re)write results.nc (sbc.nc for an SBC run);
    ``None`` when nothing is done."""
    piece = store.consolidate(stamp_of(config))
    if piece is None:
        return None
    return store.write_results(dataset_of(piece, config, manifest, truths))


def _out_of_space(err: OSError, store: Store) -> RunError:
    return RunError(
        f"no space left to write in {store.path} ({err.strerror or err}); the finished "
        "replicates are saved: free space (or give another --out) and run the same "
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
) -> RunReport:
    """Run (or resume, or extend) a study; results in ``out`` (default outputs/<name>).

    Every batch is checkpointed as soon as it comes back, so an interruption (Ctrl-C,
    SIGTERM, kill -9) loses at most the batches in flight, and running again resumes;
    a resume sets damaged checkpoints aside and fits their replicates again.
    ``executor`` says where batches run (default: in this process); ``shard`` runs
    only that shard's replicates and writes no ``results.nc`` (``study merge`` does).
    The results never depend on either.  The run directory is locked while the run
    writes (:mod:`study.run.lock`); a study that would not fit in memory or on disk
    is refused before anything is written (:mod:`study.run.budget`).  With
    ``fail_fast`` the first fit that fails or does not converge stops the run
    (:class:`~study.errors.FitFailed`, with the engine's traceback).

    Raises
    ------
    Interrupted
        On Ctrl-C or SIGTERM (a KeyboardInterrupt), after saving what is finished;
        ``report`` says how much.
    """
    if shard is not None and overwrite:
        raise StoreError(
            "--overwrite with --shard would delete the other shards' work; clear the run "
            "directory once before submitting the array job"
        )
    _STOP[0] = None
    store = Store(out if out is not None else default_out(config), run_kind(config))
    if store.path.exists() and not store.path.is_dir():
        raise StoreError(f"--out {store.path} is a file; give a directory")
    # the truth of every condition before anything is written (SBC draws its own)
    truths = {}
    if config.sbc is None:
        truths = {
            c.id: compute_truth(get_design(config, c.id), config.terms()[0])
            for c in config.conditions
        }
    with run_lock(store.path, shard=None if shard is None else str(shard)):
        check_budget(config, store.path)  # a refusal leaves nothing behind
        return _run_locked(
            config, store, truths, overwrite, progress, executor, shard, fail_fast, warn
        )


def _run_locked(
    config: StudyConfig,
    store: Store,
    truths: Mapping[str, Truth],
    overwrite: bool,
    progress: Progress | None,
    executor: Executor | None,
    shard: Shard | None,
    fail_fast: bool,
    warn: Warn,
) -> RunReport:
    manifest = open_run(config, store, overwrite=overwrite, warn=warn)
    stamp = stamp_of(config)
    existing = load_repairing(store, manifest, stamp, warn, exclusive=shard is None)
    finished = set() if existing is None else existing.pairs()
    mine = (lambda p: True) if shard is None else shard.owns
    total = sum(1 for p in all_pairs(config) if mine(p))
    done = sum(1 for p in finished if p[1] < config.replicates and mine(p))
    todo = (p for p in all_pairs(config) if p not in finished and mine(p))  # lazy
    failures = 0 if existing is None else int((~existing.values["converged"]).sum())
    executor = executor or InProcess()
    progress = progress or _Silent()
    labels = {c.id: c.label for c in config.conditions}
    written = 0
    try:
        if executor.workers == 1 and done < total:
            prepare_process(None, cpu_count())  # chains on the cores this process may use
            warm_up(config)  # the compile stays out of the progress rate
        progress.start(total, done, len(config.conditions))
        pieces = len(store.piece_files())  # counted here, not listed again per batch
        for result in executor.map(config, batches(todo, executor.batch_size), fail_fast):
            piece = result.piece
            piece.stamp = stamp
            for name, cid, r, tree in result.posteriors:
                store.write_posterior(name, cid, r, tree)
            store.write_piece(piece)  # after its posteriors: a piece means "all saved"
            written += len(piece)
            bad = ~piece.values["converged"]
            for i, cid in enumerate(piece.condition.tolist()):
                failures += int(bad[i].sum())
                progress.advance(failures, labels[str(cid)])
            pieces += 1
            if shard is None and pieces > CONSOLIDATE_EVERY:
                store.consolidate(stamp)
                pieces = 1
            if _STOP[0] is not None:  # a stop request whose exception was swallowed
                raise Interrupted(_STOP[0])
    except BaseException as err:
        progress.close()
        executor.close(cancel=True)
        if shard is None:
            with contextlib.suppress(OSError):  # e.g. the disk is full: the pieces stand
                finish_run(config, store, manifest, truths)  # results.nc of what is done
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _out_of_space(err, store) from err
        if isinstance(err, KeyboardInterrupt):
            report = RunReport(store.path, total, done + written, written, failures, False)
            raise Interrupted(getattr(err, "signum", signal.SIGINT), report) from err
        raise
    progress.close()
    executor.close()
    if shard is None:
        try:
            finish_run(config, store, manifest, truths)
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _out_of_space(err, store) from err
            raise
    return RunReport(store.path, total, done + written, written, failures, True)
