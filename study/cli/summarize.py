"""``study summarize RUN_DIR``: performance measures with Monte Carlo SEs (verdicts for
an SBC run)."""

from __future__ import annotations

import argparse
from typing import Any

from study.usecases.analysing import summarize


def register(sub: Any) -> None:
    """Add the ``summarize`` command to the ``study`` parser."""
    p = sub.add_parser("summarize", help="performance measures with Monte Carlo SEs")
    p.add_argument("run_dir", help="a run directory written by `study run` or `study sbc`")
    p.add_argument("--format", choices=("table", "markdown", "csv"), default="table")
    p.add_argument("--measures", help="comma-separated measures (default: a standard set)")
    p.add_argument(
        "--exclude-nonconverged",
        action="store_true",
        help="drop non-converged fits (default: keep them and report the count)",
    )
    p.add_argument(
        "--exclude-singular",
        action="store_true",
        help="drop singular (boundary) fits, as lme4::isSingular (default: keep them and "
        "report the count)",
    )
    p.add_argument(
        "--reference",
        help="engine that relative precision is measured against (default: the run's first engine)",
    )
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Print the summary of a run."""
    measures = [m.strip() for m in args.measures.split(",")] if args.measures else None
    summary = summarize(
        args.run_dir,
        fmt=args.format,
        measures=measures,
        exclude_nonconverged=args.exclude_nonconverged,
        exclude_singular=args.exclude_singular,
        reference=args.reference,
    )
    print(summary.text)
    return 0
