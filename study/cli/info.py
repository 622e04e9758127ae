"""``study info``: what a results store holds."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from study.run.results import stored_config
from study.run.store import Store


def register(sub: Any) -> None:
    """Add the ``info`` command to the ``study`` parser."""
    p = sub.add_parser("info", help="describe what a results store holds")
    p.add_argument("run_dir", help="a run directory written by `study run`")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Print what a run directory holds."""
    print(describe_run(args.run_dir))
    return 0


def describe_run(run_dir: str | Path) -> str:
    """A short human-readable description of a run directory."""
    store = Store(run_dir)
    manifest = store.read_manifest()
    piece = store.load()
    engines = list(manifest["engines"])
    conditions = int(manifest.get("conditions", 1))
    requested = int(manifest["replicates"]) * conditions
    done = 0 if piece is None else len(piece)
    what = "replicates" if conditions == 1 else f"fits of {conditions} conditions x replicates"
    lines = [
        f"run:        {store.path}",
        f"study:      {manifest.get('study', '?')}  (config hash {manifest['config_hash']}, "
        f"root seed {manifest.get('root_seed', '?')})",
        f"created:    {manifest.get('created', '?')}",
        f"done:       {done} of {requested} {what}" + ("" if done >= requested else "  (partial)"),
        f"engines:    {', '.join(engines)}",
        f"results.nc: {'present' if store.results_path.is_file() else 'not written yet'}",
    ]
    if piece is not None:
        labels = {c.id: c.label for c in stored_config(store).conditions}
        conv = piece.values["converged"]
        msg = piece.values["message"]
        secs = piece.values["fit_seconds"]
        for j, name in enumerate(engines):
            failed = int((~conv[:, j]).sum())
            warned = int(sum(1 for m in msg[:, j] if m))
            med = float(np.nanmedian(secs[:, j])) if np.isfinite(secs[:, j]).any() else float("nan")
            lines.append(
                f"  {name:6s} not converged {failed}, with messages {warned}, "
                f"median fit {med:.3f} s"
            )
            if failed:
                i = int(np.flatnonzero(~conv[:, j])[0])
                example = msg[i, j] or "no message"
                where = f"replicate {piece.replicate[i]}"
                if conditions > 1:
                    where += f" of {labels.get(str(piece.condition[i]), piece.condition[i])}"
                lines.append(f"         e.g. {where}: {example[:120]}")
    lines += ["", "configuration:", store.config_text().rstrip()]
    return "\n".join(lines)
