"""The public Python API for analysis scripts: re-exports only, nothing is defined here.

>>> from study.api import open_results, measures, tidy
>>> ds = open_results("outputs/default")        # xarray.Dataset (replicate x engine x term)
>>> summary = measures(ds)                       # value / mcse over (measure, engine, term)
>>> frame = tidy(ds)                             # one row per replicate x engine x term
>>> fig = coverage_plot(summary)                 # matplotlib Figure; fig.savefig("c.png")

Running: ``run_study(load_config("default"), executor=make_executor(workers=2))``
(local worker processes are spawned: call it under ``if __name__ == "__main__":``),
``make_executor(scheduler="tcp://host:8786")`` for a Dask cluster, ``shard=Shard(2, 10)``
for shard 2 of 10 and ``merge([dirs])`` to join shards.

Nothing inside the package imports this module (an import-linter contract keeps it so).
"""

from __future__ import annotations

from study.analysis.measures import MEASURES
from study.analysis.measures import compute_measures as measures
from study.analysis.plots import compare, diagnostics, grid, posterior
from study.analysis.plots import measures as _study_figures
from study.analysis.tables import long_table
from study.analysis.tidy import tidy
from study.design.config import StudyConfig, load_config
from study.design.generate import Design
from study.design.truth import compute_truth
from study.errors import ConfigError, StoreError, UserError
from study.run.batch import run_batch
from study.run.executors import InProcess, LocalProcesses, make_executor
from study.run.results import is_partial, open_results
from study.run.runner import run_study
from study.run.shards import Shard, merge

# figures: each takes the results Dataset (or its summary, or a kept posterior) and
# returns a matplotlib Figure
coverage_plot = _study_figures.coverage
zip_plot = _study_figures.zip_plot
calibration_plot = _study_figures.calibration
bias_plot = _study_figures.bias_relerr
engines_plot = compare.engines_compared
estimates_plot = compare.estimates
grid_lines_plot = grid.grid_lines
grid_heatmap_plot = grid.grid_heatmap
convergence_plot = diagnostics.convergence
fit_times_plot = diagnostics.fit_times
failures_plot = diagnostics.failures_figure
failed_fits = diagnostics.failures
intervals_plot = diagnostics.intervals
trace_plot = posterior.trace
rank_plot = posterior.rank
energy_plot = posterior.energy
ess_plot = posterior.ess

__all__ = [
    "MEASURES",
    "ConfigError",
    "Design",
    "InProcess",
    "LocalProcesses",
    "Shard",
    "StoreError",
    "StudyConfig",
    "UserError",
    "bias_plot",
    "calibration_plot",
    "compute_truth",
    "convergence_plot",
    "coverage_plot",
    "energy_plot",
    "engines_plot",
    "ess_plot",
    "estimates_plot",
    "failed_fits",
    "failures_plot",
    "fit_times_plot",
    "grid_heatmap_plot",
    "grid_lines_plot",
    "intervals_plot",
    "is_partial",
    "load_config",
    "long_table",
    "make_executor",
    "measures",
    "merge",
    "open_results",
    "rank_plot",
    "run_batch",
    "run_study",
    "tidy",
    "trace_plot",
    "zip_plot",
]
