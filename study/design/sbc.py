"""Settings of a simulation-based calibration (SBC) study: the ``[sbc]`` table.

An SBC study (``study sbc``; Talts et al. 2018, Modrak et al. 2023) draws every
simulation's parameters from a Bayesian engine's prior, generates data from them with
the configuration's design (its X, per condition), fits them with the study's
Bayesian engines and ranks each true value among the posterior draws: under a correct
posterior the ranks are uniform.  The configuration otherwise is a study's (design,
conditions, seed, engines and their options); only engines with a prior take part.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from models.registry import options_table
from models.validate import OptionError, fail, integer, number
from study.design.distributions import Shape
from study.design.noise import Residuals
from study.design.spec import DesignConfig
from study.errors import ConfigError

if TYPE_CHECKING:
    from study.design.study_config import StudyConfig

#: the configuration's table of these settings (``[sbc]``), the key of
#: ``StudyConfig.kind_settings``
TABLE = "sbc"

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

    def checked(self, config: StudyConfig) -> SbcSettings:
        """These settings for ``config``: ``prior_from`` resolved to an engine of the
        study that has a prior, the engines fitting the generating model with the same
        priors (what the kind needs of the rest of the configuration)."""
        with_prior = [e for e in config.engines if config.has_prior(e)]
        priors_of = config.registry.prior_engines
        if not self.prior_from:
            if not with_prior:
                raise fail(
                    "engines.run",
                    list(config.engines),
                    "has no engine with a prior, which simulation-based calibration "
                    f"draws parameters from; add one of {', '.join(priors_of)}",
                )
            return dataclasses.replace(self, prior_from=with_prior[0]).checked(config)
        if self.prior_from not in with_prior:
            raise fail(
                "sbc.prior_from",
                self.prior_from,
                f"must be an engine of engines.run with a prior: {', '.join(with_prior) or 'none'}",
            )
        for c in config.conditions:
            if not isinstance(c.design, DesignConfig):
                raise fail("sbc", "(a table)", "is not available for a crossed design yet")
            for key, value, default in (
                ("random_effects", c.design.random_effects, Shape()),
                ("residuals", c.design.residuals, Residuals()),
                ("missing", c.design.missing, None),
            ):
                if value != default:
                    raise fail(
                        f"design.{key}",
                        "(a table)",
                        "simulation-based calibration simulates from the model's own "
                        "likelihood (normal u and e, every outcome); drop it, or study the "
                        "violation with study run",
                    )
        for e in config.engines:
            if config.structure_of(e) != config.design.structure:
                key = "random" if "random" in config.engine_structures[e] else "correlated"
                raise fail(
                    f"engines.{e}.{key}",
                    config.engine_structures[e][key],
                    "simulation-based calibration fits the model the data come from; "
                    "remove random / correlated from [engines."
                    f"{e}] or calibrate that structure in its own run ([design] random)",
                )
        priors = options_table(config.engine_options[self.prior_from]).get("priors")
        for e in with_prior:
            if options_table(config.engine_options[e]).get("priors") != priors:
                raise fail(
                    f"engines.{e}.priors",
                    "(a table)",
                    f"differ from the priors of {self.prior_from}, which simulation-based "
                    "calibration draws the parameters from; give the engines the same "
                    "priors or calibrate them in separate runs",
                )
        return self


def sbc_settings(config: StudyConfig) -> SbcSettings | None:
    """The ``[sbc]`` settings of ``config`` (``None``: not a calibration)."""
    settings = config.kind_settings.get(TABLE)
    return settings if isinstance(settings, SbcSettings) else None


def as_sbc(config: StudyConfig, simulations: int | None = None) -> StudyConfig:
    """``config`` as a simulation-based calibration study: its engines with a prior
    only, ``simulations`` (else the ``[sbc]`` table's, else 500) per condition, no
    posteriors kept."""
    sbc = sbc_settings(config) or SbcSettings()
    n = sbc.simulations if simulations is None else simulations
    try:
        sbc = dataclasses.replace(sbc, simulations=n)
    except OptionError as err:
        raise ConfigError(str(err).replace("sbc.simulations = ", "simulations=")) from err
    engines = tuple(e for e in config.engines if config.has_prior(e))
    if not engines:
        raise ConfigError(
            f"engines.run = {list(config.engines)!r}: simulation-based calibration checks "
            "a posterior; add an engine with a prior "
            f"({', '.join(config.registry.prior_engines)})"
        )
    settings = {**config.kind_settings, TABLE: sbc}
    try:
        return dataclasses.replace(
            config, engines=engines, replicates=n, keep_draws=0, kind_settings=settings
        )
    except OptionError as err:
        raise ConfigError(str(err)) from err
