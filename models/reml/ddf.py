"""Small-sample inference for fixed effects: Satterthwaite and Kenward-Roger.

Both work in the covariance-component parametrisation ``gamma = (vech D, sigma^2)``:
``V_i = sum_r gamma_r G_ir`` with ``G_r = X_i E_r X_i'`` for an entry of ``D`` (``E_r``
the symmetric unit matrix of that entry) and ``G = I`` for ``sigma^2``.  Every product
they need reduces, per group, to ``q x q`` matrices of the sufficient statistics
(``S_i`` as in :mod:`models.reml.criterion`, ``B_i = I - A_i S_i``)::

    W_i  = X'V^-1 X   = B_i A_i / sigma^2
    Y_i  = X'V^-2 X   = B_i A_i B_i' / sigma^4
    Z_i  = X'V^-3 X   = B_i (B_i A_i) B_i' / sigma^6
    tr V_i^-2         = (n_i - 2 tr(S_i A_i) + tr(S_i A_i S_i A_i)) / sigma^4

- Satterthwaite (lmerTest 3.1, Kuznetsova et al. 2017, J. Stat. Softw. 82(13)): for a
  contrast ``l``, ``df = 2 (l'C l)^2 / (g' A g)`` with ``C = Phi = (X'V^-1 X)^-1``,
  ``g = d(l'C l)/d gamma = -l'Phi P_r Phi l`` and ``A = 2 H^-1``, ``H`` the Hessian
  of -2 REML log-likelihood in ``gamma`` (observed information, central differences
  of the analytic gradient).  The df does not depend on the parametrisation at an
  interior optimum, so it equals lmerTest's, which uses ``(theta, sigma)``.
- Kenward-Roger (Kenward & Roger 1997, Biometrics 53; as pbkrtest 0.5 ``vcovAdj`` and
  ``Lb_ddf``): ``P_r = -X'V^-1 G_r V^-1 X``, ``Q_rs = X'V^-1 G_r V^-1 G_s V^-1 X``, the
  expected information ``I_rs = tr(V^-1 G_r V^-1 G_s) - 2 tr(Phi Q_rs) + tr(Phi P_r Phi P_s)``
  (halved), ``W = 2 I^-1``, ``Phi_A = Phi + 2 Phi (sum_rs W_rs (Q_rs - P_r Phi P_s)) Phi``
  (the second-derivative term ``R_rs`` is 0: ``V`` is linear in ``gamma``), and the
  df of a one-row contrast from ``A1``, ``A2``, ``B``, ``g``, ``c1..c3``, ``rho``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.reml.criterion import Criterion, Parts, fd_jacobian


def components(q: int) -> list[np.ndarray]:
    """``E_r`` of each entry of ``vech D`` (pairs ``j <= k``, row-major)."""
    out = []
    for j in range(q):
        for k in range(j, q):
            E = np.zeros((q, q))
            E[j, k] = E[k, j] = 1.0
            out.append(E)
    return out


@dataclass(frozen=True)
class Blocks:
    """``Phi``, ``P_r``, ``Q_rs`` and the expected information of ``gamma``."""

    phi: np.ndarray
    P: list[np.ndarray]
    Q: list[list[np.ndarray]]
    info2: np.ndarray  # tr(P G_r P G_s): twice the expected information


def blocks(crit: Criterion, parts: Parts, sigma2: float) -> Blocks:
    """``Phi``, ``P_r``, ``Q_rs`` and the information of ``gamma`` at an estimate."""
    A, S, n = crit.A, parts.S, crit.n
    q = crit.q
    E = components(q)
    m = len(E) + 1
    B = np.eye(q) - A @ S
    BA = B @ A
    W = BA / sigma2
    Y = BA @ np.swapaxes(B, 1, 2) / sigma2**2
    Z = B @ BA @ np.swapaxes(B, 1, 2) / sigma2**3
    SA = S @ A
    trV2 = (n - 2 * np.trace(SA, axis1=1, axis2=2) + np.einsum("kij,kji->k", SA, SA)) / sigma2**2
    phi = np.linalg.inv(W.sum(axis=0))
    # per-group "G_r V^-1 X"-side factors: X'V^-1 G_r V^-1 X = left_r @ right_r
    WE = [W @ e for e in E]  # (K, q, q) each: W_i E_r
    P = [-(we @ W).sum(axis=0) for we in WE] + [-Y.sum(axis=0)]
    Q: list[list[np.ndarray]] = [[np.zeros((q, q))] * m for _ in range(m)]
    K2 = np.zeros((m, m))
    for r in range(m):
        for s in range(r, m):
            if r < m - 1 and s < m - 1:
                Q[r][s] = (WE[r] @ WE[s] @ W).sum(axis=0)
                K2[r, s] = np.einsum("kij,kji->", WE[r], WE[s])
            elif r < m - 1:
                Q[r][s] = (WE[r] @ Y).sum(axis=0)
                K2[r, s] = np.einsum("ij,kji->", E[r], Y)
            else:
                Q[r][s] = Z.sum(axis=0)
                K2[r, s] = trV2.sum()
            Q[s][r] = Q[r][s].T
            K2[s, r] = K2[r, s]
    info2 = np.empty((m, m))
    for r in range(m):
        for s in range(m):
            info2[r, s] = K2[r, s] - 2 * np.trace(phi @ Q[r][s]) + np.trace(phi @ P[r] @ phi @ P[s])
    return Blocks(phi, P, Q, info2)


def kenward_roger(b: Blocks) -> tuple[np.ndarray, np.ndarray]:
    """``(Phi_A, W)``: the adjusted covariance of ``beta_hat`` and ``W = 2 I^-1``."""
    info = b.info2 / 2.0
    try:
        Wm = np.linalg.inv(info) if np.linalg.cond(info) < 1e12 else np.linalg.pinv(info)
    except np.linalg.LinAlgError:
        Wm = np.linalg.pinv(info)
    phi, m = b.phi, len(b.P)
    U = np.zeros_like(phi)
    for r in range(m):
        for s in range(m):
            U += Wm[r, s] * (b.Q[r][s] - b.P[r] @ phi @ b.P[s])
    return phi + 2.0 * phi @ U @ phi, Wm


def kr_df(b: Blocks, Wm: np.ndarray, L: np.ndarray) -> float:
    """Kenward-Roger denominator df of the contrast rows ``L`` (pbkrtest ``Lb_ddf``)."""
    L = np.atleast_2d(L)
    phi = b.phi
    theta = L.T @ np.linalg.solve(L @ phi @ L.T, L)
    m = len(b.P)
    u = [theta @ phi @ b.P[r] @ phi for r in range(m)]
    A1 = sum(Wm[r, s] * np.trace(u[r]) * np.trace(u[s]) for r in range(m) for s in range(m))
    A2 = sum(Wm[r, s] * np.trace(u[r] @ u[s]) for r in range(m) for s in range(m))
    ell = L.shape[0]
    Bq = (A1 + 6 * A2) / (2 * ell)
    g = ((ell + 1) * A1 - (ell + 4) * A2) / ((ell + 2) * A2)
    den = 3 * ell + 2 * (1 - g)
    c1, c2, c3 = g / den, (ell - g) / den, (ell + 2 - g) / den
    v0, v1, v2 = 1 + c1 * Bq, 1 - c2 * Bq, 1 - c3 * Bq
    v0 = 0.0 if abs(v0) < 1e-10 else v0
    rho = (1 / ell) * ((1 - A2 / ell) / v1) ** 2 * v0 / v2
    return float(4 + (ell + 2) / (ell * rho - 1))


def gamma_of(crit: Criterion, parts: Parts, sigma2: float) -> np.ndarray:
    """``gamma = (vech D, sigma^2)`` at an estimate."""
    D = parts.psi * sigma2
    rows, cols = np.triu_indices(crit.q)
    return np.concatenate([D[rows, cols], [sigma2]])


def grad_gamma(crit: Criterion, gamma: np.ndarray) -> np.ndarray:
    """Gradient of -2 log-likelihood (restricted for REML) in ``gamma``."""
    q = crit.q
    rows, cols = np.triu_indices(q)
    D = np.zeros((q, q))
    D[rows, cols] = gamma[:-1]
    D[cols, rows] = gamma[:-1]
    s2 = float(gamma[-1])
    GD, d_s2 = crit.grad_cov(crit.parts(D / s2), s2)
    return np.concatenate([np.where(rows == cols, 1.0, 2.0) * GD[rows, cols], [d_s2]])


def satterthwaite_df(crit: Criterion, b: Blocks, gamma: np.ndarray) -> np.ndarray:
    """Satterthwaite df of each fixed effect (NaN if the Hessian is not definite)."""
    H = fd_jacobian(lambda g: grad_gamma(crit, g), gamma, 1e-5)
    try:
        np.linalg.cholesky(H)
    except np.linalg.LinAlgError:
        return np.full(crit.q, np.nan)
    Acov = 2.0 * np.linalg.inv(H)
    phi = b.phi
    out = []
    for j in range(crit.q):
        grad = np.array([-(phi @ P @ phi)[j, j] for P in b.P])
        out.append(2.0 * phi[j, j] ** 2 / float(grad @ Acov @ grad))
    return np.asarray(out)
