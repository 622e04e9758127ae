"""Inference for models with several random terms: Satterthwaite and Kenward-Roger df,
Wald intervals of the variance parameters.

The algebra of :mod:`models.reml.ddf` on the ``L`` random-effect levels instead of per
group: ``gamma = (vech D_1, ..., vech D_F, sigma^2)`` (diagonals only for ``||`` terms),
``V = sum_r gamma_r G_r`` with ``G_r = Z E_r Z'`` (``E_r`` the ``L x L`` pattern of entry
``r`` of ``D_f`` repeated over the term's ``K_f`` levels) and ``G = I`` for
``sigma^2``.  With ``Psi`` the ``L x L`` relative covariance (block-diagonal of
``I_K (x) D_f / sigma^2``; any symmetric matrix, so finite differences may cross the
boundary), ``S = Psi (I + M Psi)^-1`` and ``J = I - M S`` (``V^-1 = (I - Z S Z') / sigma^2``,
``M = Z'Z``)::

    X'V^-1 X = (X'X - X'Z S Z'X) / s2          X'V^-1 Z = X'Z J' / s2
    Z'V^-1 Z = J M / s2                         Z'V^-2 X = J J Z'X / s2^2
    X'V^-2 X = (X'X - 2 X'Z S Z'X + X'Z S M S Z'X) / s2^2
    X'V^-3 X = (s2^2 X'V^-2 X - (J Z'X)' S (J Z'X)) / s2^3
    Z'V^-2 Z = J M J' / s2^2,  tr V^-1 = (N - tr SM) / s2,  tr V^-2 = (N - 2 tr SM + tr SMSM) / s2^2

The gradient of -2 REML log-likelihood in ``gamma`` is ``tr(P G_r) - y'P G_r P y``
(``P = V^-1 - V^-1 X Phi X'V^-1``); Satterthwaite's df take the Hessian from central
differences of it (:func:`models.reml.ddf.satterthwaite_df`'s formula), Kenward-Roger's
the blocks ``P_r``, ``Q_rs`` and the expected information, then the one-factor code's
:func:`models.reml.ddf.kenward_roger` and :func:`models.reml.ddf.kr_df` unchanged.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy import stats

from models.crossed.data import CrossedData
from models.reml.crossed import CrossedCriterion, Layout
from models.reml.ddf import Blocks, entries, satterthwaite_from

__all__ = ["Algebra", "gamma_of", "kr_blocks", "satterthwaite", "wald"]


class Components:
    """The entries of ``gamma`` and their ``L x L`` patterns ``E_r``."""

    def __init__(self, data: CrossedData) -> None:
        lay = Layout.of(data)
        self.layout = lay
        self.index: list[tuple[int, int, int]] = []  # (term, j, k)
        self.E: list[sp.csr_matrix] = []
        self.pos: list[tuple[np.ndarray, np.ndarray]] = []
        L = lay.L
        for f, b in enumerate(data.structure.bars):
            o, K, r = lay.offsets[f], lay.K[f], lay.r[f]
            base = o + np.arange(K) * r
            for j, k in zip(*entries(r, b.correlated), strict=True):
                a, c = base + j, base + k
                self.index.append((f, int(j), int(k)))
                self.pos.append((a, c))
                rows = np.concatenate([a, c]) if j != k else a
                cols = np.concatenate([c, a]) if j != k else a
                self.E.append(sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(L, L)))

    def trace(self, r: int, A: np.ndarray) -> float:
        """``tr(E_r A)`` for symmetric ``A``."""
        a, c = self.pos[r]
        _, j, k = self.index[r]
        return float(np.sum(A[a, a])) if j == k else float(np.sum(A[a, c]) + np.sum(A[c, a]))

    def quad(self, r: int, z: np.ndarray) -> float:
        """``z'E_r z``."""
        a, c = self.pos[r]
        return float(np.sum(z[a] * z[c]) * (1.0 if np.array_equal(a, c) else 2.0))


def gamma_of(crit: CrossedCriterion, comps: Components, theta: np.ndarray, s2: float) -> np.ndarray:
    """``gamma`` at an estimate (``theta`` and ``sigma^2``)."""
    Ds = crit.covariances(theta, s2)
    return np.array([Ds[f][j, k] for f, j, k in comps.index] + [s2])


