"""Which engines may fit a crossed design's models.

Transitional: :meth:`models.registry.Registry.fits` (an engine declares
``Capability.CROSSED``) answers this once it is on main; until then the built-in
engines, which fit one grouping factor, are refused and any other engine (one given
through the Python API) is trusted to fit :class:`models.crossed.CrossedData`.
"""

from __future__ import annotations

from typing import Any

from models.builtin import SPECS
from models.registry import Registry

#: the built-in engines, all of one grouping factor (until ``Capability.CROSSED``)
ONE_FACTOR = tuple(s.name for s in SPECS)


def fit_problem(registry: Registry, label: str, structure: Any) -> str:
    """Why engine ``label`` cannot fit models of ``structure``, or ``""``."""
    fits = getattr(registry, "fits", None)
    if fits is not None:
        return str(fits(label, structure))
    groups = getattr(structure, "groups", None)
    if groups is None or registry.kind(label) not in ONE_FACTOR:
        return ""
    return (
        f"engine {label} fits one grouping factor only, but the model has {len(groups)} "
        f"({', '.join(groups)}); use an engine that fits crossed random effects"
    )
