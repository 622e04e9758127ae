"""Tables of a study, for people and for programs.

For people (text, markdown): the 2018 report's table (AvgEst, TrueEst, AvgSE, TrueSE)
and the measure table, cells ``estimate (MCSE)``, units in the headers, counts as
integers, the replicates each kind of measure used, a mark where the Monte Carlo SE
is unreliable, and text tables split to fit the terminal.  For programs (CSV): one
long table, a row per condition x engine x term x measure with ``value``, ``mcse``
and ``n``, which ``pandas.read_csv`` reads as it is.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from study.analysis.failures import failure_reasons, shorten
from study.analysis.measure_records import observed_se_of
from study.analysis.measures import REGISTRY, true_se

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
#: units shown in the header of a measure (others are on the estimate's scale or ratios)
UNITS = {m.name: m.unit for m in REGISTRY.values() if m.unit}
#: proportions whose binomial MCSE is 0, hence meaningless, at 0 or 1
PROPORTIONS = tuple(m.name for m in REGISTRY.values() if m.share)
#: fewer replicates than this make a Monte Carlo SE itself imprecise
MIN_RELIABLE_N = 100
UNRELIABLE = "!"
FOOTNOTE = (
    f"{UNRELIABLE}: Monte Carlo SE unreliable (a share of 0 or 1, or fewer than "
    f"{MIN_RELIABLE_N} replicates)"
)
#: the footnote of a study with missing outcomes
MISSING_NOTE = (
    "TrueSE: outcomes are missing, so each replicate has the true SE of the rows it "
    "observed; TrueSE is their root mean square over the replicates fitted (in "
    "modse_truese and empse_truese: over the replicates each used)"
)
#: the replicate counts shown beside the measures: name -> measure whose n it is
COUNTS = {"n_est": "bias", "n_se": "model_se", "n_ci": "coverage"}


def _cell(value: object, digits: int) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "NA"
        return f"{value:.{digits}f}"
    return str(value)


def _render_one(frame: pd.DataFrame, fmt: str, digits: int) -> str:
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


def render(
    frame: pd.DataFrame,
    fmt: str = "table",
    digits: int = 4,
    *,
    keep: int | Sequence[str] | None = None,
    width: int | None = None,
) -> str:
    """Render ``frame`` as an aligned text table, a markdown table or CSV.

    A text table wider than ``width`` (default: the terminal's) is split into several,
    each repeating the key columns ``keep``: the first ``keep`` columns, or the columns
    of that name, in the frame's order (e.g. a grid's factors and ``term``); default:
    the columns up to ``term`` where there is one (a grid's factors come first), else
    the first column.
    """
    if fmt == "csv":
        return frame.to_csv(index=False)
    text = _render_one(frame, fmt, digits)
    width = width or shutil.get_terminal_size((120, 24)).columns
    if keep is None:
        columns = list(frame.columns)
        keep = columns.index("term") + 1 if "term" in columns else 1
    if isinstance(keep, int):
        keys = set(frame.columns[:keep])
    else:
        missing = [k for k in keep if k not in frame.columns]
        if missing:
            raise ValueError(
                f"keep: no column {', '.join(map(repr, missing))} in the table; columns: "
                f"{', '.join(map(str, frame.columns))}"
            )
        keys = set(keep)
    rest = [c for c in frame.columns if c not in keys]
    if fmt == "markdown" or len(text.splitlines()[0]) <= width or len(rest) <= 1:
        return text

    def block(part: list[str]) -> pd.DataFrame:
        return frame[[c for c in frame.columns if c in keys or c in part]]

    parts: list[list[str]] = [[]]
    for col in rest:
        trial = block([*parts[-1], col])
        if parts[-1] and len(_render_one(trial, fmt, digits).splitlines()[0]) > width:
            parts.append([])
        parts[-1].append(col)
    return "\n\n".join(_render_one(block(p), fmt, digits) for p in parts)


def _pair_cell(value: float, mcse: float, unreliable: bool, digits: int = 4) -> str:
    if math.isnan(value):
        return "NA"
    if math.isnan(mcse):
        return f"{value:.{digits}f}"
    mark = UNRELIABLE if unreliable else ""
    return f"{value:.{digits}f} ({mcse:.{digits}f}){mark}"


def _header(measure: str) -> str:
    unit = UNITS.get(measure)
    return f"{measure} ({unit})" if unit else measure


def _unreliable(measure: str, value: float, n: int) -> bool:
    if n < MIN_RELIABLE_N:
        return True
    return measure in PROPORTIONS and value in (0.0, 1.0)


def report_table(ds: xr.Dataset, summary: xr.Dataset, engine: str) -> pd.DataFrame:
    """The 2018 report's shape: term, AvgEst, TrueEst, AvgSE, TrueSE (+ conditional),
    for one condition (``ds`` and ``summary`` without a condition dim); TrueSE with
    missing outcomes: the root mean square of the replicates' own (:func:`true_se`)."""
    v = summary["value"].sel(engine=engine)
    frame = pd.DataFrame(
        {
            "term": [str(t) for t in ds["term"].values],
            "AvgEst": v.sel(measure="mean_estimate").values,
            "TrueEst": ds["true_value"].values,
            "AvgSE": v.sel(measure="mean_se").values,
            "TrueSE": true_se(ds).values,
        }
    )
    if "cond_value" in ds.coords and not np.isnan(ds["cond_value"].values).all():
        frame["CondEst"] = ds["cond_value"].values
        frame["CondSE"] = ds["cond_se"].values
    return frame


def measure_table(summary: xr.Dataset, engine: str, measures: list[str]) -> pd.DataFrame:
    """Rows = terms, columns = the replicates used (estimates, SEs, intervals), then
    the measures with units, cells ``estimate (MCSE)``; one condition."""
    sel = summary.sel(engine=engine)
    v, s, n = sel["value"], sel["mcse"], sel["n"]
    cols: dict[str, list[object]] = {"term": [str(t) for t in summary["term"].values]}
    for name, source in COUNTS.items():
        if source in summary["measure"].values:
            cols[name] = [int(x) for x in n.sel(measure=source).values]
    for m in measures:
        digits = REGISTRY[m].digits if m in REGISTRY else 4
        cols[_header(m)] = [
            _pair_cell(float(a), float(b), _unreliable(m, float(a), int(k)), digits)
            for a, b, k in zip(
                v.sel(measure=m).values,
                s.sel(measure=m).values,
                n.sel(measure=m).values,
                strict=True,
            )
        ]
    return pd.DataFrame(cols)


def _factors(ds: xr.Dataset) -> list[str]:
    return [str(f) for f in json.loads(ds.attrs.get("factors", "[]"))]


def grid_table(
    ds: xr.Dataset, summary: xr.Dataset, engine: str, measures: list[str]
) -> pd.DataFrame:
    """A grid of conditions: rows = condition x term with the factor columns (rsimsum's
    ``by``), the fits not converged, the true value and SE, then the measure table."""
    frames = []
    for label in ds["condition"].values:
        d, sm = ds.sel(condition=label), summary.sel(condition=label)
        head = {f: d[f].item() for f in _factors(ds)}
        head["not_conv"] = int(sm["nonconverged"].sel(engine=engine))
        if "singular" in sm:
            head["singular"] = int(sm["singular"].sel(engine=engine))
        cells = measure_table(sm, engine, measures)
        cells.insert(1, "TrueValue", d["true_value"].values)
        cells.insert(2, "TrueSE", true_se(d).values)
        for i, (name, value) in enumerate(head.items()):
            cells.insert(i, name, value)
        frames.append(cells)
    return pd.concat(frames, ignore_index=True)


def long_table(ds: xr.Dataset, summary: xr.Dataset) -> pd.DataFrame:
    """One row per condition x engine x term x measure: condition, the factor columns,
    engine, term, measure, value, mcse, n (what ``--format csv`` prints)."""
    frame = summary[["value", "mcse", "n"]].to_dataframe().reset_index()
    factors = _factors(ds)
    for f in factors:
        labels = dict(zip(ds["condition"].values, ds[f].values, strict=True))
        frame[f] = frame["condition"].map(labels)
    cols = ["condition", *factors, "engine", "term", "measure", "value", "mcse", "n"]
    return frame[cols].astype({"n": int})


def _title(text: str, fmt: str) -> str:
    return f"### {text}" if fmt == "markdown" else text


def summary_text(
    ds: xr.Dataset,
    summary: xr.Dataset,
    *,
    fmt: str = "table",
    measures: list[str],
    exclude_nonconverged: bool = False,
    partial: bool = False,
    exclude_singular: bool = False,
) -> str:
    """The text of ``study summarize``.

    ``csv``: :func:`long_table` of the chosen measures, nothing else.  Otherwise a
    header, then per engine the report's table and the measure table (one condition)
    or the grid table (several), and footnotes.
    """
    if fmt == "csv":
        return long_table(ds, summary.sel(measure=measures)).to_csv(index=False)
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
        title = f"engine {engine}: {nc} of {fits} fits not converged ({policy})"
        if "singular" in summary:
            n_sing = int(summary["singular"].sel(engine=engine).sum())
            title += f", {n_sing} singular ({'excluded' if exclude_singular else 'kept'})"
        found = failure_reasons(ds, engine) if nc else []
        if found:
            lines = [f"{r.count} x {shorten(r.reason, 100)}" for r in found[:3]]
            if len(found) > 3:
                lines.append(f"{sum(r.count for r in found[3:])} x other reasons")
            title += "; reasons: " + "; ".join(lines) + " (all: `study info`)"
        blocks.append(_title(title, fmt))
        if n_cond > 1:
            table = grid_table(ds, summary, engine, measures)
            blocks.append(render(table, fmt, digits=4, keep=[*_factors(ds), "term"]))
            continue
        one, sm = ds.isel(condition=0), summary.isel(condition=0)
        blocks.append(render(report_table(one, sm, engine), fmt, digits=4))
        blocks.append(render(measure_table(sm, engine, measures), fmt))
    blocks.append(
        "cells: estimate (Monte Carlo SE); n_est, n_se, n_ci: replicates with a finite "
        "estimate, SE, interval (what bias/EmpSE, ModSE, coverage used); measures and "
        "MCSEs as in Morris, White & Crowther (2019), Table 6\n" + FOOTNOTE + _missing_note(ds)
    )
    return "\n\n".join(blocks)


def _missing_note(ds: xr.Dataset) -> str:
    return "" if observed_se_of(ds) is None else "\n" + MISSING_NOTE
