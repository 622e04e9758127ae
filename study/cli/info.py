"""``study info``: what a results store holds."""

from __future__ import annotations

import argparse
from typing import Any

from study.usecases.info import RunInfo, info
from study.usecases.vocabulary import reasons_text


def register(sub: Any) -> None:
    """Add the ``info`` command to the ``study`` parser."""
    p = sub.add_parser("info", help="describe what a results store holds")
    p.add_argument("run_dir", help="a run directory written by `study run` or `study sbc`")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Print what a run directory holds."""
    print(describe(info(args.run_dir)))
    return 0


def describe(run: RunInfo) -> str:
    """The lines ``study info`` prints."""
    unit = run.unit
    what = unit if run.conditions == 1 else f"fits of {run.conditions} conditions x {unit}"
    if run.results_problem:
        results = (
            f"{run.results_problem}: `study merge {run.path}` rebuilds it from the checkpoints"
        )
    else:
        results = "present" if run.results_present else "not written yet"
    partial = "" if run.done >= run.requested else "  (partial)"
    lines = [
        f"run:        {run.path}",
        f"study:      {run.study}  (config hash {run.config_hash}, root seed {run.root_seed})",
        f"created:    {run.created}",
        f"done:       {run.done} of {run.requested} {what}{partial}",
        f"engines:    {', '.join(run.engines)}",
        f"{run.results_file + ':':11s} {results}",
    ]
    if run.damage:
        lines.append(f"damaged:    {len(run.damage)} checkpoint piece(s) cannot be used:")
        lines += [f"              {d.path.name} ({d.reason})" for d in run.damage]
        lines.append(f"            `{run.resume_command}` sets them aside and refits their {unit}")
    if run.set_aside:
        lines.append(
            f"set aside:  {run.set_aside} damaged file(s) in {run.path / 'damaged'} "
            f"(kept for inspection; their {unit} were refitted)"
        )
    for e in run.per_engine:
        lines.append(
            f"  {e.name:6s} not converged {e.not_converged} of {e.fits}, "
            f"with messages {e.with_messages}, median fit {e.median_seconds:.3f} s"
        )
        if e.reasons:
            lines.append("         reasons (count, reason with numbers as #):")
            lines += reasons_text(e.reasons, indent="         ")
        if e.by_condition:
            shown = ", ".join(f"{label} {n}" for label, n in e.by_condition)
            lines.append(f"         by condition: {shown}")
    lines += ["", "configuration:", run.config_text.rstrip()]
    return "\n".join(lines)
