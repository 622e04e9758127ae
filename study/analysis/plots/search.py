"""The figure of a sample-size search: simulated power with Wilson intervals, the
fitted probit curve in sqrt(N), the target, the answer and its interval."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from scipy import stats

from study.analysis.mcse import wilson_interval


def search_figure(result: Mapping[str, Any]) -> Figure:
    """Draw a search from its table (:meth:`SearchResult.table`, ``search.json``)."""
    points = result["points"]
    values = np.array([p["value"] for p in points], dtype=float)
    power = np.array([p["power"] for p in points], dtype=float)
    n = np.array([p["replicates"] for p in points], dtype=float)
    lo, hi = (np.asarray(v) for v in wilson_interval(power, n))
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    lo_i, hi_i = result["interval"]
    ax.axvspan(lo_i, hi_i, color="#cfe3f5", alpha=0.7, label=f"95% interval {lo_i} .. {hi_i}")
    grid = np.linspace(max(values.min() * 0.9, 1), values.max() * 1.05, 300)
    a, b = result["curve"]["a"], result["curve"]["b"]
    ax.plot(
        grid, stats.norm.cdf(a + b * np.sqrt(grid)), color="#1f77b4", label="probit fit in sqrt(N)"
    )
    sizes = 15 + 60 * n / n.max()
    ax.errorbar(
        values,
        power,
        yerr=[power - lo, hi - power],
        fmt="none",
        ecolor="#444",
        elinewidth=1,
        capsize=2,
    )
    ax.scatter(values, power, s=sizes, color="#222", zorder=3, label="simulated (size: replicates)")
    c = result["confirmation"]
    ax.errorbar(
        [c["value"]],
        [c["power"]],
        yerr=[[c["power"] - c["wilson"][0]], [c["wilson"][1] - c["power"]]],
        fmt="D",
        color="#d62728",
        capsize=3,
        zorder=4,
        label=f"confirmation at {c['value']}: {c['power']:.3f} ({c['replicates']} reps)",
    )
    ax.axhline(result["target"], ls="--", color="#888", lw=1, label=f"target {result['target']:g}")
    ax.axvline(
        result["answer"], ls=":", color="#d62728", lw=1.2, label=f"answer {result['answer']}"
    )
    ax.set_xlabel(result["factor"])
    ax.set_ylabel(f"power of {result['test']} (Wilson 95%)")
    ax.set_ylim(0, 1.02)
    ax.set_title(
        f"sample-size search: {result['factor']} for power {result['target']:g} ({result['term']})"
    )
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return fig
