"""Simulation-based calibration on the study runner: one simulation, its ranks, sbc.nc.

A simulation of condition c is the pair (c, s) of the runner, so workers, Dask,
shards, checkpoints and resume work as for a coverage study.  Simulation s draws its
parameters from the prior of ``[sbc] prior_from`` (:class:`models.base.PriorEngine`),
then its data from the condition's design with them (seed policy: ``sbc_rng``), fits
them with every engine of the study, and ranks each true value among the engine's
posterior draws thinned to roughly independent ones:

* thinning step ``thin = ceil(total draws / min bulk ESS)``, the minimum over the
  parameters and the derived quantities (at least 1; at most what leaves 19 draws), as
  the SBC R package thins to keep ranks roughly independent;
* the number of ranks ``R`` is the largest of :data:`RANK_COUNTS` (all multiples of 20)
  with ``R - 1`` thinned draws available; ``R - 1`` draws are taken evenly spaced;
* rank = number of those draws below the true value (ties split at random);
* PIT = (rank + U(0,1)) / R, exactly U(0,1) under a correct posterior, so one ECDF
  test serves every ``R``; with ``R`` a multiple of 20, a 20-bin PIT histogram is a
  histogram of ranks.

Derived quantities (:data:`study.schema.SBC_DERIVED`) are ranked too: the log marginal
likelihood of the simulated data at the true parameters among its values at the draws
(Modrak et al. 2023: data-dependent test quantities catch errors the parameters miss).
"""

from __future__ import annotations

import math
import tomllib
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.base import FitResult, PriorEngine, Structure
from models.data import LMMData
from models.loglik import marginal_loglik
from study.design.generate import Design
from study.design.sbc import sbc_settings
from study.design.seeds import engine_seed, sbc_rank_rng, sbc_rng
from study.run.fitting import fit_recorded, stop_if_failed, where
from study.run.kinds.base import PairOutput
from study.run.store import Layout
from study.schema import SBC_DERIVED, SBC_DTYPES, SBC_FIT_VARS, SBC_SCHEMA, SBC_TERM_VARS

if TYPE_CHECKING:
    from models.base import Engine
    from study.design.config import StudyConfig
    from study.design.generate import AnyDesign

#: the results file of an SBC run
SBC_RESULTS = "sbc.nc"

#: numbers of ranks, largest first (thinned draws + 1): each a multiple of 20
RANK_COUNTS = (1000, 500, 400, 200, 100, 40, 20)


def sbc_terms(structure: Structure) -> list[str]:
    """The terms an SBC run ranks: the model's parameters, then the derived quantities."""
    return [*structure.terms, *SBC_DERIVED]


