"""The hand-written q = 2 likelihood Op (models/bayes/kernel.py) against the graph.

The Op must give the same log marginal likelihood and gradient as PyTensor's graph of
the same algebra (``algebra = "unrolled"``, itself checked against the dense
multivariate normal in test_bayes.py), in plain Python, compiled by Numba, and inside a
PyMC model; and its gradient must match finite differences.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.bayes.kernel import marginal2
from models.bayes.marginal import marginal_loglik, pack_stats
from models.bayes.options import BayesOptions
from study.design.config import load_config
from study.design.generate import Design


@pytest.fixture(scope="module")
def stats() -> np.ndarray:
    data = Design.from_study(load_config("default")).sample(3).data
    return pack_stats(data)


def _points(n: int) -> np.ndarray:
    """Random theta = (beta0, beta1, L00, L10, L11, sigma^2) around the default truth."""
    rng = np.random.default_rng(20261124)
    beta = rng.normal([5.0, 2.0], 1.0, size=(n, 2))
    L = np.column_stack(
        [rng.uniform(0.2, 3.0, n), rng.normal(0.0, 1.0, n), rng.uniform(0.2, 3.0, n)]
    )
    return np.column_stack([beta, L, rng.uniform(0.2, 4.0, n)])


@pytest.fixture(scope="module")
def graph_fn(stats):
    """logp and gradient of the unrolled PyTensor graph, as a function of theta."""
    import pytensor
    import pytensor.tensor as pt

    theta = pt.dvector("theta")
    beta = [theta[0], theta[1]]
    L = [[theta[2], None], [theta[3], theta[4]]]
    sigma = pt.sqrt(theta[5])
    logp = marginal_loglik(pt.constant(stats), beta, sigma, L, "unrolled")
    return pytensor.function([theta], [logp, pt.grad(logp, theta)])


def test_kernel_equals_the_graph_in_value_and_gradient(stats, graph_fn):
    """Both sum ~1e5-sized terms that cancel to ~1e3 (r'r - v'A^-1 v): against the same
    algorithm in extended precision each is off by up to 2.5e-11 relative in value and
    1.3e-9 of the largest gradient component (measured on these 40 points), hence the
    tolerances 1e-10 and 1e-8."""
    import numba

    jitted = numba.njit(marginal2)
    for theta in _points(40):
        want_logp, want_grad = graph_fn(theta)
        scale = abs(want_grad).max()
        for fn in (marginal2, jitted):
            logp, grad = fn(stats, theta)
            assert logp == pytest.approx(float(want_logp), rel=1e-10)
            np.testing.assert_allclose(grad, want_grad, rtol=0, atol=1e-8 * scale)


def test_kernel_gradient_matches_finite_differences(stats):
    """Central differences in extended precision (np.longdouble, so rounding does not
    swamp the step): agreement to 2e-8 of the largest component was measured."""
    wide = stats.astype(np.longdouble)
    for theta in _points(8):
        _, grad = marginal2(stats, theta)
        for j in range(6):
            h = 1e-5 * max(1.0, abs(theta[j]))
            up, down = theta.astype(np.longdouble), theta.astype(np.longdouble)
            up[j] += h
            down[j] -= h
            numeric = float((marginal2(wide, up)[0] - marginal2(wide, down)[0]) / (2 * h))
            assert abs(numeric - grad[j]) <= 1e-6 * abs(grad).max()


def test_kernel_in_a_model_equals_the_unrolled_model(stats):
    """The whole model (priors, transforms, likelihood): same logp and dlogp."""
    from models.bayes.graph import build_marginal
    from models.bayes.options import BayesPriors

    models = [build_marginal(2, BayesPriors(), a, stats) for a in ("kernel", "unrolled")]
    fns = [(m.compile_logp(), m.compile_dlogp()) for m in models]
    ip = models[0].initial_point()
    rng = np.random.default_rng(3)
    for _ in range(10):
        point = {k: v + rng.normal(0, 0.3, size=np.shape(v)) for k, v in ip.items()}
        (lk, dk), (lu, du) = ((f(point), g(point)) for f, g in fns)
        assert float(lk) == pytest.approx(float(lu), rel=1e-11)
        np.testing.assert_allclose(dk, du, rtol=1e-8, atol=1e-8 * abs(du).max())


def test_auto_algebra_picks_the_kernel_for_q2_under_nutpie_only():
    from models.bayes.engine import BayesEngine

    assert BayesEngine(BayesOptions())._algebra(2) == "kernel"
    assert BayesEngine(BayesOptions())._algebra(3) == "unrolled"
    assert BayesEngine(BayesOptions(sampler="pymc"))._algebra(2) == "unrolled"
    with pytest.raises(ValueError, match="algebra = 'kernel' is for q = 2"):
        marginal_loglik(np.zeros((9, 2)), [0.0] * 3, 1.0, [[1.0] * 3] * 3, "kernel")
