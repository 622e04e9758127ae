"""Running the samplers for the Bayesian engine and collecting their draws as arrays.

nutpie is called with ``return_raw_trace=True``: its Arrow trace is read straight into
NumPy arrays, because converting every fit to an ArviZ DataTree costs about as much as
sampling the marginal model.  A DataTree is built (:func:`to_datatree`) only when the
posterior is to be kept.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from models.bayes.graph import TERMS
from models.bayes.start import initial_point_fn

if TYPE_CHECKING:
    import pymc as pm
    import xarray as xr

    from models.bayes.start import StartRegion

#: nutpie sample-stat name -> ArviZ name.
_NUTPIE_STATS = {
    "logp": "lp",
    "energy": "energy",
    "step_size": "step_size",
    "n_steps": "n_steps",
    "depth": "tree_depth",
    "mean_tree_accept": "acceptance_rate",
}
#: the tail-ESS probability of ``az.summary`` (arviz-stats' default ``stats.ci_prob``)
TAIL_ESS_PROB = 0.89
_PYMC_STATS = ("lp", "energy", "step_size", "n_steps", "tree_depth", "acceptance_rate")


@dataclass
class Draws:
    """Posterior draws after tuning, as arrays with leading (chain, draw) axes.

    ``terms`` (chain, draw, T) follows the structure's ``terms`` order; ``u``
    (chain, draw, K, r) holds latent random effects (one per random effect) when the
    model has them; ``stats`` holds sampler statistics under their ArviZ names.
    """

    terms: np.ndarray
    diverging: np.ndarray
    stats: dict[str, np.ndarray] = field(default_factory=dict)
    u: np.ndarray | None = None

    def with_chain(self, chain: int, other: Draws) -> Draws:
        """These draws with chain ``chain`` replaced by the one chain of ``other``."""

        def put(mine: np.ndarray, theirs: np.ndarray) -> np.ndarray:
            out = mine.copy()
            out[chain] = theirs[0]
            return out

        u = None if self.u is None or other.u is None else put(self.u, other.u)
        stats = {k: put(v, other.stats[k]) for k, v in self.stats.items() if k in other.stats}
        return Draws(put(self.terms, other.terms), put(self.diverging, other.diverging), stats, u)


def _column(batch: Any, name: str) -> np.ndarray:
    """One column of an Arrow record batch as an array, list columns reshaped."""
    import pyarrow as pa

    col = pa.array(batch.column(name))
    meta = batch.schema.field(name).metadata or {}
    if pa.types.is_large_list(col.type) or pa.types.is_list(col.type):
        shape = [int(s) for s in meta.get(b"shape", b"").decode().split(",") if s]
        return col.flatten().to_numpy().reshape(batch.num_rows, *shape)
    return col.to_numpy(zero_copy_only=False)


@dataclass(frozen=True)
class SampleSettings:
    """What both samplers take: chains, draws kept per chain, tuning draws, chains run
    in parallel (``cores``), the seed (fixes every chain's draws), the target
    acceptance rate, and whether to collect the latent random effects ``u``."""

    chains: int
    draws: int
    tune: int
    cores: int
    seed: int
    target_accept: float
    latent: bool


def start_seed(seed: int, chain: int) -> int:
    """The seed of chain ``chain``'s starting point under PyMC's NUTS (nutpie passes
    its own per-chain seed to the initial-point function)."""
    return int(np.random.SeedSequence(seed, spawn_key=(3, chain)).generate_state(1, np.uint64)[0])


def sample_nutpie(
    compiled: Any,
    data: dict[str, np.ndarray],
    s: SampleSettings,
    start: StartRegion | None = None,
    layout: Mapping[str, slice] | None = None,
) -> Draws:
    """Sample a compiled nutpie model with new data (no recompilation).

    Parameters
    ----------
    compiled : nutpie CompiledPyMCModel
        From ``nutpie.compile_pymc_model``; ``with_data`` swaps the shared data
        (any shape of the same rank) without recompiling.
    data : dict
        New values of the model's ``pm.Data`` variables, by name.
    s : SampleSettings
    start : StartRegion, optional
        Where the chains start (:mod:`models.bayes.start`); ``None``: PyMC's default,
        the priors' support points jittered.
    layout : mapping
        With ``start``: the slice of each value variable in the flat vector nutpie
        samples (:func:`models.bayes.start.layout` of the PyMC model).

    Returns
    -------
    Draws
    """
    import nutpie

    compiled = compiled.with_data(**data)
    if start is not None:
        if layout is None:
            raise ValueError("start needs the model's layout")
        init = initial_point_fn(start, dict(layout), compiled.initial_point_func)
        compiled = dataclasses.replace(compiled, initial_point_func=init)
    res = nutpie.sample(
        compiled,
        chains=s.chains,
        draws=s.draws,
        tune=s.tune,
        cores=s.cores,
        seed=s.seed,
        progress_bar=False,
        save_warmup=False,
        return_raw_trace=True,
        target_accept=s.target_accept,
    )
    draw_batches, stat_batches = res.get_arrow_trace()
    names = [TERMS, "u"] if s.latent else [TERMS]
    out: dict[str, list[np.ndarray]] = {}
    for draw_b, stat_b in zip(draw_batches, stat_batches, strict=True):
        keep = ~_column(stat_b, "tuning").astype(bool)
        for name in names:
            out.setdefault(name, []).append(_column(draw_b, name)[keep])
        out.setdefault("diverging", []).append(_column(stat_b, "diverging")[keep].astype(bool))
        for src, dst in _NUTPIE_STATS.items():
            out.setdefault(dst, []).append(_column(stat_b, src)[keep])
    arrays = {name: np.stack(values) for name, values in out.items()}
    stats = {dst: arrays[dst] for dst in _NUTPIE_STATS.values()}
    return Draws(arrays[TERMS], arrays["diverging"], stats, arrays.get("u"))


def sample_pymc(
    model: pm.Model,
    data: dict[str, np.ndarray],
    s: SampleSettings,
    start: StartRegion | None = None,
    layout: Mapping[str, slice] | None = None,
) -> Draws:
    """Sample with PyMC's own NUTS (``pm.sample``, which returns a DataTree).

    ``pm.sample`` compiles its functions on every call; parameters as in
    :func:`sample_nutpie`, with ``model`` a ``pm.Model`` whose data are set first
    (``layout`` is not needed).  With ``start``, chain ``c`` starts at a point drawn
    from it with seed :func:`start_seed` ``(seed, c)``, without PyMC's own jitter.
    """
    import pymc as pm

    var_names = [TERMS, "u"] if s.latent else [TERMS]
    init: dict[str, Any] = {}
    if start is not None:
        # variables the region does not cover (latent random effects, unconstrained)
        # start as PyMC would start them: their default jittered by U(-1, 1)
        default = model.initial_point()
        names = {rv.name for rv in model.free_RVs}
        initvals = []
        for c in range(s.chains):
            rng = np.random.default_rng(start_seed(s.seed, c))
            point = {k: v for k, v in start.draw_constrained(rng).items() if k in names}
            for name in sorted(names - set(point)):
                value = np.asarray(default[name])
                point[name] = value + rng.uniform(-1.0, 1.0, size=value.shape)
            initvals.append(point)
        init = {"init": "adapt_diag", "initvals": initvals}
    with model:
        pm.set_data(data)
    logger = logging.getLogger("pymc")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            tree = pm.sample(
                s.draws,
                tune=s.tune,
                chains=s.chains,
                cores=s.cores,
                random_seed=s.seed,
                progressbar=False,
                target_accept=s.target_accept,
                var_names=var_names,
                compute_convergence_checks=False,
                model=model,
                **init,
            )
    finally:
        logger.setLevel(level)
    post, ss = tree["posterior"], tree["sample_stats"]
    stats = {name: ss[name].to_numpy() for name in _PYMC_STATS if name in ss}
    u = post["u"].to_numpy() if s.latent else None
    return Draws(post[TERMS].to_numpy(), ss["diverging"].to_numpy().astype(bool), stats, u)


def to_datatree(
    draws: Draws,
    terms: list[str],
    u: np.ndarray | None,
    groups: tuple[str, ...],
    effects: list[str],
    attrs: dict[str, Any],
) -> xr.DataTree:
    """Posterior and sample stats as an ArviZ DataTree (one variable per term; ``u``
    with dims (group, effect), ``effects`` the names of the random effects)."""
    import arviz as az

    posterior: dict[str, np.ndarray] = {name: draws.terms[..., j] for j, name in enumerate(terms)}
    dims: dict[str, list[str]] = {}
    coords: dict[str, Any] = {}
    if u is not None:
        posterior["u"] = u
        dims["u"] = ["group", "effect"]
        coords = {"group": list(groups), "effect": effects}
    stats = {"diverging": draws.diverging, **draws.stats}
    return az.from_dict(
        {"posterior": posterior, "sample_stats": stats},
        dims=dims,
        coords=coords,
        attrs=attrs,
    )


def summarise(
    terms: np.ndarray, *, level: float, point: str = "mean", interval: str = "eti"
) -> dict[str, np.ndarray]:
    """Per-term point estimate, SD, interval and diagnostics of (chain, draw, T) draws.

    ``point`` is ``"mean"`` or ``"median"``; ``interval`` ``"eti"`` (equal-tailed) or
    ``"hdi"``, with probability ``level``.  R-hat, ESS bulk and ESS tail are those of
    ``az.summary`` for the same draws (see :func:`_diagnostics`).
    """
    import arviz as az

    flat = terms.reshape(-1, terms.shape[-1])
    alpha = (1.0 - level) / 2.0
    if interval == "eti":
        lower, upper = np.quantile(flat, [alpha, 1.0 - alpha], axis=0)
    else:
        bounds = np.asarray(az.hdi(np.ascontiguousarray(flat.T), level))
        lower, upper = bounds[:, 0], bounds[:, 1]
    estimate = flat.mean(axis=0) if point == "mean" else np.median(flat, axis=0)
    return {
        "estimate": estimate,
        "std_error": flat.std(axis=0, ddof=1),
        "ci_lower": lower,
        "ci_upper": upper,
        **_diagnostics(terms),
    }


def _diagnostics(terms: np.ndarray) -> dict[str, np.ndarray]:
    """Rank-normalised split R-hat, bulk ESS and tail ESS of (chain, draw, T) draws.

    The numbers equal ``az.summary``'s ``r_hat``, ``ess_bulk`` and ``ess_tail`` columns
    for a DataTree of the same draws, without building one.  ``az.summary`` calls
    ``ess(method="tail")`` with ``prob=None``, which arviz-stats replaces by
    ``rcParams["stats.ci_prob"]`` (0.89 by default); a scalar ``p`` makes the tail ESS
    the smaller quantile ESS at ``1 - p`` and ``p`` (0.11 and 0.89), not at 0.05 and
    0.95.  The probability is pinned to that default (:data:`TAIL_ESS_PROB`) rather
    than read from the rcParams, so stored results never depend on a user's arvizrc.
    """
    import arviz as az

    axes = {"chain_axis": 0, "draw_axis": 1}  # the array layer's own default is (-2, -1)
    prob = TAIL_ESS_PROB
    return {
        "rhat": np.asarray(az.rhat(terms, method="rank", **axes)),
        "ess_bulk": np.asarray(az.ess(terms, method="bulk", **axes)),
        "ess_tail": np.asarray(az.ess(terms, method="tail", prob=prob, **axes)),
    }


def convergence_message(
    summary: dict[str, np.ndarray], divergences: int, terms: list[str], ess_floor: float
) -> str:
    """Why a fit does not count as converged, or ``""`` (R-hat, divergences, ESS)."""
    reasons = []
    rhat, ess = summary["rhat"], summary["ess_bulk"]
    bad = ~(rhat <= 1.01)
    if bad.any():
        j = int(np.argmax(np.where(np.isnan(rhat), np.inf, rhat)))
        reasons.append(f"max R-hat {rhat[j]:.3f} > 1.01 ({terms[j]})")
    if divergences:
        reasons.append(f"{divergences} divergent transition(s)")
    low = ~(ess >= ess_floor)
    if low.any():
        j = int(np.argmin(np.where(np.isnan(ess), -np.inf, ess)))
        reasons.append(f"min ESS_bulk {ess[j]:.0f} < {ess_floor:g} ({terms[j]})")
    return "not converged: " + "; ".join(reasons) if reasons else ""


#: a chain's adapted step size below this fraction of the other chains' median counts
#: as collapsed
STEP_COLLAPSE = 0.01


def stuck_chains(draws: Draws, terms: list[str]) -> dict[int, str]:
    """Chains stuck away from the others, by chain index, with the reason.

    The chains whose log densities agree are the reference: the largest set of chains
    whose ranges of log density (over their draws) share a point, at least half of
    them (ties go to the set at the higher log density).  A chain is stuck when

    * its log density never reaches theirs: every one of its draws has a lower log
      density than every draw of every reference chain (complete separation of the
      ranks; for a chain that mixes with them the chance of this with a few hundred
      draws is nil, so a working chain is not taken for a stuck one);
    * or its adapted step size collapsed, below :data:`STEP_COLLAPSE` times the median
      of the other chains' (the chain barely moves).

    The check needs two chains or more and flags at most half of them: with no set of
    agreeing chains to judge by, none is flagged (R-hat reports the disagreement).
    Chains above the reference are never flagged.
    """
    lp = draws.stats.get("lp")
    n = draws.terms.shape[0]
    if n < 2:
        return {}
    out: dict[int, str] = {}
    if lp is not None:
        lp = np.where(np.isnan(lp), -np.inf, lp)
        hi, lo = lp.max(axis=1), lp.min(axis=1)
        # largest set of ranges sharing a point: that point can be one's lower end
        best = max(range(n), key=lambda c: (int(np.sum((lo <= lo[c]) & (lo[c] <= hi))), lo[c]))
        ref = [d for d in range(n) if lo[d] <= lo[best] <= hi[d]]
        if 2 * len(ref) >= n:
            floor = lo[ref].min()
            for c in range(n):
                if hi[c] < floor:
                    out[c] = (
                        f"log density {np.median(lp[c]):.6g} below every draw of chain(s) "
                        f"{', '.join(map(str, ref))} (median {np.median(lp[ref]):.6g})"
                    )
    step = draws.stats.get("step_size")
    if step is not None and step.shape[1]:
        final = step[:, -1]
        for c in range(n):
            others = float(np.median(np.delete(final, c)))
            if c not in out and final[c] < STEP_COLLAPSE * others:
                out[c] = f"step size {final[c]:.3g} collapsed (other chains {others:.3g})"
    if 2 * len(out) > n:
        return {}
    for c, reason in out.items():
        out[c] = f"{reason}; {_location(draws.terms, c, terms)}"
    return out


def _location(terms: np.ndarray, chain: int, names: list[str]) -> str:
    """Where chain ``chain`` sits: the term farthest (in pooled SDs of the other
    chains) from the other chains' mean."""
    mine = terms[chain].mean(axis=0)
    rest = np.delete(terms, chain, axis=0).reshape(-1, terms.shape[-1])
    centre, spread = rest.mean(axis=0), rest.std(axis=0)
    z = np.abs(mine - centre) / np.where(spread > 0, spread, np.inf)
    j = int(np.argmax(np.nan_to_num(z, nan=-1.0)))
    return f"{names[j]} at {mine[j]:.4g} (other chains {centre[j]:.4g})"
