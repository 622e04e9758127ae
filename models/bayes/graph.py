"""PyMC graphs for the Bayesian engine: priors, the marginal likelihood, latent models.

The marginal model integrates the random effects out.  With ``L`` the Cholesky factor
of ``D`` (``D = L L'``), ``r = y - X beta`` and ``A_i = L' X_i'X_i L + sigma^2 I``
(``A_i = L' M_i L`` with ``M_i = X_i'X_i + sigma^2 D^-1``),

* ``r'V_i^-1 r = (r'r - v_i' A_i^-1 v_i) / sigma^2`` with ``v_i = L' X_i'r``,
* ``log|V_i| = log|A_i| + (n_i - q) log sigma^2`` (``|A_i| = |M_i| |D|``),
* ``r'r = y'y - 2 beta'X'y + beta'X'X beta`` and ``X'r = X'y - X'X beta``,

so one log-density costs O(K q^3) whatever the n_i.  Writing the algebra with ``L``
avoids ``D^-1`` (fine when a variance heads to zero).  For q = 2 under nutpie a
hand-written Op computes value and gradient in one loop (:mod:`models.bayes.kernel`);
otherwise, for ``q <= UNROLL_MAX``, the q x q algebra is unrolled into elementwise
operations over the K groups (one fused loop in the compiled function), else batched
``pytensor.tensor.linalg`` Cholesky and triangular solves are used.

Priors on the random-effect covariance: independent SD priors and an LKJ(eta) prior
on the correlation matrix, built from canonical partial correlations (CPCs) with
``(z + 1) / 2 ~ Beta(b_k, b_k)``, ``b_k = eta + (q - 2 - k) / 2`` for level ``k``
(Lewandowski, Kurowicka & Joe 2009, the vine method): this gives exactly the LKJ
density on the correlation matrix and a Cholesky factor in closed form.  The same
construction is used by every parameterization, so their posteriors are comparable.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import numpy as np

from models.base import split_terms

if TYPE_CHECKING:
    import pymc as pm

    from models.bayes.options import BayesPriors
    from models.data import LMMData

#: Largest q whose q x q algebra is unrolled into elementwise operations.
UNROLL_MAX = 4
#: Name of the pm.Data holding the packed per-group sufficient statistics.
STATS = "stats"
#: Name of the deterministic holding every term, in ``term_names`` order.
TERMS = "terms"


def pairs(q: int) -> list[tuple[int, int]]:
    """Index pairs ``(a, b)``, ``a < b``, in the order of the ``cor__`` terms."""
    return list(itertools.combinations(range(q), 2))


def pack_stats(data: LMMData) -> np.ndarray:
    """Per-group sufficient statistics packed as a ``(2 + q + q (q + 1) / 2, K)`` array.

    Rows: ``n``, ``y'y``, ``X'y[k]`` for each k, ``X'X[k, l]`` for ``k <= l``.
    """
    q = data.q
    rows = [data.n.astype(float), data.yty]
    rows += [data.Xty[:, k] for k in range(q)]
    rows += [data.XtX[:, k, m] for k in range(q) for m in range(k, q)]
    return np.ascontiguousarray(np.stack(rows), dtype=float)


def _scale_prior(name: str, family: str, scale: Any, df: float, shape: Any = None) -> Any:
    import pymc as pm

    if family == "halfnormal":
        return pm.HalfNormal(name, sigma=scale, shape=shape)
    if family == "halft":
        return pm.HalfStudentT(name, nu=df, sigma=scale, shape=shape)
    return pm.Exponential(name, scale=scale, shape=shape)


def per_coefficient(value: Any, q: int, name: str) -> np.ndarray:
    """A prior parameter as q values: one number broadcast, or a list of length q."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        return np.full(q, float(arr))
    if arr.shape != (q,):
        raise ValueError(
            f"priors.{name} has {arr.size} values for {q} coefficients; give one number "
            f"or {q} values (intercept first)"
        )
    return arr


