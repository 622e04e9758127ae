"""The Bayesian engine: a PyMC linear mixed model sampled with nutpie (or PyMC's NUTS).

The model's random-effects structure is the data's (``LMMData.structure``: which of
the q fixed effects have a random effect, r of them, correlated or not).  By default the
random effects are integrated out and the likelihood is written on the per-group
sufficient statistics (:mod:`models.bayes.marginal`), so a fit costs O(K r^3) per gradient
whatever the number of rows, and the compiled model is re-used for every dataset of the
same structure (nutpie ``with_data``; a different number of groups K needs no
recompilation either).  Chains start in a region scaled by the data
(:mod:`models.bayes.start`); a chain stuck away from the others is rerun with a seed
derived from the fit's, and every rerun is recorded (``FitResult.restarts`` and
``message``), never silent.  Latent-variable parameterizations (``"centered"``,
``"noncentered"``) are available for comparison; their compiled models depend on K.

A :class:`models.crossed.CrossedData` (several random terms: crossed subjects x items,
nested factors) is fitted by the same engine with the model of
:mod:`models.bayes.crossed`: the exact marginal likelihood through Woodbury on the L
random-effect levels (:mod:`models.bayes.woodbury`), the same priors per term, one
compiled model per structure and numbers of levels, the same samplers, starting
regions, stuck-chain reruns, convergence rules and decision rules (``fit_tests``).  Out
of scope for crossed data, refused with a failed result that says so: the latent
parameterizations, ``random_effects = True`` and the deliberately wrong
``likelihood = "no-logdet"``; ``algebra`` only concerns one factor; ``draw_prior`` (and
so simulation-based calibration) takes one-factor structures only.

Example
-------
>>> engine = BayesEngine(BayesOptions(draws=1000))      # doctest: +SKIP
>>> result = engine.fit(data, seed=1)                   # doctest: +SKIP
"""

from __future__ import annotations

import secrets
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from models.base import FitResult, TestResult
from models.bayes import crossed as bx
from models.bayes import graph as bm
from models.bayes import sample
from models.bayes.decisions import decisions
from models.bayes.marginal import STATS, UNROLL_MAX, pack_stats
from models.bayes.options import BayesOptions
from models.bayes.sample import convergence_message, summarise
from models.bayes.start import layout, start_region
from models.crossed import CrossedData, CrossedStructure, crossed_problem
from models.data import fit_problem
from models.structure import Structure
from models.validate import OptionError

if TYPE_CHECKING:
    from collections.abc import Callable

    from models.data import LMMData

#: compiled models of this process, shared by all engines: compile once per process
_COMPILED: dict[tuple, Any] = {}
_COMPILE_LOCK = threading.RLock()
#: times a stuck chain is rerun (each time with a new seed) before it is given up on
MAX_RESTARTS = 2


@dataclass(frozen=True)
class Compiled:
    """A compiled model (nutpie's, or the ``pm.Model`` for PyMC's NUTS) and where each
    free variable sits in the flat vector nutpie samples."""

    model: Any
    layout: dict[str, slice]


def restart_seed(seed: int, attempt: int, chain: int) -> int:
    """The sampler seed of restart ``attempt`` (1, 2, ...) of chain ``chain``: derived
    from the fit's seed, so a seed gives the same draws, restarts included."""
    key = (2, attempt, chain)
    return int(np.random.SeedSequence(seed, spawn_key=key).generate_state(1, np.uint64)[0])


def resolve_seed(seed: object) -> int:
    """The sampler seed: ``seed`` checked, or a fresh random one when ``None``.

    nutpie and PyMC both take an unsigned 64-bit integer; anything else cannot be
    passed on reproducibly and is rejected.
    """
    if seed is None:
        return secrets.randbits(63)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int or None; got {seed!r} ({type(seed).__name__})")
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed must be in [0, 2**64); got {seed!r}")
    return int(seed)


