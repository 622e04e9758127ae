"""The ``study`` command line: truth, run, info, fit, summarize."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from study.config import ConfigError
from study.errors import UserError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2) instead of usage dumps."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _cmd_truth(args: argparse.Namespace) -> int:
    from study.config import load_config
    from study.generate import Design
    from study.tables import render
    from study.truth import compute_truth

    cfg = load_config(args.config)
    truth = compute_truth(Design.from_study(cfg))
    d = cfg.design
    if args.format != "table":
        print(render(truth.to_frame(), args.format, digits=6))
        return 0
    u_how = "fixed (drawn once)" if d.fixed_random_effects else "redrawn each replicate"
    print(
        f"study {cfg.name!r}: K = {d.groups} groups, n_i = {d.group_size}, "
        f"repeats = {d.repeats}, random effects {u_how}"
    )
    print(render(truth.to_frame(), "table", digits=6))
    if truth.cond_cov is not None:
        print(
            "cond_*: truth conditional on the fixed random effects "
            "(what the replicates' spread measures)"
        )
    if truth.report_se is not None:
        print("report_se: the 2018 report's formula on one copy of each class (ignores repeats)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``study`` command."""
    parser = _Parser(prog="study", description="Monte Carlo studies of linear mixed models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("truth", help="print the analytic true values and SEs of a study design")
    p.add_argument("config", help="preset name (default, seed) or path to a TOML file")
    p.add_argument("--format", choices=("table", "markdown", "csv"), default="table")
    p.set_defaults(func=_cmd_truth)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, UserError) as err:
        print(f"study: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("study: interrupted", file=sys.stderr)
        return 130
