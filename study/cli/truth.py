"""``study truth PRESET_OR_TOML``: the analytic true values and SEs of a design."""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd

from study.analysis.tables import render
from study.design.conditions import factor_names, factor_values
from study.design.config import StudyConfig, load_config
from study.design.generate import Design
from study.design.truth import compute_truth


def register(sub: Any) -> None:
    """Add the ``truth`` command to the ``study`` parser."""
    p = sub.add_parser("truth", help="print the analytic true values and SEs of a study design")
    p.add_argument("config", help="preset name (default, seed) or path to a TOML file")
    p.add_argument("--format", choices=("table", "markdown", "csv"), default="table")
    p.set_defaults(func=command)


def truth_frame(cfg: StudyConfig) -> pd.DataFrame:
    """One row per condition x term: the grid's factor columns, then the truth."""
    frames = []
    factors = factor_names(cfg.conditions)
    for c in cfg.conditions:
        frame = compute_truth(Design.from_study(cfg, c), cfg.terms()[0]).to_frame()
        for i, name in enumerate(factors):
            frame.insert(i, name, factor_values([c], name)[0])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def model_lines(cfg: StudyConfig) -> list[str]:
    """The generating model and, for each engine that fits another, what it fits."""
    d = cfg.design
    rhs = " + ".join(d.predictors)
    lines = [f"generating model: y ~ {rhs} + {d.structure.bar()}"]
    for name in cfg.engines:
        fitted = cfg.structure_of(name)
        if fitted != d.structure:
            lines.append(f"engine {name} fits: y ~ {rhs} + {fitted.bar()}")
    return lines


def command(args: argparse.Namespace) -> int:
    """Print the truth of every condition of a configuration."""
    cfg = load_config(args.config)
    frame = truth_frame(cfg)
    if args.format != "table":
        print(render(frame, args.format, digits=6))
        return 0
    d = cfg.design
    u_how = "fixed (drawn once)" if d.fixed_random_effects else "redrawn each replicate"
    grid = ""
    if cfg.multi:
        factors = ", ".join(factor_names(cfg.conditions))
        grid = f"{len(cfg.conditions)} conditions over {factors}; base design "
    print(
        f"study {cfg.name!r}: {grid}K = {d.groups} groups, n_i = {d.group_size}, "
        f"repeats = {d.repeats}, random effects {u_how}"
    )
    for line in model_lines(cfg):
        print(line)
    print(render(frame, "table", digits=6))
    if "cond_se" in frame:
        print(
            "cond_*: truth conditional on the fixed random effects "
            "(what the replicates' spread measures)"
        )
    if "report_se" in frame:
        print("report_se: the 2018 report's formula on one copy of each class (ignores repeats)")
    return 0
