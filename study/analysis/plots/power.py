"""The figure of a power study: power and type I error of each test against a design
factor, the target power, alpha and its Monte Carlo band.

It reads the summary of the ``power`` study kind: ``rejection``, ``mcse``, ``lower``,
``upper`` (95% Wilson interval) and ``n`` over (condition, hypothesis, test, term), the
hypotheses ``alternative`` (power) and ``null`` (type I error), a coordinate on
``condition`` per design factor (named in ``attrs["factors"]``, a JSON list), the coordinates
``test_engine`` and ``test_method`` on ``test``, and ``attrs`` ``alpha`` and ``target``.
Each test keeps its look in both panels and every row: the colour of its engine
(:func:`style.engine_color`) and a marker and line style of its method.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from models.structure import INTERCEPT
from study.analysis.plots import style
from study.analysis.plots.common import GREY, Z, suptitle

#: data variables and dimensions a power summary has
_VARS = ("rejection", "lower", "upper", "n")
_DIMS = ("condition", "hypothesis", "test", "term")
#: marker and line style of each test method, the same for every engine
METHOD_STYLES: dict[str, tuple[str, Any]] = {
    "z": ("o", "-"),
    "t": ("s", "--"),
    "satterthwaite": ("^", "-."),
    "kenward-roger": ("D", ":"),
    "lrt": ("v", (0, (6, 2, 1, 2, 1, 2))),
    "wald": ("P", "-"),
    "interval": ("X", "--"),
    "sign": ("*", "-."),
}
#: the most tests drawn with shaded Wilson bands; more get bars (bands would pile up)
MAX_BANDS = 8
_EXTRA_STYLES: tuple[tuple[str, Any], ...] = (
    ("h", ":"),
    ("<", "-"),
    (">", "--"),
    ("p", "-."),
    ("d", ":"),
)


def method_style(method: str, methods: Sequence[str] = ()) -> tuple[str, Any]:
    """Marker and line style of a test method: fixed for the known methods, others in
    list order (as :func:`style.engine_color` colours engines)."""
    if method in METHOD_STYLES:
        return METHOD_STYLES[method]
    others = [m for m in methods if m not in METHOD_STYLES]
    i = others.index(method) if method in others else 0
    return _EXTRA_STYLES[i % len(_EXTRA_STYLES)]


def _is_number(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _show(v: Any) -> str:
    return f"{float(v):g}" if _is_number(v) else str(v)


def _levels(values: Sequence[Any]) -> list[Any]:
    """The distinct levels of a factor, numbers by value, else as text."""
    if all(_is_number(v) for v in values):
        return sorted({float(v) for v in values})
    return sorted({str(v) for v in values})


def _level(v: Any, numeric: bool) -> Any:
    return float(v) if numeric else str(v)


@dataclass(frozen=True)
class _Layout:
    """What the figure draws: the term, the factor along x (``None``: the tests along
    x), the factors whose combinations make the rows, and the tests."""

    term: str
    factor: str | None
    facets: list[str]
    tests: list[str]
    engines: list[str]
    methods: list[str]

    def engine(self, summary: xr.Dataset, test: str) -> str:
        return str(summary["test_engine"].sel(test=test).item())

    def method(self, summary: xr.Dataset, test: str) -> str:
        return str(summary["test_method"].sel(test=test).item())


def factors_of(summary: xr.Dataset) -> list[str]:
    """The design factors of a power summary (``attrs["factors"]``, JSON list)."""
    raw = summary.attrs.get("factors", "[]")
    names = json.loads(raw) if isinstance(raw, str) else list(raw)
    return [str(f) for f in names]


def _layout(summary: xr.Dataset, factor: str | None, term: str | None) -> _Layout:
    missing = [d for d in _DIMS if d not in summary.dims] + [v for v in _VARS if v not in summary]
    if missing:
        raise ValueError(
            f"not a power summary: it lacks {missing}; pass the summary of a study of kind "
            "'power' (dims condition, hypothesis, test, term; rejection, lower, upper, n)"
        )
    hyps = {str(h) for h in summary["hypothesis"].values}
    if not {"alternative", "null"} <= hyps:
        raise ValueError(
            f"a power summary needs hypotheses 'alternative' and 'null'; it has {sorted(hyps)}"
        )
    terms = [str(t) for t in summary["term"].values]
    if term is None:
        slopes = [t for t in terms if t != INTERCEPT]
        term = (slopes or terms)[0]
    elif term not in terms:
        raise ValueError(f"term {term!r} is not in the summary: pass term= one of {terms}")
    names = factors_of(summary)
    if factor is not None and factor not in names:
        raise ValueError(
            f"factor {factor!r} is not a design factor of this study: pass factor= one of "
            f"{names}" + ("" if names else " (none: leave factor=None, tests go along x)")
        )
    absent = [f for f in names if f not in summary.coords]
    if absent:
        raise ValueError(f"attrs['factors'] names {absent}, not coordinates of the summary")
    counts = {f: len(_levels(list(np.atleast_1d(summary[f].values)))) for f in names}
    if factor is None:
        varying = [f for f in names if counts[f] > 1]
        factor = max(varying, key=lambda f: counts[f]) if varying else None  # first on ties
    facets = [f for f in names if f != factor and counts[f] > 1]
    tests = [str(t) for t in summary["test"].values]
    engines = list(dict.fromkeys(str(e) for e in summary["test_engine"].values))
    methods = list(dict.fromkeys(str(m) for m in summary["test_method"].values))
    return _Layout(term, factor, facets, tests, engines, methods)


def _rows(summary: xr.Dataset, lay: _Layout) -> list[tuple[str, list[int]]]:
    """(title, condition indices sorted along x) of each row of panels."""
    n = summary.sizes["condition"]
    labels = [str(c) for c in np.atleast_1d(summary["condition"].values)]
    if lay.factor is None and not lay.facets:  # tests along x: a row per condition
        return [("" if n == 1 else labels[i], [i]) for i in range(n)]
    numeric = {
        f: all(_is_number(v) for v in np.atleast_1d(summary[f].values))
        for f in [*lay.facets, *([lay.factor] if lay.factor else [])]
    }

    def value(f: str, i: int) -> Any:
        return _level(np.atleast_1d(summary[f].values)[i], numeric[f])

    combos: dict[tuple[Any, ...], list[int]] = {}
    for i in range(n):
        combos.setdefault(tuple(value(f, i) for f in lay.facets), []).append(i)
    rows, along = [], lay.factor
    for key in sorted(combos):
        idx = combos[key]
        if along is not None:
            idx = sorted(idx, key=lambda i: value(along, i))
        title = ", ".join(f"{f} = {_show(v)}" for f, v in zip(lay.facets, key, strict=True))
        rows.append((title, idx))
    return rows


def _typical_n(summary: xr.Dataset, term: str) -> int:
    """The typical replicate count of the null hypothesis: the median of the positive
    counts (0 when there is none)."""
    n = np.asarray(summary["n"].sel(hypothesis="null", term=term).values, dtype=float)
    n = n[np.isfinite(n) & (n > 0)]
    return int(np.median(n)) if n.size else 0


def _legend_columns(labels: Sequence[str], width: float) -> int:
    """The most legend columns whose entries fit the figure's width (inches) at the small
    font; matplotlib fills a column before the next, each as wide as its longest label."""
    for ncols in range(len(labels), 1, -1):
        nrows = -(-len(labels) // ncols)
        cols = [labels[i : i + nrows] for i in range(0, len(labels), nrows)]
        if (
            sum(0.75 + 0.066 * max(len(w) for s in c for w in s.split("\n")) for c in cols)
            <= width - 0.4
        ):
            return ncols
    return 1


def _positions(summary: xr.Dataset, factor: str) -> tuple[bool, list[Any], np.ndarray]:
    """Whether ``factor`` is numeric, its sorted levels, and each condition's x: its
    value (numeric) or its level's position (else)."""
    values = list(np.atleast_1d(summary[factor].values))
    levels = _levels(values)
    numeric = all(_is_number(v) for v in values)
    x = [float(v) if numeric else float(levels.index(str(v))) for v in values]
    return numeric, levels, np.asarray(x)


