"""What the study figures share: selecting a condition, engines and terms, titles,
legends, forest rows, reference values and axis labels."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from models.structure import INTERCEPT
from study.analysis import mcse as mnp
from study.analysis.measures import REGISTRY
from study.analysis.plots import style

Z = 1.959963984540054  # standard normal 97.5% quantile
GREY, MISS = style.TRUTH_COLOR, "#000000"  # truth / reference; zip plot: missing intervals
#: reference value of a measure: a number, or "level" (the nominal level)
REFERENCE: dict[str, float | str] = {
    m.name: m.reference for m in REGISTRY.values() if m.reference is not None
}
#: measures that are shares of replicates: error bars by the Wilson interval
SHARES = tuple(m.name for m in REGISTRY.values() if m.share)
#: axis labels of the measures that have their own
LABELS = {m.name: m.label for m in REGISTRY.values() if m.label}


def select(obj: Any, condition: str | None) -> tuple[Any, str]:
    """``obj`` at one condition (dim dropped) and its label."""
    labels = [str(c) for c in np.atleast_1d(obj["condition"].values)]
    if condition is None and len(labels) == 1:
        condition = labels[0]
    if condition not in labels:
        what = "several conditions: pass condition=" if condition is None else repr(condition)
        raise ValueError(f"{what} is not one condition; available: {', '.join(map(repr, labels))}")
    return (obj.sel(condition=condition) if "condition" in obj.dims else obj), condition


def engines_of(obj: Any, *check: str) -> list[str]:
    engines = [str(e) for e in obj["engine"].values]
    for name in check:
        if name not in engines:
            raise ValueError(f"engine {name!r} is not in the results; engines present: {engines}")
    return engines


def terms_of(obj: Any, term: str | None = None, *, fixed: bool = True) -> list[str]:
    terms, effects = [str(t) for t in obj["term"].values], obj["effect"].values
    if term is not None and term not in terms:
        raise ValueError(f"term {term!r} is not in the results; terms: {terms}")
    keep = [t for t, e in zip(terms, effects, strict=True) if e == "fixed" or not fixed]
    return [term] if term else keep


def focal_term(obj: Any) -> str:
    """The term a one-term figure shows by default: the first fixed effect other than
    the intercept (the first predictor, whatever its name), else the first term."""
    fixed = terms_of(obj)
    slopes = [t for t in fixed if t != INTERCEPT]
    if slopes or fixed:
        return (slopes or fixed)[0]
    return str(obj["term"].values[0])


def measure_of(s: xr.Dataset, name: str) -> tuple[xr.DataArray, xr.DataArray]:
    if name not in [str(m) for m in s["measure"].values]:
        raise ValueError(f"the summary lacks measure {name!r}; compute_measures(ds) has all")
    return s["value"].sel(measure=name), s["mcse"].sel(measure=name)


def interval_of(s: xr.Dataset, name: str) -> tuple[xr.DataArray, xr.DataArray]:
    """Lower and upper ends of a measure's error bar: the Wilson interval for a share
    (coverage, rejection: inside [0, 1]), else value +-1.96 MCSE."""
    value, mcse = measure_of(s, name)
    if name in SHARES and "n" in s:
        lo, hi = xr.apply_ufunc(
            mnp.wilson_interval,
            value,
            s["n"].sel(measure=name),
            kwargs={"z": Z},
            output_core_dims=[[], []],
        )
        return lo, hi
    return value - Z * mcse, value + Z * mcse


def label_of(s: xr.Dataset, measure: str) -> str:
    desc = str(s["description"].sel(measure=measure).item()) if "description" in s.coords else ""
    return LABELS.get(measure, f"{measure} ({desc})" if desc else measure)


def suptitle(fig: Figure, what: str, label: str = "", n: int = 0) -> None:
    extra = ", ".join([label] * (label not in ("", "base")) + [f"{n} replicates"] * (n > 0))
    sep = "\n" if len(what) + len(extra) > 75 else " | "
    fig.suptitle(what + (sep + extra if extra else ""), fontsize=11)


def legend(fig: Figure, handles: Sequence[Any], ncols: int = 4) -> None:
    fig.legend(handles=list(handles), loc="outside lower center", ncols=min(len(handles), ncols))


def legend_handles(engines: Sequence[str], *refs: tuple[str, str], marker: str = "o") -> list[Any]:
    """Legend entries: a marker per engine, then ``(label, linestyle)`` grey lines."""
    dots = [Line2D([], [], marker=marker, ls="", label=e) for e in engines]
    for dot, e in zip(dots, engines, strict=True):
        dot.set_color(style.engine_color(e, engines))
    return dots + [Line2D([], [], color=GREY, ls=ls, label=lab) for lab, ls in refs]


def forest(
    ax: Any,
    value: Any,
    mcse: Any,
    rows: Sequence[str],
    gid: str,
    bounds: tuple[Any, Any] | None = None,
) -> None:
    """Horizontal forest plot of ``value`` (engine x row), first row on top, engines
    dodged; one point artist (gid ``gid|engine|row``) per finite value.  Error bars
    +-1.96 ``mcse``, or from ``bounds`` (lower, upper; e.g. :func:`interval_of`)."""
    engines = engines_of(value)
    offsets = np.linspace(0.18, -0.18, len(engines)) if len(engines) > 1 else [0.0]
    for off, eng in zip(offsets, engines, strict=True):
        v, m = value.sel(engine=eng).values, mcse.sel(engine=eng).values
        if bounds is None:
            lo, hi = v - Z * m, v + Z * m
        else:
            lo, hi = (np.asarray(b.sel(engine=eng).values, dtype=float) for b in bounds)
        kw = {"fmt": "o", "ms": 5, "capsize": 2, "color": style.engine_color(eng, engines)}
        for i, row in enumerate(rows):
            if math.isfinite(v[i]):
                ok = math.isfinite(lo[i]) and math.isfinite(hi[i])
                err = [[max(v[i] - lo[i], 0.0)], [max(hi[i] - v[i], 0.0)]] if ok else None
                ax.errorbar([v[i]], [-i + off], xerr=err, **kw).lines[0].set_gid(
                    f"{gid}|{eng}|{row}"
                )
    ax.set_yticks(-np.arange(len(rows)), rows)
    ax.set_ylim(-len(rows) + 0.5, 0.5)
    ax.grid(axis="x", alpha=0.3)