def add_priors(q: int, priors: BayesPriors) -> dict[str, Any]:
    """Declare the priors in the current model context.

    Returns a dict with ``beta`` (q scalars), ``sds`` (q), ``sigma``, ``L`` (lower
    Cholesky factor of D as nested lists of scalars, ``None`` above the diagonal),
    ``cors`` (one scalar per pair) and ``terms`` (the deterministic of all terms).
    """
    import pymc as pm
    import pytensor.tensor as pt

    loc, scale, sd_scale = (
        per_coefficient(getattr(priors, name), q, name)
        for name in ("fixed_loc", "fixed_scale", "sd_scale")
    )
    beta_v = pm.Normal("beta", mu=loc, sigma=scale, shape=q)
    sds_v = _scale_prior("sd", priors.sd_family, sd_scale, priors.sd_df, shape=q)
    sigma = _scale_prior("sigma", priors.sigma_family, priors.sigma_scale, priors.sigma_df)
    beta = [beta_v[k] for k in range(q)]
    sds = [sds_v[k] for k in range(q)]
    idx = pairs(q)
    z: dict[tuple[int, int], Any] = {}
    if idx:
        b = np.array([priors.lkj_eta + (q - 2 - k) / 2 for k, _ in idx])
        cpc = pm.Beta("cpc", alpha=b, beta=b, shape=len(idx))
        z = {pair: 2.0 * cpc[j] - 1.0 for j, pair in enumerate(idx)}
    # Cholesky factor of the correlation matrix from the CPCs (canonical vine).
    Lc: list[list[Any]] = [[None] * q for _ in range(q)]
    for i in range(q):
        rem: Any = None  # prod_{k<j} (1 - z_{k,i}^2)
        for k in range(i):
            Lc[i][k] = z[(k, i)] if rem is None else z[(k, i)] * pt.sqrt(rem)
            factor = 1.0 - z[(k, i)] ** 2
            rem = factor if rem is None else rem * factor
        Lc[i][i] = pt.constant(1.0) if rem is None else pt.sqrt(rem)
    L = [[None if j > i else sds[i] * Lc[i][j] for j in range(q)] for i in range(q)]
    cors = [sum(Lc[b_][k] * Lc[a][k] for k in range(a + 1)) for a, b_ in idx]
    terms = pm.Deterministic(TERMS, pt.stack([*beta, *sds, *cors, sigma]))
    return {"beta": beta, "sds": sds, "sigma": sigma, "L": L, "cors": cors, "terms": terms}


def _lower_matrix(L: list[list[Any]]) -> Any:
    import pytensor.tensor as pt

    q = len(L)
    zero = pt.constant(0.0)
    return pt.stack([pt.stack([L[i][j] if j <= i else zero for j in range(q)]) for i in range(q)])


def marginal_loglik(
    stats: Any,
    beta: list[Any],
    sigma: Any,
    L: list[list[Any]],
    algebra: str,
    logdet_term: bool = True,
):
    """Log marginal likelihood summed over groups, from packed statistics.

    Parameters
    ----------
    stats : TensorVariable, shape (2 + q + q (q + 1) / 2, K)
        Packed statistics (:func:`pack_stats`).
    beta, sigma, L
        Fixed effects (q scalars), residual SD, lower Cholesky factor of D (nested
        lists of scalars).
    algebra : {"kernel", "unrolled", "batched"}
        One hand-written Op with its gradient (q = 2 only, :mod:`models.bayes.kernel`),
        elementwise closed form over groups, or batched linalg ops.
    logdet_term : bool
        ``False`` drops ``sum_i log|A_i|``: a deliberately wrong likelihood (the
        ``likelihood = "no-logdet"`` option) for showing the power of SBC.
    """
    import pytensor.tensor as pt

    q = len(beta)
    if algebra == "kernel":
        if q != 2:
            raise ValueError(
                f"algebra = 'kernel' is for q = 2 (an intercept and one slope); q = {q}"
            )
        from models.bayes.kernel import marginal_loglik2

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
    ztr = [xty[k] - sum(G[(k, m)] * beta[m] for m in range(q)) for k in range(q)]
    rr = yty - sum(beta[k] * (xty[k] + ztr[k]) for k in range(q))
    if algebra == "unrolled":
        logdet, quad = _unrolled_quad_logdet(G, ztr, L, s2, q)
    else:
        logdet, quad = _batched_quad_logdet(G, ztr, L, s2, q)
    n_tot = pt.sum(n)
    n_groups = stats.shape[1]
    return -0.5 * (
        n_tot * np.log(2 * np.pi)
        + (n_tot - q * n_groups) * pt.log(s2)
        + (pt.sum(logdet) if logdet_term else 0.0)
        + pt.sum(rr - quad) / s2
    )


