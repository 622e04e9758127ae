"""Figures across the conditions of a grid: each measure against the condition
factors (faceted lines) and heat maps by condition and engine."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import xarray as xr
from matplotlib import colormaps
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure

from study.analysis.plots import style
from study.analysis.plots.common import (
    GREY,
    REFERENCE,
    SHARES,
    Z,
    engines_of,
    focal_term,
    interval_of,
    label_of,
    legend,
    legend_handles,
    measure_of,
    suptitle,
    terms_of,
)


def _key(v: Any) -> tuple[int, tuple[float, ...], str]:
    """Sort and identity key of a factor level: numbers by value, lists of numbers (e.g.
    ``re_sd`` levels, stored as JSON text) element by element, else as text."""
    try:
        return (0, (float(v),), "")
    except (TypeError, ValueError):
        pass
    try:
        items = json.loads(str(v))
        if isinstance(items, list) and items:
            return (1, tuple(float(x) for x in items), str(v))
    except (ValueError, TypeError):
        pass
    return (2, (), str(v))


def _show(k: tuple[int, tuple[float, ...], str]) -> str:
    return f"{k[1][0]:g}" if k[0] == 0 else k[2]


def _grid(
    summary: xr.Dataset, measure: str, term: str | None
) -> tuple[Any, Any, list[str], Any, str]:
    """``value``, ``mcse`` of ``term`` over (condition, engine), the factors that vary
    (none if they do not tell the conditions apart or do not cross into the conditions,
    as a list of ``add`` entries: then the conditions side by side) and each condition's factor keys
    (its position when there are no factors), and the term (``None``: the focal term);
    refuses a single condition."""
    n = summary.sizes.get("condition", 1)
    if n < 2:
        raise ValueError(f"grid figures need several conditions; this summary has {n}")
    term = focal_term(summary) if term is None else terms_of(summary, term)[0]
    value, mcse = (
        x.sel(term=term).transpose("condition", ...) for x in measure_of(summary, measure)
    )
    if "factors" in summary.attrs:
        names = [str(f) for f in json.loads(summary.attrs["factors"])]
    else:
        names = [str(c) for c, v in summary.coords.items() if v.dims == ("condition",)]
    names = [f for f in names if f in summary.coords and f not in ("condition", "condition_id")]
    factors = [f for f in names if len({_key(v) for v in summary[f].values}) > 1]
    keys = [tuple(_key(summary[f].values[i]) for f in factors) for i in range(n)]
    levels = [len({k[j] for k in keys}) for j in range(len(factors))]
    if len(set(keys)) < n or math.prod(levels) != n:  # not a full crossing: one axis
        factors, keys = [], [((0, (float(i),), ""),) for i in range(n)]
    return value, mcse, factors, keys, term


def grid_lines(
    summary: xr.Dataset, measure: str = "coverage", *, term: str | None = None
) -> Figure:
    """A measure against the factors of a grid of conditions, a line per engine.

    Parameters
    ----------
    summary : xarray.Dataset
        Output of :func:`study.analysis.measures.compute_measures`, several conditions
        (``ValueError`` for one).
    measure : str
        A measure of the summary (default ``coverage``).
    term : str, optional
        The term (default: the first fixed effect other than the intercept, whatever
        the predictor is called; :func:`~study.analysis.plots.common.focal_term`).

    Returns
    -------
    matplotlib.figure.Figure
        The measure (+-1.96 MCSE; a share, e.g. coverage, with its 95% Wilson interval,
        inside [0, 1]) against the first factor(s), in lexicographic order;
        with two or more factors the one with the most levels along x and a panel per
        combination of the others.  A reference line where
        one applies (coverage: nominal level, with each condition's Monte Carlo band;
        SE ratios: 1; bias and % errors: 0).
    """
    value, _, factors, keys, term = _grid(summary, measure, term)
    if len(factors) > 1:  # along x the factor with the most levels; the others facet
        counts = [len({k[j] for k in keys}) for j in range(len(factors))]
        xi = counts.index(max(counts))
        order = [xi, *(j for j in range(len(factors)) if j != xi)]
        factors = [factors[j] for j in order]
        keys = [tuple(k[j] for j in order) for k in keys]
    bounds = [b.sel(term=term).transpose("condition", ...) for b in interval_of(summary, measure)]
    engines, n = engines_of(summary), summary.sizes["condition"]
    nx = 1  # the factor (or positions) along x
    xkeys, fkeys = [k[:nx] for k in keys], [k[nx:] for k in keys]
    xs, fs = sorted(set(xkeys)), sorted(set(fkeys))
    ncols = min(len(fs), 4)
    nrows = -(-len(fs) // ncols)
    fig, axes = style.new_figure(nrows, ncols, height=1.4 + 3 * nrows, squeeze=False, sharey=True)
    level, kind = float(summary.attrs.get("level", np.nan)), REFERENCE.get(measure)
    ref = level if kind == "level" else kind
    reps = summary["replicates"].max("engine").values
    offsets = np.linspace(-0.08, 0.08, len(engines)) if len(engines) > 1 else [0.0]
    labels = [str(c) for c in summary["condition"].values]
    ticks = ["\n".join(map(_show, k)) for k in xs]
    if not factors:
        ticks = [labels[int(k[0][1][0])].replace(", ", "\n") for k in xs]
    for ax, fv in zip(axes.flat, fs, strict=False):
        idx = sorted((i for i in range(n) if fkeys[i] == fv), key=lambda i: xkeys[i])
        pos = np.array([xs.index(xkeys[i]) for i in idx], dtype=float)
        for p, i in zip(pos, idx, strict=True) if kind == "level" else ():  # Monte Carlo band
            h = Z * math.sqrt(level * (1 - level) / max(int(reps[i]), 1))
            band = max(level - h, 0.0), min(level + h, 1.0)  # a share stays in [0, 1]
            ax.fill_between([p - 0.4, p + 0.4], *band, color=GREY, alpha=0.12, lw=0)
        if ref is not None:
            ax.axhline(float(ref), color=GREY, ls="--", lw=1)
        for off, eng in zip(offsets, engines, strict=True):
            v = value.sel(engine=eng).values[idx]
            lo, hi = (b.sel(engine=eng).values[idx] for b in bounds)
            err = np.clip(np.nan_to_num(np.stack([v - lo, hi - v])), 0.0, None)
            kw = {"marker": "o", "ms": 4, "capsize": 2, "color": style.engine_color(eng, engines)}
            if np.isfinite(v).any():
                ax.errorbar(pos + off, v, yerr=err, **kw)
        ax.set_xticks(range(len(xs)), ticks, rotation=30 if len(xs) > 6 else 0)
        ax.set_xlabel(" / ".join(factors[:nx]) or "condition")
        ax.grid(axis="y", alpha=0.3)
        if len(factors) > 1:
            title = "\n".join(f"{f} = {_show(v)}" for f, v in zip(factors[1:], fv, strict=True))
            ax.set_title(title, fontsize=10)
    ylabel = label_of(summary, measure)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel if len(ylabel) <= 40 else ylabel.split(" (")[0])
    for ax in axes.flat[len(fs) :]:
        ax.set_visible(False)
    suptitle(
        fig,
        f"{label_of(summary, measure).split(' (')[0]} of {term} by condition "
        + ("(95% Wilson intervals)" if measure in SHARES else "(+-1.96 MCSE)"),
    )
    refs = (
        [] if ref is None else [(f"nominal {level:.0%}" if kind == "level" else f"{ref:g}", "--")]
    )
    legend(fig, legend_handles(engines, *refs))
    return fig


def _fmt(v: float, m: float) -> str:
    """``value (mcse)`` with the decimals the MCSE supports."""
    if not math.isfinite(v):
        return ""
    if not math.isfinite(m):
        return f"{v:.3g}"
    d = int(np.clip(1 - math.floor(math.log10(m)), 0, 6)) if m > 0 else 3
    return f"{v:.{d}f} ({m:.{d}f})"


def grid_heatmap(
    summary: xr.Dataset, measure: str = "coverage", *, term: str | None = None
) -> Figure:
    """Heat map of a measure by condition and engine, cells annotated ``value (mcse)``.

    Parameters
    ----------
    summary : xarray.Dataset
        Output of :func:`study.analysis.measures.compute_measures`, several conditions
        (``ValueError`` for one).
    measure : str
        A measure of the summary (default ``coverage``).
    term : str, optional
        The term (default: the first fixed effect other than the intercept, whatever
        the predictor is called; :func:`~study.analysis.plots.common.focal_term`).

    Returns
    -------
    matplotlib.figure.Figure
        With two factors a panel per engine on the factors' 2-D grid; else a row per
        condition and a column per engine.  A diverging scale centred on the reference
        value where one applies (coverage: the nominal level), else viridis.
    """
    value, mcse, factors, keys, term = _grid(summary, measure, term)
    engines = engines_of(summary)
    if len(factors) == 2:
        rk, ck = (sorted({k[j] for k in keys}) for j in (0, 1))
        ri, ci = [rk.index(k[0]) for k in keys], [ck.index(k[1]) for k in keys]
        grids = [np.full((2, len(rk), len(ck)), np.nan) for _ in engines]
        for j, g in enumerate(grids):
            g[0, ri, ci], g[1, ri, ci] = value.values[:, j], mcse.values[:, j]
        titles, rows, cols, (ylabel, xlabel) = (
            engines,
            [*map(_show, rk)],
            [*map(_show, ck)],
            factors,
        )
    else:
        order = sorted(range(len(keys)), key=lambda i: keys[i])
        grids, titles = [np.stack([value.values[order], mcse.values[order]])], [""]
        rows, cols = [str(summary["condition"].values[i]) for i in order], engines
        ylabel, xlabel = "condition", "engine"
    finite = np.concatenate([g[0][np.isfinite(g[0])] for g in grids])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    kind, norm = REFERENCE.get(measure), Normalize(lo, hi if hi > lo else lo + 1)
    cmap = colormaps["viridis" if kind is None else "PRGn"].with_extremes(bad="#eeeeee")
    if kind is not None:
        mid = float(summary.attrs.get("level", np.nan)) if kind == "level" else float(kind)
        span = max(abs(lo - mid), abs(hi - mid)) or 1.0
        top = min(mid + span, 1.0) if kind == "level" else mid + span  # a proportion <= 1
        norm = TwoSlopeNorm(mid, mid - span, max(top, mid + 1e-9))
    height = 1.8 + 0.45 * len(rows)
    fig, axes = style.new_figure(1, len(grids), height=height, squeeze=False, sharey=True)
    for ax, g, name in zip(axes[0], grids, titles, strict=True):
        im = ax.imshow(g[0], cmap=cmap, norm=norm, aspect="auto")
        for (r, c), v in np.ndenumerate(g[0]):
            rgb = cmap(norm(v))[:3] if math.isfinite(v) else (1.0, 1.0, 1.0)
            dark = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 0.5
            kw = {"ha": "center", "va": "center", "color": "white" if dark else "black"}
            ax.text(c, r, _fmt(v, g[1][r, c]), fontsize=9, **kw)
        ax.set_xticks(range(len(cols)), cols)
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlabel(xlabel)
        if name:
            ax.set_title(name, color=style.engine_color(name, engines), fontweight="bold")
        for tick in ax.get_xticklabels() if not name else ():
            tick.set_color(style.engine_color(tick.get_text(), engines))
    axes[0, 0].set_ylabel(ylabel)
    fig.colorbar(im, ax=axes[0].tolist(), label=label_of(summary, measure), shrink=0.9)
    suptitle(
        fig, f"{label_of(summary, measure).split(' (')[0]} of {term}: value (MCSE) by condition"
    )
    return fig