class Algebra:
    """The ``V^-1`` products at one ``gamma`` (module docstring); ``reml`` chooses the
    restricted (``P``) or the full likelihood (``V^-1``, ``beta`` profiled) for
    :meth:`grad` and :meth:`hessian`."""

    def __init__(
        self, crit: CrossedCriterion, comps: Components, gamma: np.ndarray, reml: bool = True
    ) -> None:
        self.crit, self.comps, self.reml = crit, comps, reml
        lay = comps.layout
        s2 = float(gamma[-1])
        self.s2 = s2
        psi = np.zeros((lay.L, lay.L))
        Ds = [np.zeros((r, r)) for r in lay.r]
        for (f, j, k), g in zip(comps.index, gamma[:-1], strict=True):
            Ds[f][j, k] = Ds[f][k, j] = g
        for f, D in enumerate(Ds):
            o, K, r = lay.offsets[f], lay.K[f], lay.r[f]
            psi[o : o + K * r, o : o + K * r] = np.kron(np.eye(K), D / s2)
        M, ZX, XX = crit.M, crit.ZtX, crit.XtX
        eye = np.eye(lay.L)
        S = np.linalg.solve(eye + psi @ M, psi)
        S = (S + S.T) / 2
        J = eye - M @ S
        SZX = S @ ZX
        self.S, self.J, self.SZX = S, J, SZX
        self.W = (XX - ZX.T @ SZX) / s2
        self.phi = np.linalg.inv(self.W)
        self.JZX = J @ ZX
        self.U = self.JZX.T / s2  # X'V^-1 Z
        self.Mv = J @ M / s2  # Z'V^-1 Z
        self.Y = (XX - 2 * ZX.T @ SZX + SZX.T @ M @ SZX) / s2**2  # X'V^-2 X
        self.SM = S @ M
        self.trV1 = (crit.N - np.trace(self.SM)) / s2
        # the GLS residual e = y - X beta(gamma), from the centred data of the criterion
        XVe = (crit.Xe - SZX.T @ crit.Ze) / s2
        delta = self.phi @ XVe
        self.Ze = crit.Ze - ZX @ delta
        self.Xe = crit.Xe - XX @ delta
        self.ee = float(crit.ee - 2 * delta @ crit.Xe + delta @ XX @ delta)
        self.a = J @ self.Ze / s2  # Z'V^-1 e = Z'P y
        Se = S @ self.Ze
        self.vv = float(self.ee - 2 * self.Ze @ Se + Se @ M @ Se) / s2**2  # e'V^-2 e
        self.ZPZ = self.Mv - self.U.T @ self.phi @ self.U
        self._kr: dict[str, np.ndarray] | None = None

    def _more(self) -> dict[str, np.ndarray]:
        """``Z'V^-2 X``, ``X'V^-3 X``, ``Z'V^-2 Z``, ``tr V^-2`` (for the information)."""
        if self._kr is None:
            s2, J, M, S = self.s2, self.J, self.crit.M, self.S
            SM = self.SM
            self._kr = {
                "R": J @ self.JZX / s2**2,
                "X3": (s2**2 * self.Y - self.JZX.T @ S @ self.JZX) / s2**3,
                "ZV2Z": J @ M @ J.T / s2**2,
                "trV2": np.asarray((self.crit.N - 2 * np.trace(SM) + np.sum(SM * SM.T)) / s2**2),
            }
        return self._kr

    def grad(self) -> np.ndarray:
        """Gradient of -2 log-likelihood (restricted for REML) in ``gamma``."""
        comps = self.comps
        A = self.ZPZ if self.reml else self.Mv
        out = [comps.trace(r, A) - comps.quad(r, self.a) for r in range(len(comps.E))]
        tr = self.trV1 - float(np.sum(self.phi * self.Y)) if self.reml else self.trV1
        return np.asarray([*out, tr - self.vv])

    def hessian(self) -> np.ndarray:
        """Hessian of -2 log-likelihood in ``gamma``, analytic: ``-tr(Pi G_r Pi G_s) +
        2 (Py)'G_r P G_s (Py)`` with ``Pi = P`` (REML) or ``V^-1`` (ML, ``beta``
        profiled); ``V`` is linear in ``gamma``, so there is no second-derivative term."""
        comps, s2, phi = self.comps, self.s2, self.phi
        more = self._more()
        R, X3, ZV2Z, trV2 = more["R"], more["X3"], more["ZV2Z"], float(more["trV2"])
        U, Y = self.U, self.Y
        if self.reml:
            A = self.ZPZ
            RPU = R @ phi @ U
            A2 = ZV2Z - RPU - RPU.T + U.T @ phi @ Y @ phi @ U  # Z'P^2 Z
            t_ss = trV2 - 2 * float(np.sum(phi * X3)) + float(np.sum((phi @ Y) * (phi @ Y).T))
        else:
            A, A2, t_ss = self.Mv, ZV2Z, trV2
        m = len(comps.E)
        EA = [np.asarray(comps.E[r] @ A) for r in range(m)]
        Ea = [np.asarray(comps.E[r] @ self.a) for r in range(m)]
        # Z'P (Py) and (Py)'P(Py), with Py = V^-1 e
        JJZe = self.J @ (self.J @ self.Ze) / s2**2  # Z'V^-2 e
        XV2e = (
            self.Xe - 2 * self.SZX.T @ self.Ze + self.SZX.T @ self.crit.M @ (self.S @ self.Ze)
        ) / s2**2
        ZPv = JJZe - U.T @ (phi @ XV2e)
        JZe = self.J @ self.Ze
        e3 = (s2**2 * self.vv - JZe @ self.S @ JZe) / s2**3  # e'V^-3 e
        vPv = float(e3 - XV2e @ phi @ XV2e)
        T = np.zeros((m + 1, m + 1))
        Q = np.zeros((m + 1, m + 1))
        for r in range(m):
            for k in range(r, m):
                T[r, k] = T[k, r] = float(np.sum(EA[r] * EA[k].T))
                Q[r, k] = Q[k, r] = float(Ea[r] @ self.ZPZ @ Ea[k])
            T[r, m] = T[m, r] = comps.trace(r, A2)
            Q[r, m] = Q[m, r] = float(Ea[r] @ ZPv)
        T[m, m], Q[m, m] = t_ss, vPv
        return -T + 2 * Q

    def blocks(self) -> Blocks:
        """``Phi``, ``P_r``, ``Q_rs`` and twice the expected information (ddf.Blocks)."""
        comps = self.comps
        E = comps.E
        m = len(E) + 1
        U, phi = self.U, self.phi
        more = self._more()
        UE = [np.asarray((E[r] @ U.T).T) for r in range(m - 1)]  # U E_r (E_r symmetric)
        EM = [np.asarray(E[r] @ self.Mv) for r in range(m - 1)]
        UEM = [ue @ self.Mv for ue in UE]
        P = [-(ue @ U.T) for ue in UE] + [-self.Y]
        q = phi.shape[0]
        Q: list[list[np.ndarray]] = [[np.zeros((q, q))] * m for _ in range(m)]
        K2 = np.zeros((m, m))
        for a in range(m):
            for b in range(a, m):
                if b < m - 1:
                    Q[a][b] = UEM[a] @ UE[b].T
                    K2[a, b] = float(np.sum(EM[a] * EM[b].T))
                elif a < m - 1:
                    Q[a][b] = UE[a] @ more["R"]
                    K2[a, b] = comps.trace(a, more["ZV2Z"])
                else:
                    Q[a][b] = more["X3"]
                    K2[a, b] = float(more["trV2"])
                Q[b][a] = Q[a][b].T
                K2[b, a] = K2[a, b]
        info2 = np.empty((m, m))
        for a in range(m):
            for b in range(m):
                info2[a, b] = (
                    K2[a, b] - 2 * np.trace(phi @ Q[a][b]) + np.trace(phi @ P[a] @ phi @ P[b])
                )
        return Blocks(phi, P, Q, info2)


