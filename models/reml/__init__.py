"""Frequentist engine: REML or ML fits (statsmodels ``MixedLM``, polished to the exact optimum)."""

from models.reml.engine import RemlEngine, start_covariance
from models.reml.options import CI_KINDS, METHODS, OPTIMIZERS, RAN_PARS_CI_KINDS, RemlOptions

__all__ = [
    "CI_KINDS",
    "METHODS",
    "OPTIMIZERS",
    "RAN_PARS_CI_KINDS",
    "RemlEngine",
    "RemlOptions",
    "start_covariance",
]
