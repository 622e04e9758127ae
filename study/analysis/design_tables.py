"""Tables of a study's design: its analytic truth per condition, and its models."""

from __future__ import annotations

import pandas as pd

from models.crossed import CrossedStructure
from models.structure import Structure
from study.design.conditions import factor_names, factor_values
from study.design.config import CrossedDesignConfig, StudyConfig
from study.design.generate import design_of
from study.design.noise import Residuals
from study.design.sizes import GroupSizes
from study.design.truth import compute_truth


def truth_frame(cfg: StudyConfig) -> pd.DataFrame:
    """One row per condition x term: the grid's factor columns, then the truth."""
    frames = []
    factors = factor_names(cfg.conditions)
    for c in cfg.conditions:
        frame = compute_truth(design_of(cfg, c), cfg.terms()[0]).to_frame()
        for i, name in enumerate(factors):
            frame.insert(i, name, factor_values([c], name)[0])
        if c.design.icc is not None and "icc" not in factors:
            frame.insert(len(factors), "icc", c.design.icc)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def model_lines(cfg: StudyConfig) -> list[str]:
    """The generating model and, for each engine that fits another, what it fits."""
    d = cfg.design
    rhs = d.fixed_formula
    lines = [f"generating model: y ~ {rhs} + {_random(d.structure)}"]
    for name in cfg.engines:
        fitted = cfg.structure_of(name)
        if fitted != d.structure:
            lines.append(f"engine {name} fits: y ~ {rhs} + {_random(fitted)}")
    return lines


def _random(structure: Structure | CrossedStructure) -> str:
    """A structure's random part as lme4 writes it."""
    return structure.text() if isinstance(structure, CrossedStructure) else structure.bar()


def design_line(cfg: StudyConfig) -> str:
    """One line on the design: groups, sizes, repeats, how u is drawn, the grid."""
    d = cfg.design
    u_how = "fixed (drawn once)" if d.fixed_random_effects else "redrawn each replicate"
    grid = ""
    if cfg.multi:
        factors = ", ".join(factor_names(cfg.conditions))
        grid = f"{len(cfg.conditions)} conditions over {factors}; base design "
    if isinstance(d, CrossedDesignConfig):
        return f"study {cfg.name!r}: {grid}crossed {d.describe()}, random effects {u_how}"
    sizes = d.group_size
    n_i = sizes.describe() if isinstance(sizes, GroupSizes) else str(sizes)
    extra = [
        f"u {d.random_effects.describe()}" if not d.random_effects.is_normal else "",
        f"residuals {d.residuals.describe()}" if d.residuals != Residuals() else "",
        f"missing outcomes {d.missing.describe()}" if d.missing is not None else "",
        f"icc = {d.icc:g}" if d.icc is not None else "",
    ]
    return (
        f"study {cfg.name!r}: {grid}K = {d.groups} groups, n_i = {n_i}, "
        f"repeats = {d.repeats}, random effects {u_how}" + "".join(f"; {e}" for e in extra if e)
    )


def truth_notes(frame: pd.DataFrame, cfg: StudyConfig | None = None) -> list[str]:
    """What the truth table's extra columns mean."""
    notes = []
    if cfg is not None and any(c.design.missing is not None for c in cfg.conditions):
        notes.append(
            "true_se: of the complete data; with missing outcomes each replicate's truth is "
            "that of its observed rows (stored per replicate; TrueSE is their root mean square)"
        )
    if "cond_se" in frame:
        notes.append(
            "cond_*: truth conditional on the fixed random effects "
            "(what the replicates' spread measures)"
        )
    if "icc" in frame:
        notes.append(
            "icc: the intercept's share of the variance at X = 0, sd0^2 / (sd0^2 + sigma^2)"
        )
    if "report_se" in frame:
        notes.append(
            "report_se: the 2018 report's formula on one copy of each class (ignores repeats)"
        )
    return notes