def kr_blocks(crit: CrossedCriterion, comps: Components, gamma: np.ndarray) -> Blocks:
    return Algebra(crit, comps, gamma).blocks()


def satterthwaite(
    crit: CrossedCriterion, comps: Components, gamma: np.ndarray, b: Blocks
) -> np.ndarray:
    """lmerTest's Satterthwaite df of each fixed effect (NaN if the Hessian of the
    deviance in ``gamma`` is not positive definite)."""
    return satterthwaite_from(b, Algebra(crit, comps, gamma, crit.reml).hessian())


#: an SD is on the boundary below this fraction of the residual SD; a correlation within
#: this of +-1 (as :mod:`models.reml.varpar`)
BOUNDARY_SD = 1e-4
BOUNDARY_COR = 1e-6


def wald(
    crit: CrossedCriterion, comps: Components, values: np.ndarray, level: float, singular: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wald SEs and intervals of the natural variance parameters ``(sd.., cor.. per
    term, sigma)`` on the log-SD / atanh-cor / log-sigma scale, from central differences
    of the analytic gradient (as :func:`models.reml.varpar.wald`; here the analytic
    Hessian, which is the same at the optimum): NaN for a parameter
    on the boundary, and for every correlation of a singular fit."""
    bars = crit.structure.bars
    is_sd, is_cor, owner = [], [], []
    for f, b in enumerate(bars):
        is_sd += [True] * b.r + [False] * len(b.pairs)
        is_cor += [False] * b.r + [True] * len(b.pairs)
        owner += [(f, j, j) for j in range(b.r)] + [(f, j, k) for j, k in b.pairs]
    is_sd.append(True)  # sigma: a log scale
    is_cor.append(False)
    sd_mask, cor_mask = np.array(is_sd), np.array(is_cor)
    nan = np.full(values.size, np.nan)
    sigma = values[-1]
    fixed = np.zeros(values.size, dtype=bool)
    fixed[:-1] = sd_mask[:-1] & (values[:-1] < BOUNDARY_SD * sigma)
    fixed |= cor_mask & (1.0 - np.abs(values) < BOUNDARY_COR)
    if singular:
        fixed |= cor_mask

    def to_values(phi: np.ndarray) -> np.ndarray:
        return np.where(sd_mask, np.exp(phi), np.tanh(phi))

    def gamma_jac(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """gamma at natural values ``v`` and d gamma / d v."""
        sds = {}
        at = 0
        for f, b in enumerate(bars):
            for j in range(b.r):
                sds[(f, j)] = at + j
            at += b.n_cov
        cors = {}
        at = 0
        for f, b in enumerate(bars):
            for i, (j, k) in enumerate(b.pairs):
                cors[(f, j, k)] = at + b.r + i
            at += b.n_cov
        g = np.zeros(len(comps.index) + 1)
        Jm = np.zeros((g.size, v.size))
        for r, (f, j, k) in enumerate(comps.index):
            sj, sk = sds[(f, j)], sds[(f, k)]
            if j == k:
                g[r] = v[sj] ** 2
                Jm[r, sj] = 2 * v[sj]
            else:
                c = cors[(f, j, k)]
                g[r] = v[c] * v[sj] * v[sk]
                Jm[r, c] = v[sj] * v[sk]
                Jm[r, sj] += v[c] * v[sk]
                Jm[r, sk] += v[c] * v[sj]
        g[-1] = v[-1] ** 2
        Jm[-1, -1] = 2 * v[-1]
        return g, Jm

    with np.errstate(divide="ignore", invalid="ignore"):
        phi0 = np.where(
            sd_mask, np.log(np.maximum(values, 1e-300)), np.arctanh(np.clip(values, -1, 1))
        )
    free = np.flatnonzero(~fixed)
    # at the optimum the gradient is 0, so the Hessian in phi is J' H_gamma J with
    # J = d gamma / d phi (the analytic Hessian of Algebra.hessian)
    g, Jm = gamma_jac(values)
    dv = np.where(sd_mask, values, 1.0 - values**2)
    Jphi = Jm * dv[None, :]
    H = Jphi.T @ Algebra(crit, comps, g, crit.reml).hessian() @ Jphi
    with np.errstate(all="ignore"):
        try:
            chol = np.linalg.cholesky(H[np.ix_(free, free)])
        except np.linalg.LinAlgError:
            return nan, nan, nan
    cov = 2.0 * np.linalg.inv(chol.T) @ np.linalg.inv(chol)
    se_phi = nan.copy()
    se_phi[free] = np.sqrt(np.diag(cov))
    z = float(stats.norm.ppf(0.5 + level / 2))
    return se_phi * dv, to_values(phi0 - z * se_phi), to_values(phi0 + z * se_phi)
