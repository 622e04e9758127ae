"""``study truth PRESET_OR_TOML``: the analytic true values and SEs of a design."""

from __future__ import annotations

import argparse
from typing import Any

from study.usecases.truth import truth
from study.usecases.vocabulary import PRESETS, render


def register(sub: Any) -> None:
    """Add the ``truth`` command to the ``study`` parser."""
    p = sub.add_parser("truth", help="print the analytic true values and SEs of a study design")
    p.add_argument("config", help=f"preset name ({', '.join(PRESETS)}) or path to a TOML file")
    p.add_argument("--format", choices=("table", "markdown", "csv"), default="table")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Print the truth of every condition of a configuration."""
    table = truth(args.config)
    if args.format != "table":
        print(render(table.frame, args.format, digits=6))
        return 0
    print(table.design)
    for line in table.models:
        print(line)
    print(render(table.frame, "table", digits=6))
    for note in table.notes:
        print(note)
    return 0
