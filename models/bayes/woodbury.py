"""The marginal log-likelihood of a model with several random terms, and its gradient,
in one Numba kernel (the Op of :mod:`models.bayes.crossed`).

Model (:mod:`models.crossed.structure`): ``y = X beta + Z u + e``, ``u = Lambda b``,
``b ~ N(0, I_L)``, ``e ~ N(0, sigma^2 I_N)``, with ``Lambda`` block-diagonal over the
random terms, ``I_{K_f} (x) T_f`` for term ``f`` (``K_f`` levels, ``T_f`` the lower
Cholesky factor of its ``D_f``, r_f x r_f).  With ``G = Z'Z``, ``r = y - X beta``,
``c = Z'r = Z'y - Z'X beta``, ``v = Lambda'c`` and ``A = Lambda'G Lambda + sigma^2 I_L``
(Woodbury on the L random-effect levels, never an N x N matrix),

* ``-2 log p(y) = N log(2 pi) + (N - L) log sigma^2 + log|A| + (r'r - v'A^-1 v) / sigma^2``,
* ``r'r = y'y - 2 beta'X'y + beta'X'X beta``

(equivalently ``N log(2 pi sigma^2) + log|I + Lambda_s'G Lambda_s| + (r'r - ...) /
sigma^2`` with the relative factor ``Lambda_s = Lambda / sigma``).  ``A`` is factored by
blocks.  The term with the most columns, ``e``, is eliminated first: each row of ``Z_e``
sits in one level, so ``A_ee`` is block-diagonal, ``A_l = T_e'G_l T_e + sigma^2 I``
(r_e x r_e) per level ``l``, and with ``M_l = A_l^-1``, ``B_l = T_e'(G_eR Lambda_R)_l``
(the level's rows of ``A_eR``) and ``v_l = T_e'c_l``,

* ``S = A_RR - sum_l B_l'M_l B_l`` (the Schur complement, L_R x L_R, L_R = L - K_e r_e),
* ``u = v_R - sum_l B_l'M_l v_l``,
* ``log|A| = sum_l log|A_l| + log|S|``, ``v'A^-1 v = sum_l v_l'M_l v_l + u'S^-1 u``.

One dense Cholesky factorisation (of S) per log-density; cost
O(K_e r_e L_R^2 + L_R^3): for 24 subjects x 16 items with random intercepts and slopes
(L = 80, L_R = 32) about 10^5 multiply-adds.  The gradient (with respect to beta, every
entry of each ``T_f`` and sigma^2) is the adjoint of those steps, written out in
:func:`loglik_grad` (``S^-1`` and ``m = S^-1 u`` give ``dS = S^-1 + m m' / sigma^2``,
then back through the Schur complement, the per-level inverses and the products with
``T_f``), so value and gradient cost one pass.

Why by hand: the same algebra as a PyTensor graph cost 1.6 ms a log-density + gradient
under Numba (PyTensor's gradient of a 32 x 32 Cholesky factorisation alone 1.2 ms), and
still 120 us with a hand-written Op for the dense factorisation (~300 small nodes),
against 45-90 us for this kernel (a shared 2-core machine, load-dependent; 2026-11-25,
PyTensor 3.3.8, Numba 0.68).  ``tests/models/test_bayes_crossed.py`` checks the value
against a dense multivariate normal with the explicit N x N covariance and the gradient
against finite differences.

The layout of ``Lambda_R`` (the terms other than ``e``, in order) is given per column ``j``
of the rest block as ``cols[j] = (t, r, s, a)``: ``T`` of its term starts at ``t`` in the
flat vector of the ``T_f`` (row-major r x r each), the term has ``r`` effects, the
column's level block starts at column ``s`` of the rest block, and the column is the
``a``-th effect of its level.  So ``(M Lambda_R)[:, j] = sum_d M[:, s + d] T[d, a]``.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numba
import numpy as np
import pytensor.tensor as pt
from numba import carray, types
from numba.extending import register_jitable
from pytensor.gradient import DisconnectedType, disconnected_type
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

LOG_2PI = float(np.log(2.0 * np.pi))


@register_jitable
def _spd_inverse(A: np.ndarray, out: np.ndarray, C: np.ndarray, B: np.ndarray) -> float:
    """Inverse (into ``out``) and log-determinant of a small symmetric positive-definite
    matrix by its Cholesky factor, in loops (``C``, ``B``: work arrays of A's shape): for
    the r x r block of one level.  Not positive definite: NaN."""
    n = A.shape[0]
    logdet = 0.0
    for j in range(n):
        d = A[j, j]
        for k in range(j):
            d -= C[j, k] * C[j, k]
        if not d > 0.0:
            return np.nan
        cj = np.sqrt(d)
        C[j, j] = cj
        logdet += 2.0 * np.log(cj)
        for i in range(j + 1, n):
            s = A[i, j]
            for k in range(j):
                s -= C[i, k] * C[j, k]
            C[i, j] = s / cj
    for i in range(n):  # B = C^-1, lower triangular
        for j in range(i + 1):
            s = 1.0 if i == j else 0.0
            for k in range(j, i):
                s -= C[i, k] * B[k, j]
            B[i, j] = s / C[i, i]
    for i in range(n):  # out = B'B
        for j in range(i + 1):
            s = 0.0
            for k in range(i, n):
                s += B[k, i] * B[k, j]
            out[i, j] = s
            out[j, i] = s
    return logdet


@register_jitable
def _chol_inverse(S: np.ndarray) -> tuple[np.ndarray, float, bool]:
    """Inverse and log-determinant of a dense symmetric positive-definite matrix
    (LAPACK Cholesky, then the triangular inverse row by row); ``ok`` False if not PD."""
    n = S.shape[0]
    try:
        C = np.linalg.cholesky(S)
    except Exception:  # not positive definite (LinAlgError; Numba raises its own)
        return S, 0.0, False
    B = np.zeros((n, n))
    row = np.zeros(n)
    logdet = 0.0
    for i in range(n):
        d = C[i, i]
        if not d > 0.0:
            return S, 0.0, False
        row[:] = 0.0
        row[i] = 1.0
        for k in range(i):
            c = C[i, k]
            for j in range(k + 1):
                row[j] -= c * B[k, j]
        logdet += 2.0 * np.log(d)
        for j in range(i + 1):
            B[i, j] = row[j] / d
    return B.T @ B, logdet, True


def loglik_grad(
    gee: np.ndarray,
    ger: np.ndarray,
    grr: np.ndarray,
    cy: np.ndarray,
    cx: np.ndarray,
    xtx: np.ndarray,
    xty: np.ndarray,
    scalars: np.ndarray,
    head: np.ndarray,
    cols: np.ndarray,
    theta: np.ndarray,
) -> tuple[float, np.ndarray]:
    """Log marginal likelihood (module docstring) and its gradient w.r.t. ``theta``.

    Parameters
    ----------
    gee : (K_e, r_e, r_e)
        Diagonal blocks of ``Z_e'Z_e`` (the eliminated term's levels).
    ger, grr : (K_e r_e, L_R), (L_R, L_R)
        ``Z_e'Z_R`` and ``Z_R'Z_R``.
    cy, cx : (L,), (L, q)
        ``Z'y`` and ``Z'X``, the eliminated term's rows first.
    xtx, xty : (q, q), (q,)
    scalars : (2,)
        ``y'y`` and N.
    head : (1,) int
        Where ``T_e`` starts in the flat vector of the ``T_f``.
    cols : (L_R, 4) int
        The layout of ``Lambda_R`` (module docstring).
    theta : (q + sum_f r_f^2 + 1,)
        ``beta``, every ``T_f`` row-major (in term order), ``sigma^2``.

    Returns
    -------
    float, ndarray
        The log-likelihood (``-inf`` where a matrix is not positive definite, with a NaN
        gradient) and its gradient, shaped like ``theta``.
    """
    k_e, r_e = gee.shape[0], gee.shape[1]
    l_e = k_e * r_e
    l_r = grr.shape[0]
    q = xtx.shape[0]
    n_theta = theta.shape[0]
    beta = theta[:q]
    tv = theta[q : n_theta - 1]
    s2 = theta[n_theta - 1]
    t0 = q + head[0]  # T_e in theta
    Te = np.empty((r_e, r_e))
    for i in range(r_e):
        for j in range(r_e):
            Te[i, j] = theta[t0 + i * r_e + j]
    grad = np.zeros(n_theta)
    if not s2 > 0.0:
        grad[:] = np.nan
        return -np.inf, grad
    yty, n_obs = scalars[0], scalars[1]
    c = cy - cx @ beta  # Z'r
    xb = xtx @ beta
    rr = yty - 2.0 * (xty @ beta) + beta @ xb
    # -- the rest block: H = G_eR Lambda_R, GRL = G_RR Lambda_R, A_RR, v_R -------------
    # built column by column as the rows of their transposes (contiguous, vectorised)
    gerT = np.ascontiguousarray(ger.T)  # Z_R'Z_e
    HT = np.zeros((l_r, l_e))
    GRLT = np.zeros((l_r, l_r))  # = Lambda_R' G_RR (G_RR symmetric)
    vR = np.zeros(l_r)
    for j in range(l_r):
        t, r, s, a = cols[j, 0], cols[j, 1], cols[j, 2], cols[j, 3]
        h, g_ = HT[j], GRLT[j]
        for d in range(r):
            w = tv[t + d * r + a]
            if w != 0.0:
                src_h, src_g = gerT[s + d], grr[s + d]
                for i in range(l_e):
                    h[i] += w * src_h[i]
                for i in range(l_r):
                    g_[i] += w * src_g[i]
                vR[j] += w * c[l_e + s + d]
    H = np.ascontiguousarray(HT.T)
    GRL = np.ascontiguousarray(GRLT.T)
    S = np.zeros((l_r, l_r))  # A_RR = Lambda_R' GRL + s2 I, then minus B'MB
    for i in range(l_r):
        t, r, s, a = cols[i, 0], cols[i, 1], cols[i, 2], cols[i, 3]
        row = S[i]
        for d in range(r):
            w = tv[t + d * r + a]
            if w != 0.0:
                src = GRL[s + d]
                for j in range(l_r):
                    row[j] += w * src[j]
        row[i] += s2
    # -- the eliminated term, level by level -----------------------------------------
    B = np.zeros((l_e, l_r))  # stacked B_l = T_e' H_l
    MB = np.zeros((l_e, l_r))  # stacked M_l B_l
    M = np.zeros((k_e, r_e, r_e))
    V = np.zeros(l_e)  # stacked v_l = T_e' c_l
    MV = np.zeros(l_e)  # stacked M_l v_l
    Al = np.zeros((r_e, r_e))
    GT = np.zeros((r_e, r_e))
    work_c = np.zeros((r_e, r_e))
    work_b = np.zeros((r_e, r_e))
    logdet = 0.0
    quad = 0.0
    for lv in range(k_e):
        lo = lv * r_e
        for k in range(r_e):  # GT = G_l T_e
            for j in range(r_e):
                acc = 0.0
                for m in range(r_e):
                    acc += gee[lv, k, m] * Te[m, j]
                GT[k, j] = acc
        for i in range(r_e):  # A_l = T_e' G_l T_e + s2 I
            for j in range(r_e):
                acc = s2 if i == j else 0.0
                for k in range(r_e):
                    acc += Te[k, i] * GT[k, j]
                Al[i, j] = acc
        ld = _spd_inverse(Al, M[lv], work_c, work_b)
        if not np.isfinite(ld):
            grad[:] = np.nan
            return -np.inf, grad
        logdet += ld
        for i in range(r_e):
            row = B[lo + i]
            for k in range(r_e):
                w = Te[k, i]
                if w != 0.0:
                    src = H[lo + k]
                    for j in range(l_r):
                        row[j] += w * src[j]
                    V[lo + i] += w * c[lo + k]
        for i in range(r_e):
            row = MB[lo + i]
            for k in range(r_e):
                w = M[lv, i, k]
                src = B[lo + k]
                for j in range(l_r):
                    row[j] += w * src[j]
                MV[lo + i] += w * V[lo + k]
            quad += V[lo + i] * MV[lo + i]
    Sbar = np.zeros((l_r, l_r))
    ubar = np.zeros(l_r)
    quad_s = 0.0
    if l_r:
        S -= B.T @ MB
        u = vR - B.T @ MV
        Sinv, ld, ok = _chol_inverse(S)
        if not ok:
            grad[:] = np.nan
            return -np.inf, grad
        m = Sinv @ u
        quad_s = u @ m
        logdet += ld
        # adjoints of F = log|A| - v'A^-1 v / s2
        Sbar = Sinv + np.outer(m, m) / s2
        ubar = -2.0 * m / s2
    quad += quad_s
    # -- backward: the eliminated term --------------------------------------------------
    tbar = np.zeros(n_theta - 1 - q)  # dF / d T (flat, all terms)
    cbar = np.zeros(c.shape[0])
    s2bar = 0.0
    Hbar = np.zeros((l_e, l_r))
    BS = B @ Sbar if l_r else np.zeros((l_e, l_r))
    Teb = np.zeros((r_e, r_e))
    Bu = np.zeros(r_e)
    Mbar = np.zeros((r_e, r_e))
    Abar = np.zeros((r_e, r_e))
    Bbar = np.zeros((r_e, l_r))
    vbar = np.zeros(r_e)
    for lv in range(k_e):
        lo = lv * r_e
        for i in range(r_e):
            acc = 0.0
            row = B[lo + i]
            for j in range(l_r):
                acc += row[j] * ubar[j]
            Bu[i] = acc
        for i in range(r_e):  # Mbar, symmetrised
            bsi = BS[lo + i]
            for k in range(i + 1):
                acc = 0.0
                bk = B[lo + k]
                for j in range(l_r):
                    acc += bsi[j] * bk[j]
                vi, vk = V[lo + i], V[lo + k]
                val = -acc - 0.5 * (Bu[i] * vk + Bu[k] * vi) - vi * vk / s2
                Mbar[i, k] = val
                Mbar[k, i] = val
        for i in range(r_e):  # GT = Mbar M_l (reused as work)
            for j in range(r_e):
                acc = 0.0
                for k in range(r_e):
                    acc += Mbar[i, k] * M[lv, k, j]
                GT[i, j] = acc
        for i in range(r_e):  # Abar = M - M Mbar M
            for j in range(r_e):
                acc = 0.0
                for k in range(r_e):
                    acc += M[lv, i, k] * GT[k, j]
                Abar[i, j] = M[lv, i, j] - acc
            s2bar += Abar[i, i]
        for i in range(r_e):
            mvi = MV[lo + i]
            row = Bbar[i]
            for j in range(l_r):
                row[j] = -mvi * ubar[j]
            for k in range(r_e):
                w = -2.0 * M[lv, i, k]
                src = BS[lo + k]
                for j in range(l_r):
                    row[j] += w * src[j]
            acc = 0.0
            for k in range(r_e):
                acc += M[lv, i, k] * Bu[k]
            vbar[i] = -acc - 2.0 * mvi / s2
        for k in range(r_e):  # GT = G_l T_e (again)
            for j in range(r_e):
                acc = 0.0
                for m in range(r_e):
                    acc += gee[lv, k, m] * Te[m, j]
                GT[k, j] = acc
        for k in range(r_e):
            for i in range(r_e):
                acc = 0.0
                for j in range(r_e):  # 2 G_l T_e Abar
                    acc += 2.0 * GT[k, j] * Abar[j, i]
                hk, bi = H[lo + k], Bbar[i]
                for j in range(l_r):  # H_l Bbar'
                    acc += hk[j] * bi[j]
                acc += c[lo + k] * vbar[i]  # c_l vbar'
                Teb[k, i] += acc
        for k in range(r_e):
            acc = 0.0
            for i in range(r_e):
                w = Te[k, i]
                if w != 0.0:
                    row, src = Hbar[lo + k], Bbar[i]
                    for j in range(l_r):
                        row[j] += w * src[j]
                    acc += w * vbar[i]
            cbar[lo + k] = acc
    for i in range(r_e):
        for j in range(r_e):
            tbar[head[0] + i * r_e + j] += Teb[i, j]
    # -- backward: the rest block -------------------------------------------------------
    if l_r:
        for i in range(l_r):
            s2bar += Sbar[i, i]
        # A_RR: d/dLambda_R = 2 GRL Abar_RR (Abar_RR = Sbar), only the entries T touches
        HbarT = np.ascontiguousarray(Hbar.T)
        for j in range(l_r):
            t, r, s, a = cols[j, 0], cols[j, 1], cols[j, 2], cols[j, 3]
            sj, hj = Sbar[j], HbarT[j]  # Sbar symmetric: its row j
            for d in range(r):
                g = 0.0
                gr, ge = GRL[s + d], gerT[s + d]
                for i in range(l_r):
                    g += 2.0 * gr[i] * sj[i]
                for i in range(l_e):  # H = G_eR Lambda_R
                    g += ge[i] * hj[i]
                g += ubar[j] * c[l_e + s + d]  # v_R = Lambda_R' c_R
                tbar[t + d * r + a] += g
                cbar[l_e + s + d] += tv[t + d * r + a] * ubar[j]
    bbar = -(cx.T @ cbar)  # c = Z'y - Z'X beta
    s2bar += quad / (s2 * s2)
    n_random = l_e + l_r
    logp = -0.5 * (n_obs * LOG_2PI + (n_obs - n_random) * np.log(s2) + logdet + (rr - quad) / s2)
    grad[:q] = -0.5 * (bbar + 2.0 * (xb - xty) / s2)
    grad[q : n_theta - 1] = -0.5 * tbar
    grad[n_theta - 1] = -0.5 * ((n_obs - n_random) / s2 + s2bar - rr / (s2 * s2))
    return logp, grad


def layout_columns(r: tuple[int, ...], levels: tuple[int, ...], first: int) -> np.ndarray:
    """``cols`` of :func:`loglik_grad` for terms with ``r`` effects and ``levels``
    levels, ``first`` eliminated (the other terms in order make the rest block)."""
    starts = np.concatenate(([0], np.cumsum([k * k for k in r])[:-1])).astype(int)
    rows = []
    at = 0
    for f in range(len(r)):
        if f == first:
            continue
        for lv in range(levels[f]):
            for a in range(r[f]):
                rows.append((starts[f], r[f], at + lv * r[f], a))
        at += levels[f] * r[f]
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def t_offsets(r: tuple[int, ...]) -> np.ndarray:
    """Where each term's ``T_f`` starts in the flat vector of the ``T_f``."""
    return np.concatenate(([0], np.cumsum([k * k for k in r])[:-1])).astype(np.int64)


