"""The study figures, in the spirit of rsimsum's ``autoplot``.

Each function takes the results Dataset (``study.run.results.open_results``) or its
summary (:func:`study.analysis.measures.compute_measures`) and returns a Figure made
with :func:`style.new_figure` (object API, no pyplot).  Per-condition figures take
``condition``, a condition label (``None``: the only one); the grid figures need several
conditions.  Every function raises ``ValueError``, naming what is available, for an
unknown condition, engine, term or measure.  Error bars are +-1.96 Monte Carlo SEs;
truth, nominal and reference values are grey lines; each engine has its colour.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from matplotlib import colormaps
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from study.analysis.plots import style

Z = 1.959963984540054  # standard normal 97.5% quantile
_GREY, _MISS = style.TRUTH_COLOR, "#000000"  # truth / reference; zip plot: missing intervals
#: reference value of a measure: a number, or "level" (the nominal level)
_REFERENCE: dict[str, float | str] = {
    **dict.fromkeys(("coverage", "bias_eliminated_coverage", "cond_coverage"), "level"),
    **dict.fromkeys(("modse_truese", "empse_truese", "modse_condse", "empse_condse"), 1.0),
    **dict.fromkeys(("bias", "relative_bias", "cond_bias", "relative_error_model_se"), 0.0),
    **dict.fromkeys(("relative_precision", "bias_variance_scale"), 0.0),
}
_LABELS = {
    "coverage": "Coverage (proportion)",
    "bias": "Bias (estimate units)",
    "relative_error_model_se": "Relative error of ModSE (%)",
    "relative_precision": "Relative precision (%)",
    "modse_truese": "ModSE / TrueSE",
    "empse_truese": "EmpSE / TrueSE",
    "modse_condse": "ModSE / CondSE",
    "empse_condse": "EmpSE / CondSE",
}


def _select(obj: Any, condition: str | None) -> tuple[Any, str]:
    """``obj`` at one condition (dim dropped) and its label."""
    labels = [str(c) for c in np.atleast_1d(obj["condition"].values)]
    if condition is None and len(labels) == 1:
        condition = labels[0]
    if condition not in labels:
        what = "several conditions: pass condition=" if condition is None else repr(condition)
        raise ValueError(f"{what} is not one condition; available: {', '.join(map(repr, labels))}")
    return (obj.sel(condition=condition) if "condition" in obj.dims else obj), condition


def _engines(obj: Any, *check: str) -> list[str]:
    engines = [str(e) for e in obj["engine"].values]
    for name in check:
        if name not in engines:
            raise ValueError(f"engine {name!r} is not in the results; engines present: {engines}")
    return engines


def _terms(obj: Any, term: str | None = None, *, fixed: bool = True) -> list[str]:
    terms, effects = [str(t) for t in obj["term"].values], obj["effect"].values
    if term is not None and term not in terms:
        raise ValueError(f"term {term!r} is not in the results; terms: {terms}")
    keep = [t for t, e in zip(terms, effects, strict=True) if e == "fixed" or not fixed]
    return [term] if term else keep


def _measure(s: xr.Dataset, name: str) -> tuple[xr.DataArray, xr.DataArray]:
    if name not in [str(m) for m in s["measure"].values]:
        raise ValueError(f"the summary lacks measure {name!r}; compute_measures(ds) has all")
    return s["value"].sel(measure=name), s["mcse"].sel(measure=name)


def _label(s: xr.Dataset, measure: str) -> str:
    desc = str(s["description"].sel(measure=measure).item()) if "description" in s.coords else ""
    return _LABELS.get(measure, f"{measure} ({desc})" if desc else measure)


def _title(fig: Figure, what: str, label: str = "", n: int = 0) -> None:
    extra = ", ".join([label] * (label not in ("", "base")) + [f"{n} replicates"] * (n > 0))
    sep = "\n" if len(what) + len(extra) > 75 else " | "
    fig.suptitle(what + (sep + extra if extra else ""), fontsize=11)


def _legend(fig: Figure, handles: Sequence[Any], ncols: int = 4) -> None:
    fig.legend(handles=list(handles), loc="outside lower center", ncols=min(len(handles), ncols))


def _handles(engines: Sequence[str], *refs: tuple[str, str], marker: str = "o") -> list[Any]:
    """Legend entries: a marker per engine, then ``(label, linestyle)`` grey lines."""
    dots = [Line2D([], [], marker=marker, ls="", label=e) for e in engines]
    for dot, e in zip(dots, engines, strict=True):
        dot.set_color(style.engine_color(e, engines))
    return dots + [Line2D([], [], color=_GREY, ls=ls, label=lab) for lab, ls in refs]


def _forest(ax: Any, value: Any, mcse: Any, rows: Sequence[str], gid: str) -> None:
    """Horizontal forest plot of ``value`` (engine x row), first row on top, engines
    dodged; one point artist (gid ``gid|engine|row``) per finite value."""
    engines = _engines(value)
    offsets = np.linspace(0.18, -0.18, len(engines)) if len(engines) > 1 else [0.0]
    for off, eng in zip(offsets, engines, strict=True):
        v, m = value.sel(engine=eng).values, mcse.sel(engine=eng).values
        kw = {"fmt": "o", "ms": 5, "capsize": 2, "color": style.engine_color(eng, engines)}
        for i, row in enumerate(rows):
            if math.isfinite(v[i]):
                err = [[Z * m[i]]] if math.isfinite(m[i]) else None
                ax.errorbar([v[i]], [-i + off], xerr=err, **kw).lines[0].set_gid(
                    f"{gid}|{eng}|{row}"
                )
    ax.set_yticks(-np.arange(len(rows)), rows)
    ax.set_ylim(-len(rows) + 0.5, 0.5)
    ax.grid(axis="x", alpha=0.3)


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
        A point (+-1.96 MCSE) per (engine, term) with finite coverage, for the fixed
        effects and any term with intervals; the nominal level (dashed) and the band
        ``level +- 1.96 sqrt(level (1 - level) / n)``, n replicates (shaded).
    """
    s, label = _select(summary, condition)
    value, mcse = _measure(s, "coverage")
    finite = np.isfinite(value.values).any(axis=0)
    terms = [t for t, f in zip(_terms(s, fixed=False), finite, strict=True) if f or t in _terms(s)]
    level, n = float(summary.attrs.get("level", np.nan)), int(s["replicates"].max())
    fig, ax = style.new_figure(height=1.6 + 0.5 * len(terms))
    half = Z * math.sqrt(level * (1 - level) / max(n, 1))
    ax.axvspan(level - half, level + half, color=_GREY, alpha=0.12, lw=0)
    ax.axvline(level, color=_GREY, ls="--", lw=1)
    _forest(ax, value.sel(term=terms), mcse.sel(term=terms), terms, "coverage")
    ax.set_xlabel(f"Coverage of {level:.0%} intervals (proportion covering the true value)")
    _title(fig, f"Coverage of {level:.0%} intervals (+-1.96 MCSE)", label, n)
    band = Line2D([], [], color=_GREY, alpha=0.3, lw=8, label=f"Monte Carlo band (n = {n})")
    _legend(fig, [*_handles(_engines(s), (f"nominal {level:.0%}", "--")), band])
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
        the truth, the nominal level (dashed) and coverage +-1.96 MCSE (dotted).
    """
    d, label = _select(ds, condition)
    color = style.engine_color(engine, _engines(d, engine))
    terms, level = _terms(d, term), float(ds.attrs.get("level", np.nan))
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
        ax.hlines(centile[~covers], lo[~covers], hi[~covers], colors=_MISS, lw=lw)
        ax.axvline(theta, color=_GREY, lw=1.2)
        ax.axhline(100 * level, color=_GREY, ls="--", lw=1)
        p = float(covers.mean()) if n else math.nan
        half = Z * math.sqrt(p * (1 - p) / n) if n else math.nan
        for bound in (p - half, p + half) if n else ():
            ax.axhline(100 * bound, color=_GREY, ls=":", lw=1.2)
        ax.set_title(f"{t}: coverage {p:.1%} (n = {n})", fontsize=10)
        ax.set(xlabel=f"{level:.0%} interval for {t}", ylim=(0, 100))
    axes[0, 0].set_ylabel("Fractional centile of |estimate - true| / SE")
    _title(fig, f"Zip plot of the {engine} intervals", label)
    handles = [
        Line2D([], [], color=color, lw=2, label=f"{engine}: covers the truth"),
        Line2D([], [], color=_MISS, lw=2, label=f"{engine}: misses"),
        Line2D([], [], color=_GREY, lw=1.2, label="true value"),
        *_handles([], (f"nominal {level:.0%}", "--"), ("coverage +-1.96 MCSE", ":")),
    ]
    _legend(fig, handles, ncols=3)
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
    s, label = _select(summary, condition)
    terms, names = _terms(s), ["modse_truese", "empse_truese"]
    if "cond_se" in s.coords and bool(np.isfinite(s["cond_se"].sel(term=terms)).any()):
        names += ["modse_condse", "empse_condse"]
    pairs = [_measure(s, m) for m in names]
    fig, axes = style.new_figure(1, len(terms), height=1.9 + 0.45 * len(names), squeeze=False)
    for ax, t in zip(axes[0], terms, strict=True):
        value, mcse = (xr.concat([p[k].sel(term=t) for p in pairs], "row").T for k in (0, 1))
        ax.axvline(1.0, color=_GREY, ls="--", lw=1)
        _forest(ax, value, mcse, [_LABELS[m] for m in names], f"calibration|{t}")
        v = value.values[np.isfinite(value.values) & (value.values > 0)]
        if v.size and v.max() / v.min() > 4:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        log = ", log scale" if ax.get_xscale() == "log" else ""
        ax.set(title=t, xlabel=f"Ratio (1 = calibrated){log}")
    for ax in axes[0, 1:]:
        ax.tick_params(labelleft=False)
    _title(fig, "Calibration of the SEs against the analytic truth (+-1.96 MCSE)", label)
    _legend(fig, _handles(_engines(s), ("1 (calibrated)", "--")))
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
    s, label = _select(summary, condition)
    pairs = [_measure(s, m) for m in ("bias", "relative_error_model_se")]
    keep = np.isfinite(pairs[0][0].values).any(axis=0)
    terms = [t for t, k in zip(_terms(s, fixed=False), keep, strict=True) if k]
    fig, axes = style.new_figure(1, 2, height=1.6 + 0.5 * len(terms), sharey=True)
    titles = ("Bias: mean(estimate) - true", "Relative error of the model SE")
    for ax, (value, mcse), title in zip(axes, pairs, titles, strict=True):
        ax.axvline(0.0, color=_GREY, ls="--", lw=1)
        _forest(ax, value.sel(term=terms), mcse.sel(term=terms), terms, title.split(":")[0])
        ax.set_title(title, fontsize=10)
    axes[0].set_xlabel("Bias (estimate units)")
    axes[1].set_xlabel("100 (ModSE / EmpSE - 1), %")
    _title(fig, "Bias and relative error of the model SE (+-1.96 MCSE)", label)
    _legend(fig, _handles(_engines(s), ("0 (no bias / no error)", "--")))
    return fig


def engines_compared(
    ds: xr.Dataset,
    *,
    a: str = "reml",
    b: str = "bayes",
    term: str | None = None,
    condition: str | None = None,
) -> Figure:
    """Engine ``b`` against engine ``a``, replicate by replicate.

    Parameters
    ----------
    ds : xarray.Dataset
        A results Dataset.
    a, b : str
        The engines compared (differences are ``b - a``); ``ValueError`` naming the
        engines present if either is not in ``ds``.
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
    d, label = _select(ds, condition)
    engines = _engines(d, a, b)
    ca, cb = style.engine_color(a, engines), style.engine_color(b, engines)
    terms = _terms(d, term)
    fig, axes = style.new_figure(len(terms), 3, height=0.9 + 2.6 * len(terms), squeeze=False)
    dots = {"s": 9, "color": cb, "alpha": 0.6, "lw": 0}
    for row, t in zip(axes, terms, strict=True):
        x = d.sel(term=t)
        for ax, var, what in zip(row, ("estimate", "std_error"), ("Estimate", "SE"), strict=False):
            u, v = x[var].sel(engine=a).values, x[var].sel(engine=b).values
            ok = np.isfinite(u) & np.isfinite(v)
            ax.scatter(u[ok], v[ok], **dots)
            start = float(np.concatenate([u[ok], v[ok]]).min()) if ok.any() else 0.0
            ax.axline((start, start), slope=1, color=_GREY, lw=1)
            true = float(x["true_value" if var == "estimate" else "true_se"])
            if math.isfinite(true):
                ax.axvline(true, color=_GREY, ls=":", lw=1)
                ax.axhline(true, color=_GREY, ls=":", lw=1)
            ax.set_xlabel(f"{a} {what.lower()}", color=ca)
            ax.set_ylabel(f"{b} {what.lower()}", color=cb)
            ax.set_title(f"{what}s of {t}", fontsize=10)
        u, v = x["estimate"].sel(engine=a).values, x["estimate"].sel(engine=b).values
        ok = np.isfinite(u) & np.isfinite(v)
        diff, ax = (v - u)[ok], row[2]
        ax.scatter(((u + v) / 2)[ok], diff, **dots)
        ax.axhline(0, color=_GREY, ls=":", lw=1)
        if diff.size > 1:
            md, sd = diff.mean(), diff.std(ddof=1)
            ax.axhline(md, color=cb, lw=1.2)
            for lim in (md - Z * sd, md + Z * sd):
                ax.axhline(lim, color=cb, ls="--", lw=1)
        ax.set(xlabel="mean of the two estimates", ylabel=f"{b} - {a} estimate")
        ax.set_title(f"Bland-Altman: {t}", fontsize=10)
    _title(fig, f"{b} against {a}, replicate by replicate", label, int(d.sizes["replicate"]))
    handles = [
        Line2D([], [], color=cb, marker="o", ls="", label=f"replicate ({b} vs {a})"),
        *_handles([], ("identity (y = x)", "-"), ("truth / no difference", ":")),
        Line2D([], [], color=cb, label="mean difference"),
        Line2D([], [], color=cb, ls="--", label="mean difference +-1.96 SD"),
    ]
    _legend(fig, handles, ncols=3)
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
    d, label = _select(ds, condition)
    terms, engines = _terms(d, fixed=False), _engines(d)
    has_cond = "cond_value" in d.coords and bool(np.isfinite(d["cond_value"]).any())
    ncols = min(3, len(terms))
    nrows = -(-len(terms) // ncols)
    fig, axes = style.new_figure(nrows, ncols, height=0.9 + 2.4 * nrows, squeeze=False)
    for ax, t in zip(axes.flat, terms, strict=False):
        est = d["estimate"].sel(term=t)
        finite = est.values[np.isfinite(est.values)]
        bins = np.histogram_bin_edges(finite, int(np.clip(np.sqrt(finite.size / 2), 8, 40)))
        for eng in engines if finite.size else ():
            x, color = est.sel(engine=eng).values, style.engine_color(eng, engines)
            ax.hist(x[np.isfinite(x)], bins, histtype="stepfilled", color=color, alpha=0.15)
            ax.hist(x[np.isfinite(x)], bins, histtype="step", color=color, lw=1.5)
        ax.axvline(float(d["true_value"].sel(term=t)), color=_GREY, lw=1.5)
        if has_cond:
            ax.axvline(float(d["cond_value"].sel(term=t)), color=_GREY, ls="--", lw=1.5)
        ax.set(title=t, xlabel="estimate")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[:, 0]:
        ax.set_ylabel("replicates")
    for ax in axes.flat[len(terms) :]:
        ax.set_visible(False)
    _title(fig, "Distribution of the estimates", label, int(d.sizes["replicate"]))
    refs = [("true value", "-")] + [("true value given the fixed u", "--")] * has_cond
    _legend(fig, _handles(engines, *refs, marker="s"))
    return fig


def _key(v: Any) -> tuple[int, float, str]:
    """Sort and identity key of a factor level: numbers by value, else as text."""
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(v))


