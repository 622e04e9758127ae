"""A crossed design's generator and analytic truth against brute force (issue 27).

The truth (:mod:`study.design.crossed.algebra`) is ``(X'V^-1 X)^-1`` through Woodbury on
the random-effect levels.  Brute force here: the GLS estimator with the true V, formed
densely (N x N, fine at these sizes), applied to 20,000 replicates the generator draws
(one solve with every replicate as a right-hand side); the empirical SD of each
estimate must be within 3 Monte Carlo SEs of the analytic SE (MCSE of an SD from
:func:`helpers.sd_and_mcse`).  The figures are printed (``pytest -s``) as measured.
"""

from __future__ import annotations

import numpy as np
import pytest
import tomli_w
from helpers import crossed_ols_spec, sd_and_mcse

from models.registry import Registry
from study.design.config import config_from_text
from study.design.generate import CrossedDesign, design_of
from study.design.truth import compute_truth

REPLICATES = 20_000

LATIN = {"distribution": "latin_square", "levels": [-0.5, 0.5]}
#: Barr et al. (2013) in small: a counterbalanced condition, random slopes by subject
#: and item, and a row-level covariate
CROSSED = {
    "crossed": {"subj": 12, "item": 8},
    "fixed": "cond + x",
    "beta": {"(Intercept)": 0.5, "cond": 0.4, "x": 0.2},
    "random": "(1 + cond | subj) + (1 + cond | item)",
    "re_sd": {"subj": [0.6, 0.4], "item": [0.5, 0.3]},
    "re_cor": {"subj": 0.4, "item": -0.3},
    "sigma": 0.8,
    "predictors": {"cond": LATIN, "x": {"distribution": "normal", "sd": 1.5}},
}
#: a subject meets only the items of its list, all in the list's condition
LISTS = {
    **CROSSED,
    "seen": "list",
    "random": "(1 | subj) + (1 + x | item)",
    "re_sd": {"subj": 0.7, "item": [0.5, 0.3]},
    "re_cor": {"item": 0.3},
}


def _config(design: dict, seed: int = 7, **top):
    table = {"name": "t", "seed": seed, "design": design, **top}
    table.setdefault("engines", {"run": ["crossed_ols"]})
    registry = Registry.default().with_engines(crossed_ols_spec())
    return config_from_text(tomli_w.dumps(table), default_name="t", label="t", registry=registry)


def _design(design: dict, seed: int = 7) -> CrossedDesign:
    # the engines do not matter to the generator: any, even one that cannot fit it
    from study.design.crossed.spec import CrossedDesignConfig

    return CrossedDesign(CrossedDesignConfig(**design), seed)


def _dense_v(design: CrossedDesign) -> np.ndarray:
    """``V = Z G Z' + sigma^2 I`` formed densely (brute force only)."""
    blocks = [
        np.kron(np.eye(K), T @ T.T) for K, T in zip(design.data.levels, design.factors, strict=True)
    ]
    G = np.zeros((design.data.n_random, design.data.n_random))
    at = 0
    for B in blocks:
        G[at : at + B.shape[0], at : at + B.shape[0]] = B
        at += B.shape[0]
    Z = design.data.Z.toarray()
    return Z @ G @ Z.T + design.config.sigma**2 * np.eye(design.data.n_obs)


def _check(design: CrossedDesign, label: str) -> None:
    truth = compute_truth(design)
    q = design.config.q
    V = _dense_v(design)
    X = design.X
    ViX = np.linalg.solve(V, X)
    cov = np.linalg.inv(X.T @ ViX)
    # the Woodbury algebra is the dense GLS covariance (no Monte Carlo in this one)
    np.testing.assert_allclose(truth.cov, cov, rtol=1e-10, atol=1e-14)
    Y = np.stack([design.sample(r).data.y for r in range(REPLICATES)])
    est = (cov @ (ViX.T @ Y.T)).T
    sd, mcse = sd_and_mcse(est)
    se = truth.se[:q]
    for name, a, b, m in zip(design.config.structure.fixed, sd, se, mcse, strict=True):
        print(f"{label}: {name}: brute-force SD {a:.5f} (MCSE {m:.5f}), analytic SE {b:.5f}")
    assert np.all(np.abs(sd - se) < 3 * mcse), (sd, se, mcse)
    assert np.all(np.abs(est.mean(axis=0) - design.beta) < 3.5 * sd / np.sqrt(REPLICATES))


def test_latin_square_with_slopes_by_subject_and_item_and_a_covariate():
    design = _design(CROSSED)
    assert design.data.n_obs == 96 and design.data.n_random == 2 * 12 + 2 * 8
    _check(design, "crossed")


def test_list_design_subjects_meet_their_lists_items_only():
    design = _design(LISTS)
    assert design.data.n_obs == 12 * 8 // 2
    _check(design, "list")


