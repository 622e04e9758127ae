"""The GLS algebra of the truth, per group in q x q: never an n_i x n_i matrix.

With ``Z_i`` a subset of ``X_i``'s columns, ``Z_i D_r Z_i' = X_i D X_i'`` for ``D`` the
random-effects covariance embedded in the q x q space of the fixed effects (zero rows
and columns for the effects without a random effect: :attr:`DesignConfig.D`), so the
algebra below on ``X`` serves every structure.  With ``V_i = X_i D X_i' + R_i``,
``R_i`` diagonal (``sigma^2 I`` unless the residuals are heteroscedastic),
``H_i = X_i'R_i^-1 X_i`` and ``M_i^-1 = (D^-1 + H_i)^-1 = D (H_i D + I)^-1`` (written so
that D may be singular), Woodbury gives
``V_i^-1 = R_i^-1 - R_i^-1 X_i M_i^-1 X_i'R_i^-1`` and so

* ``W_i = X_i'V_i^-1 X_i = H_i - H_i M_i^-1 H_i``,
* ``X_i'V_i^-1 R_i V_i^-1 X_i = H_i - 2 H_i M_i^-1 H_i + H_i M_i^-1 H_i M_i^-1 H_i``.

Marginal: ``Var(beta_hat) = A = (sum_i W_i)^-1`` (GLS with known V).
Conditional on fixed random effects u (docs/architecture.md):
``E[beta_hat | u] = beta + A sum_i W_i u_i`` (``u_i`` embedded likewise) and
``Var(beta_hat | u) = A (sum_i X_i'V_i^-1 R_i V_i^-1 X_i) A``.
"""

from __future__ import annotations

import numpy as np


def _minv_times(H: np.ndarray, D: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``M_i^-1 B_i`` as ``D (H_i D + I)^-1 B_i``: no ``D^-1``."""
    q = D.shape[0]
    return D[None] @ np.linalg.solve(H @ D[None] + np.eye(q)[None], B)


def information(H: np.ndarray, D: np.ndarray) -> np.ndarray:
    """``W_i = X_i'V_i^-1 X_i`` per group, (K, q, q), from ``H_i`` (K, q, q)."""
    return H - H @ _minv_times(H, D, H)


def gls_cov(H: np.ndarray, D: np.ndarray) -> np.ndarray:
    """``(sum_i X_i'V_i^-1 X_i)^-1``: ``Var(beta_hat)`` of the GLS estimator."""
    return np.asarray(np.linalg.inv(information(H, D).sum(axis=0)))


def conditional_moments(
    H: np.ndarray, D: np.ndarray, beta: np.ndarray, u: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``E[beta_hat | u]`` and ``Var(beta_hat | u)`` of the GLS estimator with known V."""
    HMH = H @ _minv_times(H, D, H)
    W = H - HMH
    A = np.linalg.inv(W.sum(axis=0))
    mean = beta + A @ np.einsum("kab,kb->a", W, u)
    HMHMH = HMH @ _minv_times(H, D, H)
    middle = (H - 2.0 * HMH + HMHMH).sum(axis=0)
    return mean, A @ middle @ A
