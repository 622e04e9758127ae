"""The study figures of one condition, in the spirit of rsimsum's ``autoplot``:
coverage, the zip plot, SE calibration, bias and the relative error of the model SE.

Each function takes the results Dataset (``study.run.results.open_results``) or its
summary (:func:`study.analysis.measures.compute_measures`) and returns a Figure made
with :func:`style.new_figure` (object API, no pyplot).  ``condition`` is a condition
label (``None``: the only one).  Every function raises ``ValueError``, naming what is
available, for an unknown condition, engine, term or measure.  Error bars are
+-1.96 Monte Carlo SEs, for shares (coverage, rejection) the 95% Wilson interval,
inside [0, 1]; truth, nominal and reference values are grey lines; each
engine has its colour.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter

from study.analysis import mcse as mnp
from study.analysis.plots import style
from study.analysis.plots.common import (
    GREY,
    LABELS,
    MISS,
    Z,
    engines_of,
    forest,
    interval_of,
    legend,
    legend_handles,
    measure_of,
    select,
    suptitle,
    terms_of,
)


def coverage(summary: xr.Dataset, *, condition: str | None = None) -> Figure:
    """Coverage per engine and term, with the nominal level and its Monte Carlo band.

    Parameters
    ----------
    summary : xarray.Dataset
        Output of :func:`study.analysis.measures.compute_measures`.
    condition : str, optional
        Condition label (default: the only condition).

    Returns
    -------
    matplotlib.figure.Figure
        A point per (engine, term) with finite coverage and its 95% Wilson interval
        (inside [0, 1]), for the fixed effects and any term with intervals; the nominal
        level (dashed) and the band ``level +- 1.96 sqrt(level (1 - level) / n)``, n
        replicates, cut to [0, 1] (shaded).
    """
    s, label = select(summary, condition)
    value, mcse = measure_of(s, "coverage")
    finite = np.isfinite(value.values).any(axis=0)
    terms = [
        t for t, f in zip(terms_of(s, fixed=False), finite, strict=True) if f or t in terms_of(s)
    ]
    level, n = float(summary.attrs.get("level", np.nan)), int(s["replicates"].max())
    fig, ax = style.new_figure(height=1.6 + 0.5 * len(terms))
    half = Z * math.sqrt(level * (1 - level) / max(n, 1))  # where a share can fall: [0, 1]
    ax.axvspan(max(level - half, 0.0), min(level + half, 1.0), color=GREY, alpha=0.12, lw=0)
    ax.axvline(level, color=GREY, ls="--", lw=1)
    lo, hi = (b.sel(term=terms) for b in interval_of(s, "coverage"))
    forest(ax, value.sel(term=terms), mcse.sel(term=terms), terms, "coverage", (lo, hi))
    ax.set_xlabel(f"Coverage of {level:.0%} intervals (proportion covering the true value)")
    suptitle(fig, f"Coverage of {level:.0%} intervals (95% Wilson intervals)", label, n)
    band = Line2D([], [], color=GREY, alpha=0.3, lw=8, label=f"Monte Carlo band (n = {n})")
    legend(fig, [*legend_handles(engines_of(s), (f"nominal {level:.0%}", "--")), band])
    return fig


def zip_plot(
    ds: xr.Dataset, *, engine: str, term: str | None = None, condition: str | None = None
) -> Figure:
    """Zip plot of one engine's intervals (Morris, White & Crowther 2019, Fig. 3).

    Parameters
    ----------
    ds : xarray.Dataset
        A results Dataset.
    engine : str
        The engine whose intervals are drawn.
    term : str, optional
        One term (default: a panel per fixed-effect term).
    condition : str, optional
        Condition label (default: the only condition).

    Returns
    -------
    matplotlib.figure.Figure
        Per term, each interval with a finite SE as a segment at the fractional centile
        of ``|estimate - true| / SE``, covering and missing intervals in two colours,
        the truth, the nominal level (dashed) and the coverage's 95% Wilson interval
        (dotted, inside [0, 1]).
    """
    d, label = select(ds, condition)
    color = style.engine_color(engine, engines_of(d, engine))
    terms, level = terms_of(d, term), float(ds.attrs.get("level", np.nan))
    fig, axes = style.new_figure(1, len(terms), height=4.5, squeeze=False, sharey=True)
    for ax, t in zip(axes[0], terms, strict=True):
        x = d.sel(engine=engine, term=t)
        est, se, lo, hi = (x[v].values for v in ("estimate", "std_error", "ci_lower", "ci_upper"))
        theta = float(x["true_value"])
        ok = np.isfinite(est) & np.isfinite(lo) & np.isfinite(hi) & (np.nan_to_num(se) > 0)
        n, lo, hi = int(ok.sum()), lo[ok], hi[ok]
        rank = np.empty(n)
        rank[np.argsort(np.abs(est[ok] - theta) / se[ok], kind="stable")] = np.arange(n)
        centile = 100 * (rank + 0.5) / max(n, 1)  # fractional centile of |z|
        covers = (lo <= theta) & (theta <= hi)
        lw = float(np.clip(180 / max(n, 1), 0.4, 2.5))
        ax.hlines(centile[covers], lo[covers], hi[covers], colors=color, lw=lw)
        ax.hlines(centile[~covers], lo[~covers], hi[~covers], colors=MISS, lw=lw)
        ax.axvline(theta, color=GREY, lw=1.2)
        ax.axhline(100 * level, color=GREY, ls="--", lw=1)
        p = float(covers.mean()) if n else math.nan
        for bound in mnp.wilson_interval(p, n, Z) if n else ():
            ax.axhline(100 * bound, color=GREY, ls=":", lw=1.2)
        ax.set_title(f"{t}: coverage {p:.1%} (n = {n})", fontsize=10)
        ax.set(xlabel=f"{level:.0%} interval for {t}", ylim=(0, 100))
    axes[0, 0].set_ylabel("Fractional centile of |estimate - true| / SE")
    suptitle(fig, f"Zip plot of the {engine} intervals", label)
    handles = [
        Line2D([], [], color=color, lw=2, label=f"{engine}: covers the truth"),
        Line2D([], [], color=MISS, lw=2, label=f"{engine}: misses"),
        Line2D([], [], color=GREY, lw=1.2, label="true value"),
        *legend_handles([], (f"nominal {level:.0%}", "--"), ("coverage, 95% Wilson interval", ":")),
    ]
    legend(fig, handles, ncols=3)
    return fig


def calibration(summary: xr.Dataset, *, condition: str | None = None) -> Figure:
    """ModSE and EmpSE over the analytic true SE, per engine and fixed-effect term.

    Parameters
    ----------
    summary : xarray.Dataset
        Output of :func:`study.analysis.measures.compute_measures`.
    condition : str, optional
        Condition label (default: the only condition).

    Returns
    -------
    matplotlib.figure.Figure
        A panel per fixed-effect term: ModSE/TrueSE, EmpSE/TrueSE (and ModSE/CondSE,
        EmpSE/CondSE when the random effects are fixed) per engine, +-1.96 MCSE, a
        line at 1; a log axis when the ratios span more than a factor 4.
    """
    s, label = select(summary, condition)
    terms, names = terms_of(s), ["modse_truese", "empse_truese"]
    if "cond_se" in s.coords and bool(np.isfinite(s["cond_se"].sel(term=terms)).any()):
        names += ["modse_condse", "empse_condse"]
    pairs = [measure_of(s, m) for m in names]
    fig, axes = style.new_figure(1, len(terms), height=1.9 + 0.45 * len(names), squeeze=False)
    for ax, t in zip(axes[0], terms, strict=True):
        value, mcse = (xr.concat([p[k].sel(term=t) for p in pairs], "row").T for k in (0, 1))
        ax.axvline(1.0, color=GREY, ls="--", lw=1)
        forest(ax, value, mcse, [LABELS[m] for m in names], f"calibration|{t}")
        v = value.values[np.isfinite(value.values) & (value.values > 0)]
        if v.size and v.max() / v.min() > 4:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        log = ", log scale" if ax.get_xscale() == "log" else ""
        ax.set_title(t, fontsize=10)
        ax.set_xlabel(f"Ratio (1 = calibrated){log}")
    for ax in axes[0, 1:]:
        ax.tick_params(labelleft=False)
    suptitle(fig, "Calibration of the SEs against the analytic truth (+-1.96 MCSE)", label)
    legend(fig, legend_handles(engines_of(s), ("1 (calibrated)", "--")))
    return fig


def bias_relerr(summary: xr.Dataset, *, condition: str | None = None) -> Figure:
    """Bias and relative % error of the model SE, per engine and term.

    Parameters
    ----------
    summary : xarray.Dataset
        Output of :func:`study.analysis.measures.compute_measures`.
    condition : str, optional
        Condition label (default: the only condition).

    Returns
    -------
    matplotlib.figure.Figure
        Two forest panels sharing the term axis, +-1.96 MCSE bars and a line at 0.
    """
    s, label = select(summary, condition)
    pairs = [measure_of(s, m) for m in ("bias", "relative_error_model_se")]
    keep = np.isfinite(pairs[0][0].values).any(axis=0)
    terms = [t for t, k in zip(terms_of(s, fixed=False), keep, strict=True) if k]
    fig, axes = style.new_figure(1, 2, height=1.6 + 0.5 * len(terms), sharey=True)
    titles = ("Bias: mean(estimate) - true", "Relative error of the model SE")
    for ax, (value, mcse), title in zip(axes, pairs, titles, strict=True):
        ax.axvline(0.0, color=GREY, ls="--", lw=1)
        forest(ax, value.sel(term=terms), mcse.sel(term=terms), terms, title.split(":")[0])
        ax.set_title(title, fontsize=10)
    if np.nanmax(np.abs(pairs[1][0].sel(term=terms).values), initial=0.0) > 300:  # outliers
        axes[1].set_xscale("symlog", linthresh=100)
        axes[1].xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    axes[0].set_xlabel("Bias (estimate units)")
    axes[1].set_xlabel(
        "100 (ModSE / EmpSE - 1), %"
        + (", symlog scale" if axes[1].get_xscale() == "symlog" else "")
    )
    suptitle(fig, "Bias and relative error of the model SE (+-1.96 MCSE)", label)
    legend(fig, legend_handles(engines_of(s), ("0 (no bias / no error)", "--")))
    return fig
