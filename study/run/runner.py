"""The study runner: generate -> analyse -> store, resumable and order-independent.

The unit of work is a batch of replicate indices that any process can execute from
``(config, indices)`` alone (:func:`run_batch`, over :func:`iter_pieces`);
:func:`run_study` drives the replicates still to do, checkpoints every finished one
and merges the pieces into ``results.nc`` at the end.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from models.base import Engine, FitResult, term_names
from models.registry import build_engine
from study.design.config import differences
from study.design.generate import Design
from study.design.seeds import engine_seed
from study.design.truth import compute_truth
from study.errors import StoreError
from study.run.results import build_dataset, piece_from_fits, stored_config
from study.run.store import Piece, Store

if TYPE_CHECKING:
    from study.design.config import StudyConfig
    from study.design.truth import Truth

#: engines built in this process, keyed by (name, options object): compiled once each
_ENGINE_CACHE: dict[tuple[str, Any], Engine] = {}
#: consolidate checkpoint pieces when there are more than this many
CONSOLIDATE_EVERY = 200


def get_engine(config: StudyConfig, name: str) -> Engine:
    """The engine ``name`` configured as in ``config``, built once per process."""
    options = config.engine_options[name]
    key = (name, options)
    if key not in _ENGINE_CACHE:
        _ENGINE_CACHE[key] = build_engine(name, options)
    return _ENGINE_CACHE[key]


def get_engines(config: StudyConfig) -> list[Engine]:
    """The configured engines, in ``config.engines`` order (built once per process)."""
    return [get_engine(config, name) for name in config.engines]


#: a unit of work: (condition id, replicate index)
Pair = tuple[str, int]


def fit_replicate(
    config: StudyConfig,
    design: Design,
    engines: list[Engine],
    replicate: int,
    store: Store | None = None,
) -> list[FitResult]:
    """Generate replicate ``replicate`` of ``design`` and fit it with every engine.

    An engine that raises despite its contract is recorded as a failed fit with the
    exception text; the study goes on.  For the first ``config.keep_draws`` replicates
    of each condition the engines' posteriors are written to ``store`` (``posteriors/``).
    """
    sample = design.sample(replicate)
    keep = store is not None and replicate < config.keep_draws
    fits = []
    for name, engine in zip(config.engines, engines, strict=True):
        t0 = time.perf_counter()
        seed = engine_seed(config.seed, design.id, replicate, name)
        try:
            fit = engine.fit(sample.data, seed=seed, keep_posterior=keep)
        except Exception as err:  # errors are data, never a crashed study
            last = traceback.extract_tb(err.__traceback__)[-1]
            fit = FitResult.failed(
                config.design.predictors,
                f"{type(err).__name__}: {err} (at {Path(last.filename).name}:{last.lineno})",
                time.perf_counter() - t0,
            )
        posterior = fit.extra.pop("posterior", None)
        if keep and store is not None and posterior is not None:
            store.write_posterior(name, design.id, replicate, posterior)
        fits.append(fit)
    return fits


def all_pairs(config: StudyConfig, replicates: int | None = None) -> Iterator[Pair]:
    """Every (condition id, replicate) pair of a study, replicate by replicate (so a
    partial run has whole replicates of every condition), lazily."""
    ids = [c.id for c in config.conditions]
    for r in range(config.replicates if replicates is None else replicates):
        for cid in ids:
            yield cid, r


def iter_pieces(
    config: StudyConfig,
    pairs: Iterable[Pair],
    store: Store | None = None,
    designs: Mapping[str, Design] | None = None,
) -> Iterator[Piece]:
    """Fit ``pairs`` in turn, yielding a one-pair piece for each.

    ``designs`` (condition id -> Design) saves redrawing the designs; by default they
    are built here, once each.
    """
    if designs is None:
        designs = {c.id: Design.from_study(config, c) for c in config.conditions}
    engines = get_engines(config)
    for cid, r in pairs:
        fits = fit_replicate(config, designs[cid], engines, r, store)
        yield piece_from_fits([(cid, r)], [fits])


def run_batch(config: StudyConfig, pairs: Sequence[Pair]) -> Piece:
    """Fit the (condition id, replicate) ``pairs`` of ``config``: the unit any worker
    can execute.

    The result depends only on ``(config, pairs)``, never on which process runs it or
    in which order batches finish.
    """
    if not pairs:
        raise ValueError("pairs = []: give at least one (condition id, replicate) pair")
    piece = Piece.concat(list(iter_pieces(config, pairs)))
    assert piece is not None
    return piece


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
    return {
        "study": config.name,
        "config_hash": config.hash(),
        "root_seed": config.seed,
        "engines": list(config.engines),
        "terms": terms,
        "effects": effects,
        "replicates": config.replicates,
        "conditions": len(config.conditions),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def open_run(config: StudyConfig, store: Store, *, overwrite: bool = False) -> dict[str, object]:
    """Create the run directory or check that it holds a run of the same configuration.

    Returns the manifest (its replicate count raised to ``config.replicates``).
    """
    if store.path.exists() and not store.path.is_dir():
        raise StoreError(f"--out {store.path} is a file; give a directory")
    terms, effects = term_names(config.design.predictors)
    fresh = _manifest(config, terms, effects)
    if store.exists() and overwrite:
        store.clear()
    if store.exists():
        old = store.read_manifest()
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
        old["replicates"] = max(int(old["replicates"]), config.replicates)
        store.write_manifest(old, store.config_text())
        return old
    if store.path.is_dir() and any(store.path.iterdir()):
        leftovers = sorted(p.name for p in store.path.iterdir())
        if any(p in leftovers for p in ("results.nc", "checkpoints")):
            raise StoreError(
                f"{store.path} has results but no manifest; use --overwrite to start afresh "
                "or --out for a new directory"
            )
    store.write_manifest(fresh, config.to_toml())
    return fresh


def finish_run(
    config: StudyConfig, store: Store, manifest: dict[str, object], truths: Mapping[str, Truth]
) -> Path | None:
    """Consolidate the pieces and (re)write results.nc; ``None`` when nothing is done."""
    piece = store.consolidate()
    if piece is None:
        return None
    return store.write_results(build_dataset(piece, config, truths, manifest))


def run_study(
    config: StudyConfig,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> RunReport:
    """Run (or resume, or extend) a study; results in ``out`` (default outputs/<name>).

    Every finished replicate is checkpointed at once, so an interruption (Ctrl-C,
    kill -9) loses at most the replicate in flight, and running again resumes.
    """
    store = Store(out if out is not None else Path("outputs") / config.name)
    manifest = open_run(config, store, overwrite=overwrite)
    existing = store.load()
    finished = set() if existing is None else existing.pairs()
    total = config.replicates * len(config.conditions)
    done = sum(1 for pair in finished if pair[1] < config.replicates)
    todo = (p for p in all_pairs(config) if p not in finished)  # lazy, never a full list
    failures = 0 if existing is None else int((~existing.values["converged"]).sum())
    progress = progress or _Silent()
    progress.start(total, done, len(config.conditions))
    designs = {c.id: Design.from_study(config, c) for c in config.conditions}
    labels = {c.id: c.label for c in config.conditions}
    truths = {cid: compute_truth(design) for cid, design in designs.items()}
    written = 0
    try:
        for piece in iter_pieces(config, todo, store, designs):
            store.write_piece(piece)
            written += 1
            failures += int((~piece.values["converged"]).sum())
            progress.advance(failures, labels[str(piece.condition[0])])
            if written % CONSOLIDATE_EVERY == 0:
                store.consolidate()
    except KeyboardInterrupt:
        progress.close()
        finish_run(config, store, manifest, truths)  # results.nc of what is done so far
        raise
    progress.close()
    finish_run(config, store, manifest, truths)
    return RunReport(store.path, total, done + written, written, failures, True)
