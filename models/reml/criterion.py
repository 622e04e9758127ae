"""The (restricted) likelihood of the model on per-group sufficient statistics.

With ``V_i = sigma^2 (I + Z_i Psi Z_i')`` (``Psi = D / sigma^2``, the relative
covariance, r x r; ``Z_i`` a subset of ``X_i``'s columns, :class:`models.structure.
Structure`), every quantity the REML engine needs depends on the data only through
``A_i = X_i'X_i``, ``B_i = Z_i'X_i``, ``C_i = Z_i'Z_i`` (sub-blocks of ``A_i``),
``X_i'y_i``, ``Z_i'y_i``, ``y_i'y_i`` and ``n_i``.  With ``T_i = (I + Psi C_i)^-1`` and
``S_i = T_i Psi`` (so that ``(I + Z Psi Z')^-1 = I - Z S Z'``):

- ``log|I + Z_i Psi Z_i'| = log|I + Psi C_i|``
- ``X'V^-1 X = sum_i (A_i - B_i' S_i B_i) / sigma^2``, likewise ``X'V^-1 y``, ``y'V^-1 y``
- the profiled criterion (lme4's, Bates et al. 2015, J. Stat. Softw. 67(1), eq. 34/42)
  ``sum_i log|I + Psi C_i| [+ log|X'V_psi^-1 X|] + nu (1 + log(2 pi r2 / nu))`` with
  ``r2`` the penalised residual sum of squares and ``nu = N - p`` (REML) or ``N`` (ML).

Derivatives are analytic.  ``dS_i = T_i dPsi T_i'``, so with the GLS residuals
``r_i = Z_i'y_i - B_i beta`` and ``w_i = T_i' r_i``::

    dF/dPsi = sum_i C_i T_i  -  [REML] sum_i T_i' B_i H B_i' T_i  -  (nu / r2) sum_i w_i w_i'

(``H = (X'V_psi^-1 X)^-1``), and ``dF/dLambda = 2 (dF/dPsi) Lambda`` for ``Psi =
Lambda Lambda'``: ``theta`` holds the lower triangle of ``Lambda`` (lme4's order), or
only its diagonal when the random effects are uncorrelated (``||``).  The data are
centred at the pooled OLS fit first, so that the sums of squares that depend on ``Psi``
carry no large constant (their rounding noise would otherwise dominate finite-difference
Hessians).

A fit costs O(K (q^3 + r^3)) per evaluation, whatever the group sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from models.base import correlation_factor
from models.data import LMMData

LOG_2PI = float(np.log(2.0 * np.pi))


def theta_index(q: int, correlated: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of ``theta`` in ``Lambda``: lme4's column-wise lower triangle
    (only the diagonal for uncorrelated random effects)."""
    if not correlated:
        return np.arange(q), np.arange(q)
    rows, cols = zip(*[(i, j) for j in range(q) for i in range(j, q)], strict=True)
    return np.asarray(rows), np.asarray(cols)


def psi_to_theta(psi: np.ndarray, correlated: bool = True) -> np.ndarray:
    """``theta`` of a positive semi-definite ``Psi``: its lower Cholesky factor with zero
    pivots kept at 0 (:func:`models.base.correlation_factor`, the one such factorisation
    of the project), or the square roots of the diagonal for uncorrelated random
    effects."""
    if not correlated:
        return np.sqrt(np.maximum(np.diag(psi), 0.0))
    return correlation_factor(np.asarray(psi, dtype=float))[theta_index(psi.shape[0])]


@dataclass(frozen=True)
class Parts:
    """Everything a criterion evaluation at one ``Psi`` yields."""

    psi: np.ndarray
    T: np.ndarray  # (K, r, r): (I + Psi C_i)^-1
    S: np.ndarray  # (K, r, r): T_i Psi
    logdet: float  # sum_i log|I + Psi C_i|
    XVX: np.ndarray  # X'V_psi^-1 X
    H: np.ndarray  # its inverse
    logdet_xvx: float
    beta: np.ndarray  # GLS estimate
    r2: float  # penalised residual sum of squares
    resid: np.ndarray  # (K, r): Z_i'y_i - B_i beta


