"""``study design DATA.csv "FORMULA"``: a study configuration from pilot data (as simr's
``makeLmer`` / ``extend``): fit the formula by REML and write a TOML config that
generates from the fit and the pilot's own predictor values; to ``-o FILE`` or stdout."""

from __future__ import annotations

import argparse
from typing import Any

from study.cli.flags import as_flags
from study.errors import UserError
from study.usecases.designing import design_from_pilot


def register(sub: Any) -> None:
    """Add the ``design`` command to the ``study`` parser."""
    p = sub.add_parser(
        "design",
        help="write a study config from pilot data: REML fit + the pilot's predictors",
        description="Fit FORMULA to the pilot CSV by REML and write a study configuration "
        "that generates from the fitted beta, D and sigma and from the pilot's own "
        "predictor values (predictors_from), as simr's makeLmer / extend.",
    )
    p.add_argument("data", help="pilot CSV file (checked as `study fit` checks it)")
    p.add_argument(
        "formula", help='lme4-style model formula, e.g. "Reaction ~ Days + (Days | Subject)"'
    )
    p.add_argument(
        "--groups",
        type=int,
        metavar="K",
        dest="pilot_groups",  # not `groups`: that would turn every groups=... into a flag
        help="groups of the design, drawn with replacement from the pilot's "
        "(default: the pilot's own groups)",
    )
    p.add_argument(
        "--group-size",
        type=int,
        metavar="N",
        dest="pilot_group_size",
        help="rows per group: copies of each group's rows, the rest a subsample without "
        "replacement (default: each group's own rows)",
    )
    p.add_argument(
        "-o",
        "--out",
        metavar="FILE",
        help="write the config to FILE (predictors_from relative to its folder); default: print it",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=command)


#: the use case's keywords -> this command's flags (only here: a config's messages name
#: conditions such as ``groups=10``, which are no flags of theirs)
FLAGS = {"groups": "--groups", "group_size": "--group-size"}


def command(args: argparse.Namespace) -> int:
    """Write (or print) the configuration."""
    try:
        done = design_from_pilot(
            args.data,
            args.formula,
            groups=args.pilot_groups,
            group_size=args.pilot_group_size,
            out=args.out,
            overwrite=args.overwrite,
        )
    except UserError as err:
        raise UserError(as_flags(str(err), FLAGS)) from err
    if done.out is None:
        print(done.text, end="")
        return 0
    design = done.table["design"]
    groups = design.get("groups", done.pilot.n_groups)
    size = design.get("group_size")
    rows = f"{size} rows each" if size is not None else "their own rows"
    print(
        f"wrote {done.out}: {done.fit.model} fitted by {done.fit.engine}; "
        f"{groups} groups, {rows}; run it with `study run {done.out}`"
    )
    return 0
