"""The results store of one study run: manifest, checkpoint pieces, results.nc.

Layout of a run directory::

    study.toml          the configuration that produced it (TOML)
    manifest.json       config hash, root seed, engines, terms, replicates requested
    checkpoints/*.npz   independent pieces, each holding finished replicates and the
                        stamp of what made them (config hash, engine versions)
    results.nc          the merged xarray Dataset (rewritten when a run completes);
                        sbc.nc for a simulation-based calibration run (``study sbc``)
    damaged/            files a resume found damaged or foreign, set aside (kept)
    .lock               held while a run writes (:mod:`study.run.lock`)

Every file is written atomically (a temporary file in the same directory, flushed,
then ``os.replace``), so a kill at any moment leaves each file either absent or whole
(and at most a hidden ``.*.tmp`` file, removed by the next run).
Pieces are the source of truth: ``results.nc`` is rebuilt from them, and a resume
skips the replicates they hold.  Pieces may overlap (a kill during consolidation);
on load, duplicates of a replicate are identical and one is kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from study.errors import StoreError
from study.schema import Schema

CHECKPOINTS = "checkpoints"
DAMAGED = "damaged"
RESULTS = "results.nc"
MANIFEST = "manifest.json"
CONFIG = "study.toml"
SUMMARY = "summary.nc"
POSTERIORS = "posteriors"


#: the key of a piece's stamp (configuration hash and engine versions)
STAMP = "stamp"


class DamagedPiece(StoreError):
    """A checkpoint piece that cannot be used: ``path`` and ``reason``."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"checkpoint {path} is damaged ({reason})")
        self.path = path
        self.reason = reason


def _file_mode() -> int:
    """The mode a new file gets under the user's umask (``0o666 & ~umask``)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it over ``path``.

    On error the temporary file is removed and ``path`` is untouched.  The file gets
    the permissions of any new file under the user's umask (not the 0600 of a
    temporary file).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
        with contextlib.suppress(OSError):  # make the rename durable where supported
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


@dataclass
class Piece:
    """Finished (condition, replicate) pairs: ``condition`` (condition ids) and
    ``replicate``, one entry per pair, and arrays with leading dims (pair, engine[, term]).
    """

    condition: np.ndarray
    replicate: np.ndarray
    values: dict[str, np.ndarray]
    #: what made it: the configuration hash and engine versions (empty in pieces
    #: written before the stamp existed)
    stamp: str = ""

    def __len__(self) -> int:
        return int(self.replicate.shape[0])

    def pairs(self) -> set[tuple[str, int]]:
        """The (condition id, replicate) pairs it holds."""
        return set(zip(self.condition.tolist(), self.replicate.tolist(), strict=True))

    @staticmethod
    def concat(pieces: list[Piece]) -> Piece | None:
        """Pieces joined and sorted by (replicate, condition), duplicate pairs dropped."""
        if not pieces:
            return None
        shapes = {tuple(p.values[k].shape[1:] for k in sorted(p.values)) for p in pieces}
        if len(shapes) > 1:
            raise StoreError(
                "checkpoint pieces of different shapes (engines or terms differ): the run "
                "directory mixes configurations; use overwrite=True or another out=..."
            )
        rep = np.concatenate([p.replicate for p in pieces])
        cond = np.concatenate([p.condition for p in pieces]).astype(np.str_)
        order = np.lexsort((cond, rep))
        pair = np.char.add(np.char.add(cond[order], ":"), rep[order].astype(np.str_))
        _, first = np.unique(pair, return_index=True)
        keep = order[np.sort(first)]
        values = {k: np.concatenate([p.values[k] for p in pieces])[keep] for k in pieces[0].values}
        stamps = {p.stamp for p in pieces} - {""}
        return Piece(cond[keep], rep[keep], values, stamps.pop() if len(stamps) == 1 else "")

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of each variable after the pair axis: (engines[, terms])."""
        return {k: tuple(v.shape[1:]) for k, v in self.values.items()}


@dataclass(frozen=True)
class Layout:
    """What a kind of study keeps in its run directory (supplied by the kind,
    :mod:`study.run.kinds`; the store itself knows no kind).

    ``results_file``: the merged Dataset's file name; ``schema``: what every
    checkpoint piece holds (``None``: not checked); ``command``: the command that
    runs and resumes it; ``count_option``: its option for the number of replicates.
    """

    results_file: str = RESULTS
    schema: Schema | None = None
    command: str = "study run"
    count_option: str = "--replicates"


