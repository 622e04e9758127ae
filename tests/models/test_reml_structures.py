"""REML with Z != X: the sufficient-statistic algebra of the Kenward-Roger and
Satterthwaite blocks against dense n x n matrices, and the criterion's gradient."""

from __future__ import annotations

import numpy as np
import pytest

from models.data import LMMData
from models.reml import ddf
from models.reml.criterion import Criterion
from models.structure import Structure


def _data(structure: Structure, seed: int = 4) -> LMMData:
    rng = np.random.default_rng(seed)
    K, n = 7, 5
    group = np.repeat(np.arange(K), n)
    X = np.column_stack([np.ones(K * n), rng.normal(size=K * n), rng.uniform(0, 3, K * n)])
    y = X @ [1.0, 0.5, -0.3] + rng.normal(size=K)[group] * 0.8 + rng.normal(size=K * n)
    return LMMData(y, X, group, structure.predictors, structure=structure)


STRUCTURES = [
    Structure(("(Intercept)", "a", "b"), ("(Intercept)",)),
    Structure(("(Intercept)", "a", "b"), ("(Intercept)", "b")),
    Structure(("(Intercept)", "a", "b"), ("(Intercept)", "b"), correlated=False),
    Structure(("(Intercept)", "a", "b"), ("b", "a")),
]


def _dense(data: LMMData, D: np.ndarray, s2: float):
    """V^-1 and the covariance components G_r (entries of D, then sigma^2), densely."""
    N = data.n_obs
    Zs = np.zeros((N, data.n_groups * data.r))
    for k in range(data.n_groups):
        rows = data.group == k
        Zs[rows, k * data.r : (k + 1) * data.r] = data.Z[rows]
    big = np.kron(np.eye(data.n_groups), D)
    V = Zs @ big @ Zs.T + s2 * np.eye(N)
    G = []
    for E in ddf.components(data.r, data.structure.correlated):
        G.append(Zs @ np.kron(np.eye(data.n_groups), E) @ Zs.T)
    G.append(np.eye(N))
    return np.linalg.inv(V), G


@pytest.mark.parametrize("structure", STRUCTURES, ids=lambda s: s.bar())
def test_kenward_roger_blocks_equal_the_dense_formulas(structure):
    data = _data(structure)
    crit = Criterion(data)
    r = data.r
    psi = np.eye(r) * 0.6
    if structure.correlated and r > 1:
        psi[0, 1] = psi[1, 0] = 0.2
    s2 = 1.3
    parts = crit.parts(psi)
    b = ddf.blocks(crit, parts, s2)
    Vi, G = _dense(data, psi * s2, s2)
    X = data.X
    phi = np.linalg.inv(X.T @ Vi @ X)
    np.testing.assert_allclose(b.phi, phi, rtol=1e-9)
    P = [-X.T @ Vi @ g @ Vi @ X for g in G]
    for a in range(len(G)):
        np.testing.assert_allclose(b.P[a], P[a], rtol=1e-8, atol=1e-10)
        for c in range(len(G)):
            Q = X.T @ Vi @ G[a] @ Vi @ G[c] @ Vi @ X
            np.testing.assert_allclose(b.Q[a][c], Q, rtol=1e-8, atol=1e-10)
            info2 = (
                np.trace(Vi @ G[a] @ Vi @ G[c])
                - 2 * np.trace(phi @ Q)
                + np.trace(phi @ P[a] @ phi @ P[c])
            )
            np.testing.assert_allclose(b.info2[a, c], info2, rtol=1e-8)


@pytest.mark.parametrize("structure", STRUCTURES, ids=lambda s: s.bar())
def test_criterion_is_the_dense_reml_criterion_and_its_gradient_is_exact(structure):
    data = _data(structure)
    crit = Criterion(data)
    theta = np.linspace(0.4, 0.9, crit.n_theta)
    parts, _ = crit.at(theta)
    # dense profiled REML criterion at the same Psi (sigma^2 profiled out)
    psi = crit.psi_of(theta)
    Vi, _ = _dense(data, psi, 1.0)  # V / sigma^2
    X, y = data.X, data.y
    XVX = X.T @ Vi @ X
    beta = np.linalg.solve(XVX, X.T @ Vi @ y)
    res = y - X @ beta
    r2 = res @ Vi @ res
    nu = data.n_obs - data.q
    dense = (
        -np.linalg.slogdet(Vi)[1]
        + np.linalg.slogdet(XVX)[1]
        + nu * (1 + np.log(2 * np.pi * r2 / nu))
    )
    assert crit.value_theta(theta) == pytest.approx(dense, rel=1e-10)
    np.testing.assert_allclose(parts.beta, beta, rtol=1e-9)
    h = 1e-6
    fd = [
        (crit.value_theta(theta + h * e) - crit.value_theta(theta - h * e)) / (2 * h)
        for e in np.eye(theta.size)
    ]
    np.testing.assert_allclose(crit.grad_theta(theta), fd, rtol=1e-5, atol=1e-6)