# -- one flat data vector, the compiled kernel and the PyTensor Op ---------------------
#: the arrays of :func:`loglik_grad` that make the flat data vector, in order
DATA = ("gee", "ger", "grr", "cy", "cx", "xtx", "xty", "scalars")


def flat_data(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The float inputs of :func:`loglik_grad` (by name) as one vector (:data:`DATA`
    order, each C order): one ``pm.Data`` instead of eight keeps the compiled model small
    (each data input costs its own extraction and shape checks)."""
    return np.concatenate([np.ascontiguousarray(arrays[k], dtype=float).ravel() for k in DATA])


def flat_ints(k_e: int, r_e: int, q: int, n_theta: int, head: int, cols: np.ndarray) -> np.ndarray:
    """The integer inputs: ``(K_e, r_e, L_R, q, len(theta), head)`` and ``cols``."""
    head_row = [k_e, r_e, cols.shape[0], q, n_theta, head]
    return np.concatenate([np.array(head_row), np.ravel(cols)]).astype(np.int64)


#: the kernel's C signature: flat data, flat ints, theta, out = (logp, gradient)
_F = types.CPointer(types.float64)
_I = types.CPointer(types.int64)
_SIGNATURE = types.void(_F, _I, _F, _F)
_CTYPES = (
    ctypes.POINTER(ctypes.c_double),
    ctypes.POINTER(ctypes.c_int64),
    ctypes.POINTER(ctypes.c_double),
    ctypes.POINTER(ctypes.c_double),
)
#: the compiled kernel of this process: {"cfunc": numba cfunc, "call": ctypes function}
_COMPILED: dict[str, Any] = {}


def _kernel_c(data, ints, theta, out):
    """:func:`loglik_grad` behind a C signature: the flat vectors of :func:`flat_data`
    and :func:`flat_ints` as raw pointers."""
    k_e, r_e, l_r, q, n_theta = ints[0], ints[1], ints[2], ints[3], ints[4]
    l_e = k_e * r_e
    n = l_e + l_r
    sizes = (k_e * r_e * r_e, l_e * l_r, l_r * l_r, n, n * q, q * q, q, 2)
    flat = carray(data, (sum(sizes),))
    at = 0
    gee = flat[at : at + sizes[0]].reshape((k_e, r_e, r_e))
    at += sizes[0]
    ger = flat[at : at + sizes[1]].reshape((l_e, l_r))
    at += sizes[1]
    grr = flat[at : at + sizes[2]].reshape((l_r, l_r))
    at += sizes[2]
    cy = flat[at : at + sizes[3]]
    at += sizes[3]
    cx = flat[at : at + sizes[4]].reshape((n, q))
    at += sizes[4]
    xtx = flat[at : at + sizes[5]].reshape((q, q))
    at += sizes[5]
    xty = flat[at : at + sizes[6]]
    at += sizes[6]
    scalars = flat[at : at + 2]
    iv = carray(ints, (6 + 4 * l_r,))
    head = iv[5:6]
    cols = iv[6:].reshape((l_r, 4))
    logp, grad = _loglik_grad_jit(
        gee, ger, grr, cy, cx, xtx, xty, scalars, head, cols, carray(theta, (n_theta,))
    )
    out[0] = logp
    for i in range(n_theta):
        out[1 + i] = grad[i]


_loglik_grad_jit: Any = numba.njit(no_cpython_wrapper=True)(loglik_grad)  # type: ignore[call-overload]


def compiled_kernel() -> Any:
    """The kernel as a C function (ctypes), compiled once per process, or loaded from
    Numba's on-disk cache.

    Why a C function: a model's log-density function links every Numba function it
    calls and optimises the result again, so the kernel called directly added its
    whole code to every compiled model; called through a function pointer it is
    opaque.  Always without fastmath (the engine's ``fastmath`` option does not apply
    to it), so draws never depend on how it was compiled.
    """
    if "call" not in _COMPILED:
        cfunc: Any = numba.cfunc(_SIGNATURE, cache=True)(_kernel_c)
        _COMPILED["cfunc"] = cfunc  # keeps the code alive while the pointer is used
        _COMPILED["call"] = ctypes.CFUNCTYPE(None, *_CTYPES)(int(cfunc.address))
    return _COMPILED["call"]


def loglik_grad_compiled(
    data: np.ndarray, ints: np.ndarray, theta: np.ndarray
) -> tuple[float, np.ndarray]:
    """:func:`loglik_grad` of the flat inputs through the compiled kernel."""
    data = np.ascontiguousarray(data, dtype=float)
    ints = np.ascontiguousarray(ints, dtype=np.int64)
    theta = np.ascontiguousarray(theta, dtype=float)
    out = np.empty(1 + theta.shape[0])
    arrays = (data, ints, theta, out)
    ptrs = [x.ctypes.data_as(t) for x, t in zip(arrays, _CTYPES, strict=True)]  # type: ignore[type-var]
    compiled_kernel()(*ptrs)
    return float(out[0]), out[1:].copy()


class CrossedLoglik(Op):
    """``(data, ints, theta) -> (loglik, d loglik / d theta)`` (:func:`loglik_grad` of
    :func:`flat_data` and :func:`flat_ints`); the pullback multiplies the stored
    gradient, so value and gradient cost one pass."""

    __props__ = ()

    def make_node(self, data: Any, ints: Any, theta: Any) -> Any:  # type: ignore[override]
        inputs = [pt.as_tensor_variable(x) for x in (data, ints, theta)]
        return Apply(self, inputs, [pt.dscalar(), pt.dvector()])

    def perform(self, node, inputs, outputs):
        logp, grad = loglik_grad_compiled(*inputs)
        outputs[0][0] = np.asarray(logp)
        outputs[1][0] = grad

    def infer_shape(self, node, shapes):
        return [(), shapes[2]]

    def pullback(self, inputs, outputs, output_grads):
        if not isinstance(output_grads[1].type, DisconnectedType):
            raise NotImplementedError("the gradient output is not differentiable")
        return [disconnected_type(), disconnected_type(), output_grads[0] * outputs[1]]

    def connection_pattern(self, node):
        return [[False, False], [False, False], [True, True]]


def _register_numba() -> None:
    from pytensor.link.numba.dispatch.basic import numba_funcify, numba_njit

    @numba_funcify.register(CrossedLoglik)
    def _funcify(op, node=None, **kwargs):
        call = compiled_kernel()

        @numba_njit
        def crossed_loglik_op(data, ints, theta):
            data = np.ascontiguousarray(data)
            ints = np.ascontiguousarray(ints)
            theta = np.ascontiguousarray(theta)
            out = np.empty(1 + theta.shape[0])
            call(data.ctypes, ints.ctypes, theta.ctypes, out.ctypes)
            return np.array(out[0]), out[1:].copy()

        return crossed_loglik_op


_register_numba()
crossed_loglik_op = CrossedLoglik()
