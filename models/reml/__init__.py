"""Frequentist engine: REML or ML fits (statsmodels ``MixedLM``, polished to the exact optimum).

Importing this package is light (the options only); the engine module, which imports
statsmodels, is imported when one of its names is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from models.reml.options import CI_KINDS, METHODS, OPTIMIZERS, RAN_PARS_CI_KINDS, RemlOptions

if TYPE_CHECKING:
    from models.reml.engine import RemlEngine, start_covariance

__all__ = [
    "CI_KINDS",
    "METHODS",
    "OPTIMIZERS",
    "RAN_PARS_CI_KINDS",
    "RemlEngine",
    "RemlOptions",
    "start_covariance",
]
#: names imported from their module on first use
_LAZY = {"RemlEngine": "models.reml.engine", "start_covariance": "models.reml.engine"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
