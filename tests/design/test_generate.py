"""Generator: moments, sufficient statistics and seed-stream reproducibility."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from study.design.config import DesignConfig, PredictorSpec, load_config
from study.design.generate import Design


def test_sufficient_statistics_match_table(small_design):
    s = Design(small_design, 11).sample(0)
    d, frame = s.data, s.table
    assert list(frame.columns) == ["y", "A", "B", "group"]
    for k in range(small_design.groups):
        rows = d.group == k
        Xk, yk = d.X[rows], d.y[rows]
        np.testing.assert_allclose(d.XtX[k], Xk.T @ Xk, rtol=1e-12)
        np.testing.assert_allclose(d.Xty[k], Xk.T @ yk, rtol=1e-12)
        np.testing.assert_allclose(d.yty[k], yk @ yk, rtol=1e-12)
        assert d.n[k] == small_design.sizes[k]


def test_repeats_repeat_the_x_values():
    cfg = DesignConfig(groups=3, group_size=4, repeats=5)
    design = Design(cfg, 1)
    assert design.X.shape == (60, 2)
    x0 = design.X[design.group == 0, 1]
    np.testing.assert_array_equal(x0, np.tile(x0[:4], 5))
    assert np.all(x0 == np.round(x0)) and x0.min() >= 1 and x0.max() <= 20


def test_design_is_fixed_and_replicates_differ(small_design):
    a, b = Design(small_design, 5), Design(small_design, 5)
    np.testing.assert_array_equal(a.X, b.X)
    s0, s1 = a.sample(0), a.sample(1)
    np.testing.assert_array_equal(s0.data.X, s1.data.X)
    assert not np.array_equal(s0.data.y, s1.data.y)
    assert not np.array_equal(s0.u, s1.u)
    assert not np.array_equal(Design(small_design, 6).X, a.X)


def test_replicate_independent_of_order(small_design):
    design = Design(small_design, 99)
    forward = [design.sample(r).data.y for r in range(5)]
    backward = [Design(small_design, 99).sample(r).data.y for r in reversed(range(5))][::-1]
    alone = Design(small_design, 99).sample(3).data.y
    for f, b in zip(forward, backward, strict=True):
        np.testing.assert_array_equal(f, b)
    np.testing.assert_array_equal(forward[3], alone)


def test_replicate_identical_in_another_process(default_config):
    code = (
        "from study.design.config import load_config; from study.design.generate import Design;"
        "import sys; sys.stdout.write(Design.from_study(load_config('default')).sample(17)"
        ".data.y.tobytes().hex())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    here = Design.from_study(default_config).sample(17).data.y
    np.testing.assert_array_equal(np.frombuffer(bytes.fromhex(out.stdout)), here)


def test_fixed_random_effects_are_reused():
    cfg = load_config("seed").design
    design = Design(cfg, 7)
    s0, s1 = design.sample(0), design.sample(1)
    np.testing.assert_array_equal(s0.u, s1.u)
    assert s0.data.n_obs == 40 * 50 * 50
    assert not np.array_equal(s0.data.y, s1.data.y)


def test_moments_of_u_and_e():
    """Random effects and residuals have the configured mean and covariance.

    R = 400 replicates x K = 30 groups = 12,000 draws of u (q = 2).  The MC SE of a
    sample covariance entry is at most sqrt((D_aa D_bb + D_ab^2) / n); we allow 4 of them.
    """
    cfg = DesignConfig(
        groups=30,
        group_size=10,
        beta=(1.0, 0.5),
        re_sd=(1.5, 0.5),
        re_cor=((1.0, 0.6), (0.6, 1.0)),
        sigma=2.0,
        predictor=PredictorSpec(distribution="uniform", low=-1.0, high=1.0),
    )
    design = Design(cfg, 2024)
    us, es = [], []
    for r in range(400):
        s = design.sample(r)
        us.append(s.u)
        fitted = s.data.X @ design.beta + np.einsum("nq,nq->n", s.data.X, s.u[s.data.group])
        es.append(s.data.y - fitted)
    u, e = np.concatenate(us), np.concatenate(es)
    D = cfg.D
    n = u.shape[0]
    mc_mean = np.sqrt(np.diag(D) / n)
    np.testing.assert_array_less(np.abs(u.mean(axis=0)), 4 * mc_mean)
    mc_cov = np.sqrt((np.outer(np.diag(D), np.diag(D)) + D**2) / n)
    np.testing.assert_array_less(np.abs(np.cov(u.T) - D), 4 * mc_cov)
    assert abs(e.mean()) < 4 * cfg.sigma / np.sqrt(e.size)
    # var of a sample variance of normals: 2 sigma^4 / (n - 1)
    assert abs(e.var(ddof=1) - cfg.sigma**2) < 4 * cfg.sigma**2 * np.sqrt(2 / (e.size - 1))


def test_every_stream_is_keyed_in_the_seed_module():
    """Review defect 2: one seed policy, in study/design/seeds.py alone."""
    from helpers import ROOT

    generate = (ROOT / "study/design/generate.py").read_text()
    assert "SeedSequence" not in generate and "default_rng" not in generate
    sources = [p for p in (ROOT / "study").rglob("*.py") if p.name != "seeds.py"]
    assert not [p for p in sources if "spawn_key" in p.read_text()]


def test_x_depends_only_on_the_keys_that_define_it():
    """A grid over beta, the variances, icc, distributions or missingness keeps X; the
    group sizes and the predictors' settings change it (docs/architecture.md)."""
    from study.design.config import config_from_text

    text = """
name = "x"
[design]
groups = 6
group_size = 5
random = "(1 | g)"
re_sd = [1.0]
[conditions]
add = [
  { label = "base" },
  { label = "beta", beta = [1.0, 0.0] },
  { label = "sigma", sigma = 2.0, re_sd = [0.3] },
  { label = "icc", icc = 0.2, re_sd = [] },
  { label = "shapes", residuals = { distribution = "t", df = 5.0, group_sd = 0.5 } },
  { label = "missing", missing = { mechanism = "mcar", share = 0.2 } },
  { label = "sizes", group_size = 6 },
  { label = "predictor", predictor = { distribution = "uniform", low = 1.0, high = 20.0 } },
]
[engines]
run = ["reml"]
"""
    config = config_from_text(text, default_name="x", label="x")
    X = {c.label: Design.from_study(config, c).X for c in config.conditions}
    for label in ("beta", "sigma", "icc", "shapes", "missing"):
        np.testing.assert_array_equal(X[label], X["base"])
    assert X["sizes"].shape != X["base"].shape
    assert not np.array_equal(X["predictor"], X["base"])
    ids = {c.id for c in config.conditions}
    assert len(ids) == len(config.conditions)  # the replicate streams differ
