"""``study merge RUN_DIR [RUN_DIR ...]``: join the shards of an array job into results.nc."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from study.usecases.running import merge
from study.usecases.vocabulary import describe_missing


def register(sub: Any) -> None:
    """Add the ``merge`` command to the ``study`` parser."""
    p = sub.add_parser(
        "merge",
        help="join checkpoints of shards (--shard I/N runs) into results.nc",
        description=(
            "Join the checkpoint pieces of one or more run directories of the same "
            "configuration into results.nc (in --out, default the first directory). "
            "Refuses runs of another configuration; lists missing replicates."
        ),
    )
    p.add_argument("dirs", nargs="+", metavar="RUN_DIR", help="run directories of one study")
    p.add_argument("--out", help="where to write the merged run (default: the first RUN_DIR)")
    p.add_argument(
        "--partial",
        action="store_true",
        help="write results.nc even when replicates are missing (they are listed)",
    )
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Merge; exit 2 (nothing written) when replicates are missing without --partial."""
    report = merge(args.dirs, args.out, partial=args.partial)
    if report.missing:
        print(
            f"study: merged {report.done} of {report.total} pairs; missing "
            f"{describe_missing(report.missing, report.conditions)}",
            file=sys.stderr,
        )
    else:
        print(f"study: merged {report.done} of {report.total} pairs", file=sys.stderr)
    print(report.results)
    return 0
