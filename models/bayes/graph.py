"""PyMC models for the Bayesian engine: priors, the marginal and the latent models.

The marginal model integrates the random effects out; its likelihood, on the packed
sufficient statistics, is :mod:`models.bayes.marginal`.  The latent models keep
``u_i`` (K, r) with ``mu = X beta + sum(Z * u[group])``.

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

from models.bayes.marginal import STATS, lower_matrix, marginal_loglik
from models.structure import Structure

if TYPE_CHECKING:
    import pymc as pm

    from models.bayes.options import BayesPriors
    from models.data import LMMData

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


def covariance_factor(
    sds: list[Any], z: dict[tuple[int, int], Any], idx: list[tuple[int, int]]
) -> tuple[list[list[Any]], list[Any]]:
    """The lower Cholesky factor ``L`` of a correlated ``D`` (nested lists, ``None``
    above the diagonal) and its correlations (one per pair of ``idx``), from the SDs
    and the canonical partial correlations ``z`` by pair (canonical vine)."""
    import pytensor.tensor as pt

    r = len(sds)
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
    return L, cors


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
        L, cors = covariance_factor(sds, z, idx)
    else:  # diagonal D: L = diag(sd), no correlation parameters
        L = [[sds[i] if j == i else None for j in range(r)] for i in range(r)]
        cors = []
    terms = pm.Deterministic(TERMS, pt.stack([*beta, *sds, *cors, sigma]))
    return {"beta": beta, "sds": sds, "sigma": sigma, "L": L, "cors": cors, "terms": terms}


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
            Lm = lower_matrix(p["L"])
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
