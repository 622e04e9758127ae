"""Diagnostic figures: convergence across replicates, and ArviZ plots of one posterior.

From the results Dataset: :func:`convergence`, :func:`fit_times`, :func:`failures` (a
table), :func:`failures_figure` and :func:`intervals` (one replicate, every engine).
From one kept posterior (``xarray.open_datatree`` of a file in ``posteriors/``), drawn
by arviz-plots: :func:`trace`, :func:`rank`, :func:`energy`, :func:`ess`.

Every function returns a ``matplotlib.figure.Figure`` that no pyplot state refers to
(arviz-plots draws through ``pyplot.subplots``: with interactive mode off, then the
figure leaves pyplot's manager), so the caller saves it and drops it; no
``pyplot.close`` is needed and the global backend is never changed.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

from study.analysis.plots.style import TRUTH_COLOR, WIDTH, engine_color, new_figure

DIMS = ("condition", "replicate", "engine")
FOREST = ("estimate", "ci_lower", "ci_upper")
#: each truth marked in :func:`intervals`: coordinate, line style, legend label
TRUTHS: tuple[tuple[str, Literal["--", ":"], str], ...] = (
    ("true_value", "--", "true value"),
    ("cond_value", ":", "value given u"),
)


def _condition(ds: xr.Dataset, condition: str | None) -> tuple[xr.Dataset, str]:
    """``ds`` kept to ``condition`` (a label or condition id), and what was kept, in words."""
    labels = [str(c) for c in ds.condition.values]
    if condition is None:
        pooled = f"all {len(labels)} conditions pooled"
        if len(labels) == 1:
            return ds, "" if labels[0] == "base" else f"condition {labels[0]}"
        return ds, pooled
    ids = [str(c) for c in ds.condition_id.values] if "condition_id" in ds.coords else []
    if condition not in labels and condition not in ids:
        raise ValueError(f"condition {condition!r} is not in the results; one of {labels}")
    index = labels.index(condition) if condition in labels else ids.index(condition)
    return ds.isel(condition=[index]), ("" if labels == ["base"] else f"condition {labels[index]}")


def _paren(where: str) -> str:
    """`` (where)``, or nothing for a study of one base condition."""
    return f" ({where})" if where else ""


def _per_fit(da: xr.DataArray, done: xr.DataArray, engine: str) -> np.ndarray:
    """The finite values of a per-fit variable of ``engine`` over the fits that were run."""
    values = np.asarray(da.sel(engine=engine).transpose(*DIMS[:2]), dtype=float)
    values = values[np.asarray(done.transpose(*DIMS[:2]), dtype=bool)]
    return values[np.isfinite(values)]


def _over_terms(da: xr.DataArray, how: Literal["max", "min"]) -> xr.DataArray:
    """Max or min over terms ignoring NaN; NaN (and no warning) where all are NaN."""
    return da.reduce((np.fmax if how == "max" else np.fmin).reduce, dim="term")


def _hist(ax: Any, values: np.ndarray, bins: Any, color: str, label: str) -> None:
    """A light-filled histogram with a solid outline, so that engines can overlap."""
    ax.hist(values, bins=bins, color=color, alpha=0.3, histtype="stepfilled")
    ax.hist(values, bins=bins, color=color, linewidth=1.8, histtype="step", label=label)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _violin(ax: Any, draws: np.ndarray, y: float, color: str) -> None:
    """A faint horizontal density of the central 99% of ``draws`` at height ``y``."""
    lo, hi = np.quantile(draws, [0.005, 0.995])
    kept = draws[(draws >= lo) & (draws <= hi)]
    parts = ax.violinplot(kept, [y], orientation="horizontal", widths=0.8, showextrema=False)
    for body in parts["bodies"]:
        body.set(facecolor=color, alpha=0.2, edgecolor="none")


def _say(ax: Any, text: str) -> None:
    """A message in the middle of an axis that has nothing to show."""
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize="large", transform=ax.transAxes)


# -- across replicates ----------------------------------------------------------------
def convergence(
    ds: xr.Dataset, *, condition: str | None = None, rhat_max: float = 1.01, ess_min: float = 400
) -> Figure:
    """Histograms over fits of max R-hat, min ESS bulk and tail (over terms), divergences.

    Parameters
    ----------
    ds : xarray.Dataset
        The results (``open_results``).
    condition : str, optional
        A condition label or id; by default the only condition, or all of them pooled.
    rhat_max, ess_min : float
        Thresholds, drawn as dashed vertical lines; each panel's title counts, per
        engine, the fits beyond.

    Returns
    -------
    matplotlib.figure.Figure
        Four panels; engines without diagnostics (REML) are left out.
    """
    sub, where = _condition(ds, condition)
    engines = [str(e) for e in sub.engine.values]
    panels: list[tuple[str, xr.DataArray, float | None, str]] = [
        ("max R-hat over terms", _over_terms(sub.rhat, "max"), rhat_max, ">"),
        ("min ESS bulk over terms", _over_terms(sub.ess_bulk, "min"), ess_min, "<"),
        ("min ESS tail over terms", _over_terms(sub.ess_tail, "min"), ess_min, "<"),
        ("divergent transitions per fit", sub.divergences, None, ">"),
    ]
    fig, axes = new_figure(2, 2, height=6.5)
    plotted: dict[str, None] = {}  # engines drawn, in order
    for ax, (label, da, limit, side) in zip(axes.ravel(), panels, strict=True):
        ax.set(xlabel=label, ylabel="fits")
        shown = {e: v for e in engines if (v := _per_fit(da, sub.done, e)).size}
        if not shown:
            _say(ax, "no engine reports it")
            continue
        pooled = np.concatenate(list(shown.values()))
        if limit is None:  # divergences: integer counts, at least 0 to 3 shown
            top = int(pooled.max())
            bins: Any = np.arange(-0.5, max(top, 3) + 1.5) if top <= 40 else 30
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            what = "with divergences"
        else:
            lo, hi = min(pooled.min(), limit), max(pooled.max(), limit)
            bins = np.linspace(lo, hi, 26) if hi > lo else 10
            ax.axvline(limit, color=TRUTH_COLOR, linestyle="--", linewidth=1.2)
            what = f"{side} {limit:g}"
        counts = []
        for engine, values in shown.items():
            beyond = values > (limit or 0) if side == ">" else values < (limit or 0)
            counts.append(f"{engine} {int(beyond.sum())} of {values.size}")
            _hist(ax, values, bins, engine_color(engine, engines), engine)
            plotted[engine] = None
        ax.set_title(f"fits {what}: " + ", ".join(counts), fontsize="medium")
    fig.suptitle(f"Convergence diagnostics over replicates{_paren(where)}")
    if not plotted:  # e.g. REML only
        for ax in axes.ravel():
            ax.remove()
        fig.set_size_inches(WIDTH, 2.0)
        fig.text(0.5, 0.4, "no engine here reports R-hat, ESS or divergences", ha="center")
        return fig
    handles: list[Any] = [
        Patch(color=engine_color(e, engines), alpha=0.5, label=e) for e in plotted
    ]
    handles.append(Line2D([], [], color=TRUTH_COLOR, linestyle="--", label="threshold"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize="small")
    return fig


def fit_times(ds: xr.Dataset, *, condition: str | None = None) -> Figure:
    """Histogram of the seconds each fit took, per engine, with the medians marked.

    The x axis is logarithmic when the times span more than a factor of 20 (a process's
    first Bayesian fit includes compiling the model).

    Parameters
    ----------
    ds, condition
        As for :func:`convergence`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    sub, where = _condition(ds, condition)
    engines = [str(e) for e in sub.engine.values]
    times = {e: _per_fit(sub.fit_seconds, sub.done, e) for e in engines}
    times = {e: v[v > 0] for e, v in times.items() if (v > 0).any()}
    fig, ax = new_figure(height=4.0)
    ax.set(xlabel="fit time (seconds)", ylabel="fits")
    fig.suptitle(f"Time per fit{_paren(where)}")
    if not times:
        _say(ax, "no fit times recorded")
        return fig
    pooled = np.concatenate(list(times.values()))
    lo, hi = pooled.min(), pooled.max() * 1.0001
    log = hi / lo > 20
    bins = np.geomspace(lo, hi, 40) if log else np.linspace(lo, hi + 1e-9, 40)
    for engine, values in times.items():
        color, median = engine_color(engine, engines), float(np.median(values))
        _hist(ax, values, bins, color, f"{engine}: {values.size} fits, median {median:.3g} s")
        ax.axvline(median, color=color, linestyle="--", linewidth=1.5)
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.plot([], [], color=TRUTH_COLOR, linestyle="--", label="median (dashed, engine colour)")
    ax.legend(fontsize="small")
    return fig


