"""Array-job shards (``--shard I/N``) and ``study merge``.

Shard ``I`` of ``N`` owns the replicates ``r`` with ``r % N == I - 1``, every
condition of each: a fixed subset that does not move when the study is extended to
more replicates.  A shard writes only checkpoint pieces (never ``results.nc``, never
consolidates, so shards may share one run directory); :func:`merge` joins the pieces
of one or more run directories of the same configuration into ``results.nc``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.design.config import differences
from study.errors import StoreError, UserError
from study.run.batch import Pair
from study.run.dataset import requested_counts, sparse_counts
from study.run.integrity import load_checked, stamp_of
from study.run.lock import run_lock
from study.run.results import dataset_of, store_of, stored_config
from study.run.store import Piece, Store, atomic_path

if TYPE_CHECKING:
    from study.design.config import StudyConfig

_SHARD = re.compile(r"^\s*(\d+|slurm)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def owns(self, pair: Pair) -> bool:
        """Whether the (condition id, replicate) pair belongs to this shard."""
        return pair[1] % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str, environ: Mapping[str, str] | None = None) -> Shard:
    """``I/N`` (1 <= I <= N) or ``slurm/N`` (I from ``SLURM_ARRAY_TASK_ID``).

    For ``slurm/N`` the task id counts from ``SLURM_ARRAY_TASK_MIN`` (so ``--array=0-9``
    and ``--array=1-10`` both give shards 1..10).

    Raises
    ------
    ValueError
        A malformed spec, an index out of range, or no SLURM task id.
    """
    env = os.environ if environ is None else environ
    match = _SHARD.match(text)
    if not match:
        raise ValueError(f"--shard {text!r}: give I/N (e.g. 2/10) or slurm/N")
    count = int(match.group(2))
    if count < 1:
        raise ValueError(f"--shard {text!r}: N must be >= 1")
    if match.group(1) == "slurm":
        task = env.get("SLURM_ARRAY_TASK_ID")
        if task is None or not task.isdigit():
            raise ValueError(
                f"--shard {text!r}: SLURM_ARRAY_TASK_ID is not set (got {task!r}); run it "
                "inside an array job (sbatch --array) or give the shard as I/N"
            )
        first = env.get("SLURM_ARRAY_TASK_MIN", "1")
        index = int(task) - (int(first) if first.isdigit() else 1) + 1
    else:
        index = int(match.group(1))
    if not 1 <= index <= count:
        raise ValueError(f"--shard {text!r}: shard {index} is not in 1..{count}")
    return Shard(index, count)


@dataclass
class MergeReport:
    """What :func:`merge` did: where ``results.nc`` went, the pairs it holds, the pairs
    it lacks and the piece files copied in from other directories."""

    results: Path
    done: int
    total: int
    missing: list[Pair]
    copied: int
    conditions: int


def describe_missing(missing: Sequence[Pair], conditions: int) -> str:
    """``replicates 3, 7, 11 (+5 more)`` (with conditions named for a grid)."""
    if conditions == 1:
        reps = sorted({r for _, r in missing})
        shown = ", ".join(map(str, reps[:10]))
        more = f" (+{len(reps) - 10} more)" if len(reps) > 10 else ""
        return f"replicate{'s' if len(reps) > 1 else ''} {shown}{more}"
    shown = "; ".join(f"{c} #{r}" for c, r in missing[:6])
    more = f" (+{len(missing) - 6} more)" if len(missing) > 6 else ""
    return f"{shown}{more}"


def merge(
    dirs: Sequence[str | Path], out: str | Path | None = None, *, partial: bool = False
) -> MergeReport:
    """Join the checkpoint pieces of ``dirs`` (runs of one configuration) into
    ``out/results.nc`` (``out`` defaults to the first directory).

    Pieces of the other directories are copied (never moved) into ``out``; nothing is
    written when a directory is of another configuration, or when replicates are
    missing and ``partial`` is false.

    Raises
    ------
    StoreError
        A directory is not a run, holds another configuration, or (without
        ``partial``) replicates are missing.
    """
    stores = [store_of(d) for d in dirs]
    if not stores:
        raise UserError("study merge: give at least one run directory")
    for store in stores:
        if not store.path.is_dir():
            raise StoreError(
                f"{store.path}: no such run directory; give directories `study run` wrote"
            )
    manifests = [s.read_manifest() for s in stores]
    config = stored_config(stores[0])
    for store in stores[1:]:
        other = stored_config(store)
        if other.hash() != config.hash():
            changed = differences(config.hashed_settings(), other.hashed_settings())
            raise StoreError(
                f"{store.path} holds a run of another configuration than {stores[0].path} "
                f"({'; '.join(changed[:3])}); merge only shards of one study"
            )
    versions = {json.dumps(s.engine_versions(), sort_keys=True) for s in stores}
    if len(versions) > 1:
        raise StoreError(
            f"the runs were made by different engine versions ({' vs '.join(sorted(versions))}); "
            "their numbers would not fit together: rerun the older shards"
        )
    target = Store(out, stores[0].layout) if out is not None else stores[0]
    if target.exists() and stored_config(target).hash() != config.hash():
        raise StoreError(
            f"out={target.path} holds a run of another configuration; give a new directory"
        )
    with run_lock(target.path):  # no run, shard or other merge writes there meanwhile
        return _merge_locked(stores, manifests, config, target, dirs, partial)


def _merge_locked(
    stores: list[Store],
    manifests: list[dict[str, Any]],
    config: StudyConfig,
    target: Store,
    dirs: Sequence[str | Path],
    partial: bool,
) -> MergeReport:
    stamp = stamp_of(config)
    sources = [s for s in stores if not _same(s, target)]
    loaded = [
        load_checked(s, s.read_manifest(), stamp)
        for s in [*sources, *([target] if target.exists() else [])]
    ]
    joined = Piece.concat([p for p in loaded if p is not None])
    if joined is None:
        raise StoreError(f"{', '.join(map(str, dirs))}: no finished replicates to merge")
    replicates = max(int(m["replicates"]) for m in manifests)
    per = [requested_counts(config, m) for m in manifests]
    counts = {c.id: max(p[c.id] for p in per) for c in config.conditions}
    have = joined.pairs()
    missing = [
        (c.label, r)
        for r in range(max(counts.values()))
        for c in config.conditions
        if r < counts[c.id] and (c.id, r) not in have
    ]
    total = sum(counts.values())
    if missing and not partial:
        raise StoreError(
            f"{len(missing)} of {total} (condition, replicate) pairs are missing: "
            f"{describe_missing(missing, len(config.conditions))}; run the shards that own "
            "them, or merge with partial=True"
        )
    manifest = manifests[0]
    manifest["replicates"] = replicates
    manifest["replicates_by_condition"] = sparse_counts(counts, replicates)
    target.write_manifest(manifest, stores[0].config_text())
    copied = 0
    for store in sources:
        for path in store.piece_files():
            dest = target.checkpoints / path.name  # piece names are unique (uuid)
            if not dest.exists():
                with atomic_path(dest) as tmp:
                    shutil.copyfile(path, tmp)
                copied += 1
    piece = target.consolidate(stamp)
    assert piece is not None
    results = target.write_results(dataset_of(piece, config, manifest))
    return MergeReport(
        results, total - len(missing), total, missing, copied, len(config.conditions)
    )


def _same(a: Store, b: Store) -> bool:
    return a.path.resolve() == b.path.resolve()