class Criterion:
    """REML or ML criterion of one dataset (see the module docstring).

    Parameters
    ----------
    data : LMMData
        The dataset.
    reml : bool
        Restricted (True) or full maximum likelihood.
    """

    def __init__(self, data: LMMData, reml: bool = True) -> None:
        q = data.q
        self.structure = data.structure
        self.r, self.correlated = data.r, data.structure.correlated
        self.q, self.N, self.p, self.K = q, data.n_obs, q, data.n_groups
        self.reml = reml
        self.nu = float(self.N - self.p if reml else self.N)
        self.n = data.n.astype(float)
        A = data.XtX
        idx = data.z_index
        self.beta0 = np.linalg.solve(A.sum(axis=0), data.Xty.sum(axis=0))
        res = data.y - data.X @ self.beta0
        starts = np.concatenate(([0], np.cumsum(data.n)[:-1]))
        self.A = A
        self.B = data.ZtX
        self.C = data.ZtZ
        self.Bt = np.swapaxes(self.B, 1, 2)  # X'Z
        bx = np.add.reduceat(data.X * res[:, None], starts, axis=0)
        self.b = bx[:, idx]  # Z'(y - X beta0)
        self.c = np.add.reduceat(res * res, starts)
        self.A_sum, self.bx_sum, self.c_sum = A.sum(axis=0), bx.sum(axis=0), float(self.c.sum())
        self.eye = np.eye(self.r)
        self.rows, self.cols = theta_index(self.r, self.correlated)
        self.n_theta = self.rows.size

    # -- evaluation ----------------------------------------------------------------------
    def parts(self, psi: np.ndarray) -> Parts:
        """Evaluate the pieces of the criterion at relative covariance ``psi`` (r x r)."""
        M = self.eye + psi @ self.C
        T = np.linalg.inv(M)
        S = T @ psi
        logdet = float(np.log(np.linalg.det(M)).sum())
        BtS = self.Bt @ S
        XVX = self.A_sum - (BtS @ self.B).sum(axis=0)
        XVy = self.bx_sum - np.einsum("kij,kj->i", BtS, self.b)
        yVy = self.c_sum - float(np.einsum("ki,kij,kj->", self.b, S, self.b))
        H = np.linalg.inv(XVX)
        gamma = H @ XVy
        r2 = yVy - float(XVy @ gamma)
        logdet_xvx = float(np.linalg.slogdet(XVX)[1]) if self.reml else 0.0
        resid = self.b - self.B @ gamma
        return Parts(psi, T, S, logdet, XVX, H, logdet_xvx, self.beta0 + gamma, r2, resid)

    def profiled(self, parts: Parts) -> float:
        """The criterion with ``sigma^2`` (and ``beta``) profiled out: lme4's REMLcrit/deviance."""
        nu = self.nu
        return parts.logdet + parts.logdet_xvx + nu * (1.0 + LOG_2PI + np.log(parts.r2 / nu))

    def full(self, parts: Parts, sigma2: float) -> float:
        """-2 log-likelihood (restricted for REML) at ``(Psi, sigma^2)``, ``beta`` profiled."""
        return (
            parts.logdet
            + parts.logdet_xvx
            + self.nu * (LOG_2PI + np.log(sigma2))
            + parts.r2 / sigma2
        )

    def grad_psi(self, parts: Parts, r2_weight: float) -> np.ndarray:
        """``dF/dPsi`` with the residual term weighted by ``r2_weight``.

        ``r2_weight`` is ``nu / r2`` for the profiled criterion and ``1 / sigma^2`` for
        :meth:`full`.
        """
        G = (self.C @ parts.T).sum(axis=0)
        if self.reml:
            TB = np.swapaxes(parts.T, 1, 2) @ self.B  # T'Z'X: (K, r, q)
            G = G - (TB @ parts.H @ np.swapaxes(TB, 1, 2)).sum(axis=0)
        w = np.einsum("kji,kj->ki", parts.T, parts.resid)
        G = G - r2_weight * (w.T @ w)
        return (G + G.T) / 2

    # -- theta (lme4's parametrisation) --------------------------------------------------
    def lam(self, theta: np.ndarray) -> np.ndarray:
        """``Lambda`` (r x r, lower triangular or diagonal) of ``theta``."""
        lam = np.zeros((self.r, self.r))
        lam[self.rows, self.cols] = theta
        return lam

    def theta_of(self, lam: np.ndarray) -> np.ndarray:
        """``theta`` of ``Lambda``: the inverse of :meth:`lam`."""
        return lam[self.rows, self.cols]

    def psi_of(self, theta: np.ndarray) -> np.ndarray:
        """``Psi = Lambda Lambda'`` of ``theta``."""
        lam = self.lam(theta)
        return lam @ lam.T

    def value_theta(self, theta: np.ndarray) -> float:
        """Profiled criterion at ``theta``."""
        return self.profiled(self.parts(self.psi_of(theta)))

    def grad_theta(self, theta: np.ndarray) -> np.ndarray:
        """Analytic gradient of :meth:`value_theta`."""
        lam = self.lam(theta)
        parts = self.parts(lam @ lam.T)
        G = self.grad_psi(parts, self.nu / parts.r2)
        return self.theta_of(2.0 * G @ lam)

    def grad_cov(self, parts: Parts, sigma2: float) -> tuple[np.ndarray, float]:
        """Gradient of :meth:`full` in ``(D, sigma^2)`` with ``D = sigma^2 Psi``:
        ``(dF/dD, dF/dsigma^2 at fixed D)``, from ``Psi = D / sigma^2``."""
        G = self.grad_psi(parts, 1.0 / sigma2)
        d_s2 = self.nu / sigma2 - parts.r2 / sigma2**2 - float(np.sum(G * parts.psi)) / sigma2
        return G / sigma2, d_s2

    def at(self, theta: np.ndarray) -> tuple[Parts, float]:
        """The pieces at ``theta`` and the profiled residual variance there."""
        parts = self.parts(self.psi_of(theta))
        return parts, self.sigma2(parts)

    def sigma2(self, parts: Parts) -> float:
        """The profiled residual variance ``r2 / nu``."""
        return parts.r2 / self.nu

    def singular(self, theta: np.ndarray, tol: float = 1e-4) -> bool:
        """``lme4::isSingular``: a diagonal element of ``Lambda`` below ``tol``."""
        return bool(np.any(np.abs(np.diag(self.lam(theta))) < tol))


