"""Small-sample inference for fixed effects: Satterthwaite and Kenward-Roger.

Both work in the covariance-component parametrisation ``gamma = (vech D, sigma^2)``
(only the diagonal of ``D`` for uncorrelated random effects):
``V_i = sum_r gamma_r G_ir`` with ``G_r = Z_i E_r Z_i'`` for an entry of ``D`` (``E_r``
the symmetric unit matrix of that entry) and ``G = I`` for ``sigma^2``.  Every product
they need reduces, per group, to small matrices of the sufficient statistics
(``A = X'X``, ``B = Z'X``, ``C = Z'Z``, ``S`` as in :mod:`models.reml.criterion`,
``J = I - C S``; ``V^-1 = (I - Z S Z') / sigma^2``)::

    W = X'V^-1 X  = (A - B'S B) / sigma^2          U = X'V^-1 Z = B'J' / sigma^2
    M = Z'V^-1 Z  = J C / sigma^2                  R = Z'V^-2 X = J J B / sigma^4
    Y = X'V^-2 X  = (A - 2 B'S B + B'S C S B) / sigma^4
    X'V^-3 X      = (sigma^4 Y - B'J'S J B) / sigma^6,   Z'V^-2 Z = J C J' / sigma^4
    tr V^-2       = (n - 2 tr(S C) + tr(S C S C)) / sigma^4

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
from scipy import stats

from models.base import TestResult
from models.reml.criterion import Criterion, Parts, fd_jacobian


def entries(r: int, correlated: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the free entries of ``D``: ``vech D`` (``j <= k``,
    row-major), or the diagonal for uncorrelated random effects."""
    if not correlated:
        return np.arange(r), np.arange(r)
    return np.triu_indices(r)


def components(r: int, correlated: bool = True) -> list[np.ndarray]:
    """``E_r`` of each free entry of ``D`` (:func:`entries` order)."""
    out = []
    for j, k in zip(*entries(r, correlated), strict=True):
        E = np.zeros((r, r))
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
    A, B, C, S, n = crit.A, crit.B, crit.C, parts.S, crit.n
    q, r = crit.q, crit.r
    E = components(r, crit.correlated)
    m = len(E) + 1
    Bt = crit.Bt
    SB = S @ B
    J = np.eye(r) - C @ S  # (K, r, r)
    Jt = np.swapaxes(J, 1, 2)
    BtSB = Bt @ SB
    W = (A - BtSB) / sigma2
    U = Bt @ Jt / sigma2  # X'V^-1 Z
    M = J @ C / sigma2  # Z'V^-1 Z
    R = J @ J @ B / sigma2**2  # Z'V^-2 X
    Y = (A - 2.0 * BtSB + Bt @ S @ C @ SB) / sigma2**2  # X'V^-2 X
    JB = J @ B
    X3 = (sigma2**2 * Y - np.swapaxes(JB, 1, 2) @ S @ JB) / sigma2**3  # X'V^-3 X
    ZV2Z = J @ C @ Jt / sigma2**2
    SC = S @ C
    trV2 = (n - 2 * np.trace(SC, axis1=1, axis2=2) + np.einsum("kij,kji->k", SC, SC)) / sigma2**2
    phi = np.linalg.inv(W.sum(axis=0))
    UE = [U @ e for e in E]  # (K, q, r) each: X'V^-1 Z E_r
    ME = [M @ e for e in E]  # (K, r, r) each: Z'V^-1 Z E_r
    Ut = np.swapaxes(U, 1, 2)
    P = [-(ue @ Ut).sum(axis=0) for ue in UE] + [-Y.sum(axis=0)]
    Q: list[list[np.ndarray]] = [[np.zeros((q, q))] * m for _ in range(m)]
    K2 = np.zeros((m, m))
    for a in range(m):
        for b in range(a, m):
            if a < m - 1 and b < m - 1:
                Q[a][b] = (UE[a] @ ME[b] @ Ut).sum(axis=0)
                K2[a, b] = np.einsum("kij,kji->", ME[a], ME[b])
            elif a < m - 1:
                Q[a][b] = (UE[a] @ R).sum(axis=0)
                K2[a, b] = np.einsum("ij,kji->", E[a], ZV2Z)
            else:
                Q[a][b] = X3.sum(axis=0)
                K2[a, b] = trV2.sum()
            Q[b][a] = Q[a][b].T
            K2[b, a] = K2[a, b]
    info2 = np.empty((m, m))
    for a in range(m):
        for b in range(m):
            info2[a, b] = K2[a, b] - 2 * np.trace(phi @ Q[a][b]) + np.trace(phi @ P[a] @ phi @ P[b])
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
    # v2 = 0 exactly in balanced designs (a cluster-level treatment, issue 25): rho is
    # then inf and the df its limit 4 + 0, as R's pbkrtest gives (it divides by zero
    # silently); numpy's division warning would otherwise become the fit's message
    with np.errstate(divide="ignore"):
        rho = (1 / ell) * ((1 - A2 / ell) / v1) ** 2 * np.float64(v0) / v2
        return float(4 + (ell + 2) / (ell * rho - 1))