def _unrolled_quad_logdet(G: dict, ztr: list, L: list[list[Any]], s2: Any, q: int):
    """``log|A_i|`` and ``v_i' A_i^-1 v_i`` as elementwise expressions over groups."""
    import pytensor.tensor as pt

    # A[i][j] = sum_{k,m} L[k][i] L[m][j] G[k,m]; scalar coefficients first, so
    # each entry is one linear combination of the K-vectors G[k, m].
    A: dict[tuple[int, int], Any] = {}
    for i in range(q):
        for j in range(i, q):
            acc: Any = None
            for k in range(q):
                for m in range(k, q):  # G symmetric: collect G[k,m] and G[m,k]
                    parts = []
                    if k >= i and m >= j:
                        parts.append(L[k][i] * L[m][j])
                    if k != m and m >= i and k >= j:
                        parts.append(L[m][i] * L[k][j])
                    if parts:
                        term = sum(parts[1:], parts[0]) * G[(k, m)]
                        acc = term if acc is None else acc + term
            A[(i, j)] = acc + s2 if i == j else acc
    v = [sum(L[k][i] * ztr[k] for k in range(i, q)) for i in range(q)]
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
    """Same as :func:`_unrolled_quad_logdet` with batched (K, q, q) linalg ops."""
    import pytensor.tensor as pt
    from pytensor.tensor import linalg

    Lm = _lower_matrix(L)
    XtX = pt.stack([pt.stack([G[(k, m)] for m in range(q)], axis=-1) for k in range(q)], axis=-2)
    A = pt.matmul(pt.matmul(Lm.T[None], XtX), Lm[None]) + s2 * pt.eye(q)[None]
    v = pt.dot(pt.stack(ztr, axis=-1), Lm)  # rows v_i = L' ztr_i
    C = linalg.cholesky(A)
    w = linalg.solve_triangular(C, v[..., None], lower=True, b_ndim=2)[..., 0]
    logdet = 2.0 * pt.sum(pt.log(pt.diagonal(C, axis1=-2, axis2=-1)), axis=-1)
    return logdet, pt.sum(w**2, axis=-1)


def build_marginal(
    q: int, priors: BayesPriors, algebra: str, stats: np.ndarray, logdet_term: bool = True
) -> pm.Model:
    """The marginal model: random effects integrated out, data = packed statistics
    (``logdet_term=False``: the deliberately wrong ``"no-logdet"`` likelihood)."""
    import pymc as pm

    with pm.Model() as model:
        data = pm.Data(STATS, stats)
        p = add_priors(q, priors)
        loglik = marginal_loglik(data, p["beta"], p["sigma"], p["L"], algebra, logdet_term)
        pm.Potential("loglik", loglik)
    return model


def build_latent(q: int, n_groups: int, priors: BayesPriors, centered: bool, data: LMMData):
    """The latent model with u_i explicit (centred or non-centred), data = long table."""
    import pymc as pm
    import pytensor.tensor as pt

    with pm.Model() as model:
        y = pm.Data("y", data.y)
        X = pm.Data("X", data.X)
        group = pm.Data("group", data.group)
        p = add_priors(q, priors)
        Lm = _lower_matrix(p["L"])
        if centered:
            u = pm.MvNormal("u", mu=pt.zeros(q), chol=Lm, shape=(n_groups, q))
        else:
            z = pm.Normal("z", 0.0, 1.0, shape=(n_groups, q))
            u = pm.Deterministic("u", pt.dot(z, Lm.T))
        coef = pt.stack(p["beta"])[None, :] + u[group]
        pm.Normal("y_obs", mu=pt.sum(X * coef, axis=-1), sigma=p["sigma"], observed=y)
    return model


def draw_random_effects(
    terms: np.ndarray, data: LMMData, rng: np.random.Generator, chunk: int = 500
) -> np.ndarray:
    """Draw ``u_i | theta, y`` once per posterior draw.

    ``u_i | theta, y ~ N(M_i^-1 X_i'r_i, sigma^2 M_i^-1)`` with
    ``M_i^-1 = L A_i^-1 L'``.  ``terms`` has shape (S, T); returns (S, K, q).
    """
    q = data.q
    flat = terms.reshape(-1, terms.shape[-1])
    out = np.empty((flat.shape[0], data.n_groups, q))
    for start in range(0, flat.shape[0], chunk):
        beta, sds, corr, sigma = split_terms(flat[start : start + chunk], q)
        L = sds[:, :, None] * np.linalg.cholesky(corr)  # (s, q, q)
        ztr = data.Xty[None] - np.einsum("kab,sb->ska", data.XtX, beta)  # (s, K, q)
        A = np.einsum("sai,kab,sbj->skij", L, data.XtX, L)
        A += (sigma**2)[:, None, None, None] * np.eye(q)
        R = np.linalg.cholesky(A)
        v = np.einsum("sai,ska->ski", L, ztr)
        mean_w = np.linalg.solve(A, v[..., None])[..., 0]  # A^-1 L' ztr
        e = rng.standard_normal(mean_w.shape)
        # R' x = e  =>  x ~ N(0, A^-1); u = L (A^-1 v + sigma x)
        x = np.linalg.solve(np.swapaxes(R, -1, -2), e[..., None])[..., 0]
        w = mean_w + sigma[:, None, None] * x
        out[start : start + chunk] = np.einsum("sij,skj->ski", L, w)
    return out.reshape(*terms.shape[:-1], data.n_groups, q)
