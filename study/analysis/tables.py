"""Tables of a study: the report's table, the measure table, and their rendering as
aligned text, markdown or CSV (no terminal library needed)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import xarray as xr


def _cell(value: object, digits: int) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "NA"
        return f"{value:.{digits}f}"
    return str(value)


def render(frame: pd.DataFrame, fmt: str = "table", digits: int = 4) -> str:
    """Render ``frame`` as an aligned text table, a markdown table or CSV."""
    if fmt == "csv":
        return frame.to_csv(index=False)
    header = [str(c) for c in frame.columns]
    rows = [[_cell(v, digits) for v in row] for row in frame.itertuples(index=False)]
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    numeric = [frame[c].dtype.kind in "fiu" for c in frame.columns]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


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


def _pair_cell(value: float, mcse: float, digits: int = 4) -> str:
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
            _pair_cell(float(a), float(b))
            for a, b in zip(v.sel(measure=m).values, s.sel(measure=m).values, strict=True)
        ]
    return pd.DataFrame(cols)


def grid_table(
    ds: xr.Dataset, summary: xr.Dataset, engine: str, measures: list[str]
) -> pd.DataFrame:
    """A grid of conditions: rows = condition x term with the factor columns (rsimsum's
    ``by``), the fits not converged, the true value and SE, then the measures."""
    factors = [str(f) for f in json.loads(ds.attrs.get("factors", "[]"))]
    rows: list[dict[str, object]] = []
    for label in ds["condition"].values:
        d, sm = ds.sel(condition=label), summary.sel(condition=label, engine=engine)
        head = {f: d[f].item() for f in factors}
        head["not_conv"] = int(sm["nonconverged"])
        cells = measure_table(sm.expand_dims(engine=[engine]), engine, measures)
        for i, term in enumerate(d["term"].values):
            row = {**head, "term": str(term), "TrueValue": float(d["true_value"][i])}
            row["TrueSE"] = float(d["true_se"][i])
            rows.append(row | {m: cells[m].iloc[i] for m in measures})
    return pd.DataFrame(rows)


def _title(text: str, fmt: str) -> str:
    return {"csv": f"# {text}", "markdown": f"### {text}"}.get(fmt, text)


def summary_text(
    ds: xr.Dataset,
    summary: xr.Dataset,
    *,
    fmt: str = "table",
    measures: list[str],
    exclude_nonconverged: bool = False,
    partial: bool = False,
) -> str:
    """The text of ``study summarize``: a header, then per engine the report's table and
    the measure table (one condition), or the grid table (several); cells
    "estimate (MCSE)"."""
    n, wanted = ds.sizes["replicate"], int(ds.attrs.get("replicates_requested", 0))
    n_cond = ds.sizes.get("condition", 1)
    blocks: list[str] = []
    head = f"study {ds.attrs.get('study', '?')}: {n} replicates"
    if n_cond > 1:
        head += f" of each of {n_cond} conditions"
    if partial:
        head += f" of {wanted} requested (PARTIAL run: resume with `study run`)"
    blocks.append(head)
    policy = "excluded" if exclude_nonconverged else "kept"
    for engine in [str(e) for e in ds["engine"].values]:
        nc = int(summary["nonconverged"].sel(engine=engine).sum())
        fits = int(summary["replicates"].sel(engine=engine).sum())
        blocks.append(_title(f"engine {engine}: {nc} of {fits} fits not converged ({policy})", fmt))
        if n_cond > 1:
            blocks.append(render(grid_table(ds, summary, engine, measures), fmt, digits=4))
            continue
        one, sm = ds.isel(condition=0), summary.isel(condition=0)
        blocks.append(render(report_table(one, sm, engine), fmt, digits=4))
        blocks.append(render(measure_table(sm, engine, measures), fmt))
    if fmt != "csv":
        blocks.append(
            "cells: estimate (Monte Carlo SE); measures and MCSEs as in Morris, White & "
            "Crowther (2019), Table 6"
        )
    return "\n\n".join(blocks)