class BayesEngine:
    """Bayesian LMM engine (``name = "bayes"``), see the module docstring.

    Compiled models are cached per process (shared by every engine instance) per
    (structure, parameterization, sampler, algebra, priors) and, for latent models, K
    (the structure as :func:`models.bayes.graph.model_key`: q, the positions of the
    random effects, correlated or not); an engine pickles without the cache (each
    worker process compiles once).
    """

    name = "bayes"

    def __init__(self, options: BayesOptions | None = None) -> None:
        if options is None:
            options = BayesOptions()
        if not isinstance(options, BayesOptions):
            raise TypeError(f"options must be a BayesOptions; got {type(options).__name__}")
        self.options = options
        self._cache = _COMPILED
        self._lock = _COMPILE_LOCK

    def __getstate__(self) -> dict[str, Any]:
        return {"options": self.options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["options"])  # type: ignore[misc]

    # -- compilation ---------------------------------------------------------------
    def _algebra(self, structure: Structure | int) -> str:
        """The likelihood algebra for ``structure`` (a number q: the all-slopes model)."""
        s = bm.as_structure(structure)
        o = self.options
        if o.algebra != "auto":
            return o.algebra
        if s.q == 2 and s.index == (0, 1) and o.sampler == "nutpie" and o.likelihood == "marginal":
            return "kernel"  # the Op's Python fallback would be slow under PyMC's NUTS
        return "unrolled" if s.r <= UNROLL_MAX else "batched"

    def _key(self, structure: Structure | int, n_groups: int) -> tuple:
        o = self.options
        s = bm.as_structure(structure)
        latent = o.parameterization != "marginal"
        fast = o.fastmath and o.sampler == "nutpie"
        return (
            bm.model_key(s),
            o.parameterization,
            o.sampler,
            self._algebra(s),
            o.priors,
            fast,
            latent and n_groups,
            o.likelihood,
        )

    def _crossed_key(self, data: CrossedData) -> tuple:
        o = self.options
        return (bx.plan_key(data), o.sampler, o.priors, o.fastmath and o.sampler == "nutpie")

    def _data_key(self, data: LMMData | CrossedData) -> tuple:
        if isinstance(data, CrossedData):
            return self._crossed_key(data)
        return self._key(data.structure, data.n_groups)

    def _crossed_refusal(self, structure: CrossedStructure) -> str:
        """Why these options cannot fit a model of ``structure`` (several random terms:
        :meth:`BayesOptions.check_structure`), or ``""``."""
        try:
            self.options.check_structure(structure)
        except OptionError as err:
            return f"options: {err}"
        return ""

    def _compile_crossed(self, data: CrossedData) -> float:
        key = self._crossed_key(data)
        with self._lock:
            if key in self._cache:
                return 0.0
            start = time.perf_counter()
            o = self.options
            plan = bx.plan_of(data)
            model = bx.build(data.structure, plan, o.priors, bx.pack(data))
            where = layout(model)
            if o.sampler == "nutpie":
                import nutpie
                import pytensor

                with pytensor.config.change_flags(numba__fastmath=o.fastmath):
                    model = nutpie.compile_pymc_model(model, var_names=[bm.TERMS])
            self._cache[key] = Compiled(model, where)
            return time.perf_counter() - start

    def compile(self, data: LMMData | CrossedData) -> float:
        """Build and compile the model for data shaped like ``data``.

        Fitting calls this itself; call it ahead of time to keep compilation out of
        the first fit's time.  Only ``data.structure`` (q, which effects are random,
        correlated or not; not the names) and, for latent models, K matter.

        Parameters
        ----------
        data : LMMData
            Any dataset of the shape to be fitted; its values are placeholders.

        Returns
        -------
        float
            Seconds spent compiling; 0.0 when the model was already cached.
            A :class:`models.crossed.CrossedData` compiles its crossed model
            (:mod:`models.bayes.crossed`: one per structure and numbers of levels).
        """
        if isinstance(data, CrossedData):
            return self._compile_crossed(data)
        structure = data.structure
        key = self._key(structure, data.n_groups)
        with self._lock:
            if key in self._cache:
                return 0.0
            start = time.perf_counter()
            o = self.options
            if o.parameterization == "marginal":
                exact = o.likelihood == "marginal"
                stats = pack_stats(data)
                model = bm.build_marginal(structure, o.priors, key[3], stats, exact)
            else:
                centered = o.parameterization == "centered"
                model = bm.build_latent(structure, data.n_groups, o.priors, centered, data)
            where = layout(model)
            if o.sampler == "nutpie":
                import nutpie
                import pytensor

                latent = o.parameterization != "marginal"
                var_names = [bm.TERMS, "u"] if latent else [bm.TERMS]
                # Numba fastmath lets LLVM reassociate and fuse differently when a
                # function is compiled cold or loaded from PyTensor's cache, which
                # changes the log-density in the last bits and hence the draws.
                # Without it a seed gives the same draws in every process.
                with pytensor.config.change_flags(numba__fastmath=o.fastmath):
                    model = nutpie.compile_pymc_model(model, var_names=var_names)
            self._cache[key] = Compiled(model, where)
            return time.perf_counter() - start

    def draw_prior(
        self, structure: Structure | int, rng: np.random.Generator, scale: float = 1.0
    ) -> np.ndarray:
        """One draw of every term (``structure.terms`` order) from this engine's priors
        for a model of ``structure`` (a number q: the all-slopes model with q
        coefficients); ``scale`` multiplies every prior scale (a deliberately wrong
        generating prior, for simulation-based calibration)."""
        from models.bayes.prior import draw_prior

        return draw_prior(self.options.priors, structure, rng, scale=scale)

    # -- fitting -------------------------------------------------------------------
    def fit(
        self, data: LMMData | CrossedData, *, seed: int | None = None, keep_posterior: bool = False
    ) -> FitResult:
        """Sample the posterior of ``data``'s model and summarise it per term.

        Parameters
        ----------
        data : LMMData or CrossedData
            One grouping factor, or several random terms (:mod:`models.bayes.crossed`;
            checked by :func:`models.crossed.crossed_problem`).
        seed : int or None
            Sampler seed (0 <= seed < 2**64); the same seed gives identical draws
            (with nutpie in any process; with ``sampler="pymc"`` once PyTensor's C
            cache is warm: a cold compile can change the draws in the last bits).
            ``None`` draws a fresh one, stored in ``extra["seed"]``.
        keep_posterior : bool
            Return the posterior as a DataTree in ``posterior`` for this fit
            (as the ``keep_posterior`` option does for every fit).

        Returns
        -------
        FitResult
            Per-term posterior summaries and diagnostics.  A failing fit (bad data,
            sampler error) is returned with ``converged=False``, NaN values and the
            reason in ``message`` (the exception's text in ``traceback``): it never
            raises for a dataset.  ``draws`` holds the posterior draws of every term,
            shape (chain, draw, term), and ``posterior`` the DataTree when asked for.
            ``extra`` holds ``seed``, ``sampler``, ``parameterization``,
            ``compile_seconds`` (0 when the model was cached), ``sampling_seconds``
            and, when asked for, ``random_effects`` (and, for callers that read the
            old keys, copies of ``draws`` and ``posterior``).  Chains start in a region scaled
            by the data (:mod:`models.bayes.start`); a chain stuck away from the
            others (:func:`models.bayes.sample.stuck_chains`) is rerun, up to
            :data:`MAX_RESTARTS` times, with a seed derived from ``seed``; the number
            of reruns is in ``restarts`` and each is named in ``message``.

        Raises
        ------
        TypeError, ValueError
            Only for an invalid ``seed`` (a caller's error, not a data problem).
        """
        start = time.perf_counter()
        seed = resolve_seed(seed)
        try:
            if isinstance(data, CrossedData):
                problem = crossed_problem(data) or self._crossed_refusal(data.structure)
            else:
                problem = fit_problem(data)
            if problem:
                return self._failed(data, problem, time.perf_counter() - start)
            return self._fit(data, seed, start, keep_posterior or self.options.keep_posterior)
        except Exception as err:  # failures are data: record, never raise
            message = f"{type(err).__name__}: {err}".strip()
            return self._failed(data, message, time.perf_counter() - start, traceback.format_exc())

    def fit_tests(
        self,
        data: LMMData | CrossedData,
        *,
        terms: Sequence[str],
        null: Sequence[float],
        tests: Sequence[str],
        seed: int | None = None,
    ) -> tuple[FitResult, dict[str, TestResult]]:
        """Fit ``data`` and apply the decision rules ``tests`` (``interval``, ``sign``:
        :mod:`models.bayes.decisions`) to ``H0: beta_t = null_t`` for each of ``terms``,
        at ``alpha = 1 - level``.  Never raises for a dataset (a failed fit decides
        nothing: NaN)."""
        fit = self.fit(data, seed=seed)
        o = self.options
        return fit, decisions(fit, terms, null, tests, o.level, o.interval)

    def _failed(
        self, data: LMMData | CrossedData, message: str, seconds: float, trace: str = ""
    ) -> FitResult:
        if isinstance(data, CrossedData):
            result = bx.failed(data.structure, message, seconds, trace)
        else:
            result = FitResult.failed(data.structure, message, seconds, trace)
        result.optimizer = self.options.sampler
        result.nobs, result.ngroups = float(data.n_obs), float(data.n_groups)
        return result

    def _fit(
        self, data: LMMData | CrossedData, seed: int, start: float, keep_posterior: bool
    ) -> FitResult:
        o = self.options
        compile_seconds = self.compile(data)
        structure = data.structure
        compiled = self._cache[self._data_key(data)]
        model, where = compiled.model, compiled.layout
        crossed = isinstance(data, CrossedData)
        latent = not crossed and o.parameterization != "marginal"
        if isinstance(data, CrossedData):
            arrays = bx.pack(data)
            region = bx.start_region(data)
        else:
            if latent:
                arrays = {"y": data.y, "X": data.X, "group": data.group}
            else:
                arrays = {STATS: pack_stats(data)}
            region = start_region(data)
        sampler = sample.sample_nutpie if o.sampler == "nutpie" else sample.sample_pymc

        def run(settings: sample.SampleSettings) -> sample.Draws:
            return sampler(model, arrays, settings, region, where)

        t0 = time.perf_counter()
        settings = sample.SampleSettings(
            o.chains, o.draws, o.tune, o.cores, seed, o.target_accept, latent
        )
        terms, effects = structure.terms, structure.effects
        draws, notes, restarts, stuck = _sample_unstuck(run, settings, terms)
        sampling_seconds = time.perf_counter() - t0
        summary = summarise(draws.terms, level=o.level, point=o.point, interval=o.interval)
        n_div = int(draws.diverging.sum())
        failure = convergence_message(summary, n_div, terms, o.ess_floor)
        message = "; ".join([*notes, failure] if failure else notes)
        extra: dict[str, object] = {
            "seed": seed,
            "sampler": o.sampler,
            "parameterization": o.parameterization,
            "compile_seconds": compile_seconds,
            "sampling_seconds": sampling_seconds,
        }
        attrs = {"/": {"engine": self.name, **extra}}
        u = draws.u
        if o.random_effects and u is None and not isinstance(data, CrossedData):
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
            u = bm.draw_random_effects(draws.terms, data, rng)
        if o.random_effects and u is not None and not isinstance(data, CrossedData):
            extra["random_effects"] = _random_effects_array(u, data)
        posterior = None
        if keep_posterior:
            if isinstance(data, CrossedData):  # no random effects: refused above
                posterior = sample.to_datatree(draws, terms, None, (), [], attrs)
            else:
                keep_u = u if o.random_effects else None
                random = list(data.structure.random)
                posterior = sample.to_datatree(
                    draws, terms, keep_u, data.group_labels, random, attrs
                )
        return FitResult(
            terms,
            effects,
            summary["estimate"],
            summary["std_error"],
            summary["ci_lower"],
            summary["ci_upper"],
            converged=not failure and not stuck,
            fit_seconds=time.perf_counter() - start,
            message=message,
            rhat=summary["rhat"],
            ess_bulk=summary["ess_bulk"],
            ess_tail=summary["ess_tail"],
            divergences=float(n_div),
            extra=extra,
            restarts=float(restarts),
            nobs=float(data.n_obs),
            ngroups=float(data.n_groups),
            optimizer=o.sampler,
            posterior=posterior,
            draws=draws.terms,  # (chain, draw, term): for SBC ranks, not stored
        )