def gamma_of(crit: Criterion, parts: Parts, sigma2: float) -> np.ndarray:
    """``gamma = (vech D, sigma^2)`` at an estimate (diagonal of ``D`` if uncorrelated)."""
    D = parts.psi * sigma2
    rows, cols = entries(crit.r, crit.correlated)
    return np.concatenate([D[rows, cols], [sigma2]])


def grad_gamma(crit: Criterion, gamma: np.ndarray) -> np.ndarray:
    """Gradient of -2 log-likelihood (restricted for REML) in ``gamma``."""
    r = crit.r
    rows, cols = entries(r, crit.correlated)
    D = np.zeros((r, r))
    D[rows, cols] = gamma[:-1]
    D[cols, rows] = gamma[:-1]
    s2 = float(gamma[-1])
    GD, d_s2 = crit.grad_cov(crit.parts(D / s2), s2)
    return np.concatenate([np.where(rows == cols, 1.0, 2.0) * GD[rows, cols], [d_s2]])


def satterthwaite_df(crit: Criterion, b: Blocks, gamma: np.ndarray) -> np.ndarray:
    """Satterthwaite df of each fixed effect (NaN if the Hessian is not definite)."""
    H = fd_jacobian(lambda g: grad_gamma(crit, g), gamma, 1e-5)
    return satterthwaite_from(b, H)


def satterthwaite_from(b: Blocks, H: np.ndarray) -> np.ndarray:
    """Satterthwaite df of each fixed effect from the blocks and the Hessian ``H`` of -2
    log-likelihood in ``gamma`` (NaN if ``H`` is not positive definite)."""
    phi = b.phi
    try:
        np.linalg.cholesky(H)
    except np.linalg.LinAlgError:
        return np.full(phi.shape[0], np.nan)
    Acov = 2.0 * np.linalg.inv(H)
    out = []
    for j in range(phi.shape[0]):
        grad = np.array([-(phi @ P @ phi)[j, j] for P in b.P])
        out.append(2.0 * phi[j, j] ** 2 / float(grad @ Acov @ grad))
    return np.asarray(out)


def wald_test(beta, se, null, df, why: str = "") -> TestResult:
    """``(beta - null) / se`` against t with ``df`` (normal when inf), as a TestResult
    whose message says why a p-value is missing."""
    df = np.broadcast_to(np.asarray(df, dtype=float), beta.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = (beta - null) / se
        p = 2.0 * stats.t.sf(np.abs(stat), df)
    notes = [why] if why else []
    if not np.all(np.isfinite(se)) or not np.all(se > 0):
        notes.append("standard error not finite and positive")
    elif not np.all(np.isfinite(p)) and not why:
        notes.append("p-value not defined")
    return TestResult(stat, df, p, "; ".join(notes))
