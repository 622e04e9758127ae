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

import json
import math
import time
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from models.base import FitResult, PriorEngine, Structure
from models.loglik import marginal_loglik
from study.design.seeds import engine_seed, sbc_rank_rng, sbc_rng
from study.errors import FitFailed
from study.run.store import Piece
from study.schema import (
    SBC_DERIVED,
    SBC_DTYPES,
    SBC_FIT_VARS,
    SBC_TERM_VARS,
    SBC_TRUE_VARS,
)

if TYPE_CHECKING:
    from models.base import Engine
    from study.design.config import StudyConfig
    from study.design.generate import Design

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
    draws = fit.extra.get("draws")
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


def simulate_and_rank(
    config: StudyConfig,
    design: Design,
    engines: list[Engine],
    simulation: int,
    fail_fast: bool = False,
) -> dict[str, np.ndarray]:
    """SBC simulation ``simulation`` of ``design``: its values for a checkpoint piece
    (leading axis: engines for per-fit variables; ``true_value`` per term)."""
    assert config.sbc is not None
    by_name = dict(zip(config.engines, engines, strict=True))
    prior = by_name[config.sbc.prior_from]
    if not isinstance(prior, PriorEngine):
        raise TypeError(f"engine {config.sbc.prior_from!r} has no prior to draw from")
    structure = design.structure
    n_terms = len(sbc_terms(structure))
    rng = sbc_rng(config.seed, design.id, simulation)
    try:
        theta = prior.draw_prior(structure, rng, scale=config.sbc.generator_prior_scale)
        sample = design.sample_from(theta, rng, simulation)
        truth = np.append(theta, marginal_loglik(theta, sample.data))
    except Exception as err:  # a simulation that cannot be made is data, not a crash
        sample, truth = None, np.full(n_terms, np.nan)
        problem = f"simulation failed: {type(err).__name__}: {err}"
        trace = traceback.format_exc()
    label = next((c.label for c in config.conditions if c.id == design.id), design.id)
    where = f"simulation {simulation}" + (f" of condition {label}" if config.multi else "")
    rows = []
    for name, engine in by_name.items():
        t0 = time.perf_counter()
        if sample is None:
            fit = FitResult.failed(structure, problem, 0.0, trace)
        else:
            try:
                seed = engine_seed(config.seed, design.id, simulation, name)
                fit = engine.fit(sample.data, seed=seed)
            except Exception as err:  # engines should not raise; if one does, record it
                message = f"{type(err).__name__}: {err}"
                seconds = time.perf_counter() - t0
                fit = FitResult.failed(structure, message, seconds, traceback.format_exc())
        if fail_fast and not fit.converged:
            what = "failed" if fit.extra.get("traceback") else "did not converge"
            raise FitFailed(
                f"--fail-fast: {name} {what} at {where}: {fit.message or 'no reason given'}",
                str(fit.extra.get("traceback", "")),
            )
        rank_rng = sbc_rank_rng(config.seed, design.id, simulation, name)
        rows.append(_row(fit, truth, None if sample is None else sample.data, rank_rng))
    values: dict[str, np.ndarray] = {
        var: np.array([r[var] for r in rows], dtype=SBC_DTYPES[var])
        for var in (*SBC_TERM_VARS, *SBC_FIT_VARS)
    }
    values["true_value"] = truth
    return values


def sbc_piece(pairs: list[tuple[str, int]], rows: list[dict[str, np.ndarray]]) -> Piece:
    """Stack the values of ``pairs`` (condition id, simulation) into a piece."""
    values: dict[str, np.ndarray] = {
        var: np.stack([r[var] for r in rows]).astype(SBC_DTYPES[var])
        for var in (*SBC_TERM_VARS, *SBC_FIT_VARS, *SBC_TRUE_VARS)
    }
    condition = np.array([c for c, _ in pairs], dtype=np.str_)
    simulation = np.array([s for _, s in pairs], dtype=np.int64)
    return Piece(condition, simulation, values)


#: what a simulation not yet run holds, per variable
_NOT_RUN = {"rank": -1, "n_ranks": 0, "thin": 0, "converged": False, "message": "not run"}


def build_sbc_dataset(
    piece: Piece, config: StudyConfig, meta: Mapping[str, Any], versions: Mapping[str, str]
) -> xr.Dataset:
    """The SBC Dataset (sbc.nc) of a run from its joined piece: dims (condition,
    simulation, engine, term); simulations the piece lacks are marked not done."""
    conditions = config.conditions
    index = {c.id: i for i, c in enumerate(conditions)}
    sims = np.unique(piece.replicate)
    ci = np.array([index[c] for c in piece.condition.tolist()], dtype=np.int64)
    si = np.searchsorted(sims, piece.replicate)
    shape = (len(conditions), len(sims))
    dims = {
        **dict.fromkeys(SBC_TERM_VARS, ("condition", "simulation", "engine", "term")),
        **dict.fromkeys(SBC_FIT_VARS, ("condition", "simulation", "engine")),
        **dict.fromkeys(SBC_TRUE_VARS, ("condition", "simulation", "term")),
    }
    descriptions = {**SBC_TERM_VARS, **SBC_FIT_VARS, **SBC_TRUE_VARS}
    data_vars: dict[str, Any] = {}
    for var, desc in descriptions.items():
        src = piece.values[var]
        dtype = object if src.dtype.kind == "U" else src.dtype
        arr = np.full((*shape, *src.shape[1:]), _NOT_RUN.get(var, np.nan), dtype=dtype)
        arr[ci, si] = src
        data_vars[var] = (dims[var], arr, {"description": desc})
    done = np.zeros(shape, dtype=bool)
    done[ci, si] = True
    data_vars["done"] = (("condition", "simulation"), done, {"description": "simulation run"})
    assert config.sbc is not None
    coords = {
        "condition": np.array([c.label for c in conditions], dtype=object),
        "condition_id": ("condition", np.array([c.id for c in conditions], dtype=object)),
        "simulation": sims,
        "engine": np.array(config.engines, dtype=object),
        "term": np.array(sbc_terms(config.design.structure), dtype=object),
    }
    attrs = {
        "title": f"lmm-study simulation-based calibration: {config.name}",
        "study": config.name,
        "config": config.to_toml(),
        "config_hash": config.hash(),
        "root_seed": config.seed,
        "level": config.level,
        "prior_from": config.sbc.prior_from,
        "generator_prior_scale": config.sbc.generator_prior_scale,
        "simulations_requested": int(meta.get("replicates", config.replicates)),
        "rank_counts": ", ".join(map(str, RANK_COUNTS)),
        "package_versions": json.dumps(dict(versions)),
        "created": meta.get("created", ""),
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)