def failures(ds: xr.Dataset) -> pd.DataFrame:
    """The fits that were run (``done``) but failed or did not converge, one row each.

    Parameters
    ----------
    ds : xarray.Dataset
        The results.

    Returns
    -------
    pandas.DataFrame
        Columns ``condition``, ``replicate``, ``engine``, ``message``.
    """
    bad = (ds.done & ~ds.converged.astype(bool)).transpose(*DIMS).values
    message = ds.message.transpose(*DIMS).values
    cond, reps, engines = ds.condition.values, ds.replicate.values, ds.engine.values
    rows = [
        (str(cond[c]), int(reps[r]), str(engines[e]), str(message[c, r, e]))
        for c, r, e in np.argwhere(bad)
    ]
    return pd.DataFrame(rows, columns=["condition", "replicate", "engine", "message"])


def failures_figure(ds: xr.Dataset) -> Figure:
    """Bars of the failed or non-converged fits per engine (and per condition of a grid).

    Parameters
    ----------
    ds : xarray.Dataset
        The results.

    Returns
    -------
    matplotlib.figure.Figure
        Each bar annotated ``failed / run``; a plain message when none failed.
    """
    engines = [str(e) for e in ds.engine.values]
    labels = [str(c) for c in ds.condition.values]
    run = np.asarray(ds.done.sum("replicate").values, dtype=int)  # per condition
    bad = (ds.done & ~ds.converged.astype(bool)).sum("replicate").transpose("condition", "engine")
    counts = np.asarray(bad.values, dtype=int)  # condition x engine
    grid = len(labels) > 1
    fig, ax = new_figure(height=max(2.2, 1.2 + 0.4 * len(engines) * len(labels)))
    where = "per engine and condition" if grid else "per engine"
    fig.suptitle(f"Failed or non-converged fits {where}")
    if counts.sum() == 0:
        _say(ax, f"no failed fits ({int(run.sum()) * len(engines)} fits run)")
        ax.set_axis_off()
        return fig
    ax.set_xlabel("fits that failed or did not converge (annotated: failed / run)")
    height = 0.8 / len(engines) if grid else 0.7
    y = np.arange(len(labels))[::-1].astype(float)  # first condition on top
    for j, engine in enumerate(engines):
        pos = y + 0.4 - height * (j + 0.5) if grid else np.array([len(engines) - 1.0 - j])
        color = engine_color(engine, engines)
        bars = ax.barh(pos, counts[:, j], height=height * 0.9, color=color, label=engine)
        texts = [f"{k} / {n}" for k, n in zip(counts[:, j], run, strict=True)]
        ax.bar_label(bars, texts, padding=3, fontsize="small")
    if grid:
        ax.set(yticks=y, yticklabels=labels, ylabel="condition")
        fig.legend(title="engine", fontsize="small", loc="outside right upper")
    else:
        ax.set(yticks=np.arange(len(engines))[::-1], yticklabels=engines, ylabel="engine")
    ax.set_xlim(0, counts.max() * 1.2 + 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


# -- one replicate, every engine ------------------------------------------------------
def intervals(
    ds: xr.Dataset, *, replicate: int, condition: str | None = None, tree: xr.DataTree | None = None
) -> Figure:
    """Every engine's point estimate and interval for one replicate, a row per term.

    Parameters
    ----------
    ds : xarray.Dataset
        The results.
    replicate : int
        The replicate.
    condition : str, optional
        A condition label or id; required when there are several.
    tree : xarray.DataTree, optional
        That replicate's kept posterior: the central 99% of its draws are shown as a
        faint density behind its engine's interval (engine from ``tree.attrs``).

    Returns
    -------
    matplotlib.figure.Figure
        One axis per term; the true value (and the value given the random effects,
        when finite) as vertical lines; terms without an interval show the estimates.
    """
    if condition is None and ds.sizes["condition"] > 1:
        raise ValueError(f"choose a condition: one of {[str(c) for c in ds.condition.values]}")
    sub, where = _condition(ds, condition)
    one = sub.isel(condition=0).sel(replicate=replicate)
    engines, terms = [str(e) for e in one.engine.values], [str(t) for t in one.term.values]
    failed = {e for e in engines if not bool(one.converged.sel(engine=e))}
    post = tree["posterior"] if tree is not None and "posterior" in tree else None
    drawn = str(tree.attrs.get("engine", "")) if tree is not None and post is not None else ""
    height = 0.9 + 0.85 * len(terms) * max(1.0, len(engines) / 2)
    fig, axes = new_figure(len(terms), 1, height=height, squeeze=False)
    ys = np.arange(len(engines))[::-1].astype(float)  # first engine on top
    kinds: set[str] = set()
    for ax, term in zip(axes[:, 0], terms, strict=True):
        row = one.sel(term=term)
        for y, engine in zip(ys, engines, strict=True):
            color = engine_color(engine, engines)
            est, lo, hi = (float(row[v].sel(engine=engine)) for v in FOREST)
            if post is not None and engine == drawn and term in post:
                _violin(ax, np.asarray(post[term], dtype=float).ravel(), y, color)
            if np.isfinite(lo) and np.isfinite(hi):
                ax.hlines(y, lo, hi, color=color, lw=2.5, gid=f"interval:{engine}")
            ax.plot([est], [y], "o", color=color, markersize=6, gid=f"estimate:{engine}")
        for name, style, _ in TRUTHS:
            value = float(row[name]) if name in row.coords else np.nan
            if np.isfinite(value):
                ax.axvline(value, color=TRUTH_COLOR, linestyle=style, lw=1.2, gid=name)
                kinds.add(name)
        ax.set_yticks(ys, [e + ("*" if e in failed else "") for e in engines])
        ax.set_ylim(ys.min() - 0.6, ys.max() + 0.6)
        ax.set_ylabel(term, rotation=0, ha="right", va="center", fontweight="bold")
        for text, engine in zip(ax.get_yticklabels(), engines, strict=True):
            text.set_color(engine_color(engine, engines))
    note = "; * = did not converge" if failed else ""
    axes[-1, 0].set_xlabel(f"value (each row its own scale; a dot alone: no interval{note})")
    handles: list[Any] = [
        Line2D([], [], color=engine_color(e, engines), marker="o", lw=2.5, label=e) for e in engines
    ]
    for name, style, label in TRUTHS:
        if name in kinds:
            handles.append(Line2D([], [], color=TRUTH_COLOR, linestyle=style, label=label))
    if drawn:
        label = f"{drawn} posterior draws (central 99%)"
        handles.append(Patch(color=engine_color(drawn, engines), alpha=0.3, label=label))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize="small")
    level = float(ds.attrs.get("level", 0.95))
    fig.suptitle(f"Replicate {replicate}{_paren(where)}: estimates and {level:.0%} intervals")
    return fig