class Store:
    """A run directory.

    Parameters
    ----------
    path : Path
        The run directory (``outputs/<study name>`` by default).
    layout : Layout, optional
        The files of the run's kind (:func:`study.run.results.store_of` reads it from
        the directory); default: results.nc, pieces not checked against a schema.
    """

    def __init__(self, path: str | Path, layout: Layout | None = None) -> None:
        self.path = Path(path)
        self.layout = layout or Layout()
        #: the command that runs (and resumes) this kind of run: ``study run`` / ``study sbc``
        self.command = self.layout.command

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def results_path(self) -> Path:
        return self.path / self.layout.results_file

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    # -- manifest ---------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether the directory holds a run (its manifest)."""
        return (self.path / MANIFEST).is_file()

    def read_manifest(self) -> dict[str, Any]:
        """The manifest; :class:`StoreError` if missing or unreadable."""
        path = self.path / MANIFEST
        if not path.is_file():
            if self.piece_files():
                raise StoreError(
                    f"{path} is missing beside checkpoints; run `{self.command} "
                    f"{self.config_path} --out {self.path}` to rebuild it (finished "
                    "replicates are kept)"
                )
            raise StoreError(
                f"{self.path} is not a results store (no {MANIFEST}); "
                "give the directory a `study run` wrote"
            )
        try:
            manifest = json.loads(path.read_text())
            for key in ("config_hash", "engines", "terms", "effects", "replicates"):
                if key not in manifest:
                    raise KeyError(key)
        except (OSError, ValueError, KeyError, TypeError) as err:
            what = f"lacks {err}" if isinstance(err, KeyError) else type(err).__name__
            raise StoreError(
                f"{path} is corrupt ({what}); run `{self.command} {self.config_path} --out "
                f"{self.path}` to rebuild it (finished replicates are kept)"
            ) from err
        return dict(manifest)

    def engine_versions(self) -> dict[str, int]:
        """The engine versions the run was made with (1 for runs older than the field)."""
        manifest = self.read_manifest()
        return {e: 1 for e in manifest["engines"]} | dict(manifest.get("engine_versions", {}))

    def write_manifest(self, manifest: dict[str, Any], config_toml: str) -> None:
        """Write the configuration and the manifest (atomically, each)."""
        write_text_atomic(self.path / CONFIG, config_toml)
        write_text_atomic(self.path / MANIFEST, json.dumps(manifest, indent=2) + "\n")

    def config_text(self) -> str:
        """The TOML text of the configuration that produced the run."""
        try:
            return (self.path / CONFIG).read_text()
        except OSError as err:
            raise StoreError(f"{self.path / CONFIG} cannot be read ({err})") from err

    def clear(self) -> None:
        """Remove everything a run wrote (for ``--overwrite``)."""
        for name in (CHECKPOINTS, POSTERIORS, DAMAGED):
            shutil.rmtree(self.path / name, ignore_errors=True)
        for name in (self.results_path.name, MANIFEST, CONFIG, SUMMARY):
            (self.path / name).unlink(missing_ok=True)
        for tmp in self.leftover_temporaries():
            tmp.unlink(missing_ok=True)

    # -- pieces -----------------------------------------------------------------------
    def piece_files(self) -> list[Path]:
        """Checkpoint piece files, sorted by name."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(self.checkpoints.glob("part-*.npz"))

    def write_piece(self, piece: Piece) -> Path:
        """Write a piece atomically under a unique name (checkpoints/part-*.npz)."""
        first = int(piece.replicate.min())
        name = f"part-{first:07d}-{len(piece):05d}-{uuid.uuid4().hex[:8]}.npz"
        path = self.checkpoints / name
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            arrays: dict[str, Any] = {
                "condition": piece.condition,
                "replicate": piece.replicate,
                **piece.values,
            }
            if piece.stamp:
                arrays[STAMP] = np.array(piece.stamp)
            np.savez(fh, **arrays)
        return path

    def read_piece(self, path: Path) -> Piece:
        """Read one piece; :class:`StoreError` naming the file if it is corrupt."""
        try:
            with np.load(path, allow_pickle=False) as npz:
                meta = ("condition", "replicate", STAMP)
                values = {k: npz[k] for k in npz.files if k not in meta}
                replicate = npz["replicate"]
                condition = npz["condition"]
                stamp = str(npz[STAMP]) if STAMP in npz.files else ""
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise DamagedPiece(path, f"unreadable: {type(err).__name__}") from err
        schema = self.layout.schema
        wanted = () if schema is None else schema.required_vars
        missing = [k for k in wanted if k not in values]
        if missing:
            raise DamagedPiece(path, f"lacks {', '.join(missing)}")
        n = replicate.shape[0] if replicate.ndim == 1 else -1
        if n < 1 or condition.shape != (n,) or any(v.shape[:1] != (n,) for v in values.values()):
            raise DamagedPiece(path, "arrays of inconsistent lengths")
        if schema is not None:  # a piece older than an optional variable: its fill
            values = schema.completed(values)
        return Piece(condition, replicate, values, stamp)

    def load(self) -> Piece | None:
        """All finished replicates, sorted, duplicates dropped (``None`` if none).

        Raises :class:`DamagedPiece` for the first piece that cannot be read; see
        :mod:`study.run.integrity` for loading that checks and sets damage aside.
        """
        return Piece.concat([self.read_piece(p) for p in self.piece_files()])

    def consolidate(self, stamp: str = "") -> Piece | None:
        """Join all pieces into one (written first, then the old ones removed).

        Returns the joined piece (``None`` when there are no pieces).  The pieces must
        have been checked (:func:`study.run.integrity.load_pieces`) first.
        """
        files = self.piece_files()
        joined = Piece.concat([self.read_piece(p) for p in files])
        if joined is not None and len(files) > 1:
            joined.stamp = stamp or joined.stamp
            self.write_piece(joined)
            for f in files:
                f.unlink(missing_ok=True)
        return joined

    def set_aside(self, path: Path) -> Path:
        """Move a damaged file into ``damaged/`` (never delete it); returns where."""
        dest = self.path / DAMAGED / path.name
        if dest.exists():
            dest = dest.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        return dest

    def leftover_temporaries(self) -> list[Path]:
        """Temporary files of a run's atomic writes (pieces, posteriors, results.nc,
        the manifest, study.toml) that a killed run left behind.

        Only a run writes these, under the exclusive lock; the temporaries of
        commands that write beside a run (``summarize``, ``plot``, ``report``) are
        not listed, so removing these never breaks a write in progress.
        """
        found = [
            p
            for name in (self.results_path.name, MANIFEST, CONFIG)
            for p in self.path.glob(f".{name}.*.tmp")
        ]
        for sub in (CHECKPOINTS, POSTERIORS):
            if (self.path / sub).is_dir():
                found += (self.path / sub).glob(".*.tmp")
        return sorted(found)

    # -- posteriors -------------------------------------------------------------------
    def posterior_path(self, engine: str, condition: str, replicate: int, label: str = "") -> Path:
        """Where the kept posterior of ``engine`` for a (condition id, replicate) lives;
        with the condition's ``label`` (a grid's), the label leads the file name:
        ``bayes--groups=5_group_size=20--<id>-replicate-0000003.nc``."""
        tail = f"{condition}-replicate-{replicate:07d}.nc"
        if label:
            tail = f"{re.sub(r'[^A-Za-z0-9=._-]+', '_', label.replace(', ', '_'))}--{tail}"
            return self.path / POSTERIORS / f"{engine}--{tail}"
        return self.path / POSTERIORS / f"{engine}-{tail}"

    def write_posterior(
        self, engine: str, condition: str, replicate: int, tree: Any, label: str = ""
    ) -> Path:
        """Write a posterior (an ``xarray.DataTree``) as netCDF, atomically; its root
        attributes name the engine, the condition (label and id) and the replicate."""
        tree.attrs.update(
            engine=engine, condition=label, condition_id=condition, replicate=int(replicate)
        )
        path = self.posterior_path(engine, condition, replicate, label)
        return self._write_netcdf(path, tree)

    # -- results ----------------------------------------------------------------------
    def write_results(self, ds: Any) -> Path:
        """Write the results Dataset to results.nc atomically."""
        return self._write_netcdf(self.results_path, ds)

    def write_summary(self, summary: Any) -> Path:
        """Write the measures Dataset to summary.nc atomically."""
        return self._write_netcdf(self.path / SUMMARY, summary)

    @staticmethod
    def _write_netcdf(path: Path, ds: Any) -> Path:
        with atomic_path(path) as tmp:
            ds.to_netcdf(tmp, engine="h5netcdf")
        return path
