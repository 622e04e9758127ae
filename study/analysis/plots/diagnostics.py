"""Diagnostic figures: convergence across replicates, and ArviZ plots of one posterior.

Across replicates (from the results Dataset): :func:`convergence`, :func:`fit_times`,
:func:`failures` (a table) and :func:`failures_figure`.  For one kept posterior (an
``xarray.DataTree`` from ``posteriors/``, read with ``xarray.open_datatree``):
:func:`trace`, :func:`rank`, :func:`energy`, :func:`ess`, drawn by arviz-plots, and
:func:`intervals`, every engine's interval of one replicate.

Every function returns a ``matplotlib.figure.Figure`` that no pyplot state refers to:
the ArviZ figures are created by arviz-plots through ``pyplot.subplots`` (with
interactive mode off, so no window opens), then removed from pyplot's figure manager
and given a plain canvas.  The caller saves them (``fig.savefig``) and drops them; no
``pyplot.close`` is needed, and the global backend is never changed.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

from study.analysis.plots.style import TRUTH_COLOR, WIDTH, engine_color, new_figure


# -- selection ------------------------------------------------------------------------
def _condition(ds: xr.Dataset, condition: str | None) -> tuple[xr.Dataset, str]:
    """``ds`` restricted to ``condition`` (a label or a condition id) and its description."""
    labels = [str(c) for c in ds.condition.values]
    if condition is None:
        if len(labels) == 1:
            return ds, f"condition {labels[0]}"
        return ds, f"all {len(labels)} conditions pooled"
    ids = [str(c) for c in ds.condition_id.values] if "condition_id" in ds.coords else []
    if condition in labels:
        index = labels.index(condition)
    elif condition in ids:
        index = ids.index(condition)
    else:
        raise ValueError(f"condition {condition!r} is not in the results; one of {labels}")
    return ds.isel(condition=[index]), f"condition {labels[index]}"


def _per_fit(da: xr.DataArray, done: xr.DataArray, engine: str) -> np.ndarray:
    """Finite values of a per-fit variable for ``engine`` over the fits that were run."""
    values = np.asarray(da.sel(engine=engine).transpose("condition", "replicate"), dtype=float)
    values = values[np.asarray(done.transpose("condition", "replicate"), dtype=bool)]
    return values[np.isfinite(values)]


def _over_terms(da: xr.DataArray, how: Literal["max", "min"]) -> xr.DataArray:
    """Max or min over terms, ignoring NaN, NaN where all are NaN (and no warning)."""
    ufunc = np.fmax if how == "max" else np.fmin
    return da.reduce(ufunc.reduce, dim="term")


def _hist(ax: Any, values: np.ndarray, bins: Any, color: str, label: str | None) -> None:
    """A histogram light-filled with a solid outline, so that engines can overlap."""
    ax.hist(values, bins=bins, color=color, alpha=0.3, histtype="stepfilled")
    ax.hist(values, bins=bins, color=color, linewidth=1.8, histtype="step", label=label)


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
        A condition label or id; by default the only condition, or all pooled.
    rhat_max, ess_min : float
        The thresholds, drawn as vertical lines; the legend counts the fits beyond.

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
    plotted: set[str] = set()
    for ax, (label, da, limit, side) in zip(axes.ravel(), panels, strict=True):
        shown = {e: v for e in engines if (v := _per_fit(da, sub.done, e)).size}
        ax.set_xlabel(label)
        ax.set_ylabel("fits")
        if not shown:
            ax.text(0.5, 0.5, "no engine reports it", ha="center", va="center",
                    transform=ax.transAxes, color=TRUTH_COLOR)  # fmt: skip
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
            beyond = values > (0 if limit is None else limit) if side == ">" else values < limit
            counts.append(f"{engine} {int(beyond.sum())} of {values.size}")
            _hist(ax, values, bins, engine_color(engine, engines), engine)
            plotted.add(engine)
        ax.set_title(f"fits {what}: " + ", ".join(counts), fontsize="medium")
    handles = [Patch(facecolor=engine_color(e, engines), alpha=0.5, edgecolor=engine_color(e, engines),
                     label=e) for e in engines if e in plotted]  # fmt: skip
    handles.append(Line2D([], [], color=TRUTH_COLOR, linestyle="--", label="threshold"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize="small")
    fig.suptitle(f"Convergence diagnostics over replicates ({where})")
    return fig


def fit_times(ds: xr.Dataset, *, condition: str | None = None) -> Figure:
    """Histogram of the seconds each fit took, per engine, with the medians marked.

    The x axis is logarithmic when the times span more than a factor of 20 (the first
    Bayesian fit of a process includes compiling the model).

    Parameters
    ----------
    ds : xarray.Dataset
        The results.
    condition : str, optional
        A condition label or id; by default the only condition, or all pooled.

    Returns
    -------
    matplotlib.figure.Figure
    """
    sub, where = _condition(ds, condition)
    engines = [str(e) for e in sub.engine.values]
    times = {e: _per_fit(sub.fit_seconds, sub.done, e) for e in engines}
    times = {e: v[v > 0] for e, v in times.items() if (v > 0).any()}
    fig, ax = new_figure(height=4.0)
    ax.set_xlabel("fit time (seconds)")
    ax.set_ylabel("fits")
    fig.suptitle(f"Time per fit ({where})")
    if not times:
        ax.text(0.5, 0.5, "no fit times recorded", ha="center", va="center", transform=ax.transAxes)
        return fig
    pooled = np.concatenate(list(times.values()))
    log = pooled.max() / pooled.min() > 20
    lo, hi = pooled.min(), pooled.max()
    bins = np.geomspace(lo, hi * 1.0001, 40) if log else np.linspace(lo, hi * 1.0001 + 1e-9, 40)
    for engine, values in times.items():
        color = engine_color(engine, engines)
        median = float(np.median(values))
        _hist(ax, values, bins, color, f"{engine}: {values.size} fits, median {median:.3g} s")
        ax.axvline(median, color=color, linestyle="--", linewidth=1.5)
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.plot([], [], color=TRUTH_COLOR, linestyle="--", label="median (dashed, engine colour)")
    ax.legend(fontsize="small")
    return fig


def failures(ds: xr.Dataset) -> pd.DataFrame:
    """The fits that were run but did not converge (or failed), one row each.

    Parameters
    ----------
    ds : xarray.Dataset
        The results.

    Returns
    -------
    pandas.DataFrame
        Columns ``condition``, ``replicate``, ``engine``, ``message``.
    """
    bad = ds.done & ~ds.converged.astype(bool)
    message = ds.message.transpose("condition", "replicate", "engine").values
    rows = [
        {
            "condition": str(ds.condition.values[c]),
            "replicate": int(ds.replicate.values[r]),
            "engine": str(ds.engine.values[e]),
            "message": str(message[c, r, e]),
        }
        for c, r, e in np.argwhere(bad.transpose("condition", "replicate", "engine").values)
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
        Each bar annotated with ``failed / run``; a plain message when none failed.
    """
    engines = [str(e) for e in ds.engine.values]
    labels = [str(c) for c in ds.condition.values]
    run = np.asarray(ds.done.sum("replicate").values, dtype=int)  # per condition
    bad = (ds.done & ~ds.converged.astype(bool)).sum("replicate").transpose("condition", "engine")
    counts = np.asarray(bad.values, dtype=int)  # condition x engine
    grid = len(labels) > 1
    rows = len(labels) * len(engines) if grid else len(engines)
    fig, ax = new_figure(height=max(2.2, 1.2 + 0.4 * rows))
    where = "per engine and condition" if grid else f"per engine (condition {labels[0]})"
    fig.suptitle(f"Failed or non-converged fits {where}")
    if counts.sum() == 0:
        ax.text(0.5, 0.5, f"no failed fits ({int(run.sum()) * len(engines)} fits run)",
                ha="center", va="center", fontsize="large", transform=ax.transAxes)  # fmt: skip
        ax.set_axis_off()
        return fig
    ax.set_xlabel("fits that failed or did not converge (annotated: failed / run)")
    height = 0.8 / len(engines) if grid else 0.7
    y = np.arange(len(labels))[::-1].astype(float)  # first condition on top
    for j, engine in enumerate(engines):
        pos = y + 0.4 - height * (j + 0.5) if grid else np.array([len(engines) - 1.0 - j])
        bars = ax.barh(pos, counts[:, j], height=height * 0.9, color=engine_color(engine, engines),
                       label=engine)  # fmt: skip
        ax.bar_label(bars, [f"{k} / {n}" for k, n in zip(counts[:, j], run, strict=True)],
                     padding=3, fontsize="small")  # fmt: skip
    if grid:
        ax.set_yticks(y, labels)
        ax.set_ylabel("condition")
        fig.legend(title="engine", fontsize="small", loc="outside right upper")
    else:
        ax.set_yticks(np.arange(len(engines))[::-1], engines)
        ax.set_ylabel("engine")
    ax.set_xlim(0, counts.max() * 1.2 + 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


# -- one posterior (arviz-plots) -----------------------------------------------------
def _arviz(name: str, tree: xr.DataTree, title: str, height: float, *, chains: bool = False,
           **kwargs: Any) -> Figure:  # fmt: skip
    """Run ``arviz_plots.<name>`` on the matplotlib backend; its Figure, detached.

    arviz-plots creates the figure with ``pyplot.subplots``: interactive mode is off
    meanwhile (no window opens), then the figure leaves pyplot's figure manager and gets
    a plain canvas, so nothing global keeps it alive.  ``chains`` adds a chain legend.
    """
    import matplotlib.pyplot as plt

    plot = getattr(import_module("arviz_plots"), name)
    figure_kwargs = {"figsize": (WIDTH * 1.5, height), "figsize_units": "inches",
                     "layout": "constrained"}  # fmt: skip
    with plt.ioff():
        pc = plot(tree, backend="matplotlib", figure_kwargs=figure_kwargs, **kwargs)
        if chains:
            pc.add_legend("chain", title="chain")
    fig: Figure = pc.get_viz("figure")
    plt.close(fig)
    FigureCanvasBase(fig)
    fig.suptitle(title, fontsize="large")
    return fig


def _rows(tree: xr.DataTree, per_row: int = 3) -> int:
    """Rows of ``per_row`` panels needed for the posterior's variables."""
    return -(-len(tree["posterior"].data_vars) // per_row)


def trace(tree: xr.DataTree, *, title: str = "posterior") -> Figure:
    """Marginal density and trace per chain and term (``arviz_plots.plot_trace_dist``).

    Parameters
    ----------
    tree : xarray.DataTree
        A kept posterior (groups ``posterior``, ``sample_stats``).
    title : str
        Which posterior (e.g. ``"bayes, condition base, replicate 0"``), in the title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    height = 1.0 + 1.6 * len(tree["posterior"].data_vars)
    return _arviz("plot_trace_dist", tree, f"Trace and density: {title}", height,
                  chains=True, compact=False)  # fmt: skip


def rank(tree: xr.DataTree, *, title: str = "posterior") -> Figure:
    """Fractional-rank ECDF differences per chain and term (``arviz_plots.plot_rank``).

    Parameters
    ----------
    tree : xarray.DataTree
        A kept posterior.
    title : str
        Which posterior, in the title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    return _arviz("plot_rank", tree, f"Rank plot (ECDF difference per chain): {title}",
                  1.0 + 2.6 * _rows(tree), chains=True, col_wrap=3)  # fmt: skip


def energy(tree: xr.DataTree, *, title: str = "posterior") -> Figure:
    """BFMI per chain, and marginal and transition energy (``arviz_plots.plot_energy``).

    Parameters
    ----------
    tree : xarray.DataTree
        A kept posterior with ``sample_stats.energy``.
    title : str
        Which posterior, in the title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = _arviz("plot_energy", tree, f"Energy and BFMI: {title}", 4.0)
    fig.axes[0].set_xlabel("BFMI (dashed: 0.3)")
    fig.axes[-1].set_xlabel("energy minus its mean")
    return fig


def ess(
    tree: xr.DataTree,
    *,
    title: str = "posterior",
    kind: Literal["local", "quantile", "evolution"] = "local",
    ess_min: float = 400,
) -> Figure:
    """Effective sample size per term (``arviz_plots.plot_ess`` / ``plot_ess_evolution``).

    Parameters
    ----------
    tree : xarray.DataTree
        A kept posterior.
    title : str
        Which posterior, in the title.
    kind : {"local", "quantile", "evolution"}
        Local or quantile ESS across the distribution, or bulk and tail ESS as draws
        accumulate.
    ess_min : float
        The reference line.

    Returns
    -------
    matplotlib.figure.Figure
    """
    height = 1.0 + 2.6 * _rows(tree)
    ref = Line2D([], [], color="0.3", linestyle="-.", label=f"ESS {ess_min:g}")
    if kind == "evolution":
        visuals = {"ess_bulk": {"color": "C0"}, "ess_bulk_line": {"color": "C0"},
                   "ess_tail": {"color": "C1"}, "ess_tail_line": {"color": "C1"}}  # fmt: skip
        fig = _arviz("plot_ess_evolution", tree, f"ESS as draws accumulate: {title}", height,
                     col_wrap=3, min_ess=ess_min, visuals=visuals)  # fmt: skip
        handles = [Line2D([], [], color=c, marker="o", label=f"{m} ESS")
                   for c, m in (("C0", "bulk"), ("C1", "tail"))]  # fmt: skip
    else:
        fig = _arviz("plot_ess", tree, f"{kind.capitalize()} ESS: {title}", height,
                     col_wrap=3, kind=kind, min_ess=ess_min)  # fmt: skip
        handles = [Line2D([], [], color="C0", marker="o", linestyle="none", label=f"{kind} ESS")]
    fig.legend(handles=[*handles, ref], loc="outside right upper", fontsize="small")
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
        That replicate's kept posterior: its draws are drawn as a faint density behind
        the Bayesian engine's interval.

    Returns
    -------
    matplotlib.figure.Figure
        One axis per term; the true value (and the conditional one, when finite) as
        vertical lines.  Terms without any interval still show the estimates.
    """
    if condition is None and ds.sizes["condition"] > 1:
        raise ValueError(f"choose a condition: one of {[str(c) for c in ds.condition.values]}")
    sub, where = _condition(ds, condition)
    one = sub.isel(condition=0).sel(replicate=replicate)
    engines = [str(e) for e in one.engine.values]
    terms = [str(t) for t in one.term.values]
    failed = {e for e in engines if not bool(one.converged.sel(engine=e))}
    posterior = tree["posterior"] if tree is not None and "posterior" in tree else None
    fig, axes = new_figure(len(terms), 1, height=0.9 + 0.85 * len(terms) * max(1, len(engines) / 2),
                           squeeze=False)  # fmt: skip
    ys = np.arange(len(engines))[::-1].astype(float)  # first engine on top
    for ax, term in zip(axes[:, 0], terms, strict=True):
        row = one.sel(term=term)
        for y, engine in zip(ys, engines, strict=True):
            color = engine_color(engine, engines)
            est, lo, hi = (
                float(row[v].sel(engine=engine)) for v in ("estimate", "ci_lower", "ci_upper")
            )
            if posterior is not None and engine == "bayes" and term in posterior:
                draws = np.asarray(posterior[term], dtype=float).ravel()
                draws = draws[
                    (draws >= np.quantile(draws, 0.005)) & (draws <= np.quantile(draws, 0.995))
                ]
                parts = ax.violinplot(draws, positions=[y], orientation="horizontal", widths=0.8,
                                      showextrema=False)  # fmt: skip
                for body in parts["bodies"]:
                    body.set(facecolor=color, alpha=0.2, edgecolor="none")
            if np.isfinite(lo) and np.isfinite(hi):
                ax.plot([lo, hi], [y, y], color=color, linewidth=2.5, solid_capstyle="butt",
                        gid=f"interval:{engine}")  # fmt: skip
            ax.plot([est], [y], "o", color=color, markersize=6, gid=f"estimate:{engine}")
        truth = float(row.true_value) if "true_value" in row.coords else np.nan
        cond = float(row.cond_value) if "cond_value" in row.coords else np.nan
        if np.isfinite(truth):
            ax.axvline(truth, color=TRUTH_COLOR, linestyle="--", linewidth=1.2, gid="true_value")
        if np.isfinite(cond):
            ax.axvline(cond, color=TRUTH_COLOR, linestyle=":", linewidth=1.2, gid="cond_value")
        ax.set_yticks(ys, [e + ("*" if e in failed else "") for e in engines])
        ax.set_ylim(ys.min() - 0.6, ys.max() + 0.6)
        ax.set_ylabel(term, rotation=0, ha="right", va="center", fontweight="bold")
        for label, engine in zip(ax.get_yticklabels(), engines, strict=True):
            label.set_color(engine_color(engine, engines))
    note = "; * = did not converge" if failed else ""
    axes[-1, 0].set_xlabel(f"value (each row its own scale; a dot alone: no interval{note})")
    level = float(ds.attrs.get("level", 0.95))
    handles = [
        Line2D([], [], color=engine_color(e, engines), marker="o", linewidth=2.5, label=e)
        for e in engines
    ]
    handles.append(Line2D([], [], color=TRUTH_COLOR, linestyle="--", label="true value"))
    if np.isfinite(one.cond_value.values).any() if "cond_value" in one.coords else False:
        handles.append(Line2D([], [], color=TRUTH_COLOR, linestyle=":", label="value given u"))
    if posterior is not None:
        handles.append(Line2D([], [], color=engine_color("bayes", engines), alpha=0.3,
                              linewidth=8, label="posterior draws (central 99%)"))  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize="small")
    fig.suptitle(f"Replicate {replicate} ({where}): estimates and {level:.0%} intervals")
    return fig


__all__ = [
    "convergence",
    "energy",
    "ess",
    "failures",
    "failures_figure",
    "fit_times",
    "intervals",
    "rank",
    "trace",
]
