"""Settings of a simulation-based calibration (SBC) study: the ``[sbc]`` table.

An SBC study (``study sbc``; Talts et al. 2018, Modrak et al. 2023) draws every
simulation's parameters from a Bayesian engine's prior, generates data from them with
the configuration's design (its X, per condition), fits them with the study's
Bayesian engines and ranks each true value among the posterior draws: under a correct
posterior the ranks are uniform.  The configuration otherwise is a study's (design,
conditions, seed, engines and their options); only engines with a prior take part.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from models.validate import fail, integer, number

#: the most simulations an SBC study may ask for (as many as a study's replicates)
MAX_SIMULATIONS = 1_000_000
#: simulations of ``study sbc`` when neither ``--simulations`` nor the table says
DEFAULT_SIMULATIONS = 500


@dataclass(frozen=True)
class SbcSettings:
    """The ``[sbc]`` table.

    Parameters
    ----------
    simulations : int
        Simulations per condition (``--simulations`` overrides it; not part of the
        configuration's hash, so a finished SBC run can be extended, as ``replicates``).
    prior_from : str
        The engine whose priors generate the parameters (default: the first engine of
        ``engines.run`` that has a prior).
    generator_prior_scale : float
        Multiplies every prior scale (fixed effects, SDs, residual SD) of the
        *generating* prior only: 1 is SBC proper; another value generates data from a
        prior the model does not use, a deliberate error that SBC should flag.
    """

    simulations: int = field(default=DEFAULT_SIMULATIONS, metadata={"hashed": False})
    prior_from: str = ""
    generator_prior_scale: float = 1.0

    def __post_init__(self) -> None:
        integer("sbc.simulations", self.simulations, low=1, high=MAX_SIMULATIONS)
        if not isinstance(self.prior_from, str):
            raise fail("sbc.prior_from", self.prior_from, "must be an engine name, e.g. bayes")
        value = number("sbc.generator_prior_scale", self.generator_prior_scale, low=0.0)
        object.__setattr__(self, "generator_prior_scale", value)

    def table(self, hashed: bool = False) -> dict[str, Any]:
        """The settings as a TOML table (``hashed``: only those in the hash)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if not hashed or f.metadata.get("hashed", True)
        }
