"""``study summarize RUN_DIR``: performance measures with Monte Carlo SEs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from study.analysis.measures import MEASURES, compute_measures
from study.analysis.tables import COUNTS, DEFAULT_MEASURES, summary_text
from study.cli.sbc import summarize_sbc_run
from study.errors import UserError
from study.run.results import is_partial, open_results, store_of
from study.run.store import Store

#: measures the report's table shows beside the chosen ones
REPORT_MEASURES = ("mean_estimate", "mean_se")


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
        help="engine that relative precision is measured against (default: reml if run, "
        "else the first engine)",
    )
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Print the summary of a run."""
    if store_of(args.run_dir).kind == "sbc":  # a simulation-based calibration run
        given = [
            f"--{name.replace('_', '-')}"
            for name in ("measures", "exclude_nonconverged", "exclude_singular", "reference")
            if getattr(args, name)
        ]
        if given:
            raise UserError(
                f"{', '.join(given)}: options of a coverage study; {args.run_dir} is a "
                "simulation-based calibration (its summary tests every term: omit them)"
            )
        print(summarize_sbc_run(args.run_dir, args.format))
        return 0
    measures = [m.strip() for m in args.measures.split(",")] if args.measures else None
    print(
        summarize(
            args.run_dir,
            fmt=args.format,
            measures=measures,
            exclude_nonconverged=args.exclude_nonconverged,
            reference=args.reference,
            exclude_singular=args.exclude_singular,
        )
    )
    return 0


def summarize(
    run_dir: str | Path,
    *,
    fmt: str = "table",
    measures: list[str] | None = None,
    exclude_nonconverged: bool = False,
    reference: str | None = None,
    exclude_singular: bool = False,
) -> str:
    """Compute the chosen measures of a run, write ``summary.nc`` beside it, return text.

    Raises
    ------
    UserError
        An unknown measure, or a reference engine that is not in the run; nothing is
        written then.
    """
    chosen = list(measures) if measures else list(DEFAULT_MEASURES)
    unknown = [m for m in chosen if m not in MEASURES]
    if unknown:
        raise UserError(
            f"--measures: unknown {', '.join(unknown)}; choose from {', '.join(MEASURES)}"
        )
    ds = open_results(run_dir)
    engines = [str(e) for e in ds["engine"].values]
    if reference is None:
        reference = "reml" if "reml" in engines else engines[0]
    elif reference not in engines:
        raise UserError(
            f"--reference {reference!r}: not an engine of this run; "
            f"choose one of {', '.join(engines)}"
        )
    wanted = list(dict.fromkeys([*REPORT_MEASURES, *COUNTS.values(), *chosen]))
    summary = compute_measures(
        ds,
        reference=reference,
        exclude_nonconverged=exclude_nonconverged,
        measures=wanted,
        exclude_singular=exclude_singular,
    )
    Store(run_dir).write_summary(summary)
    return summary_text(
        ds,
        summary,
        fmt=fmt,
        measures=chosen,
        exclude_nonconverged=exclude_nonconverged,
        partial=is_partial(ds),
        exclude_singular=exclude_singular,
    )
