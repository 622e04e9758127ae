"""The marginal log-likelihood of the LMM as a PyTensor graph, on packed per-group
sufficient statistics (what :func:`models.bayes.graph.build_marginal` puts in a model).

The model is ``y_i = X_i beta + Z_i u_i + e_i`` with ``Z_i`` the columns of ``X_i``
that have a random effect (:class:`models.structure.Structure`: ``q`` fixed effects,
``r`` random effects) and ``u_i ~ N(0, D)``, ``D`` (r x r) unstructured or diagonal.
With ``L`` the Cholesky factor of ``D`` (``D = L L'``; diagonal when ``D`` is),
``r = y - X beta`` and ``A_i = L' Z_i'Z_i L + sigma^2 I_r`` (``A_i = L' M_i L`` with
``M_i = Z_i'Z_i + sigma^2 D^-1``),

* ``r'V_i^-1 r = (r'r - v_i' A_i^-1 v_i) / sigma^2`` with ``v_i = L' Z_i'r``,
* ``log|V_i| = log|A_i| + (n_i - r) log sigma^2`` (``|A_i| = |M_i| |D|``),
* ``r'r = y'y - 2 beta'X'y + beta'X'X beta`` and ``X'r = X'y - X'X beta``, of which
  ``Z'r`` is a sub-vector (``Z'Z`` likewise a sub-block of ``X'X``),

so one log-density costs O(K (q^2 + r^3)) whatever the n_i, from the same packed
statistics whatever the structure.  Writing the algebra with ``L`` avoids ``D^-1``
(fine when a variance heads to zero).  For q = 2 with ``Z = X`` (correlated or not)
under nutpie a hand-written Op computes value and gradient in one loop
(:mod:`models.bayes.kernel`); otherwise, for ``r <= UNROLL_MAX``, the r x r algebra is
unrolled into elementwise operations over the K groups (one fused loop in the compiled
function; structural zeros of a diagonal ``L`` are left out), else batched
``pytensor.tensor.linalg`` Cholesky and triangular solves are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from models.data import LMMData

#: Largest r whose r x r algebra is unrolled into elementwise operations.
UNROLL_MAX = 4
#: Name of the pm.Data holding the packed per-group sufficient statistics.
STATS = "stats"


def pack_stats(data: LMMData) -> np.ndarray:
    """Per-group sufficient statistics packed as a ``(2 + q + q (q + 1) / 2, K)`` array.

    Rows: ``n``, ``y'y``, ``X'y[k]`` for each k, ``X'X[k, l]`` for ``k <= l``.  The same
    for every random-effects structure (``Z'Z``, ``Z'y`` are sub-blocks).
    """
    q = data.q
    rows = [data.n.astype(float), data.yty]
    rows += [data.Xty[:, k] for k in range(q)]
    rows += [data.XtX[:, k, m] for k in range(q) for m in range(k, q)]
    return np.ascontiguousarray(np.stack(rows), dtype=float)


def lower_matrix(L: list[list[Any]]) -> Any:
    import pytensor.tensor as pt

    r = len(L)
    zero = pt.constant(0.0)
    return pt.stack(
        [
            pt.stack([L[i][j] if j <= i and L[i][j] is not None else zero for j in range(r)])
            for i in range(r)
        ]
    )


def _entry(L: list[list[Any]], i: int, j: int) -> Any:
    """``L[i][j]``, or ``None`` for a structural zero (above the diagonal, or absent)."""
    return L[i][j] if j <= i else None


def marginal_loglik(
    stats: Any,
    beta: list[Any],
    sigma: Any,
    L: list[list[Any]],
    algebra: str,
    logdet_term: bool = True,
    index: tuple[int, ...] | list[int] | None = None,
):
    """Log marginal likelihood summed over groups, from packed statistics.

    Parameters
    ----------
    stats : TensorVariable, shape (2 + q + q (q + 1) / 2, K)
        Packed statistics (:func:`pack_stats`).
    beta, sigma, L
        Fixed effects (q scalars), residual SD, lower Cholesky factor of D (r x r
        nested lists of scalars; ``None`` for a structural zero).
    algebra : {"kernel", "unrolled", "batched"}
        One hand-written Op with its gradient (q = 2 with Z = X, correlated or not,
        :mod:`models.bayes.kernel`), elementwise closed form over groups, or batched
        linalg ops.
    logdet_term : bool
        ``False`` drops ``sum_i log|A_i|``: a deliberately wrong likelihood (the
        ``likelihood = "no-logdet"`` option) for showing the power of SBC.
    index : sequence of int, optional
        Positions in ``X`` of ``Z``'s r columns (:attr:`Structure.index`); default
        every column (``Z = X``, r = q).
    """
    import pytensor.tensor as pt

    q = len(beta)
    idx = tuple(range(q)) if index is None else tuple(int(k) for k in index)
    r = len(L)
    if len(idx) != r or any(not 0 <= k < q for k in idx):
        raise ValueError(f"index {list(idx)} must give r = {r} column positions in 0..{q - 1}")
    if algebra == "kernel":
        if q != 2:
            raise ValueError(
                f"algebra = 'kernel' is for q = 2 (an intercept and one slope); q = {q}"
            )
        if idx != (0, 1):
            raise ValueError(
                "algebra = 'kernel' is for q = 2 with a random intercept and slope (Z = X); "
                f"this one has random effects at {list(idx)}"
            )
        from models.bayes.kernel import marginal_loglik2

        if L[1][0] is None:  # uncorrelated (||): the kernel with L10 held at 0
            L = [[L[0][0], None], [pt.constant(0.0), L[1][1]]]
        return marginal_loglik2(stats, beta, sigma, L)
    s2 = sigma**2
    n, yty = stats[0], stats[1]
    xty = [stats[2 + k] for k in range(q)]
    G: dict[tuple[int, int], Any] = {}
    row = 2 + q
    for k in range(q):
        for m in range(k, q):
            G[(k, m)] = G[(m, k)] = stats[row]
            row += 1
    xtr = [xty[k] - sum(G[(k, m)] * beta[m] for m in range(q)) for k in range(q)]
    rr = yty - sum(beta[k] * (xty[k] + xtr[k]) for k in range(q))
    GZ = {(a, b): G[(idx[a], idx[b])] for a in range(r) for b in range(r)}  # Z'Z
    ztr = [xtr[k] for k in idx]  # Z'r
    if algebra == "unrolled":
        logdet, quad = _unrolled_quad_logdet(GZ, ztr, L, s2, r)
    else:
        logdet, quad = _batched_quad_logdet(GZ, ztr, L, s2, r)
    n_tot = pt.sum(n)
    n_groups = stats.shape[1]
    return -0.5 * (
        n_tot * np.log(2 * np.pi)
        + (n_tot - r * n_groups) * pt.log(s2)
        + (pt.sum(logdet) if logdet_term else 0.0)
        + pt.sum(rr - quad) / s2
    )


def _unrolled_quad_logdet(G: dict, ztr: list, L: list[list[Any]], s2: Any, q: int):
    """``log|A_i|`` and ``v_i' A_i^-1 v_i`` as elementwise expressions over groups
    (``G`` = Z'Z and ``ztr`` = Z'r, ``q`` = their dimension r)."""
    import pytensor.tensor as pt

    # A[i][j] = sum_{k,m} L[k][i] L[m][j] G[k,m]; scalar coefficients first, so
    # each entry is one linear combination of the K-vectors G[k, m].  Structural
    # zeros of L (a diagonal D) drop out of the sums.
    A: dict[tuple[int, int], Any] = {}
    for i in range(q):
        for j in range(i, q):
            acc: Any = None
            for k in range(q):
                for m in range(k, q):  # G symmetric: collect G[k,m] and G[m,k]
                    parts = []
                    lki, lmj = _entry(L, k, i), _entry(L, m, j)
                    if lki is not None and lmj is not None:
                        parts.append(lki * lmj)
                    lmi, lkj = _entry(L, m, i), _entry(L, k, j)
                    if k != m and lmi is not None and lkj is not None:
                        parts.append(lmi * lkj)
                    if parts:
                        term = sum(parts[1:], parts[0]) * G[(k, m)]
                        acc = term if acc is None else acc + term
            if i == j:
                A[(i, j)] = acc + s2
            else:
                A[(i, j)] = pt.constant(0.0) if acc is None else acc
    v = [sum(L[k][i] * ztr[k] for k in range(i, q) if L[k][i] is not None) for i in range(q)]
    if q == 1:
        a = A[(0, 0)]
        return pt.log(a), v[0] ** 2 / a
    if q == 2:
        a, b, c = A[(0, 0)], A[(0, 1)], A[(1, 1)]
        det = a * c - b * b
        return pt.log(det), (c * v[0] ** 2 - 2.0 * b * v[0] * v[1] + a * v[1] ** 2) / det
    if q == 3:  # adjugate: no square roots, one log, one division per group
        a, b, c = A[(0, 0)], A[(0, 1)], A[(0, 2)]
        d, e, f = A[(1, 1)], A[(1, 2)], A[(2, 2)]
        c00, c01, c02 = d * f - e * e, c * e - b * f, b * e - c * d
        c11, c12, c22 = a * f - c * c, b * c - a * e, a * d - b * b
        det = a * c00 + b * c01 + c * c02
        num = c00 * v[0] ** 2 + c11 * v[1] ** 2 + c22 * v[2] ** 2
        num = num + 2.0 * (c01 * v[0] * v[1] + c02 * v[0] * v[2] + c12 * v[1] * v[2])
        return pt.log(det), num / det
    C: dict[tuple[int, int], Any] = {}
    for j in range(q):
        d = A[(j, j)] - sum(C[(j, k)] ** 2 for k in range(j)) if j else A[(0, 0)]
        C[(j, j)] = pt.sqrt(d)
        for i in range(j + 1, q):
            off = A[(j, i)] - sum(C[(i, k)] * C[(j, k)] for k in range(j)) if j else A[(0, i)]
            C[(i, j)] = off / C[(j, j)]
    w: list[Any] = []
    for i in range(q):
        w.append((v[i] - sum(C[(i, k)] * w[k] for k in range(i))) / C[(i, i)])
    logdet = 2.0 * sum(pt.log(C[(i, i)]) for i in range(q))
    return logdet, sum(wi**2 for wi in w)


def _batched_quad_logdet(G: dict, ztr: list, L: list[list[Any]], s2: Any, q: int):
    """Same as :func:`_unrolled_quad_logdet` with batched (K, r, r) linalg ops."""
    import pytensor.tensor as pt
    from pytensor.tensor import linalg

    Lm = lower_matrix(L)
    ZtZ = pt.stack([pt.stack([G[(k, m)] for m in range(q)], axis=-1) for k in range(q)], axis=-2)
    A = pt.matmul(pt.matmul(Lm.T[None], ZtZ), Lm[None]) + s2 * pt.eye(q)[None]
    v = pt.dot(pt.stack(ztr, axis=-1), Lm)  # rows v_i = L' ztr_i
    C = linalg.cholesky(A)
    w = linalg.solve_triangular(C, v[..., None], lower=True, b_ndim=2)[..., 0]
    logdet = 2.0 * pt.sum(pt.log(pt.diagonal(C, axis1=-2, axis2=-1)), axis=-1)
    return logdet, pt.sum(w**2, axis=-1)
