"""Chains of the Bayesian engine: data-scaled starting points and the stuck-chain check.

On the seed preset, engine versions 1 and 2 left one chain of four stuck far in the
tail in a few replicates (33, 401, 603 and 957 with version 1; 370 with version 2:
``sd__X`` ~ 1.7e4, R-hat 1.57).  Those replicates must converge with no chain
restarted; a chain forced to start where version 2 started it (and got stuck) must be
detected, rerun with a derived seed and recorded, the same with any number of cores.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from helpers import design_of_generator_1

from models.base import term_names
from models.bayes import BayesEngine, sample
from models.bayes.engine import MAX_RESTARTS, _sample_unstuck, restart_seed
from models.bayes.sample import Draws, SampleSettings, stuck_chains
from models.bayes.start import initial_point_fn, moment_estimates, start_region
from models.data import LMMData
from study.api import Design, StudyConfig
from study.design.seeds import engine_seed

#: seed-preset replicates that had a stuck chain (engine versions 1 and 2)
STUCK_BEFORE = (33, 401, 603, 957, 370)
TERMS = term_names(("X",))[0]


def seed_replicate(config: StudyConfig, design: Design, replicate: int) -> tuple[LMMData, int]:
    """Replicate ``replicate`` of the (one-condition) study ``config`` and the seed its
    Bayesian fit gets in a study run."""
    seed = engine_seed(config.seed, design.id, replicate, "bayes")
    return design.sample(replicate).data, seed


@pytest.fixture(scope="session")
def seed_design(seed_config: StudyConfig) -> Design:
    return design_of_generator_1(seed_config)  # the stuck-chain cases were found on it


@pytest.fixture(scope="session")
def seed_engine(seed_config: StudyConfig, seed_design: Design) -> BayesEngine:
    """The seed preset's Bayesian engine, compiled once."""
    engine = BayesEngine(seed_config.engine_options["bayes"])
    engine.compile(seed_design.sample(0).data)
    return engine


@pytest.mark.parametrize("replicate", STUCK_BEFORE)
def test_seed_replicates_that_were_stuck_converge(
    seed_config: StudyConfig, seed_design: Design, seed_engine: BayesEngine, replicate: int
) -> None:
    data, seed = seed_replicate(seed_config, seed_design, replicate)
    fit = seed_engine.fit(data, seed=seed)
    assert fit.converged, fit.message
    assert np.all(fit.rhat < 1.01), dict(zip(fit.terms, fit.rhat, strict=True))
    assert fit.restarts == 0.0 and fit.message == ""
    assert (fit.optimizer, fit.nobs, fit.ngroups) == ("nutpie", 100_000.0, 40.0)


def test_forced_stuck_chain_is_restarted_and_recorded(
    seed_config: StudyConfig, seed_design: Design, seed_engine: BayesEngine, monkeypatch
) -> None:
    """Replicate 370 with its chains started as engine version 2 started them (PyMC's
    jittered prior support points): chain 1 sticks at sd__X ~ 1.7e4, is detected,
    rerun once with a seed derived from the fit's, and named in the message; the
    draws are the same with 1 and 2 cores."""
    data, seed = seed_replicate(seed_config, seed_design, 370)
    real = sample.initial_point_fn
    calls: list[int] = []

    def version2_start_first(region, where, fallback):
        calls.append(1)  # the first sampling call of a fit starts where version 2 did
        return fallback if len(calls) == 1 else real(region, where, fallback)

    monkeypatch.setattr(sample, "initial_point_fn", version2_start_first)
    fits = {}
    for cores in (1, 2):
        calls.clear()
        options = replace(seed_engine.options, cores=cores, keep_posterior=True)
        fits[cores] = BayesEngine(options).fit(data, seed=seed)
        assert len(calls) == 2  # the fit and one restart
    fit = fits[2]
    assert fit.restarts == 1.0
    expected = f"chain 1 restarted (seed {restart_seed(seed, 1, 1)}): stuck, log density"
    assert fit.message.startswith(expected), fit.message
    assert "sd__X at 1.7" in fit.message
    assert fit.converged and np.all(fit.rhat < 1.01)
    post = [f.posterior["posterior"] for f in fits.values()]
    for term in fit.terms:
        np.testing.assert_array_equal(post[0][term].to_numpy(), post[1][term].to_numpy())
    np.testing.assert_array_equal(fits[1].estimate, fits[2].estimate)
    assert fits[1].message == fits[2].message


# -- the check itself, on synthetic draws ------------------------------------------------
def _draws(lp: np.ndarray, step: np.ndarray | None = None, seed: int = 0) -> Draws:
    chains, n = lp.shape
    terms = np.random.default_rng(seed).normal(size=(chains, n, len(TERMS)))
    stats = {"lp": lp}
    if step is not None:
        stats["step_size"] = np.repeat(step[:, None], n, axis=1)
    return Draws(terms, np.zeros((chains, n), bool), stats)


def test_stuck_chains_needs_a_majority() -> None:
    rng = np.random.default_rng(1)
    lp = rng.normal(-100.0, 2.0, size=(4, 500))
    assert stuck_chains(_draws(lp), TERMS) == {}
    low = lp.copy()
    low[2] -= 1000.0
    assert list(stuck_chains(_draws(low), TERMS)) == [2]
    # overlapping the others in a single draw is enough to be left alone
    low[2, 7] = lp[:, :].max()
    assert stuck_chains(_draws(low), TERMS) == {}
    # a chain above the others is not stuck; nor is anything when 3 of 4 look stuck
    high = lp.copy()
    high[0] += 1000.0
    assert 0 not in stuck_chains(_draws(high), TERMS)
    three = lp.copy()
    three[1:] -= 1000.0 * np.arange(1, 4)[:, None]
    assert stuck_chains(_draws(three), TERMS) == {}
    # one chain: nothing to compare with
    assert stuck_chains(_draws(lp[:1]), TERMS) == {}


