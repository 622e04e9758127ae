"""The ``study`` command line: truth, run, info, fit, summarize."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from study.design.config import ConfigError
from study.errors import UserError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2) instead of usage dumps."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _cmd_truth(args: argparse.Namespace) -> int:
    from study.design.config import load_config
    from study.design.generate import Design
    from study.analysis.tables import render
    from study.design.truth import compute_truth

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


def _engines_arg(text: str) -> tuple[str, ...]:
    from study.design.config import KNOWN_ENGINES

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in KNOWN_ENGINES]
    if not names or bad or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"--engines {text!r}: give distinct names from {', '.join(KNOWN_ENGINES)}, "
            "comma-separated (e.g. reml,bayes)"
        )
    return names


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a whole number >= 1")
    return value


def _cmd_run(args: argparse.Namespace) -> int:
    from study.design.config import load_config
    from study.cli.progress import make_progress
    from study.run.runner import run_study

    cfg = load_config(args.config)
    if args.replicates is not None:
        cfg = cfg.with_replicates(args.replicates)
    if args.engines is not None:
        cfg = cfg.with_engines(args.engines)
    out = args.out if args.out is not None else f"outputs/{cfg.name}"
    try:
        report = run_study(cfg, out, overwrite=args.overwrite, progress=make_progress())
    except KeyboardInterrupt:
        print(
            f"study: interrupted; finished replicates are saved in {out}; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    print(f"{report.path / 'results.nc'}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from study.cli.info import describe_run

    print(describe_run(args.run_dir))
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from study.cli.fit import fit_csv

    print(
        fit_csv(
            args.data,
            y=args.y,
            x=args.x,
            group=args.group,
            engine=args.engine,
            as_json=args.json,
            level=args.level,
            seed=args.seed,
        )
    )
    return 0


def _cmd_summarize(args: argparse.Namespace) -> int:
    from study.analysis.summary import summarize

    measures = [m.strip() for m in args.measures.split(",")] if args.measures else None
    print(
        summarize(
            args.run_dir,
            fmt=args.format,
            measures=measures,
            exclude_nonconverged=args.exclude_nonconverged,
            reference=args.reference,
        )
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``study`` command."""
    parser = _Parser(prog="study", description="Monte Carlo studies of linear mixed models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("truth", help="print the analytic true values and SEs of a study design")
    p.add_argument("config", help="preset name (default, seed) or path to a TOML file")
    p.add_argument("--format", choices=("table", "markdown", "csv"), default="table")
    p.set_defaults(func=_cmd_truth)

    p = sub.add_parser("run", help="run (or resume, or extend) a study")
    p.add_argument("config", help="preset name (default, seed) or path to a TOML file")
    p.add_argument("--replicates", type=_positive_int, help="number of replicates")
    p.add_argument("--engines", type=_engines_arg, help="comma-separated engines: reml,bayes")
    p.add_argument("--out", help="run directory (default outputs/<study name>)")
    p.add_argument(
        "--overwrite", action="store_true", help="discard a previous run in the directory"
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("info", help="describe what a results store holds")
    p.add_argument("run_dir", help="a run directory written by `study run`")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("fit", help="fit one dataset from a CSV file and print a tidy table")
    p.add_argument("data", help="CSV file")
    p.add_argument("--y", required=True, help="response column")
    p.add_argument("--x", required=True, help="predictor column(s), comma-separated")
    p.add_argument("--group", required=True, help="grouping column")
    p.add_argument("--engine", choices=("reml", "bayes"), default="reml")
    p.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    p.add_argument("--seed", type=int, default=1, help="sampler seed (bayes)")
    p.add_argument("--json", action="store_true", help="print a JSON list (broom::tidy shape)")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("summarize", help="performance measures with Monte Carlo SEs")
    p.add_argument("run_dir", help="a run directory written by `study run`")
    p.add_argument("--format", choices=("table", "markdown", "csv"), default="table")
    p.add_argument("--measures", help="comma-separated measures (default: a standard set)")
    p.add_argument(
        "--exclude-nonconverged",
        action="store_true",
        help="drop non-converged fits (default: keep them and report the count)",
    )
    p.add_argument("--reference", default="reml", help="engine for relative precision")
    p.set_defaults(func=_cmd_summarize)
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
    except OSError as err:  # e.g. an output directory that cannot be written
        print(f"study: error: {err}; check the path and its permissions", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("study: interrupted", file=sys.stderr)
        return 130
