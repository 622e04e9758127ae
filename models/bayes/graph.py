"""PyMC graphs for the Bayesian engine: priors, the marginal likelihood, latent models.

The model is ``y_i = X_i beta + Z_i u_i + e_i`` with ``Z_i`` the columns of ``X_i``
that have a random effect (:class:`models.structure.Structure`: ``q`` fixed effects,
``r`` random effects) and ``u_i ~ N(0, D)``, ``D`` (r x r) unstructured or diagonal.
The marginal model integrates the random effects out.  With ``L`` the Cholesky factor
of ``D`` (``D = L L'``; diagonal when ``D`` is), ``r = y - X beta`` and
``A_i = L' Z_i'Z_i L + sigma^2 I_r`` (``A_i = L' M_i L`` with
``M_i = Z_i'Z_i + sigma^2 D^-1``),

* ``r'V_i^-1 r = (r'r - v_i' A_i^-1 v_i) / sigma^2`` with ``v_i = L' Z_i'r``,
* ``log|V_i| = log|A_i| + (n_i - r) log sigma^2`` (``|A_i| = |M_i| |D|``),
* ``r'r = y'y - 2 beta'X'y + beta'X'X beta`` and ``X'r = X'y - X'X beta``, of which
  ``Z'r`` is a sub-vector (``Z'Z`` likewise a sub-block of ``X'X``),

so one log-density costs O(K (q^2 + r^3)) whatever the n_i, from the same packed
statistics whatever the structure.  Writing the algebra with ``L`` avoids ``D^-1``
(fine when a variance heads to zero).  For the full q = 2 structure (a correlated
random intercept and slope) under nutpie a hand-written Op computes value and gradient
in one loop (:mod:`models.bayes.kernel`); otherwise, for ``r <= UNROLL_MAX``, the
r x r algebra is unrolled into elementwise operations over the K groups (one fused
loop in the compiled function; structural zeros of a diagonal ``L`` are left out),
else batched ``pytensor.tensor.linalg`` Cholesky and triangular solves are used.

Priors on the random-effect covariance: independent SD priors (one per random effect)
and, for a correlated ``D`` with ``r >= 2``, an LKJ(eta) prior on the correlation
matrix, built from canonical partial correlations (CPCs) with
``(z + 1) / 2 ~ Beta(b_k, b_k)``, ``b_k = eta + (r - 2 - k) / 2`` for level ``k``
(Lewandowski, Kurowicka & Joe 2009, the vine method): this gives exactly the LKJ
density on the correlation matrix and a Cholesky factor in closed form.  A diagonal
``D`` has no correlation parameters.  The same construction is used by every
parameterization, so their posteriors are comparable.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import numpy as np

from models.structure import Structure

if TYPE_CHECKING:
    import pymc as pm

    from models.bayes.options import BayesPriors
    from models.data import LMMData

#: Largest r whose r x r algebra is unrolled into elementwise operations.
UNROLL_MAX = 4
#: Name of the pm.Data holding the packed per-group sufficient statistics.
STATS = "stats"
#: Name of the deterministic holding every term, in ``Structure.terms`` order.
TERMS = "terms"


def pairs(q: int) -> list[tuple[int, int]]:
    """Index pairs ``(a, b)``, ``a < b``, in the order of the ``cor__`` terms of a
    correlated ``D`` of dimension ``q`` (:attr:`Structure.pairs`)."""
    return list(itertools.combinations(range(q), 2))


def as_structure(structure: Structure | int) -> Structure:
    """``structure`` itself, or for a number ``q`` the all-slopes model with ``q``
    fixed effects (an intercept and ``x1 .. x{q-1}``, every one random, correlated)."""
    if isinstance(structure, Structure):
        return structure
    if isinstance(structure, bool) or not isinstance(structure, int | np.integer) or structure < 1:
        raise ValueError(
            f"expected a Structure or a number of coefficients q >= 1, got {structure!r}"
        )
    return Structure.full([f"x{j}" for j in range(1, int(structure))])


def model_key(structure: Structure) -> tuple:
    """What a compiled model depends on in a structure: the number of fixed effects,
    the positions of the random ones, and whether ``D`` has correlations (``r >= 2``
    and correlated).  Names do not matter: structures with the same key share a model.
    """
    return (structure.q, structure.index, bool(structure.pairs))


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


def _scale_prior(name: str, family: str, scale: Any, df: float, shape: Any = None) -> Any:
    import pymc as pm

    if family == "halfnormal":
        return pm.HalfNormal(name, sigma=scale, shape=shape)
    if family == "halft":
        return pm.HalfStudentT(name, nu=df, sigma=scale, shape=shape)
    return pm.Exponential(name, scale=scale, shape=shape)


def per_coefficient(
    value: Any,
    q: int,
    name: str,
    *,
    what: str = "coefficients",
    order: str = "intercept first",
) -> np.ndarray:
    """A prior parameter as ``q`` values: one number broadcast, or a list of length q
    (``what`` and ``order`` word the error: ``"coefficients"`` or ``"random effects"``
    and the order the values go in)."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        return np.full(q, float(arr))
    if arr.shape != (q,):
        raise ValueError(
            f"priors.{name} has {arr.size} values for {q} {what}; give one number "
            f"or {q} values ({order})"
        )
    return arr