def _show(k: tuple[int, float, str]) -> str:
    return f"{k[1]:g}" if k[0] == 0 else k[2]


def _grid(summary: xr.Dataset, measure: str, term: str) -> tuple[Any, Any, list[str], Any]:
    """``value``, ``mcse`` of ``term`` over (condition, engine), the factors that vary
    (none if they do not tell the conditions apart) and each condition's factor keys
    (its position when there are no factors); refuses a single condition."""
    n = summary.sizes.get("condition", 1)
    if n < 2:
        raise ValueError(f"grid figures need several conditions; this summary has {n}")
    _terms(summary, term)
    value, mcse = (x.sel(term=term).transpose("condition", ...) for x in _measure(summary, measure))
    if "factors" in summary.attrs:
        names = [str(f) for f in json.loads(summary.attrs["factors"])]
    else:
        names = [str(c) for c, v in summary.coords.items() if v.dims == ("condition",)]
    names = [f for f in names if f in summary.coords and f not in ("condition", "condition_id")]
    factors = [f for f in names if len({_key(v) for v in summary[f].values}) > 1]
    keys = [tuple(_key(summary[f].values[i]) for f in factors) for i in range(n)]
    if len(set(keys)) < n:
        factors, keys = [], [((0, float(i), ""),) for i in range(n)]
    return value, mcse, factors, keys


