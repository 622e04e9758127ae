"""``study info``: what a results store holds."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from study.analysis.failures import reasons, reasons_text
from study.errors import StoreError
from study.run.integrity import check_pieces, expected_shapes, resume_command, stamp_of
from study.run.results import results_problem, store_of, stored_config
from study.run.store import DAMAGED, Piece


def register(sub: Any) -> None:
    """Add the ``info`` command to the ``study`` parser."""
    p = sub.add_parser("info", help="describe what a results store holds")
    p.add_argument("run_dir", help="a run directory written by `study run` or `study sbc`")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Print what a run directory holds."""
    print(describe_run(args.run_dir))
    return 0


def describe_run(run_dir: str | Path) -> str:
    """A short human-readable description of a run directory: what is done, the
    failure reasons with counts per engine, and any damage (with the repair)."""
    store = store_of(run_dir)
    if not store.path.is_dir():
        raise StoreError(f"{run_dir}: no such run directory; give a directory `study run` wrote")
    manifest = store.read_manifest()
    config = stored_config(store)
    pieces, damage = check_pieces(
        store,
        stamp=stamp_of(config),
        shapes=expected_shapes(len(manifest["engines"]), len(manifest["terms"]), store.kind),
    )
    piece = Piece.concat(pieces)
    engines = list(manifest["engines"])
    conditions = int(manifest.get("conditions", 1))
    requested = int(manifest["replicates"]) * conditions
    done = 0 if piece is None else len(piece)
    unit = "simulations" if store.kind == "sbc" else "replicates"
    what = unit if conditions == 1 else f"fits of {conditions} conditions x {unit}"
    problem = results_problem(store)
    if problem:
        results = f"{problem}: `study merge {store.path}` rebuilds it from the checkpoints"
    else:
        results = "present" if store.results_path.is_file() else "not written yet"
    lines = [
        f"run:        {store.path}",
        f"study:      {manifest.get('study', '?')}  (config hash {manifest['config_hash']}, "
        f"root seed {manifest.get('root_seed', '?')})",
        f"created:    {manifest.get('created', '?')}",
        f"done:       {done} of {requested} {what}" + ("" if done >= requested else "  (partial)"),
        f"engines:    {', '.join(engines)}",
        f"{store.results_path.name + ':':11s} {results}",
    ]
    if damage:
        lines.append(f"damaged:    {len(damage)} checkpoint piece(s) cannot be used:")
        lines += [f"              {d.path.name} ({d.reason})" for d in damage]
        lines.append(
            f"            `{resume_command(store)}` sets them aside and refits their {unit}"
        )
    aside = sorted((store.path / DAMAGED).glob("*")) if (store.path / DAMAGED).is_dir() else []
    if aside:
        lines.append(
            f"set aside:  {len(aside)} damaged file(s) in {store.path / DAMAGED} "
            f"(kept for inspection; their {unit} were refitted)"
        )
    if piece is not None:
        labels = {c.id: c.label for c in config.conditions}
        conv = piece.values["converged"]
        msg = piece.values["message"]
        secs = piece.values["fit_seconds"]
        for j, name in enumerate(engines):
            bad = ~conv[:, j]
            warned = int(sum(1 for m in msg[:, j] if m))
            med = float(np.nanmedian(secs[:, j])) if np.isfinite(secs[:, j]).any() else float("nan")
            lines.append(
                f"  {name:6s} not converged {int(bad.sum())} of {len(piece)}, "
                f"with messages {warned}, median fit {med:.3f} s"
            )
            if not bad.any():
                continue
            lines.append("         reasons (count, reason with numbers as #):")
            lines += reasons_text(reasons(msg[bad, j].tolist()), indent="         ")
            if conditions > 1:
                per = Counter(labels.get(str(c), str(c)) for c in piece.condition[bad])
                shown = ", ".join(f"{label} {n}" for label, n in per.most_common(8))
                lines.append(f"         by condition: {shown}")
    lines += ["", "configuration:", store.config_text().rstrip()]
    return "\n".join(lines)
