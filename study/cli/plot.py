"""``study plot RUN_DIR``: the figures of a run, one file each."""

from __future__ import annotations

import argparse
from typing import Any

from study.usecases.analysing import plot
from study.usecases.vocabulary import FIGURE_NAMES


def register(sub: Any) -> None:
    """Add the ``plot`` command to the ``study`` parser."""
    names = ", ".join(FIGURE_NAMES)
    p = sub.add_parser("plot", help="draw the figures of a run (one file each)")
    p.add_argument("run_dir", help="a run directory written by `study run` or `study sbc`")
    p.add_argument("--what", help=f"comma-separated figures (default all): {names}")
    p.add_argument("--replicate", type=int, help="replicate for posterior figures")
    p.add_argument("--format", choices=("png", "svg"), default="png")
    p.add_argument("--out", help="directory for the files (default RUN_DIR/plots)")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Draw the figures asked for; print where each file went."""
    what = None if args.what is None else [n.strip() for n in args.what.split(",") if n.strip()]
    done = plot(args.run_dir, what=what, replicate=args.replicate, fmt=args.format, out=args.out)
    for path in done.paths:
        print(path)
    for reason in done.skipped:
        print(f"skipped {reason}")
    print(f"{len(done.paths)} figures in {done.seconds:.1f} s")
    return 0
