"""Model-fitting engines for linear mixed models.

An engine takes one :class:`models.data.LMMData` (a long table with per-group
sufficient statistics) and returns one :class:`models.base.FitResult`.  Nothing in
this package knows about studies, replicates, storage or the command line.
"""

from __future__ import annotations

from models.base import Engine, FitResult, term_names
from models.data import LMMData

__all__ = ["Engine", "FitResult", "LMMData", "term_names"]
