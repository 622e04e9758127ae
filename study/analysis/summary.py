"""``study summarize``: the report's table and the measure table, with MCSEs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from study.api import is_partial, open_results
from study.errors import UserError
from study.analysis.measures import MEASURES, compute_measures
from study.run.store import atomic_path
from study.analysis.tables import render

#: measures shown by default in the measure table
DEFAULT_MEASURES = (
    "bias",
    "empirical_se",
    "model_se",
    "relative_error_model_se",
    "coverage",
    "bias_eliminated_coverage",
    "modse_truese",
    "empse_truese",
    "rmse",
)


def _cell(value: float, mcse: float, digits: int = 4) -> str:
    if math.isnan(value):
        return "NA"
    if math.isnan(mcse):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ({mcse:.{digits}f})"


def report_table(ds: xr.Dataset, summary: xr.Dataset, engine: str) -> pd.DataFrame:
    """The 2018 report's shape: term, AvgEst, TrueEst, AvgSE, TrueSE (+ conditional)."""
    v = summary["value"].sel(engine=engine)
    frame = pd.DataFrame(
        {
            "term": [str(t) for t in ds["term"].values],
            "AvgEst": v.sel(measure="mean_estimate").values,
            "TrueEst": ds["true_value"].values,
            "AvgSE": v.sel(measure="mean_se").values,
            "TrueSE": ds["true_se"].values,
        }
    )
    if "cond_value" in ds.coords and not np.isnan(ds["cond_value"].values).all():
        frame["CondEst"] = ds["cond_value"].values
        frame["CondSE"] = ds["cond_se"].values
    return frame


def measure_table(summary: xr.Dataset, engine: str, measures: list[str]) -> pd.DataFrame:
    """Rows = terms, columns = measures, cells "estimate (MCSE)"."""
    v, s = summary["value"].sel(engine=engine), summary["mcse"].sel(engine=engine)
    cols: dict[str, list[str]] = {"term": [str(t) for t in summary["term"].values]}
    for m in measures:
        cols[m] = [
            _cell(float(a), float(b))
            for a, b in zip(v.sel(measure=m).values, s.sel(measure=m).values, strict=True)
        ]
    return pd.DataFrame(cols)


def summarize(
    run_dir: str | Path,
    *,
    fmt: str = "table",
    measures: list[str] | None = None,
    exclude_nonconverged: bool = False,
    reference: str = "reml",
) -> str:
    """Compute the measures of a run, write ``summary.nc`` beside it, return the text."""
    chosen = list(measures) if measures else list(DEFAULT_MEASURES)
    unknown = [m for m in chosen if m not in MEASURES]
    if unknown:
        raise UserError(
            f"--measures: unknown {', '.join(unknown)}; choose from {', '.join(MEASURES)}"
        )
    ds = open_results(run_dir)
    summary = compute_measures(ds, reference=reference, exclude_nonconverged=exclude_nonconverged)
    with atomic_path(Path(run_dir) / "summary.nc") as tmp:
        summary.to_netcdf(tmp, engine="h5netcdf")
    n, wanted = ds.sizes["replicate"], int(ds.attrs.get("replicates_requested", 0))
    blocks: list[str] = []
    head = f"study {ds.attrs.get('study', '?')}: {n} replicates"
    if is_partial(ds):
        head += f" of {wanted} requested (PARTIAL run: resume with `study run`)"
    blocks.append(head)
    for engine in [str(e) for e in ds["engine"].values]:
        nc = int(summary["nonconverged"].sel(engine=engine))
        policy = "excluded" if exclude_nonconverged else "kept"
        title = f"engine {engine}: {nc} of {n} fits not converged ({policy})"
        if fmt == "csv":
            blocks.append(f"# {title}")
        elif fmt == "markdown":
            blocks.append(f"### {title}")
        else:
            blocks.append(title)
        blocks.append(render(report_table(ds, summary, engine), fmt, digits=4))
        blocks.append(render(measure_table(summary, engine, chosen), fmt))
    if fmt != "csv":
        blocks.append(
            "cells: estimate (Monte Carlo SE); measures and MCSEs as in Morris, White & "
            "Crowther (2019), Table 6"
        )
    return "\n\n".join(blocks)
