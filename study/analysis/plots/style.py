"""What every figure shares: one colour per engine, sizes, and how a figure is made.

Figures are built with matplotlib's object API (``matplotlib.figure.Figure``), never
through pyplot's global state, so making many of them neither opens windows nor
leaks memory, whatever backend is configured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure

#: each engine's colour, the same in every figure (Okabe-Ito, colour-blind safe)
ENGINE_COLORS: dict[str, str] = {"reml": "#0072B2", "bayes": "#D55E00"}
_EXTRA = ("#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8C6D1F", "#999999")
#: what marks the truth or a nominal value
TRUTH_COLOR = "#444444"
#: default width of a figure, inches
WIDTH = 8.0


def engine_color(name: str, engines: Sequence[str] = ()) -> str:
    """The colour of engine ``name``: fixed for known engines, others in list order."""
    if name in ENGINE_COLORS:
        return ENGINE_COLORS[name]
    others = [e for e in engines if e not in ENGINE_COLORS]
    return _EXTRA[others.index(name) % len(_EXTRA)] if name in others else _EXTRA[0]


def new_figure(
    nrows: int = 1, ncols: int = 1, *, height: float = 4.0, width: float = WIDTH, **kwargs: Any
) -> tuple[Figure, Any]:
    """A constrained-layout Figure and its axes (squeezed as ``plt.subplots`` does)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, **kwargs)
    return fig, axes


__all__ = ["ENGINE_COLORS", "TRUTH_COLOR", "WIDTH", "Figure", "engine_color", "new_figure"]