def prior_parameters(
    priors: BayesPriors, structure: Structure | int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``fixed_loc`` and ``fixed_scale`` as q values (one per fixed effect) and
    ``sd_scale`` as r values (one per random effect) for a model of ``structure``.

    Raises
    ------
    ValueError
        A list of the wrong length, e.g. ``priors.sd_scale has 2 values for 1 random
        effects; ...``.
    """
    s = as_structure(structure)
    fixed = f"one per fixed effect: {', '.join(s.fixed)}"
    loc = per_coefficient(priors.fixed_loc, s.q, "fixed_loc", order=fixed)
    scale = per_coefficient(priors.fixed_scale, s.q, "fixed_scale", order=fixed)
    sd_scale = per_coefficient(
        priors.sd_scale,
        s.r,
        "sd_scale",
        what="random effects",
        order=f"one per random effect: {', '.join(s.random)}",
    )
    return loc, scale, sd_scale


def lkj_shapes(eta: float, r: int) -> np.ndarray:
    """Beta shapes ``b_k = eta + (r - 2 - k) / 2`` of the CPCs, one per pair (k, i)."""
    return np.array([eta + (r - 2 - k) / 2 for k, _ in pairs(r)])


def add_priors(structure: Structure | int, priors: BayesPriors) -> dict[str, Any]:
    """Declare the priors of a model of ``structure`` in the current model context.

    Returns a dict with ``beta`` (q scalars), ``sds`` (r), ``sigma``, ``L`` (lower
    Cholesky factor of D as nested lists of scalars, ``None`` above the diagonal and,
    for a diagonal D, off it), ``cors`` (one scalar per correlated pair) and ``terms``
    (the deterministic of all terms, :attr:`Structure.terms` order).  A number
    ``structure`` is the all-slopes model with that many coefficients.
    """
    import pymc as pm
    import pytensor.tensor as pt

    s = as_structure(structure)
    q, r = s.q, s.r
    loc, scale, sd_scale = prior_parameters(priors, s)
    beta_v = pm.Normal("beta", mu=loc, sigma=scale, shape=q)
    sds_v = _scale_prior("sd", priors.sd_family, sd_scale, priors.sd_df, shape=r)
    sigma = _scale_prior("sigma", priors.sigma_family, priors.sigma_scale, priors.sigma_df)
    beta = [beta_v[k] for k in range(q)]
    sds = [sds_v[k] for k in range(r)]
    idx = s.pairs
    L: list[list[Any]]
    if s.correlated:
        z: dict[tuple[int, int], Any] = {}
        if idx:
            b = lkj_shapes(priors.lkj_eta, r)
            cpc = pm.Beta("cpc", alpha=b, beta=b, shape=len(idx))
            z = {pair: 2.0 * cpc[j] - 1.0 for j, pair in enumerate(idx)}
        # Cholesky factor of the correlation matrix from the CPCs (canonical vine).
        Lc: list[list[Any]] = [[None] * r for _ in range(r)]
        for i in range(r):
            rem: Any = None  # prod_{k<j} (1 - z_{k,i}^2)
            for k in range(i):
                Lc[i][k] = z[(k, i)] if rem is None else z[(k, i)] * pt.sqrt(rem)
                factor = 1.0 - z[(k, i)] ** 2
                rem = factor if rem is None else rem * factor
            Lc[i][i] = pt.constant(1.0) if rem is None else pt.sqrt(rem)
        L = [[None if j > i else sds[i] * Lc[i][j] for j in range(r)] for i in range(r)]
        cors = [sum(Lc[b_][k] * Lc[a][k] for k in range(a + 1)) for a, b_ in idx]
    else:  # diagonal D: L = diag(sd), no correlation parameters
        L = [[sds[i] if j == i else None for j in range(r)] for i in range(r)]
        cors = []
    terms = pm.Deterministic(TERMS, pt.stack([*beta, *sds, *cors, sigma]))
    return {"beta": beta, "sds": sds, "sigma": sigma, "L": L, "cors": cors, "terms": terms}


def _lower_matrix(L: list[list[Any]]) -> Any:
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

    Lm = _lower_matrix(L)
    ZtZ = pt.stack([pt.stack([G[(k, m)] for m in range(q)], axis=-1) for k in range(q)], axis=-2)
    A = pt.matmul(pt.matmul(Lm.T[None], ZtZ), Lm[None]) + s2 * pt.eye(q)[None]
    v = pt.dot(pt.stack(ztr, axis=-1), Lm)  # rows v_i = L' ztr_i
    C = linalg.cholesky(A)
    w = linalg.solve_triangular(C, v[..., None], lower=True, b_ndim=2)[..., 0]
    logdet = 2.0 * pt.sum(pt.log(pt.diagonal(C, axis1=-2, axis2=-1)), axis=-1)
    return logdet, pt.sum(w**2, axis=-1)


def build_marginal(
    structure: Structure | int,
    priors: BayesPriors,
    algebra: str,
    stats: np.ndarray,
    logdet_term: bool = True,
) -> pm.Model:
    """The marginal model of ``structure``: random effects integrated out, data = packed
    statistics (``logdet_term=False``: the deliberately wrong ``"no-logdet"``
    likelihood).  A number ``structure`` is the all-slopes model with q coefficients."""
    import pymc as pm

    s = as_structure(structure)
    with pm.Model() as model:
        data = pm.Data(STATS, stats)
        p = add_priors(s, priors)
        loglik = marginal_loglik(
            data, p["beta"], p["sigma"], p["L"], algebra, logdet_term, index=s.index
        )
        pm.Potential("loglik", loglik)
    return model


def build_latent(
    structure: Structure | int, n_groups: int, priors: BayesPriors, centered: bool, data: LMMData
):
    """The latent model with u_i (r per group) explicit, centred or non-centred, data =
    the long table: ``mu = X beta + sum_j Z[:, j] u[group, j]``.

    A correlated ``D`` (r >= 2, or the full structure) gives ``u ~ MvNormal(0, L L')``
    (centred) or ``u = z L'`` (non-centred); otherwise ``u ~ Normal(0, sd)`` or
    ``u = z sd`` elementwise.
    """
    import pymc as pm
    import pytensor.tensor as pt

    s = as_structure(structure)
    r = s.r
    with pm.Model() as model:
        y = pm.Data("y", data.y)
        X = pm.Data("X", data.X)
        group = pm.Data("group", data.group)
        p = add_priors(s, priors)
        if s.pairs or s.is_full:
            Lm = _lower_matrix(p["L"])
            if centered:
                u = pm.MvNormal("u", mu=pt.zeros(r), chol=Lm, shape=(n_groups, r))
            else:
                z = pm.Normal("z", 0.0, 1.0, shape=(n_groups, r))
                u = pm.Deterministic("u", pt.dot(z, Lm.T))
        else:
            sds = pt.stack(p["sds"])
            if centered:
                u = pm.Normal("u", 0.0, sds, shape=(n_groups, r))
            else:
                z = pm.Normal("z", 0.0, 1.0, shape=(n_groups, r))
                u = pm.Deterministic("u", z * sds[None, :])
        if s.is_full:
            coef = pt.stack(p["beta"])[None, :] + u[group]
            mu = pt.sum(X * coef, axis=-1)
        else:
            Z = X[:, list(s.index)]
            mu = pt.dot(X, pt.stack(p["beta"])) + pt.sum(Z * u[group], axis=-1)
        pm.Normal("y_obs", mu=mu, sigma=p["sigma"], observed=y)
    return model


def draw_random_effects(
    terms: np.ndarray, data: LMMData, rng: np.random.Generator, chunk: int = 500
) -> np.ndarray:
    """Draw ``u_i | theta, y`` once per posterior draw, for ``data.structure``.

    ``u_i | theta, y ~ N(M_i^-1 Z_i'r_i, sigma^2 M_i^-1)`` with
    ``M_i = Z_i'Z_i + sigma^2 D^-1`` and ``M_i^-1 = L A_i^-1 L'``.  ``terms`` has shape
    (S, T) (or (..., T)), :attr:`Structure.terms` order; returns (..., K, r).
    """
    s = data.structure
    r = s.r
    ZtX, ZtZ, Zty = data.ZtX, data.ZtZ, data.Zty
    flat = terms.reshape(-1, terms.shape[-1])
    out = np.empty((flat.shape[0], data.n_groups, r))
    for start in range(0, flat.shape[0], chunk):
        beta, sds, corr, sigma = s.split(flat[start : start + chunk])
        L = sds[:, :, None] * np.linalg.cholesky(corr)  # (s, r, r)
        ztr = Zty[None] - np.einsum("kab,sb->ska", ZtX, beta)  # (s, K, r)
        A = np.einsum("sai,kab,sbj->skij", L, ZtZ, L)
        A += (sigma**2)[:, None, None, None] * np.eye(r)
        R = np.linalg.cholesky(A)
        v = np.einsum("sai,ska->ski", L, ztr)
        mean_w = np.linalg.solve(A, v[..., None])[..., 0]  # A^-1 L' ztr
        e = rng.standard_normal(mean_w.shape)
        # R' x = e  =>  x ~ N(0, A^-1); u = L (A^-1 v + sigma x)
        x = np.linalg.solve(np.swapaxes(R, -1, -2), e[..., None])[..., 0]
        w = mean_w + sigma[:, None, None] * x
        out[start : start + chunk] = np.einsum("sij,skj->ski", L, w)
    return out.reshape(*terms.shape[:-1], data.n_groups, r)
