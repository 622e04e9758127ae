"""ArviZ diagnostics of one kept posterior (an ``xarray.DataTree``), drawn by
arviz-plots on matplotlib: trace with densities, rank plots, energy, local ESS.

arviz-plots makes its figures through pyplot; each function takes the Figure out of
pyplot's figure manager before returning it, so callers own it as any other Figure.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Literal

import xarray as xr
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from study.analysis.plots.style import WIDTH


# -- one posterior (arviz-plots) -----------------------------------------------------
def _arviz(
    name: str, tree: xr.DataTree, title: str, height: float, *, chains: bool = False, **kwargs: Any
) -> Figure:
    """Run ``arviz_plots.<name>`` on the matplotlib backend; its Figure, detached.

    ``pc.get_viz("figure")`` is the Figure behind the PlotCollection; ``chains`` adds a
    chain legend (``pc.add_legend``).
    """
    import matplotlib.pyplot as plt  # only what arviz-plots itself imports

    plot = getattr(import_module("arviz_plots"), name)
    size = {"figsize": (WIDTH * 1.5, height), "figsize_units": "inches", "layout": "constrained"}
    with plt.ioff():  # no window, even under an interactive backend
        pc = plot(tree, backend="matplotlib", figure_kwargs=size, **kwargs)
        if chains:
            pc.add_legend("chain", title="chain")
    fig: Figure = pc.get_viz("figure")
    plt.close(fig)  # out of pyplot's figure manager: the caller owns it
    FigureCanvasBase(fig)  # a plain canvas; savefig picks the format's own
    fig.suptitle(title, fontsize="large")
    return fig


def _rows(tree: xr.DataTree, per_row: int = 3) -> int:
    """Rows of ``per_row`` panels for the posterior's variables."""
    return -(-len(tree["posterior"].data_vars) // per_row)


def trace(tree: xr.DataTree, *, title: str = "posterior") -> Figure:
    """Marginal density and trace per chain and term (``arviz_plots.plot_trace_dist``).

    Parameters
    ----------
    tree : xarray.DataTree
        A kept posterior (groups ``posterior`` and ``sample_stats``); the same for
        :func:`rank`, :func:`energy` and :func:`ess`.
    title : str
        Which posterior (e.g. ``"bayes, condition base, replicate 0"``); the figure's
        title names the plot, then this.

    Returns
    -------
    matplotlib.figure.Figure
    """
    height = 1.0 + 1.6 * len(tree["posterior"].data_vars)
    label = f"Trace and density: {title}"
    return _arviz("plot_trace_dist", tree, label, height, chains=True, compact=False)


def rank(tree: xr.DataTree, *, title: str = "posterior") -> Figure:
    """Fractional-rank ECDF differences per chain and term (``arviz_plots.plot_rank``).

    Parameters and return value as for :func:`trace`.
    """
    label = f"Rank plot (ECDF difference per chain): {title}"
    return _arviz("plot_rank", tree, label, 1.0 + 2.6 * _rows(tree), chains=True, col_wrap=3)


def energy(tree: xr.DataTree, *, title: str = "posterior") -> Figure:
    """BFMI per chain, and marginal and transition energy (``arviz_plots.plot_energy``).

    Parameters and return value as for :func:`trace` (``sample_stats.energy`` needed).
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
    tree, title
        As for :func:`trace`.
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
    if kind == "evolution":
        pairs = (("bulk", "C0"), ("tail", "C1"))
        visuals = {f"ess_{m}{s}": {"color": c} for m, c in pairs for s in ("", "_line")}
        label = f"ESS as draws accumulate: {title}"
        fig = _arviz(
            "plot_ess_evolution", tree, label, height, col_wrap=3, min_ess=ess_min, visuals=visuals
        )
        handles = [Line2D([], [], color=c, marker="o", label=f"{m} ESS") for m, c in pairs]
    else:
        label = f"{kind.capitalize()} ESS: {title}"
        fig = _arviz("plot_ess", tree, label, height, col_wrap=3, kind=kind, min_ess=ess_min)
        handles = [Line2D([], [], color="C0", marker="o", linestyle="none", label=f"{kind} ESS")]
    handles.append(Line2D([], [], color="0.3", linestyle="-.", label=f"ESS {ess_min:g}"))
    fig.legend(handles=handles, loc="outside right upper", fontsize="small")
    return fig
