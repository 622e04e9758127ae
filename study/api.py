"""The public Python API for analysis scripts: re-exports only, nothing is defined here.

>>> from study.api import open_results, measures, tidy
>>> ds = open_results("outputs/default")        # xarray.Dataset (replicate x engine x term)
>>> summary = measures(ds)                       # value / mcse over (measure, engine, term)
>>> frame = tidy(ds)                             # one row per replicate x engine x term

Nothing inside the package imports this module (an import-linter contract keeps it so).
"""

from __future__ import annotations

from study.analysis.measures import MEASURES
from study.analysis.measures import compute_measures as measures
from study.analysis.tidy import tidy
from study.design.config import StudyConfig, load_config
from study.design.generate import Design
from study.design.truth import compute_truth
from study.errors import ConfigError, StoreError, UserError
from study.run.results import is_partial, open_results
from study.run.runner import run_study

__all__ = [
    "MEASURES",
    "ConfigError",
    "Design",
    "StoreError",
    "StudyConfig",
    "UserError",
    "compute_truth",
    "is_partial",
    "load_config",
    "measures",
    "open_results",
    "run_study",
    "tidy",
]
