"""The Bayesian engine: a PyMC linear mixed model sampled with nutpie (or PyMC's NUTS).

``options`` holds its validated settings and priors, ``graph`` the PyMC model (the
marginal likelihood on sufficient statistics, and latent-u models for comparison),
``sample`` the samplers, posterior summaries and the stuck-chain check, ``start`` the
data-scaled starting points of the chains, ``engine`` the engine that ties them
together, ``scaled_priors`` priors scaled to a user's data for ``study fit``.
Importing this package is light (the options only): the engine's modules are imported
when one of their names is first used, and PyMC on the first compile.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from models.bayes.options import BayesOptions, BayesPriors

if TYPE_CHECKING:
    from models.bayes.engine import BayesEngine, resolve_seed
    from models.bayes.sample import convergence_message, summarise

__all__ = [
    "BayesEngine",
    "BayesOptions",
    "BayesPriors",
    "convergence_message",
    "resolve_seed",
    "summarise",
]
#: names imported from their module on first use
_LAZY = {
    "BayesEngine": "models.bayes.engine",
    "resolve_seed": "models.bayes.engine",
    "convergence_message": "models.bayes.sample",
    "summarise": "models.bayes.sample",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