def _sample_unstuck(
    run: Callable[[sample.SampleSettings], sample.Draws],
    settings: sample.SampleSettings,
    terms: list[str],
) -> tuple[sample.Draws, list[str], int, bool]:
    """Sample, then rerun each stuck chain (:func:`models.bayes.sample.stuck_chains`)
    alone with a seed derived from the fit's (:func:`restart_seed`), up to
    :data:`MAX_RESTARTS` times.

    Returns the draws, one note per restart (and one per chain still stuck), the
    number of restarts, and whether a chain is still stuck.  A chain's draws depend on
    its seed alone, so a rerun chain is the same whatever ``settings.cores`` is.
    """
    draws = run(settings)
    notes: list[str] = []
    restarts = 0
    stuck = sample.stuck_chains(draws, terms)
    for attempt in range(1, MAX_RESTARTS + 1):
        if not stuck:
            break
        for chain, reason in sorted(stuck.items()):
            seed = restart_seed(settings.seed, attempt, chain)
            one = run(replace(settings, chains=1, cores=1, seed=seed))
            draws = draws.with_chain(chain, one)
            restarts += 1
            notes.append(f"chain {chain} restarted (seed {seed}): stuck, {reason}")
        stuck = sample.stuck_chains(draws, terms)
    for chain, reason in sorted(stuck.items()):
        notes.append(f"chain {chain} still stuck after {MAX_RESTARTS} restarts: {reason}")
    return draws, notes, restarts, bool(stuck)


def _random_effects_array(u: np.ndarray, data: LMMData):
    import xarray as xr

    return xr.DataArray(
        u,
        dims=("chain", "draw", "group", "effect"),
        coords={"group": list(data.group_labels), "effect": list(data.structure.random)},
        name="u",
    )
