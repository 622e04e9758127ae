"""``study power PRESET_OR_TOML``: power beside type I error, and a sample-size search.

Without ``--search`` it runs the configuration's power study (its ``[power]`` table)
on the study runner (workers, Dask, shards, checkpoints, resume as ``study run``) and
prints power and type I error per test; ``study summarize``, ``study plot --what
power`` and ``study report`` work on its directory.  With ``--search groups`` (or
``group_size``, ``repeats``) it finds the smallest value reaching ``--target`` power
(:mod:`study.usecases.searching`) and prints the answer, its interval, a
confirmation run and what it cost.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from study.cli.run import add_run_options, execute, replicates_arg, whole_number
from study.errors import UserError
from study.usecases.analysing import summarize
from study.usecases.running import check_command, configured, make_executor
from study.usecases.searching import search
from study.usecases.vocabulary import PRESETS, default_out

#: bounds and counts of a search: whole numbers
count_arg = whole_number(10_000_000)


def share_arg(text: str) -> float:
    """``--target P``: a number in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a number in (0, 1), e.g. 0.8")
    return value


def register(sub: Any) -> None:
    """Add the ``power`` command to the ``study`` parser."""
    p = sub.add_parser(
        "power", help="power and type I error per test; --search: the sample size for a target"
    )
    p.add_argument("config", help=f"preset name ({', '.join(PRESETS)}) or path to a TOML file")
    p.add_argument(
        "--replicates",
        type=replicates_arg,
        help="replicates per condition (with --search: of the first round, default 100)",
    )
    p.add_argument(
        "--out",
        help="run directory (default outputs/<study name>; a search: "
        "outputs/<study name>/search-<factor>)",
    )
    s = p.add_argument_group("sample-size search")
    s.add_argument(
        "--search",
        metavar="KEY",
        help="the integer design key to search (groups, group_size, repeats)",
    )
    s.add_argument("--target", type=share_arg, help="target power (default: [power] target, 0.8)")
    s.add_argument("--low", type=count_arg, default=4, help="smallest value to try (default 4)")
    s.add_argument("--high", type=count_arg, default=200, help="largest value (default 200)")
    s.add_argument(
        "--step",
        type=count_arg,
        help="step between values (default: what the design needs, e.g. 2 for a balanced "
        "two-arm trial)",
    )
    s.add_argument("--test", help="the test searched, ENGINE/METHOD (default: the first)")
    s.add_argument("--term", help="the tested term searched (default: the first)")
    s.add_argument("--rounds", type=whole_number(50), default=5, help="rounds after the first")
    s.add_argument(
        "--tolerance",
        type=count_arg,
        help="stop when the answer's interval is this narrow (default: 2 steps)",
    )
    s.add_argument(
        "--confirm",
        type=replicates_arg,
        default=1000,
        help="replicates of the confirmation run at the answer (default 1000)",
    )
    add_run_options(p, "replicate")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Run the power study, or search; print what was found and where it is."""
    if args.search is None:
        cfg = configured(args.config, replicates=args.replicates)
        check_command(cfg, "study power", args.config)
        out = args.out if args.out is not None else str(default_out(cfg))
        report = execute(cfg, out, args, "replicates")
        if isinstance(report, int):
            return report
        print(summarize(out).text)
        print(report.results)
        return 0
    if args.shard is not None:
        raise UserError(
            "--search with --shard: a search decides each round from the last one's "
            "results; run it with --workers or --scheduler instead"
        )
    if args.overwrite:
        raise UserError("--search with --overwrite: delete the search directory instead")
    executor = make_executor(args.workers, args.scheduler, args.batch_size)
    result = search(
        args.config,
        args.search,
        target=args.target,
        low=args.low,
        high=args.high,
        step=args.step,
        test=args.test,
        term=args.term,
        replicates=args.replicates or 100,
        rounds=args.rounds,
        tolerance=args.tolerance,
        confirm=args.confirm,
        out=args.out,
        executor=executor,
        say=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(result.text())
    print(result.out / "search.json")
    return 0
