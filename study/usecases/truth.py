"""The analytic truth of a study's design, per condition."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from study.analysis.design_tables import design_line, model_lines, truth_frame, truth_notes
from study.design.config import StudyConfig, load_config


@dataclass
class TruthTable:
    """The truth of every condition (a row per condition x term), with the lines
    that describe the design and its models, and notes on the columns."""

    frame: pd.DataFrame
    design: str
    models: list[str]
    notes: list[str]


def truth(config: StudyConfig | str | Path) -> TruthTable:
    """The analytic true values and SEs of ``config`` (a preset, a TOML path or a
    :class:`StudyConfig`)."""
    cfg = config if isinstance(config, StudyConfig) else load_config(config)
    frame = truth_frame(cfg)
    return TruthTable(frame, design_line(cfg), model_lines(cfg), truth_notes(frame, cfg))
