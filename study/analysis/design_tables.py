"""Tables of a study's design: its analytic truth per condition, and its models."""

from __future__ import annotations

import pandas as pd

from study.design.conditions import factor_names, factor_values
from study.design.config import StudyConfig
from study.design.generate import Design
from study.design.truth import compute_truth


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


def design_line(cfg: StudyConfig) -> str:
    """One line on the design: groups, sizes, repeats, how u is drawn, the grid."""
    d = cfg.design
    u_how = "fixed (drawn once)" if d.fixed_random_effects else "redrawn each replicate"
    grid = ""
    if cfg.multi:
        factors = ", ".join(factor_names(cfg.conditions))
        grid = f"{len(cfg.conditions)} conditions over {factors}; base design "
    return (
        f"study {cfg.name!r}: {grid}K = {d.groups} groups, n_i = {d.group_size}, "
        f"repeats = {d.repeats}, random effects {u_how}"
    )


def truth_notes(frame: pd.DataFrame) -> list[str]:
    """What the truth table's extra columns mean."""
    notes = []
    if "cond_se" in frame:
        notes.append(
            "cond_*: truth conditional on the fixed random effects "
            "(what the replicates' spread measures)"
        )
    if "report_se" in frame:
        notes.append(
            "report_se: the 2018 report's formula on one copy of each class (ignores repeats)"
        )
    return notes
