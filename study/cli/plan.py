"""``study plan RUN_DIR --mcse MEASURE=TARGET``: the replicates each condition of a
(pilot) run needs for Monte Carlo SE targets."""

from __future__ import annotations

import argparse
from typing import Any

from study.cli.run import mcse_arg, targets_of, whole_number
from study.usecases.running import plan
from study.usecases.vocabulary import MAX_REPLICATES, render


def register(sub: Any) -> None:
    """Add the ``plan`` command to the ``study`` parser."""
    p = sub.add_parser(
        "plan",
        help="replicates each condition of a (pilot) run needs for Monte Carlo SE targets",
        description="For each condition of the run in RUN_DIR: its replicates, the worst "
        "Monte Carlo SE of each measure (over engines and terms), and the replicates that "
        "bring it to the target: ceil(n (MCSE / target)^2).  `study run CONFIG --mcse ...` "
        "extends the conditions to them in rounds.",
    )
    p.add_argument("run_dir", help="a directory `study run` wrote")
    p.add_argument(
        "--mcse",
        type=mcse_arg,
        action="append",
        required=True,
        metavar="MEASURE=TARGET",
        help="Monte Carlo SE target, e.g. coverage=0.005; repeat or comma-separate",
    )
    p.add_argument(
        "--max-replicates",
        type=whole_number(MAX_REPLICATES),
        metavar="N",
        help="the most replicates a condition may have (default 20 x the run's)",
    )
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Print the plan's table."""
    targets = targets_of(args)
    assert targets is not None  # --mcse is required
    result = plan(args.run_dir, targets, args.max_replicates)
    print(render(result.frame(), digits=5))
    short = len(result.short)
    print(
        f"{short} of {len(result.rows)} condition(s) short of their targets"
        + ("; `study run CONFIG --mcse ...` extends them" if short else "")
    )
    return 0