def fd_jacobian(fun: Callable[[np.ndarray], np.ndarray], x: np.ndarray, step: float) -> np.ndarray:
    """Symmetrised central-difference Jacobian of a gradient ``fun`` at ``x``."""
    cols = []
    for j in range(x.size):
        h = step * max(1.0, abs(float(x[j])))
        e = np.zeros(x.size)
        e[j] = h
        cols.append((fun(x + e) - fun(x - e)) / (2.0 * h))
    J = np.column_stack(cols)
    return (J + J.T) / 2


class Polishable(Protocol):
    """What :func:`polish` optimises: a criterion in ``theta``, the lower triangles of
    the (block-diagonal) relative covariance factor ``Lambda`` at ``rows``, ``cols``.
    :class:`Criterion` (one grouping factor) and
    :class:`models.reml.crossed.CrossedCriterion` (several) are both."""

    rows: np.ndarray
    cols: np.ndarray
    n_theta: int

    def value_theta(self, theta: np.ndarray) -> float: ...
    def grad_theta(self, theta: np.ndarray) -> np.ndarray: ...
    def lam(self, theta: np.ndarray) -> np.ndarray: ...
    def theta_of(self, lam: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Optimum:
    """The polished optimum: ``theta`` (column signs with a non-negative diagonal)."""

    theta: np.ndarray
    value: float
    gradient: float  # max |gradient| at theta
    iterations: int
    converged: bool
    message: str


#: the message of a converged fit on the boundary (``singular``), as lme4 says it
SINGULAR_NOTE = (
    "boundary (singular) fit: a random-effect SD at 0 or a correlation at +-1 (lme4::isSingular)"
)

#: the polish stops when max |d criterion / d theta| is below this
GTOL = 1e-7
#: ... and has converged when the Newton decrement is below this (criterion units)
DECREMENT = 1e-9


def polish(crit: Polishable, theta0: np.ndarray, maxiter: int = 50) -> Optimum:
    """Newton's method with a trust region (scipy ``trust-exact``) from ``theta0``.

    From an L-BFGS point two or three steps reach the optimum to machine precision.
    ``Psi = Lambda Lambda'`` is unchanged by flipping the sign of a column of
    ``Lambda``, so ``theta`` is optimised without bounds and the signs are normalised
    afterwards (lme4 bounds the diagonal at 0 instead: the same optimum).  Where the
    optimum is on the boundary (a diagonal element of ``Lambda`` at 0: a singular
    fit) the criterion can be too flat there for Newton to finish; then each diagonal
    element in turn is set to 0 and the rest polished, as lme4's bounded optimizer
    would end, and the best point that meets the optimality conditions is taken (the
    derivative into the interior must not point downhill).
    """
    free = np.ones(crit.n_theta, dtype=bool)
    best = _newton(crit, np.asarray(theta0, dtype=float), free, maxiter)
    if best.converged:
        return best
    # In a nearly flat valley (few groups: Hessian eigenvalues ~1e-3) the trust region
    # can shrink until it stalls: start again from where it stopped, then from a BFGS
    # point (in small-groups, 5 groups of 5, this finds optima 7e-6 lower)
    for start in (best.theta, None):
        if start is None:
            from scipy.optimize import minimize

            with np.errstate(all="ignore"):
                start = minimize(crit.value_theta, best.theta, jac=crit.grad_theta, method="BFGS").x
        cand = _newton(crit, np.asarray(start, dtype=float), free, maxiter)
        if cand.value <= best.value + 1e-10:
            best = cand
        if best.converged:
            return best
    diag = np.flatnonzero(crit.rows == crit.cols)
    for j in diag:
        start = best.theta.copy()
        start[j] = 0.0
        mask = free.copy()
        mask[j] = False
        cand = _newton(crit, start, mask, maxiter)
        # KKT at theta_jj = 0 (lme4's bound): the criterion must not fall into theta_jj > 0
        g_j = float(crit.grad_theta(cand.theta)[j])
        kkt = g_j >= -1e3 * GTOL * max(1.0, abs(cand.value))
        if cand.value <= best.value + 1e-10:
            ok = cand.converged and kkt
            why = "" if ok else f"{cand.message} (boundary, d/dtheta_{j} = {g_j:.2g})"
            best = Optimum(cand.theta, cand.value, cand.gradient, cand.iterations, ok, why)
        if best.converged:
            break
    return best


def _newton(crit: Polishable, theta0: np.ndarray, free: np.ndarray, maxiter: int) -> Optimum:
    """Trust-region Newton over the ``free`` elements of ``theta`` (others held)."""
    from scipy.optimize import minimize

    def grad(x: np.ndarray) -> np.ndarray:
        return crit.grad_theta(embed_of(theta0, free, x))[free]

    with np.errstate(all="ignore"):
        res = minimize(
            lambda x: crit.value_theta(embed_of(theta0, free, x)),
            theta0[free],
            jac=grad,
            hess=lambda x: fd_jacobian(grad, x, 1e-5),
            method="trust-exact",
            options={"gtol": GTOL, "maxiter": maxiter},
        )
    lam = crit.lam(embed_of(theta0, free, res.x))
    lam = lam * np.where(np.diag(lam) < 0, -1.0, 1.0)
    theta = crit.theta_of(lam)
    value = crit.value_theta(theta)
    g = crit.grad_theta(theta)[free]
    size = float(np.max(np.abs(g))) if g.size else 0.0
    # Converged when the Newton decrement g'H^-1 g (twice the criterion's predicted
    # distance to the optimum) is negligible: on 2,000 rows the gradient's rounding
    # floor is ~1e-5 while the decrement is ~1e-13.  Where H is not positive definite
    # (a boundary), the gradient itself must be small.
    try:

        def grad_at(x: np.ndarray) -> np.ndarray:
            return crit.grad_theta(embed_of(theta, free, x))[free]

        H = fd_jacobian(grad_at, theta[free], 1e-5)
        np.linalg.cholesky(H)
        ok = float(g @ np.linalg.solve(H, g)) < DECREMENT and size < 1e3 * GTOL * max(1.0, value)
    except np.linalg.LinAlgError:
        ok = size < 100 * GTOL * max(1.0, abs(value) / 1e3)
    ok = ok and bool(np.isfinite(value)) and GTOL > 0
    message = "" if ok else f"Newton polish stopped with max |gradient| {size:.2g}: {res.message}"
    return Optimum(theta, value, size, int(res.nit), ok, message)


def embed_of(theta: np.ndarray, free: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``theta`` with its ``free`` elements replaced by ``x``."""
    out = theta.copy()
    out[free] = x
    return out
