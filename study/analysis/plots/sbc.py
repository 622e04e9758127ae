"""Figures of simulation-based calibration (SBC): rank histograms (Talts et al. 2018)
and PIT-ECDF difference plots with simultaneous bands (Saeilynoja et al. 2022).

Each function takes the contents of a run's ``sbc.nc`` and draws, for one condition
and engine, a panel per term from the PIT of the simulations done (failed fits have
no PIT; non-converged fits are included).  The per-term level ``alpha_term`` defaults
to 0.05 Bonferroni-adjusted over the terms, as in
:func:`study.analysis.sbc.summarize_sbc`; a flagged term is drawn and titled in
:data:`WARN`.  A term without a single PIT shows "no fits".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr
from arviz_stats.ecdf_utils import compute_ecdf
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from scipy.stats import binom

from study.analysis import sbc
from study.analysis.plots import style
from study.analysis.plots.common import GREY, engines_of, legend, select, suptitle

#: colour of a flagged term
WARN = "#b2182b"
#: level of the pointwise band of the rank histograms (Talts et al. 2018)
HIST_BAND = 0.99
_NCOLS = 3


def _pits(
    ds: xr.Dataset, condition: str | None, engine: str, alpha_term: float | None
) -> tuple[dict[str, np.ndarray], str, int, float]:
    """Per term the finite PIT values of the simulations done; the condition label,
    the number of simulations done and the per-term level."""
    d, label = select(ds, condition)
    engines_of(d, engine)
    done = np.asarray(d["done"].values, dtype=bool)
    pit = np.asarray(d["pit"].sel(engine=engine).transpose("simulation", "term").values)[done]
    terms = [str(t) for t in d["term"].values]
    pits = {t: col[np.isfinite(col)] for t, col in zip(terms, pit.T, strict=True)}
    a = sbc.term_alpha(ds) if alpha_term is None else alpha_term
    return pits, label, int(done.sum()), a


def _panels(n: int, xlabel: str, ylabel: str) -> tuple[Figure, list[Any]]:
    """A grid with one axes per term (the unused cells removed), the x label under
    the lowest panel of each column and the y label left of each row."""
    ncols = min(n, _NCOLS)
    nrows = math.ceil(n / ncols)
    fig, axes = style.new_figure(nrows, ncols, height=1.4 + 2.3 * nrows, squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        fig.delaxes(ax)
    for i, ax in enumerate(flat[:n]):
        ax.tick_params(labelsize=8)
        if i + ncols >= n:
            ax.set_xlabel(xlabel, fontsize=9)
        if i % ncols == 0:
            ax.set_ylabel(ylabel, fontsize=9)
    return fig, flat[:n]


def _suptitle(fig: Figure, what: str, label: str, n_done: int) -> None:
    suptitle(fig, f"{what} ({n_done} simulations run)", label)


def _test(pit: np.ndarray, alpha_term: float) -> sbc.UniformityTest | None:
    return sbc.uniformity_test(pit, alpha_term) if len(pit) >= sbc.MIN_N else None


def _title(ax: Any, term: str, test: sbc.UniformityTest | None, n: int) -> None:
    if test is None:
        ax.set_title(f"{term}\nnot tested (n = {n})", fontsize=9)
        return
    word = "passes" if test.passes else "FLAGGED"
    p = sbc.format_p(test.p_value)
    ax.set_title(f"{term}\n{word}, {p}", fontsize=9, color=GREY if test.passes else WARN)


def _no_fits(ax: Any, term: str, n: int = 0) -> None:
    """An empty panel: "no fits", or too few to test (fewer than ``sbc.MIN_N``)."""
    text = "no fits" if n == 0 else f"only {n} fits: not tested"
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color=GREY)
    ax.set_title(term, fontsize=9)
    ax.set(xticks=[], yticks=[])


def rank_histograms(
    ds: xr.Dataset,
    *,
    engine: str,
    condition: str | None = None,
    bins: int = 20,
    alpha_term: float | None = None,
) -> Figure:
    """Histograms of the SBC ranks, a panel per term (Talts et al. 2018, Fig. 4).

    Parameters
    ----------
    ds : xarray.Dataset
        The contents of ``sbc.nc``.
    engine : str
        The engine whose posteriors are checked.
    condition : str, optional
        Condition label (default: the only condition).
    bins : int
        Number of equal bins of the PIT; as R is divisible by 20, 20 bins of the PIT
        are exactly a histogram of the ranks in 20 groups.
    alpha_term : float, optional
        Per-term level of the verdict in the titles (default 0.05 / number of terms).

    Returns
    -------
    matplotlib.figure.Figure
        Per term the counts per bin, the expected count ``n / bins`` (dashed) and the
        99% pointwise binomial band (grey); the title gives the verdict and p.
    """
    pits, label, n_done, a = _pits(ds, condition, engine, alpha_term)
    color = style.engine_color(engine, engines_of(ds))
    fig, axes = _panels(len(pits), "PIT = (rank + u) / R", "simulations per bin")
    for ax, (term, pit) in zip(axes, pits.items(), strict=True):
        if not len(pit):
            _no_fits(ax, term)
            continue
        n, test = len(pit), _test(pit, a)
        counts, edges = np.histogram(pit, bins=bins, range=(0.0, 1.0))
        lo, hi = binom.ppf([(1 - HIST_BAND) / 2, (1 + HIST_BAND) / 2], n, 1 / bins)
        flagged = test is not None and not test.passes
        ax.stairs(counts, edges, fill=True, color=WARN if flagged else color, alpha=0.6)
        ax.axhspan(lo, hi, color=GREY, alpha=0.25, lw=0)
        for y in (lo, hi):
            ax.axhline(y, color=GREY, ls=":", lw=0.8)
        ax.axhline(n / bins, color=GREY, ls="--", lw=1)
        ax.set(xlim=(0, 1), ylim=(0, max(counts.max(), hi) * 1.12))
        _title(ax, term, test, n)
    _suptitle(fig, f"SBC rank histograms of the {engine} posteriors", label, n_done)
    handles = [
        Patch(color=color, alpha=0.6, label="passes"),
        Patch(color=WARN, alpha=0.6, label="flagged"),
        Line2D([], [], color=GREY, ls="--", lw=1, label="expected count"),
        Patch(color=GREY, alpha=0.25, label=f"{HIST_BAND:.0%} pointwise band"),
    ]
    legend(fig, handles)
    return fig


def ecdf_difference(
    ds: xr.Dataset,
    *,
    engine: str,
    condition: str | None = None,
    alpha_term: float | None = None,
) -> Figure:
    """PIT-ECDF minus the uniform CDF with its simultaneous band, a panel per term.

    Parameters
    ----------
    ds : xarray.Dataset
        The contents of ``sbc.nc``.
    engine : str
        The engine whose posteriors are checked.
    condition : str, optional
        Condition label (default: the only condition).
    alpha_term : float, optional
        Per-term level (default 0.05 / number of terms): the band is simultaneous at
        ``1 - alpha_term`` (:func:`study.analysis.sbc.ecdf_band`).

    Returns
    -------
    matplotlib.figure.Figure
        Per term ``ECDF(z) - z`` at ``z = i / n`` (a step line; :data:`WARN` when the
        term is flagged) inside the shaded band; above 0: too many small PITs (ranks
        too low), below: too few.
    """
    pits, label, n_done, a = _pits(ds, condition, engine, alpha_term)
    color = style.engine_color(engine, engines_of(ds))
    fig, axes = _panels(len(pits), "PIT", "ECDF - uniform CDF")
    for ax, (term, pit) in zip(axes, pits.items(), strict=True):
        if len(pit) < sbc.MIN_N:
            _no_fits(ax, term, len(pit))
            continue
        test = _test(pit, a)
        z, lower, upper = sbc.ecdf_band(len(pit), 1 - a)
        diff = compute_ecdf(pit, z) - z
        ax.fill_between(z, lower - z, upper - z, step="post", color=GREY, alpha=0.25, lw=0)
        ax.axhline(0.0, color=GREY, lw=0.8)
        flagged = test is not None and not test.passes
        ax.step(z, diff, where="post", color=WARN if flagged else color, lw=1.6 if flagged else 1.2)
        ax.set_xlim(0, 1)
        _title(ax, term, test, len(pit))
    _suptitle(fig, f"SBC PIT-ECDF differences of the {engine} posteriors", label, n_done)
    handles = [
        Line2D([], [], color=color, lw=1.2, label="passes"),
        Line2D([], [], color=WARN, lw=1.6, label="flagged"),
        Patch(color=GREY, alpha=0.25, label=f"{100 * (1 - a):.3g}% simultaneous band"),
    ]
    legend(fig, handles)
    return fig