def test_stuck_chains_collapsed_step_size() -> None:
    lp = np.random.default_rng(2).normal(-50.0, 1.0, size=(4, 300))
    step = np.array([0.8, 0.7, 1e-4, 0.75])
    found = stuck_chains(_draws(lp, step), TERMS)
    assert list(found) == [2] and "step size 0.0001 collapsed" in found[2]
    assert stuck_chains(_draws(lp, np.array([0.8, 0.3, 0.5, 0.75])), TERMS) == {}


def test_restarts_are_derived_recorded_and_bounded() -> None:
    """A chain stuck again after MAX_RESTARTS reruns is reported, not hidden."""
    rng = np.random.default_rng(3)
    settings = SampleSettings(4, 200, 200, 2, 99, 0.8, False)
    seen: list[SampleSettings] = []

    def run(s: SampleSettings, always_stuck: bool) -> Draws:
        seen.append(s)
        lp = rng.normal(-10.0, 1.0, size=(s.chains, 200))
        if s.chains == 4 or always_stuck:
            lp[-1 if s.chains == 1 else 3] -= 500.0
        return _draws(lp)

    draws, notes, restarts, stuck = _sample_unstuck(lambda s: run(s, False), settings, TERMS)
    assert (restarts, stuck, len(notes)) == (1, False, 1)
    assert seen[1] == replace(settings, chains=1, cores=1, seed=restart_seed(99, 1, 3))
    assert notes[0].startswith(f"chain 3 restarted (seed {seen[1].seed}): stuck, log density")
    assert np.median(draws.stats["lp"][3]) > -20.0
    seen.clear()
    draws, notes, restarts, stuck = _sample_unstuck(lambda s: run(s, True), settings, TERMS)
    assert (restarts, stuck) == (MAX_RESTARTS, True)
    assert [s.seed for s in seen[1:]] == [restart_seed(99, a, 3) for a in (1, 2)]
    assert notes[-1].startswith(f"chain 3 still stuck after {MAX_RESTARTS} restarts")


# -- the starting region ------------------------------------------------------------------
def test_start_region_is_on_the_data_scale() -> None:
    rng = np.random.default_rng(4)
    K, n = 60, 30
    X = np.column_stack([np.ones(K * n), rng.uniform(1, 20, K * n)])
    group = np.repeat(np.arange(K), n)
    u = rng.normal(size=(K, 2)) * [10.0, 0.5]
    y = np.sum(X * ([500.0, -3.0] + u[group]), axis=1) + 4.0 * rng.standard_normal(K * n)
    data = LMMData(y, X, group, ("x",))
    beta, se, D, sigma2 = moment_estimates(data)
    assert np.all(np.abs(beta - [500.0, -3.0]) < 4 * se)
    np.testing.assert_allclose(np.sqrt(np.diag(D)), [10.0, 0.5], rtol=0.3)
    assert np.sqrt(sigma2) == pytest.approx(4.0, rel=0.1)
    region = start_region(data)
    where = {"beta": slice(0, 2), "sd_log__": slice(2, 4), "sigma_log__": slice(4, 5)}
    where["cpc_logodds__"] = slice(5, 6)
    init = initial_point_fn(region, where, lambda seed: np.full(6, np.nan))
    a, b = init(7), init(8)
    np.testing.assert_array_equal(a, init(7))  # a chain's seed fixes its start
    assert not np.array_equal(a, b)
    for point in (a, b):
        assert np.all(np.abs(point[:2] - beta) <= 2 * se)
        assert np.all(np.abs(point[2:4] - np.log(np.sqrt(np.diag(D)))) <= 1.0)
        assert abs(point[4] - np.log(np.sqrt(sigma2))) <= 0.5


def test_start_region_without_enough_full_groups() -> None:
    """Groups of size <= q leave no per-group fits: pooled OLS gives a finite region."""
    rng = np.random.default_rng(5)
    X = np.column_stack([np.ones(40), rng.normal(size=40)])
    data = LMMData(X @ [1.0, 2.0] + rng.normal(size=40), X, np.repeat(np.arange(20), 2), ("x",))
    region = start_region(data)
    assert all(np.all(np.isfinite(v)) for v in region.centre.values())
    assert all(np.all(np.isfinite(v)) for v in region.draw(rng).values())


def test_fit_reports_sampler_and_size(seed_engine: BayesEngine) -> None:
    rng = np.random.default_rng(6)
    X = np.column_stack([np.ones(120), rng.normal(size=120)])
    data = LMMData(X @ [1.0, 0.5] + rng.normal(size=120), X, np.repeat(np.arange(12), 10), ("x",))
    fit = BayesEngine(replace(seed_engine.options, draws=200, tune=200)).fit(data, seed=1)
    assert (fit.optimizer, fit.nobs, fit.ngroups, fit.restarts) == ("nutpie", 120.0, 12.0, 0.0)
    bad = LMMData(np.full(120, np.nan), X, data.group, ("x",))
    failed = BayesEngine(seed_engine.options).fit(bad, seed=1)
    assert not failed.converged and (failed.optimizer, failed.nobs) == ("nutpie", 120.0)
