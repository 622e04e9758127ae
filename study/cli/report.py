"""``study report RUN_DIR``: a self-contained HTML report and its Markdown twin."""

from __future__ import annotations

import argparse
from typing import Any

from study.usecases.analysing import report


def register(sub: Any) -> None:
    """Add the ``report`` command to the ``study`` parser."""
    p = sub.add_parser("report", help="write RUN_DIR/report.html (self-contained) and report.md")
    p.add_argument("run_dir", help="a run directory written by `study run` or `study sbc`")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Write the report; print the paths."""
    done = report(args.run_dir)
    print(f"{len(done.figures)} figures in {done.seconds:.1f} s")
    for path in reversed(done.paths):  # the HTML report last: what to open
        print(path)
    return 0