def thinned_ranks(
    draws: np.ndarray, truth: np.ndarray, ess: float, rng: np.random.Generator
) -> tuple[np.ndarray, int, int, np.ndarray]:
    """Ranks of ``truth`` (T,) among ``draws`` (chain, draw, T) thinned by ESS.

    Returns ``(rank (T,), n_ranks, thin, selected draws (n_ranks - 1, T))``; given
    the thinning step (from the ESS), the selection depends on the draws' positions
    only, never on how they compare with the truth.
    """
    chains, n, _ = draws.shape
    total = chains * n
    if total < RANK_COUNTS[-1] - 1:
        raise ValueError(f"{total} posterior draws; SBC needs at least {RANK_COUNTS[-1] - 1}")
    thin = max(1, math.ceil(total / ess)) if np.isfinite(ess) and ess > 0 else total
    thin = min(thin, max(1, (chains * n) // (RANK_COUNTS[-1] - 1)))
    while chains * len(range(0, n, thin)) < RANK_COUNTS[-1] - 1:
        thin -= 1
    kept = draws[:, ::thin].reshape(-1, draws.shape[-1])
    n_ranks = next(r for r in RANK_COUNTS if r - 1 <= kept.shape[0])
    idx = np.round(np.linspace(0, kept.shape[0] - 1, n_ranks - 1)).astype(int)
    chosen = kept[idx]
    below = (chosen < truth).sum(axis=0)
    ties = (chosen == truth).sum(axis=0)
    rank = below + rng.integers(0, ties + 1)
    return rank.astype(np.int64), int(n_ranks), int(thin), chosen


def _row(fit: FitResult, truth: np.ndarray, data: Any, rng: np.random.Generator) -> dict:
    """One engine's SBC values for one simulation."""
    t = truth.size
    row: dict[str, Any] = {
        "rank": np.full(t, -1, dtype=np.int64),
        "pit": np.full(t, np.nan),
        "estimate": np.full(t, np.nan),
        "rhat": np.full(t, np.nan),
        "ess_bulk": np.full(t, np.nan),
        "n_ranks": 0,
        "thin": 0,
        "converged": bool(fit.converged),
        "divergences": float(fit.divergences),
        "fit_seconds": float(fit.fit_seconds),
        "message": fit.message,
    }
    draws = fit.draws
    if not isinstance(draws, np.ndarray) or not np.isfinite(draws).all():
        row["message"] = fit.message or "the fit returned no posterior draws"
        return row
    chains, n, n_par = draws.shape
    try:
        # the derived quantity at every draw: its ESS joins the parameters' in the thinning
        derived = marginal_loglik(draws.reshape(-1, n_par), data).reshape(chains, n)
        every = np.concatenate([draws, derived[..., None]], axis=-1)
        rhat = np.append(np.asarray(fit.rhat, dtype=float), _rhat(derived))
        ess_bulk = np.append(np.asarray(fit.ess_bulk, dtype=float), _ess(derived))
        ess = float(np.nanmin(ess_bulk)) if np.isfinite(ess_bulk).any() else np.nan
        rank, n_ranks, thin, _ = thinned_ranks(every, truth, ess, rng)
    except ValueError as err:  # too few draws, or draws outside the model: data, not a crash
        row["message"] = f"no ranks: {err}"
        return row
    row.update(
        rank=rank,
        pit=(rank + rng.uniform(size=t)) / n_ranks,
        estimate=every.reshape(-1, t).mean(axis=0),
        rhat=rhat,
        ess_bulk=ess_bulk,
        n_ranks=n_ranks,
        thin=thin,
    )
    return row


def _ess(x: np.ndarray) -> float:
    import arviz as az

    return float(az.ess(x, method="bulk", chain_axis=0, draw_axis=1))


def _rhat(x: np.ndarray) -> float:
    import arviz as az

    return float(az.rhat(x, method="rank", chain_axis=0, draw_axis=1))


class Sbc:
    """Simulation-based calibration (``study sbc``, an ``[sbc]`` table): see the module
    docstring."""

    name = "sbc"
    layout = Layout(SBC_RESULTS, SBC_SCHEMA, "study sbc", "--simulations")
    what = "a simulation-based calibration (it has an [sbc] table)"

    def claims(self, config: StudyConfig) -> bool:
        return sbc_settings(config) is not None

    def recognises(self, path: Path) -> bool:
        if (path / SBC_RESULTS).is_file():
            return True
        try:
            return "sbc" in tomllib.loads((path / "study.toml").read_text())
        except (OSError, ValueError):
            return False

    def default_out(self, config: StudyConfig) -> Path:
        return Path("outputs") / "sbc" / config.name

    def terms(self, config: StudyConfig) -> tuple[list[str], list[str]]:
        terms, effects = config.terms()
        structure = config.design.structure
        assert isinstance(structure, Structure), "SBC of a crossed design"
        extra = sbc_terms(structure)[len(terms) :]
        return [*terms, *extra], [*effects, *(["derived"] * len(extra))]

    def context(self, config: StudyConfig, design_of: Any) -> None:
        return None  # every simulation draws its own truth

    def run_pair(
        self,
        config: StudyConfig,
        design: AnyDesign,
        engines: Sequence[Engine],
        replicate: int,
        fail_fast: bool,
    ) -> PairOutput:
        """SBC simulation ``replicate`` of ``design``: parameters from the prior, data
        from them, every engine's ranks."""
        sbc = sbc_settings(config)
        assert sbc is not None
        simulation = replicate
        by_name = dict(zip(config.engines, engines, strict=True))
        prior = by_name[sbc.prior_from]
        if not isinstance(prior, PriorEngine):
            raise TypeError(f"engine {sbc.prior_from!r} has no prior to draw from")
        # (a crossed design is refused for SBC when the configuration is loaded)
        assert isinstance(design, Design), "SBC of a crossed design"
        structure = design.structure
        n_terms = len(sbc_terms(structure))
        rng = sbc_rng(config.seed, design.id, simulation)
        try:
            theta = prior.draw_prior(structure, rng, scale=sbc.generator_prior_scale)
            sample = design.sample_from(theta, rng, simulation)
            assert isinstance(sample.data, LMMData)
            truth = np.append(theta, marginal_loglik(theta, sample.data))
        except Exception as err:  # a simulation that cannot be made is data, not a crash
            sample, truth = None, np.full(n_terms, np.nan)
            problem = f"simulation failed: {type(err).__name__}: {err}"
            trace = traceback.format_exc()
        at = where(config, design.id, "simulation", simulation)
        rows = []
        for name, engine in by_name.items():
            if sample is None:
                fit = FitResult.failed(structure, problem, 0.0, trace)
            else:
                seed = engine_seed(config.seed, design.id, simulation, name)
                fit = fit_recorded(engine, sample.data, structure, seed=seed)
            if fail_fast:
                stop_if_failed(fit, name, at)
            rank_rng = sbc_rank_rng(config.seed, design.id, simulation, name)
            rows.append(_row(fit, truth, None if sample is None else sample.data, rank_rng))
        values: dict[str, np.ndarray] = {
            var: np.array([r[var] for r in rows], dtype=SBC_DTYPES[var])
            for var in (*SBC_TERM_VARS, *SBC_FIT_VARS)
        }
        values["true_value"] = truth
        return PairOutput(values)

    def axes(self, config: StudyConfig) -> dict[str, int]:
        return {}

    def coords(self, config: StudyConfig, context: Any) -> dict[str, Any]:
        return {}

    def attrs(self, config: StudyConfig, manifest: Mapping[str, Any]) -> dict[str, Any]:
        sbc = sbc_settings(config)
        assert sbc is not None
        return {
            "prior_from": sbc.prior_from,
            "generator_prior_scale": sbc.generator_prior_scale,
            "rank_counts": ", ".join(map(str, RANK_COUNTS)),
        }


SBC = Sbc()