def power_figure(
    summary: xr.Dataset, *, factor: str | None = None, term: str | None = None
) -> Figure:
    """Power and type I error of every test of one term against a design factor.

    Parameters
    ----------
    summary : xarray.Dataset
        The summary of a study of kind ``power`` (see the module docstring).
    factor : str, optional
        The design factor along x, one of ``attrs["factors"]`` (default: the one with
        the most levels; none: the tests along x).  ``ValueError`` for another name.
    term : str, optional
        The fixed effect tested (default: the first term other than the intercept).
        ``ValueError`` for a term not in the summary.

    Returns
    -------
    matplotlib.figure.Figure
        Left, power (hypothesis ``alternative``); right, type I error (``null``); a
        line with markers per test (colour: its engine; marker and line style: its
        method; gid ``power|<test>`` / ``type1|<test>``), dodged a little along x, with
        its 95% Wilson interval: a shaded band (gid ``power-band|<test>``) for up to
        :data:`MAX_BANDS` tests, else bars, and bars when the tests are along x.  A
        numeric x axis for a numeric factor.  A dashed line at the target power (gid
        ``target``), one at alpha (gid ``alpha``) in the grey band
        ``alpha +- 1.96 sqrt(alpha (1 - alpha) / n)`` (gid ``mc-band``, n the median
        replicate count) in which a correct test's type I error falls 95% of the time.
        A row of the two panels per combination of the other factors that vary, titled
        with their values; one legend below.  A test without a valid rejection rate
        anywhere is listed as such and not drawn.
    """
    lay = _layout(summary, factor, term)
    rows = _rows(summary, lay)
    alpha, target = float(summary.attrs["alpha"]), float(summary.attrs["target"])
    sel = summary.sel(term=lay.term)
    n_mc = _typical_n(summary, lay.term)
    finite = np.isfinite(np.asarray(sel["rejection"].transpose("test", ...).values, dtype=float))
    drawn = [t for t, ok in zip(lay.tests, finite, strict=True) if ok.any()]
    levels: list[Any] = []
    if lay.factor is None:  # the tests along x, bars
        numeric, cond_x, gap = False, np.zeros(summary.sizes["condition"]), 1.0
    else:
        numeric, levels, cond_x = _positions(summary, lay.factor)
        gap = float(np.min(np.diff(levels))) if numeric and len(levels) > 1 else 1.0
    bands = lay.factor is not None and len(drawn) <= MAX_BANDS
    spread = 0.0 if lay.factor is None else (0.2 if bands else 0.4) * gap
    offsets = dict(zip(drawn, np.linspace(-spread / 2, spread / 2, len(drawn)), strict=True))
    shade = 0.22 / math.sqrt(max(len(drawn), 1))
    interval = "95% Wilson band" if bands else "95% Wilson interval"

    labels = [t if t in drawn else f"{t} (no valid test)" for t in lay.tests]
    refs = [f"target {target:g}", f"alpha {alpha:g}"]
    if n_mc:
        refs.append(f"alpha +- 1.96 MCSE (n = {n_mc}):\na correct test falls here 95% of the time")
    width = style.WIDTH + (1.0 if len(lay.tests) > 12 else 0.0)
    ncols = _legend_columns([*labels, *refs], width)
    legend_rows = -(-(len(labels) + len(refs)) // ncols)
    ticks = 1.0 if lay.factor is None else 0.0  # room for rotated test names
    height = 1.0 + (3.0 + ticks) * len(rows) + 0.2 * legend_rows
    fig, axes = style.new_figure(len(rows), 2, height=height, width=width, squeeze=False)
    top = float(np.nanmax(np.asarray(sel["upper"].sel(hypothesis="null"), float), initial=0.0))
    for r, (title, idx) in enumerate(rows):
        panels = zip(axes[r], ("alternative", "null"), ("power", "type1"), strict=True)
        for ax, hyp, gid in panels:
            h = sel.sel(hypothesis=hyp).isel(condition=idx)
            for t in drawn:
                color = style.engine_color(lay.engine(summary, t), lay.engines)
                marker, ls = method_style(lay.method(summary, t), lay.methods)
                v, lo, hi = (
                    np.asarray(h[k].sel(test=t).values, dtype=float)
                    for k in ("rejection", "lower", "upper")
                )
                x = (
                    np.full(1, float(lay.tests.index(t)))
                    if lay.factor is None
                    else cond_x[idx] + offsets[t]
                )
                kw = {"color": color, "marker": marker, "ms": 5, "zorder": 3}
                if bands:
                    (line,) = ax.plot(x, v, ls=ls, lw=1.4, **kw)
                    fill = ax.fill_between(x, lo, hi, color=color, alpha=shade, lw=0, zorder=1)
                    fill.set_gid(f"{gid}-band|{t}")
                else:
                    err = np.clip(np.nan_to_num(np.stack([v - lo, hi - v])), 0.0, None)
                    bars = ax.errorbar(x, v, yerr=err, ls=ls, lw=1.2, elinewidth=0.8, **kw)
                    bars.lines[0].set_gid(f"{gid}|{t}")
                    for bar in bars.lines[2]:
                        bar.set_alpha(0.6 if lay.factor is None else 0.35)
                    continue
                line.set_gid(f"{gid}|{t}")
            for t in lay.tests if lay.factor is None else ():
                if t not in drawn:
                    ax.text(
                        lay.tests.index(t),
                        0.5,
                        "no valid test",
                        rotation=90,
                        ha="center",
                        va="center",
                        color=GREY,
                        fontsize="small",
                        transform=ax.get_xaxis_transform(),
                    )
        power_ax, type1_ax = axes[r]
        power_ax.axhline(target, color=GREY, ls="--", lw=1.2, zorder=2, gid="target")
        power_ax.annotate(
            refs[0],
            (0.01, target),
            xycoords=("axes fraction", "data"),
            xytext=(0, 2),
            textcoords="offset points",
            color=GREY,
            fontsize="small",
            va="bottom",
        )
        type1_ax.axhline(alpha, color=GREY, ls="--", lw=1.2, zorder=2, gid="alpha")
        if n_mc:
            half = Z * math.sqrt(alpha * (1 - alpha) / n_mc)
            band = type1_ax.axhspan(
                max(alpha - half, 0.0), min(alpha + half, 1.0), color=GREY, alpha=0.15, lw=0
            )
            band.set(gid="mc-band", zorder=0)
            for y in band.get_y(), band.get_y() + band.get_height():
                type1_ax.axhline(y, color=GREY, ls=":", lw=0.8, zorder=0)
        power_ax.set_ylim(-0.02, 1.02)
        type1_ax.set_ylim(0.0, min(1.0, max(3 * alpha, 1.1 * top)))
        for ax, what in ((power_ax, "Power"), (type1_ax, "Type I error")):
            ax.set_title(what + (f" | {title}" if title else ""), fontsize=10)
            ax.set_ylabel(f"{what}, {interval}")
            ax.grid(alpha=0.3)
            if lay.factor is None:
                ax.set_xticks(range(len(lay.tests)), lay.tests, rotation=35, ha="right")
                ax.set_xlim(-0.6, len(lay.tests) - 0.4)
                continue
            if not numeric or len(levels) <= 12:  # else matplotlib's ticks
                at = levels if numeric else range(len(levels))
                ax.set_xticks(list(at), [_show(v) for v in levels])
            first, last = (levels[0], levels[-1]) if numeric else (0, len(levels) - 1)
            pad = 0.6 * gap if len(levels) > 1 or not numeric else 0.5 * abs(first) or 0.5
            ax.set_xlim(first - pad, last + pad)
            ax.set_xlabel(lay.factor if r == len(rows) - 1 else "")
    handles: list[Any] = []
    for t, label in zip(lay.tests, labels, strict=True):
        marker, ls = method_style(lay.method(summary, t), lay.methods)
        color = style.engine_color(lay.engine(summary, t), lay.engines)
        handle = Line2D([], [], color=color, marker=marker, ms=5, ls=ls, label=label)
        if t not in drawn or lay.factor is None:  # markers alone: no line drawn
            handle.set_linestyle("")
        handle.set_alpha(1.0 if t in drawn else 0.35)
        handles.append(handle)
    handles += [Line2D([], [], color=GREY, ls="--", lw=1.2, label=lab) for lab in refs[:2]]
    if n_mc:
        handles.append(Patch(facecolor=GREY, alpha=0.3, edgecolor=GREY, ls=":", label=refs[2]))
    fig.legend(handles=handles, loc="outside lower center", ncols=ncols, fontsize="small")
    where = f" against {lay.factor}" if lay.factor else ""
    suptitle(fig, f"Power and type I error of the tests of {lay.term}{where} (alpha = {alpha:g})")
    return fig


def power_caption(summary: xr.Dataset, factor: str | None = None, term: str | None = None) -> str:
    """One sentence describing :func:`power_figure` of the same arguments, for a report."""
    lay = _layout(summary, factor, term)
    alpha, target = float(summary.attrs["alpha"]), float(summary.attrs["target"])
    n_mc = _typical_n(summary, lay.term)
    x = f"against {lay.factor}" if lay.factor else "by test"
    rows = f", a row per {' x '.join(lay.facets)}" if lay.facets else ""
    shade = "bars" if lay.factor is None else "shading"
    return (
        f"Power (left) and type I error (right) of the tests of {lay.term} {x}{rows}, "
        f"{len(lay.tests)} tests coloured by engine and marked by method, {shade} their 95% "
        f"Wilson intervals; the dashed lines mark the target power {target:g} and "
        f"alpha = {alpha:g}, and the grey band (alpha +- 1.96 Monte Carlo SEs, "
        f"n = {n_mc} replicates) is where a correct test's type I error falls 95% of the time."
    )
