"""``study truth PRESET_OR_TOML``: the analytic true values and SEs of a design."""

from __future__ import annotations

import argparse
from typing import Any

from study.analysis.tables import render
from study.design.config import load_config
from study.design.generate import Design
from study.design.truth import compute_truth


def register(sub: Any) -> None:
    """Add the ``truth`` command to the ``study`` parser."""
    p = sub.add_parser("truth", help="print the analytic true values and SEs of a study design")
    p.add_argument("config", help="preset name (default, seed) or path to a TOML file")
    p.add_argument("--format", choices=("table", "markdown", "csv"), default="table")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Print the truth of a configuration's design."""
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
