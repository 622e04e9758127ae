"""The Bayesian engine: a PyMC linear mixed model sampled with nutpie (or PyMC's NUTS).

``options`` holds its validated settings and priors, ``graph`` the PyMC model (the
marginal likelihood on sufficient statistics, and latent-u models for comparison),
``sample`` the samplers, posterior summaries and the stuck-chain check, ``start`` the
data-scaled starting points of the chains, ``engine`` the engine that ties them
together, ``scaled_priors`` priors scaled to a user's data for ``study fit``.
Importing this package does not import PyMC (that happens on the first compile).
"""

from __future__ import annotations

from models.bayes.engine import BayesEngine, resolve_seed
from models.bayes.options import BayesOptions, BayesPriors
from models.bayes.sample import convergence_message, summarise

__all__ = [
    "BayesEngine",
    "BayesOptions",
    "BayesPriors",
    "convergence_message",
    "resolve_seed",
    "summarise",
]
