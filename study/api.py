"""The public Python API: re-exports only, each under its own name; nothing is defined here.

>>> from study.api import run, summarize, open_results, compute_measures, tidy
>>> report = run("default", replicates=50)                 # a study of any kind, as `study run`
>>> summary = summarize(report.path)                       # measures; .text, .dataset
>>> ds = open_results("outputs/default")                   # xarray.Dataset of the run
>>> table = compute_measures(ds)                           # value / mcse per measure
>>> frame = tidy(ds)                                       # one row per replicate x engine x term
>>> fig = plots.measures.coverage(table)                   # matplotlib Figure

The use cases (:mod:`study.usecases`) are what the command line calls: ``run``,
``calibrate``-style ``as_calibration``, ``merge``, ``summarize``, ``figures``, ``plot``,
``report``, ``info``, ``truth``, ``fit_csv``, ``design_from_pilot``.  Below them:
``run_study`` (the runner, with ``executor=make_executor(workers=2)`` for local worker
processes: call it under ``if __name__ == "__main__":``,
``make_executor(scheduler="tcp://host:8786")`` for a Dask cluster, ``shard=Shard(2, 10)``
for shard 2 of 10), ``run_batch`` (the unit of work), ``compute_truth`` and the figure
modules under ``plots``.

Nothing inside the package imports this module (an import-linter contract keeps it so).
"""

from __future__ import annotations

import study.analysis.plots.catalog  # noqa: F401  (loads every figure module of plots)
from study.analysis import plots
from study.analysis.kinds.base import is_partial
from study.analysis.measures import MEASURES, compute_measures
from study.analysis.tables import long_table
from study.analysis.tidy import tidy
from study.design.config import StudyConfig, load_config
from study.design.generate import Design
from study.design.truth import compute_truth
from study.errors import ConfigError, StoreError, UserError
from study.run.batch import run_batch
from study.run.executors import InProcess, LocalProcesses, make_executor
from study.run.results import open_results
from study.run.runner import RunReport, StopRequest, run_study
from study.run.shards import Shard
from study.usecases.analysing import figures, plot, report, summarize
from study.usecases.designing import design_from_pilot
from study.usecases.fitting import fit_csv
from study.usecases.info import info
from study.usecases.precision import Plan, PrecisionReport, plan
from study.usecases.running import as_calibration, merge, run
from study.usecases.truth import truth

__all__ = [
    "MEASURES",
    "ConfigError",
    "Design",
    "InProcess",
    "LocalProcesses",
    "Plan",
    "PrecisionReport",
    "RunReport",
    "Shard",
    "StopRequest",
    "StoreError",
    "StudyConfig",
    "UserError",
    "as_calibration",
    "compute_measures",
    "compute_truth",
    "design_from_pilot",
    "figures",
    "fit_csv",
    "info",
    "is_partial",
    "load_config",
    "long_table",
    "make_executor",
    "merge",
    "open_results",
    "plan",
    "plot",
    "plots",
    "report",
    "run",
    "run_batch",
    "run_study",
    "summarize",
    "tidy",
    "truth",
]
