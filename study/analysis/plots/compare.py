"""Engines and estimates, replicate by replicate: one engine against another (and
the Bland-Altman form), and the distribution of the estimates with the truth."""

from __future__ import annotations

import math

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from study.analysis.plots import style
from study.analysis.plots.common import (
    GREY,
    Z,
    engines_of,
    legend,
    legend_handles,
    select,
    suptitle,
    terms_of,
)


def engines_compared(
    ds: xr.Dataset,
    *,
    a: str | None = None,
    b: str | None = None,
    term: str | None = None,
    condition: str | None = None,
) -> Figure:
    """Engine ``b`` against engine ``a``, replicate by replicate.

    Parameters
    ----------
    ds : xarray.Dataset
        A results Dataset.
    a, b : str, optional
        The engines compared (differences are ``b - a``; default: the run's first two);
        ``ValueError`` naming the engines present if either is not in ``ds``.
    term : str, optional
        One term (default: a row per fixed-effect term).
    condition : str, optional
        Condition label (default: the only condition).

    Returns
    -------
    matplotlib.figure.Figure
        Per term: estimates and SEs of ``b`` against ``a`` with the identity line and
        the truth, and the Bland-Altman plot of the estimates (difference against
        mean, mean difference, +-1.96 SD limits).
    """
    d, label = select(ds, condition)
    present = [str(e) for e in d["engine"].values]
    if a is None or b is None:
        if len(present) < 2:
            raise ValueError(f"engines present: {present}; comparing engines needs two")
        a, b = (a or present[0]), (b or next(e for e in present if e != (a or present[0])))
    engines = engines_of(d, a, b)
    ca, cb = style.engine_color(a, engines), style.engine_color(b, engines)
    terms = terms_of(d, term)
    fig, axes = style.new_figure(len(terms), 3, height=0.9 + 2.6 * len(terms), squeeze=False)
    dots = {"s": 9, "color": cb, "alpha": 0.6 if d.sizes["replicate"] <= 200 else 0.35, "lw": 0}
    for row, t in zip(axes, terms, strict=True):
        x = d.sel(term=t)
        for ax, var, what in zip(row, ("estimate", "std_error"), ("estimate", "SE"), strict=False):
            u, v = x[var].sel(engine=a).values, x[var].sel(engine=b).values
            ok = np.isfinite(u) & np.isfinite(v)
            ax.scatter(u[ok], v[ok], **dots)
            start = float(np.concatenate([u[ok], v[ok]]).min()) if ok.any() else 0.0
            ax.axline((start, start), slope=1, color=GREY, lw=1)
            for truth, ls in (("true", ":"), ("cond", "--")):  # marginal; given fixed u
                true = float(x[f"{truth}_{'value' if var == 'estimate' else 'se'}"])
                if math.isfinite(true):
                    ax.axvline(true, color=GREY, ls=ls, lw=1)
                    ax.axhline(true, color=GREY, ls=ls, lw=1)
            ax.set_xlabel(f"{a} {what}", color=ca)
            ax.set_ylabel(f"{b} {what}", color=cb)
            ax.set_title(f"{what[0].upper()}{what[1:]}s of {t}", fontsize=10)
        u, v = x["estimate"].sel(engine=a).values, x["estimate"].sel(engine=b).values
        ok = np.isfinite(u) & np.isfinite(v)
        diff, ax = (v - u)[ok], row[2]
        ax.scatter(((u + v) / 2)[ok], diff, **dots)
        ax.axhline(0, color=GREY, ls=":", lw=1)
        if diff.size > 1:
            md, sd = diff.mean(), diff.std(ddof=1)
            ax.axhline(md, color=cb, lw=1.2)
            for lim in (md - Z * sd, md + Z * sd):
                ax.axhline(lim, color=cb, ls="--", lw=1)
        ax.set(xlabel="mean of the two estimates", ylabel=f"{b} - {a} estimate")
        ax.set_title(f"Bland-Altman: {t}", fontsize=10)
    suptitle(fig, f"{b} against {a}, replicate by replicate", label, int(d.sizes["replicate"]))
    handles = [
        Line2D([], [], color=cb, marker="o", ls="", label=f"replicate ({b} vs {a})"),
        *legend_handles([], ("identity (y = x)", "-"), ("truth / no difference", ":")),
        *legend_handles(
            [], *[("truth given the fixed u", "--")] * bool(np.isfinite(d["cond_se"]).any())
        ),
        Line2D([], [], color=cb, label="mean difference"),
        Line2D([], [], color=cb, ls="--", label="mean difference +-1.96 SD"),
    ]
    legend(fig, handles, ncols=3)
    return fig


def estimates(ds: xr.Dataset, *, condition: str | None = None) -> Figure:
    """Histograms of the estimates per engine for every term, with the truth.

    Parameters
    ----------
    ds : xarray.Dataset
        A results Dataset.
    condition : str, optional
        Condition label (default: the only condition).

    Returns
    -------
    matplotlib.figure.Figure
        A panel per term, a histogram per engine (shared bins), the true value (solid)
        and, when the random effects are fixed, the conditional truth (dashed).
    """
    d, label = select(ds, condition)
    terms, engines = terms_of(d, fixed=False), engines_of(d)
    has_cond = "cond_value" in d.coords and bool(np.isfinite(d["cond_value"]).any())
    ncols = min(3, len(terms))
    nrows = -(-len(terms) // ncols)
    fig, axes = style.new_figure(nrows, ncols, height=0.9 + 2.4 * nrows, squeeze=False)
    for ax, t in zip(axes.flat, terms, strict=False):
        est = d["estimate"].sel(term=t)
        finite = est.values[np.isfinite(est.values)]
        truths = [float(d["true_value"].sel(term=t))]
        if has_cond and np.isfinite(d["cond_value"].sel(term=t)):
            truths.append(float(d["cond_value"].sel(term=t)))
        outside = 0
        if finite.size:
            # the central 99% of the estimates and the truth: a few runaway fits (a
            # stuck chain at sd = 9,000) must not squash every histogram into one bar
            lo, hi = np.quantile(finite, [0.005, 0.995])
            lo, hi = min(lo, *truths), max(hi, *truths)
            pad = 0.05 * (hi - lo) or 0.05 * max(abs(hi), 1.0)
            lo, hi = lo - pad, hi + pad
            outside = int(((finite < lo) | (finite > hi)).sum())
            bins = np.linspace(lo, hi, int(np.clip(np.sqrt(finite.size / 2), 8, 40)) + 1)
        for eng in engines if finite.size else ():
            x, color = est.sel(engine=eng).values, style.engine_color(eng, engines)
            x = np.clip(x[np.isfinite(x)], lo, hi)
            x = x[(x > lo) & (x < hi)]  # values beyond the range are counted, not drawn
            ax.hist(x, bins, histtype="stepfilled", color=color, alpha=0.15)
            ax.hist(x, bins, histtype="step", color=color, lw=1.5)
        ax.axvline(truths[0], color=GREY, lw=1.5)
        if len(truths) > 1:
            ax.axvline(truths[1], color=GREY, ls="--", lw=1.5)
        ax.set_title(t, fontsize=10)
        ax.set_xlabel("estimate" + (f" ({outside} beyond the axis)" if outside else ""))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[:, 0]:
        ax.set_ylabel("replicates")
    for ax in axes.flat[len(terms) :]:
        ax.set_visible(False)
    suptitle(fig, "Distribution of the estimates", label, int(d.sizes["replicate"]))
    refs = [("true value", "-")] + [("true value given the fixed u", "--")] * has_cond
    legend(fig, legend_handles(engines, *refs, marker="s"))
    return fig
