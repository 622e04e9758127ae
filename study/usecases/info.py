"""What a run directory holds: progress, failures with their reasons, damage."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from study.analysis.failures import Reason, reasons
from study.errors import StoreError
from study.run.dataset import requested_counts
from study.run.integrity import Damage, check_pieces, expected_shapes, resume_command, stamp_of
from study.run.results import results_problem, store_of, stored_config
from study.run.store import DAMAGED, Piece


@dataclass
class EngineInfo:
    """One engine's fits: failures, messages, the median fit time, the reasons of the
    failures with counts, and (for a grid) the failures per condition."""

    name: str
    not_converged: int
    fits: int
    with_messages: int
    median_seconds: float
    reasons: list[Reason] = field(default_factory=list)
    by_condition: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class RunInfo:
    """What ``info`` found in a run directory."""

    path: Path
    study: str
    config_hash: str
    root_seed: object
    created: str
    done: int
    requested: int
    unit: str
    conditions: int
    engines: list[str]
    results_file: str
    #: ``None`` when readable or absent; else why it cannot be read
    results_problem: str | None
    results_present: bool
    damage: list[Damage]
    resume_command: str
    set_aside: int
    per_engine: list[EngineInfo]
    config_text: str


def info(run_dir: str | Path) -> RunInfo:
    """Describe a run directory (of any kind) without changing it."""
    store = store_of(run_dir)
    if not store.path.is_dir():
        raise StoreError(f"{run_dir}: no such run directory; give a directory `study run` wrote")
    manifest = store.read_manifest()
    config = stored_config(store)
    pieces, damage = check_pieces(
        store, stamp=stamp_of(config), shapes=expected_shapes(store, manifest)
    )
    piece = Piece.concat(pieces)
    engines = list(manifest["engines"])
    conditions = int(manifest.get("conditions", 1))
    schema = store.layout.schema
    unit = f"{schema.pair_dim if schema else 'replicate'}s"
    aside_dir = store.path / DAMAGED
    per_engine = []
    if piece is not None:
        labels = {c.id: c.label for c in config.conditions}
        conv, msg, secs = (piece.values[k] for k in ("converged", "message", "fit_seconds"))
        for j, name in enumerate(engines):
            bad = ~conv[:, j]
            finite = np.isfinite(secs[:, j])
            one = EngineInfo(
                name,
                int(bad.sum()),
                len(piece),
                int(sum(1 for m in msg[:, j] if m)),
                float(np.nanmedian(secs[:, j])) if finite.any() else float("nan"),
            )
            if bad.any():
                one.reasons = reasons(msg[bad, j].tolist())
                if conditions > 1:
                    per = Counter(labels.get(str(c), str(c)) for c in piece.condition[bad])
                    one.by_condition = per.most_common(8)
            per_engine.append(one)
    return RunInfo(
        path=store.path,
        study=str(manifest.get("study", "?")),
        config_hash=str(manifest["config_hash"]),
        root_seed=manifest.get("root_seed", "?"),
        created=str(manifest.get("created", "?")),
        done=0 if piece is None else len(piece),
        requested=sum(requested_counts(config, manifest).values()),
        unit=unit,
        conditions=conditions,
        engines=engines,
        results_file=store.results_path.name,
        results_problem=results_problem(store),
        results_present=store.results_path.is_file(),
        damage=damage,
        resume_command=resume_command(store),
        set_aside=len(list(aside_dir.glob("*"))) if aside_dir.is_dir() else 0,
        per_engine=per_engine,
        config_text=store.config_text(),
    )