def grid_lines(summary: xr.Dataset, measure: str = "coverage", *, term: str = "X") -> Figure:
    """A measure against the factors of a grid of conditions, a line per engine.

    Parameters
    ----------
    summary : xarray.Dataset
        Output of :func:`study.analysis.measures.compute_measures`, several conditions
        (``ValueError`` for one).
    measure : str
        A measure of the summary (default ``coverage``).
    term : str
        The term (default ``X``).

    Returns
    -------
    matplotlib.figure.Figure
        The measure (+-1.96 MCSE) against the first factor(s), in lexicographic order;
        with two or more factors a panel per level of the last.  A reference line where
        one applies (coverage: nominal level, with each condition's Monte Carlo band;
        SE ratios: 1; bias and % errors: 0).
    """
    value, mcse, factors, keys = _grid(summary, measure, term)
    engines, n = _engines(summary), summary.sizes["condition"]
    nx = max(len(factors) - 1, 1) if factors else 0  # factors along x; the next facets
    xkeys, fkeys = [k[: nx or 1] for k in keys], [k[nx:] for k in keys]
    xs, fs = sorted(set(xkeys)), sorted(set(fkeys))
    ncols = min(len(fs), 4)
    nrows = -(-len(fs) // ncols)
    fig, axes = style.new_figure(nrows, ncols, height=1.4 + 3 * nrows, squeeze=False, sharey=True)
    level, kind = float(summary.attrs.get("level", np.nan)), _REFERENCE.get(measure)
    ref = level if kind == "level" else kind
    reps = summary["replicates"].max("engine").values
    offsets = np.linspace(-0.08, 0.08, len(engines)) if len(engines) > 1 else [0.0]
    labels = [str(c) for c in summary["condition"].values]
    ticks = ["\n".join(map(_show, k)) for k in xs]
    if not factors:
        ticks = [labels[int(k[0][1])].replace(", ", "\n") for k in xs]
    for ax, fv in zip(axes.flat, fs, strict=False):
        idx = sorted((i for i in range(n) if fkeys[i] == fv), key=lambda i: xkeys[i])
        pos = np.array([xs.index(xkeys[i]) for i in idx], dtype=float)
        for p, i in zip(pos, idx, strict=True) if kind == "level" else ():  # Monte Carlo band
            h = Z * math.sqrt(level * (1 - level) / max(int(reps[i]), 1))
            ax.fill_between([p - 0.4, p + 0.4], level - h, level + h, color=_GREY, alpha=0.12, lw=0)
        if ref is not None:
            ax.axhline(float(ref), color=_GREY, ls="--", lw=1)
        for off, eng in zip(offsets, engines, strict=True):
            v, m = value.sel(engine=eng).values[idx], mcse.sel(engine=eng).values[idx]
            kw = {"marker": "o", "ms": 4, "capsize": 2, "color": style.engine_color(eng, engines)}
            if np.isfinite(v).any():
                ax.errorbar(pos + off, v, yerr=Z * np.nan_to_num(m), **kw)
        ax.set_xticks(range(len(xs)), ticks, rotation=30 if len(xs) > 6 else 0)
        ax.set_xlabel(" / ".join(factors[:nx]) or "condition")
        ax.grid(axis="y", alpha=0.3)
        if len(factors) > 1:
            ax.set_title(f"{factors[-1]} = {_show(fv[0])}", fontsize=10)
    for ax in axes[:, 0]:
        ax.set_ylabel(_label(summary, measure))
    for ax in axes.flat[len(fs) :]:
        ax.set_visible(False)
    _title(fig, f"{_label(summary, measure).split(' (')[0]} of {term} by condition (+-1.96 MCSE)")
    refs = (
        [] if ref is None else [(f"nominal {level:.0%}" if kind == "level" else f"{ref:g}", "--")]
    )
    _legend(fig, _handles(engines, *refs))
    return fig


def _fmt(v: float, m: float) -> str:
    """``value (mcse)`` with the decimals the MCSE supports."""
    if not math.isfinite(v):
        return ""
    if not math.isfinite(m):
        return f"{v:.3g}"
    d = int(np.clip(1 - math.floor(math.log10(m)), 0, 6)) if m > 0 else 3
    return f"{v:.{d}f} ({m:.{d}f})"


def grid_heatmap(summary: xr.Dataset, measure: str = "coverage", *, term: str = "X") -> Figure:
    """Heat map of a measure by condition and engine, cells annotated ``value (mcse)``.

    Parameters
    ----------
    summary : xarray.Dataset
        Output of :func:`study.analysis.measures.compute_measures`, several conditions
        (``ValueError`` for one).
    measure : str
        A measure of the summary (default ``coverage``).
    term : str
        The term (default ``X``).

    Returns
    -------
    matplotlib.figure.Figure
        With two factors a panel per engine on the factors' 2-D grid; else a row per
        condition and a column per engine.  A diverging scale centred on the reference
        value where one applies (coverage: the nominal level), else viridis.
    """
    value, mcse, factors, keys = _grid(summary, measure, term)
    engines = _engines(summary)
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
    kind, norm = _REFERENCE.get(measure), Normalize(lo, hi if hi > lo else lo + 1)
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
    fig.colorbar(im, ax=axes[0].tolist(), label=_label(summary, measure), shrink=0.9)
    _title(fig, f"{_label(summary, measure).split(' (')[0]} of {term}: value (MCSE) by condition")
    return fig