def test_generated_random_effects_have_their_covariance():
    design = _design(CROSSED)
    U = np.stack([design.sample(r).u for r in range(4000)])
    subj = U[:, : 12 * 2].reshape(-1, 2)
    item = U[:, 12 * 2 :].reshape(-1, 2)
    for u, (sds, C) in zip((subj, item), design.config.bar_factors(), strict=True):
        D = sds[:, None] * C * sds[None, :]
        np.testing.assert_allclose(np.cov(u.T), D, atol=0.02)


def test_the_condition_is_counterbalanced_as_claimed():
    design = _design(CROSSED)
    codes, cond = design.codes, design.frame["cond"].to_numpy()
    for factor, k, other in (("subj", 12, 8), ("item", 8, 12)):
        for level in range(k):
            seen = cond[codes[factor] == level]
            assert seen.size == other  # every subject meets every item once
            assert np.sum(seen == -0.5) == np.sum(seen == 0.5) == other // 2
    pairs = set(zip(codes["subj"], codes["item"], strict=True))
    assert len(pairs) == 96
    # the lists: a subject meets the 4 items of its list, all in its list's condition
    lists = _design(LISTS)
    codes, cond = lists.codes, lists.frame["cond"].to_numpy()
    for s in range(12):
        rows = codes["subj"] == s
        assert set(codes["item"][rows]) == {i for i in range(8) if i % 2 == s % 2}
        assert np.unique(cond[rows]).size == 1
    for i in range(8):
        rows = codes["item"] == i
        assert rows.sum() == 6 and np.unique(cond[rows]).size == 1
    assert {-0.5, 0.5} == set(cond)


def test_the_streams_are_deterministic_by_seed_condition_and_replicate():
    grid = {"crossed.subj": [12, 16], "beta.cond": [0.0, 0.4]}
    config = _config(CROSSED, conditions=grid)
    alone = _config(
        {**CROSSED, "crossed": {"subj": 16, "item": 8}, "beta": {**CROSSED["beta"], "cond": 0.4}}
    )
    c = next(c for c in config.conditions if c.label == "crossed.subj=16, beta.cond=0.4")
    a, b = design_of(config, c), design_of(alone)
    assert a.id == b.id
    np.testing.assert_array_equal(a.sample(3).data.y, b.sample(3).data.y)
    np.testing.assert_array_equal(a.sample(3).data.y, design_of(config, c).sample(3).data.y)
    assert not np.array_equal(a.sample(3).data.y, a.sample(4).data.y)
    # a grid over an effect size keeps X (the design stream is keyed by what defines X)
    same_x = [design_of(config, c) for c in config.conditions if "subj=16" in c.label]
    np.testing.assert_array_equal(same_x[0].X, same_x[1].X)
    assert same_x[0].id != same_x[1].id
    # another root seed, another X (the covariate) and other replicates
    other = _design(CROSSED, seed=8)
    assert not np.array_equal(other.X, _design(CROSSED).X)
    # the Latin square itself draws nothing: its column is the same under every seed
    np.testing.assert_array_equal(other.X[:, 1], _design(CROSSED).X[:, 1])


def test_the_truth_of_terms_the_generator_does_not_draw():
    design = _design(CROSSED)
    terms = [
        "(Intercept)",
        "sd__x|item",
        "cor__(Intercept).x|item",
        "sd__cond|subj",
        "cor__(Intercept).cond|subj",
        "sd__Observation",
    ]
    truth = compute_truth(design, terms)
    assert truth.value[0] == 0.5 and truth.value[1] == 0.0 and np.isnan(truth.value[2])
    assert truth.value[3] == 0.4 and truth.value[4] == pytest.approx(0.4)
    assert truth.value[5] == 0.8
    assert np.isnan(truth.se[1:]).all() and truth.effects[1:] == ["ran_pars"] * 5
    with pytest.raises(ValueError, match="not a term"):
        compute_truth(design, ["sd__x|rater"])


def test_the_crossed_streams_are_pinned():
    """The first draws of a crossed design as this generator made them (seed 7): a
    change here changes every stored crossed study's data."""
    design = _design(CROSSED)
    assert (design.id, design.x_id) == ("825f7ea67e8323fc", "e4802ce88ee78a66")
    x = [0.09406976504916051, -0.8355744207513689, 0.11804051212366592]
    y = [-0.3652050075859441, -0.015481588916743227, 0.8309374951473503]
    np.testing.assert_allclose(design.X[:3, 2], x, rtol=1e-13)
    np.testing.assert_allclose(design.sample(0).data.y[:3], y, rtol=1e-12)
    np.testing.assert_allclose(design.sample(0).u[:2], [0.46690141124840545, 0.20192057201674396])
