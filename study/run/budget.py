"""Will a study fit?  Memory and disk a run needs, estimated before it starts.

A run holds every (condition, replicate) pair's results in memory when it merges them
into ``results.nc`` (the pieces, their concatenation, the Dataset and the netCDF
write's copy of the text: about four copies, as ``benchmarks/bench_budget.py``
measures), and on disk it keeps the pieces, ``results.nc`` (for a while both the
consolidated piece and its parts) and the kept posteriors.  The per-pair size comes
from the results schema; a fit's ``message`` is stored as fixed-width text, so it is
counted at :data:`MESSAGE_CHARS` characters.  Each fit also needs its replicate's data
(:data:`FIT_COPIES` copies of the largest condition's rows: the sample, the engine's
design matrices, per-group splits) and, for an engine with draws, the posterior it
samples.  A run whose estimate exceeds the memory available or the free disk is
refused up front, with the figures.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import psutil

from study.errors import UserError
from study.run.kinds import kind_of
from study.schema import Schema

if TYPE_CHECKING:
    from study.design.config import StudyConfig

#: characters a fit's message is counted at (the widest message sets the column width)
MESSAGE_CHARS = 200
#: characters of other text fields (optimizer, condition id)
TEXT_CHARS = 16
#: copies of the results held at once while merging (pieces, joined, Dataset, the
#: netCDF write's text conversion): measured 3.5 by benchmarks/bench_budget.py
MEMORY_COPIES = 4
#: copies on disk at the peak (pieces, the consolidated piece, results.nc)
DISK_COPIES = 3
#: bytes of a kept posterior per draw and parameter, and its fixed overhead
POSTERIOR_BYTES = (8, 64_000)
#: copies of one replicate's data held while it is generated and fitted (the long
#: table, the engine's y, X, Z and group arrays, statsmodels' per-group splits)
FIT_COPIES = 8


@dataclass(frozen=True)
class Budget:
    """Bytes a study needs (``memory`` at the merge, ``disk`` at the peak)."""

    pairs: int
    per_pair: int
    memory: int
    disk: int
    #: bytes one fit needs (the largest condition's data and posterior): a process
    #: fitting one replicate at a time needs this much
    fit_memory: int = 0


def _bytes_per_pair(
    schema: Schema, engines: int, terms: int, axes: dict[str, int] | None = None
) -> int:
    """Bytes of one pair's results under ``schema`` (the run's kind's)."""
    size = 0
    for name, shape in schema.shapes(engines, terms, axes).items():
        var = schema.vars[name]
        cells = int(np.prod(shape)) if shape else 1
        if var.dtype is np.str_:
            chars = MESSAGE_CHARS if name == "message" else TEXT_CHARS
            size += cells * 4 * chars
        else:
            size += cells * np.dtype(var.dtype).itemsize
    return size + 4 * TEXT_CHARS + 8 + 8  # condition id, replicate, done


def estimate(config: StudyConfig, replicates: int | None = None) -> Budget:
    """What running ``config`` (to ``replicates`` of every condition; default: each
    condition's own count) needs."""
    counts = (
        list(config.counts.values())
        if replicates is None
        else [replicates] * len(config.conditions)
    )
    pairs = sum(counts)
    kind = kind_of(config)
    terms = len(kind.terms(config)[0])
    assert kind.layout.schema is not None
    per_pair = _bytes_per_pair(kind.layout.schema, len(config.engines), terms, kind.axes(config))
    kept = posterior = 0
    for name in config.engines:
        options = config.engine_options[name]
        draws = int(getattr(options, "draws", 0)) * int(getattr(options, "chains", 0))
        if draws:
            fits = sum(min(config.keep_draws, n) for n in counts)
            per_fit = draws * (terms + 12) * POSTERIOR_BYTES[0] + POSTERIOR_BYTES[1]
            kept += fits * per_fit
            posterior = max(posterior, per_fit)
    return Budget(
        pairs,
        per_pair,
        MEMORY_COPIES * pairs * per_pair,
        DISK_COPIES * pairs * per_pair + kept,
        data_bytes(config) + posterior,
    )


def data_bytes(config: StudyConfig) -> int:
    """Bytes one replicate's data take while fitted: :data:`FIT_COPIES` copies of the
    largest condition's rows (response, the fixed-effect columns, the group code)."""
    largest = max(condition.design.data_values for condition in config.conditions)
    return FIT_COPIES * 8 * largest


def _gb(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= 0.1 * size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,.0f} bytes"


def _existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_budget(
    config: StudyConfig,
    out: str | Path,
    *,
    available_memory: int | None = None,
    free_disk: int | None = None,
) -> Budget:
    """Refuse a study that would not fit in memory or on the disk of ``out``.

    ``available_memory`` and ``free_disk`` default to this machine's figures
    (``psutil.virtual_memory().available``, ``shutil.disk_usage``).  Space already
    used by a previous run in ``out`` is not counted twice: a resumed run is checked
    like a new one, which errs on the safe side.

    Raises
    ------
    UserError
        With the estimate and what is available, and how to make the study fit.
    """
    need = estimate(config)
    memory = psutil.virtual_memory().available if available_memory is None else available_memory
    disk = shutil.disk_usage(_existing(Path(out))).free if free_disk is None else free_disk
    what = f"{need.pairs:,} (condition, replicate) pairs x {len(config.engines)} engine(s)"
    if need.fit_memory > memory:
        raise UserError(
            f"one fit would need about {_gb(need.fit_memory)} of memory (a replicate's data "
            f"x {FIT_COPIES} copies, and the posterior of engines with draws), and "
            f"{_gb(memory)} is available; use fewer or smaller groups, fewer repeats "
            "(or fewer draws)"
        )
    if need.memory > memory:
        raise UserError(
            f"{what} would need about {_gb(need.memory)} of memory to merge the results "
            f"({_gb(need.per_pair)} per pair x {MEMORY_COPIES} copies), and "
            f"{_gb(memory)} is available; run fewer replicates or conditions, or split "
            "the grid into studies of their own"
        )
    if need.disk > disk:
        raise UserError(
            f"{what} would need about {_gb(need.disk)} of disk in {out}, and "
            f"{_gb(disk)} is free there; free space, give another out=..., or run fewer "
            "replicates (or keep fewer posteriors: keep_draws)"
        )
    return need
