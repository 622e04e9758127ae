"""Damage in a run directory: found, named, set aside, recomputed; never deleted.

A resume (``study run``) checks every checkpoint piece before it trusts it: one that
cannot be read, has arrays of the wrong shape, or carries the stamp of another
configuration or engine version is moved into ``damaged/`` with a warning, and its
replicates are fitted again.  A manifest that does not parse (or is missing beside
checkpoints) is rebuilt when the configuration can be confirmed from ``study.toml``
or from the pieces' stamps.  Reading commands (``summarize``, ``info``, ``merge``)
never change a run: they refuse with the file and the command that repairs it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.errors import StoreError
from study.run.dataset import requested_counts, sparse_counts
from study.run.store import MANIFEST, DamagedPiece, Piece, Store

if TYPE_CHECKING:
    from study.design.config import StudyConfig

Warn = Callable[[str], None]


def warn_stderr(message: str) -> None:
    """Print a warning line (the CLI's default for what a resume repairs)."""
    print(f"study: warning: {message}", file=sys.stderr)


def stamp_of(config: StudyConfig) -> str:
    """What a piece is stamped with: the configuration hash and the engine versions."""
    versions = ",".join(f"{e}={config.engine_version(e)}" for e in config.engines)
    return f"{config.hash()} {versions}"


def expected_shapes(store: Store, manifest: dict[str, Any]) -> dict[str, tuple[int, ...]] | None:
    """The shape after the pair axis of each piece variable of the run (its kind's
    schema, the manifest's engines and terms); ``None`` when the store has no schema."""
    schema = store.layout.schema
    if schema is None:
        return None
    return schema.shapes(
        len(manifest["engines"]), len(manifest["terms"]), manifest.get("axes") or {}
    )


def resume_command(store: Store) -> str:
    """The command that resumes (and so repairs) the run in ``store``."""
    cmd = f"{store.command} {store.config_path} --out {store.path}"
    count = store.layout.count_option
    try:
        return f"{cmd} {count} {int(store.read_manifest()['replicates'])}"
    except (StoreError, ValueError, TypeError):
        return cmd


@dataclass(frozen=True)
class Damage:
    """A file of the run that cannot be used, and why."""

    path: Path
    reason: str


def check_pieces(
    store: Store, *, stamp: str = "", shapes: dict[str, tuple[int, ...]] | None = None
) -> tuple[list[Piece], list[Damage]]:
    """Read every piece; return the good ones and the damage found.

    A piece is damaged when it cannot be read, when its arrays do not have
    ``shapes`` (other engines or terms), or when it is stamped and its stamp is not
    ``stamp`` (another configuration or engine version).
    """
    good: list[Piece] = []
    damage: list[Damage] = []
    for path in store.piece_files():
        try:
            piece = store.read_piece(path)
        except DamagedPiece as err:
            damage.append(Damage(path, err.reason))
            continue
        if stamp and piece.stamp and piece.stamp != stamp:
            damage.append(Damage(path, "written by another configuration or engine version"))
        elif shapes is not None and {k: piece.shapes()[k] for k in shapes} != shapes:
            damage.append(Damage(path, "its engines or terms are not this run's"))
        else:
            good.append(piece)
    return good, damage


def load_checked(store: Store, manifest: dict[str, Any], stamp: str = "") -> Piece | None:
    """The finished replicates of a run, for reading; :class:`StoreError` naming the
    first damaged piece and the command that sets it aside and recomputes it."""
    good, damage = check_pieces(store, stamp=stamp, shapes=expected_shapes(store, manifest))
    if damage:
        more = f" (and {len(damage) - 1} more damaged piece(s))" if len(damage) > 1 else ""
        raise StoreError(
            f"{damage[0].path} is damaged ({damage[0].reason}){more}; run "
            f"`{resume_command(store)}` to set it aside into {store.path / 'damaged'} and "
            "recompute its replicates"
        )
    return Piece.concat(good)


def load_repairing(
    store: Store,
    manifest: dict[str, Any],
    stamp: str,
    warn: Warn = warn_stderr,
    *,
    exclusive: bool = True,
) -> Piece | None:
    """The finished replicates of a run, for resuming it: damaged pieces are moved to
    ``damaged/`` (with a warning each) and left to be recomputed.  With ``exclusive``
    (the run holds the directory alone: not a shard) the temporary files a killed
    run left are removed too; a shard leaves them, as they may be another shard's
    writes in progress."""
    good, damage = check_pieces(store, stamp=stamp, shapes=expected_shapes(store, manifest))
    for d in damage:
        dest = store.set_aside(d.path)
        warn(f"{d.path} is damaged ({d.reason}); moved to {dest}; its replicates are fitted again")
    if exclusive:
        for tmp in store.leftover_temporaries():  # half-written files of a killed run
            tmp.unlink(missing_ok=True)
    return Piece.concat(good)


def recover_manifest(
    store: Store,
    config: StudyConfig,
    fresh: dict[str, Any],
    *,
    problem: str,
    stored_hash: str | None,
    warn: Warn,
) -> dict[str, Any]:
    """Rebuild a missing or corrupt manifest when the run is confirmed to be of
    ``config``: its ``study.toml`` has the same hash (``stored_hash``; ``None`` when
    it cannot be read), or its pieces carry the stamp of ``config``.  The damaged
    manifest (and a ``study.toml`` that does not match) is set aside.

    Raises
    ------
    StoreError
        The configuration of the directory cannot be confirmed.
    """
    toml_ok = stored_hash == config.hash()
    confirmed = toml_ok
    stamp = stamp_of(config)
    good, _ = check_pieces(store)
    if not confirmed:
        confirmed = bool(good) and all(p.stamp == stamp for p in good)
    if not confirmed:
        raise StoreError(
            f"{store.path / MANIFEST} {problem}, and neither {store.config_path.name} nor "
            f"the checkpoints show that {store.path} holds a run of this configuration; "
            "give the configuration it was run with, or use out=... for a new directory "
            "(overwrite=True would discard its checkpoints)"
        )
    manifest = dict(fresh)
    done = max((int(p.replicate.max()) + 1 for p in good if len(p)), default=0)
    manifest["replicates"] = max(int(manifest["replicates"]), done)
    counts = requested_counts(config, fresh)
    for p in good:
        for cid, r in zip(p.condition.tolist(), p.replicate.tolist(), strict=True):
            if str(cid) in counts:
                counts[str(cid)] = max(counts[str(cid)], int(r) + 1)
    manifest["replicates_by_condition"] = sparse_counts(counts, int(manifest["replicates"]))
    if (store.path / MANIFEST).exists():
        dest = store.set_aside(store.path / MANIFEST)
        warn(f"{store.path / MANIFEST} {problem}; moved to {dest} and rebuilt from the config")
    else:
        warn(f"{store.path / MANIFEST} {problem}; rebuilt from the config")
    if not toml_ok and store.config_path.exists():
        store.set_aside(store.config_path)
    store.write_manifest(manifest, store.config_text() if toml_ok else config.to_toml())
    return manifest
