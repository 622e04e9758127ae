"""Model-fitting engines for linear mixed models.

An engine takes one :class:`models.data.LMMData` (a long table with per-group
sufficient statistics) and returns one :class:`models.base.FitResult`.  Nothing in
this package knows about studies, replicates, storage or the command line.

The interface (``docs/engines.md``): :class:`Engine` and its optional
:class:`Capability` values (:mod:`models.base`), the registration record
:class:`EngineSpec` (:mod:`models.spec`) and the :class:`Registry` of engines, read from
the ``lmm_study.engines`` entry points (:mod:`models.registry`).
"""

from __future__ import annotations

from models.base import Capability, Engine, FitResult, term_names
from models.data import LMMData
from models.registry import Registry, default_registry
from models.spec import EngineSpec

__all__ = [
    "Capability",
    "Engine",
    "EngineSpec",
    "FitResult",
    "LMMData",
    "Registry",
    "default_registry",
    "term_names",
]
