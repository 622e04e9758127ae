"""The Bayesian engine's model for several random terms: crossed (``(1 + cond | subj) +
(1 + cond | item)``) and nested (``(1 | g) + (1 | g:h)``) grouping factors.

:meth:`models.bayes.engine.BayesEngine.fit` dispatches a
:class:`models.crossed.CrossedData` here; an :class:`models.data.LMMData` (one grouping
factor) keeps its own model (:mod:`models.bayes.graph`).

Likelihood
    The random effects are integrated out: the exact marginal likelihood through
    Woodbury on the L random-effect levels, from the data's cross-products ``Z'Z``,
    ``Z'X``, ``Z'y``, ``X'X``, ``X'y``, ``y'y`` alone (never an N x N matrix), with
    ``D_f = T_f T_f'`` per term and one dense Cholesky factorisation of a Schur
    complement per log-density (:mod:`models.bayes.woodbury`: the algebra, and a Numba
    kernel that returns the value and its gradient in one pass).  Per log-density +
    gradient 45-90 us (load-dependent) for 24 subjects x 16 items with random
    intercepts and slopes (L = 80).  A latent non-centred model of the same data
    (``benchmarks/bench_bayes_crossed.py``) costs less per fit at the same number of
    draws (2.9 s against 4.4 s, median of 11) but needs 14 leapfrog steps a draw
    against 6.5 and gives about 40% of the ESS (min ESS_bulk 742 against 1,536, R-hat
    up to 1.008 against 1.004): the marginal model gives about 1.5 times the ESS per
    CPU second, converges with a wide margin, and its cost does not grow with N.
Priors
    The one-factor engine's families and scales (:class:`models.bayes.BayesPriors`),
    applied per term: ``beta_k ~ Normal(fixed_loc_k, fixed_scale_k)``; every random
    effect's SD ``~ sd_family(sd_scale)`` (half-t(3, 2.5) by default), ``sd_scale`` one
    number or one value per SD term in the order of the terms (``sd__(Intercept)|subj``,
    ``sd__cond|subj``, ``sd__(Intercept)|item``, ...); the correlation matrix of each
    correlated term with r_f >= 2 ``~ LKJ(lkj_eta)``, by the same canonical partial
    correlations as the one-factor model (shapes ``eta + (r_f - 2 - k) / 2``), the
    terms' correlations independent a priori; ``sigma ~ sigma_family(sigma_scale)``.
    :func:`models.bayes.scaled_priors.scaled_priors` scales them to a user's data as
    for one factor (an SD's scale ``s_y``, or ``s_y / s_x`` for a slope on ``x``).
Compilation
    One compiled model per (number of fixed effects, per term: effects, correlated or
    not, and levels): the cache key is :func:`plan_key`.  The cross-products are
    ``pm.Data`` (nutpie ``with_data``), so every replicate of a design, and any design
    with the same numbers of levels, reuses it.
Starting points
    :func:`start_region`: moment estimates in the spirit of :mod:`models.bayes.start`
    (the fixed effects by GLS at moment estimates of the ``D_f``), jittered the same way.

Out of scope (for now): latent parameterizations (``parameterization = "centered"`` or
``"noncentered"`` give a failed result naming the marginal one), the ``algebra`` option
(one algebra here), draws of the random effects ``u | theta, y``
(``random_effects = True`` is refused the same way), and simulation-based calibration
of crossed models (``draw_prior`` takes a one-factor :class:`models.structure.Structure`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from models.base import FitResult
from models.bayes.graph import TERMS, covariance_factor, lkj_shapes, per_coefficient
from models.bayes.marginal import lower_matrix
from models.bayes.start import (
    JITTER,
    MAX_CORRELATION,
    MIN_EIGENVALUE,
    StartRegion,
    canonical_partials,
)

if TYPE_CHECKING:
    import pymc as pm

    from models.bayes.options import BayesPriors
    from models.crossed import CrossedData, CrossedStructure

#: name of the ``pm.Data`` of the crossed model (the flat cross-products)
DATA = "cross"


@dataclass(frozen=True)
class Plan:
    """The static shape of a crossed model, which its compiled model depends on.

    ``q`` fixed effects; per random term its number of effects ``r``, of levels
    ``levels`` and whether its ``D`` has correlations.  The term with the most columns
    (``K r``, the first of equals) is eliminated first (:mod:`models.bayes.woodbury`).
    """

    q: int
    r: tuple[int, ...]
    levels: tuple[int, ...]
    correlated: tuple[bool, ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        """Columns of ``Z`` per term, ``K_f r_f``."""
        return tuple(k * r for k, r in zip(self.levels, self.r, strict=True))

    @property
    def first(self) -> int:
        """The term eliminated first: the most columns."""
        return int(np.argmax(self.sizes))

    @property
    def rest(self) -> tuple[int, ...]:
        """The other terms, in order."""
        return tuple(f for f in range(len(self.r)) if f != self.first)

    def pairs(self, f: int) -> list[tuple[int, int]]:
        """The correlated pairs of term ``f``."""
        return list(itertools.combinations(range(self.r[f]), 2)) if self.correlated[f] else []


def plan_of(data: CrossedData) -> Plan:
    """The :class:`Plan` of ``data``'s structure and levels."""
    bars = data.structure.bars
    return Plan(
        data.structure.q,
        tuple(b.r for b in bars),
        tuple(int(k) for k in data.levels),
        tuple(bool(b.pairs) for b in bars),
    )


def plan_key(data: CrossedData) -> tuple:
    """What a compiled crossed model depends on (names do not matter)."""
    p = plan_of(data)
    return ("crossed", p.q, p.r, p.levels, p.correlated)


def _block_columns(plan: Plan, offsets: tuple[int, ...], terms: tuple[int, ...]) -> np.ndarray:
    parts = [np.arange(offsets[f], offsets[f] + plan.sizes[f]) for f in terms]
    return np.concatenate(parts).astype(int) if parts else np.zeros(0, dtype=int)


def pack(data: CrossedData) -> dict[str, np.ndarray]:
    """The cross-products the model reads, as its one ``pm.Data`` (:data:`DATA`): the
    flat vector of :func:`models.bayes.woodbury.flat_data` of :func:`cross_products`."""
    from models.bayes.woodbury import flat_data

    return {DATA: flat_data(cross_products(data))}


def cross_products(data: CrossedData) -> dict[str, np.ndarray]:
    """The arrays :func:`models.bayes.woodbury.loglik_grad` reads, by name, the
    eliminated term's rows and columns first."""
    plan = plan_of(data)
    e = plan.first
    r_e, k_e = plan.r[e], plan.levels[e]
    ce = _block_columns(plan, data.offsets, (e,))
    cr = _block_columns(plan, data.offsets, plan.rest)
    G = data.ZtZ
    gee = G[np.ix_(ce, ce)].reshape(k_e, r_e, k_e, r_e)
    gee = gee[np.arange(k_e), :, np.arange(k_e), :]  # (K_e, r_e, r_e): its diagonal blocks
    order = np.concatenate([ce, cr])
    arrays = {
        "gee": gee,
        "ger": G[np.ix_(ce, cr)],
        "grr": G[np.ix_(cr, cr)],
        "cy": data.Zty[order],
        "cx": data.ZtX[order],
        "xtx": data.XtX,
        "xty": data.Xty,
        "scalars": np.array([data.yty, float(data.n_obs)]),
    }
    return {k: np.ascontiguousarray(v, dtype=float) for k, v in arrays.items()}


def ints_of(plan: Plan) -> np.ndarray:
    """The integer inputs of the kernel for ``plan`` (:func:`models.bayes.woodbury.
    flat_ints`): dimensions and the layout of the terms other than the first."""
    from models.bayes.woodbury import flat_ints, layout_columns, t_offsets

    e = plan.first
    cols = layout_columns(plan.r, plan.levels, e)
    n_theta = plan.q + sum(r * r for r in plan.r) + 1
    return flat_ints(plan.levels[e], plan.r[e], plan.q, n_theta, int(t_offsets(plan.r)[e]), cols)


def loglik(data: Any, plan: Plan, beta: Any, Ts: list[Any], sigma: Any) -> Any:
    """The log marginal likelihood as a graph: the Op of :mod:`models.bayes.woodbury`
    on the flat cross-products ``data`` (:func:`pack`), ``beta`` (q,), one (r_f, r_f)
    lower-triangular ``T_f`` per term and ``sigma``."""
    import pytensor.tensor as pt

    from models.bayes.woodbury import crossed_loglik_op

    theta = pt.concatenate([beta, *[T.ravel() for T in Ts], pt.stack([sigma**2])])
    outputs: Any = crossed_loglik_op(data, pt.constant(ints_of(plan)), theta)
    return outputs[0]


def sd_scales(priors: BayesPriors, structure: CrossedStructure) -> np.ndarray:
    """``priors.sd_scale`` as one value per SD term (every term's effects in order)."""
    names = [n for b in structure.bars for n in b.names()[: b.r]]
    return per_coefficient(
        priors.sd_scale,
        len(names),
        "sd_scale",
        what="random-effect SDs",
        order=f"one per SD: {', '.join(names)}",
    )


def add_priors(structure: CrossedStructure, priors: BayesPriors) -> dict[str, Any]:
    """Declare the priors of a crossed model (module docstring) in the current model.

    The free variables are named as the one-factor model's (``beta`` (q), ``sd`` (every
    term's SDs in order), ``cpc`` (every correlated term's CPCs in order), ``sigma``), so
    :class:`models.bayes.start.StartRegion` serves both.  Returns ``beta`` (vector),
    ``Ts`` (one lower-triangular matrix per term), ``sigma`` and ``terms`` (the
    deterministic of every term, :attr:`CrossedStructure.terms` order).
    """
    import pymc as pm
    import pytensor.tensor as pt

    from models.bayes.graph import _scale_prior

    s = structure
    fixed = f"one per fixed effect: {', '.join(s.fixed)}"
    loc = per_coefficient(priors.fixed_loc, s.q, "fixed_loc", order=fixed)
    scale = per_coefficient(priors.fixed_scale, s.q, "fixed_scale", order=fixed)
    sd_scale = sd_scales(priors, s)
    beta = pm.Normal("beta", mu=loc, sigma=scale, shape=s.q)
    sds_v = _scale_prior("sd", priors.sd_family, sd_scale, priors.sd_df, shape=len(sd_scale))
    sigma = _scale_prior("sigma", priors.sigma_family, priors.sigma_scale, priors.sigma_df)
    n_cpc = sum(len(b.pairs) for b in s.bars)
    cpc = None
    if n_cpc:
        shapes = np.concatenate([lkj_shapes(priors.lkj_eta, b.r) for b in s.bars if b.pairs])
        cpc = pm.Beta("cpc", alpha=shapes, beta=shapes, shape=n_cpc)
    Ts, values = [], [beta[k] for k in range(s.q)]
    at_sd = at_cpc = 0
    for b in s.bars:
        sds = [sds_v[at_sd + j] for j in range(b.r)]
        at_sd += b.r
        cors: list[Any] = []
        if b.pairs and cpc is not None:
            z = {pair: 2.0 * cpc[at_cpc + j] - 1.0 for j, pair in enumerate(b.pairs)}
            at_cpc += len(b.pairs)
            L, cors = covariance_factor(sds, z, b.pairs)
        else:  # diagonal D (or one effect): T = diag(sd)
            L = [[sds[i] if j == i else None for j in range(b.r)] for i in range(b.r)]
        Ts.append(lower_matrix(L))
        values += [*sds, *cors]
    values.append(sigma)
    terms = pm.Deterministic(TERMS, pt.stack(values))
    return {"beta": beta, "Ts": Ts, "sigma": sigma, "terms": terms}


def build(
    structure: CrossedStructure, plan: Plan, priors: BayesPriors, arrays: dict[str, np.ndarray]
) -> pm.Model:
    """The crossed model: priors (:func:`add_priors`) and the marginal likelihood
    (:func:`loglik`) on the cross-products ``arrays`` (:func:`pack`) as ``pm.Data``."""
    import pymc as pm

    with pm.Model() as model:
        data = pm.Data(DATA, arrays[DATA])
        p = add_priors(structure, priors)
        pm.Potential("loglik", loglik(data, plan, p["beta"], p["Ts"], p["sigma"]))
    return model


# -- starting points -----------------------------------------------------------------
def moment_estimates(data: CrossedData) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], float]:
    """``(beta, se(beta), [D_f], sigma^2)``: starting values from the cross-products.

    ``sigma^2`` is the residual variance of least squares on ``[X Z]`` (every level a
    dummy); each ``D_f`` the moment estimator ``cov(c_l) - sigma^2 mean((Z_l'Z_l)^-1)``
    over the per-level fits ``c_l`` of the pooled OLS residuals on the term's columns
    (levels with a full-rank ``Z_l'Z_l``), its eigenvalues floored on the scale of
    ``cov(c_l)`` as in :mod:`models.bayes.start`; ``beta`` and its SE by GLS with those
    ``D_f`` (Woodbury on the L levels).
    """
    q, n = data.q, data.n_obs
    XtX, Xty, ZtX, ZtZ, Zty = data.XtX, data.Xty, data.ZtX, data.ZtZ, data.Zty
    beta_ols = np.linalg.solve(XtX, Xty)
    gram = np.block([[XtX, ZtX.T], [ZtX, ZtZ]])
    rhs = np.concatenate([Xty, Zty])
    coef = np.linalg.pinv(gram) @ rhs
    rank = int(np.linalg.matrix_rank(gram))
    rss = float(data.yty - coef @ rhs)
    if n > rank and rss > 0:
        sigma2 = rss / (n - rank)
    else:
        rss_ols = float(data.yty - beta_ols @ Xty)
        sigma2 = 0.5 * max(rss_ols, 1e-12) / max(n - q, 1)
    resid = Zty - ZtX @ beta_ols  # Z'e of the OLS residuals
    Ds = []
    for b, k, at in zip(data.structure.bars, data.levels, data.offsets, strict=True):
        r = b.r
        fits, invs = [], []
        for lv in range(k):
            sl = slice(at + lv * r, at + (lv + 1) * r)
            G = ZtZ[sl, sl]
            if np.linalg.matrix_rank(G) == r:
                inv = np.linalg.inv(G)
                fits.append(inv @ resid[sl])
                invs.append(inv)
        if len(fits) > r:
            S = np.atleast_2d(np.cov(np.array(fits), rowvar=False))
            D = S - sigma2 * np.mean(invs, axis=0)
            spread = np.sqrt(np.diag(S))
        else:
            cols = np.column_stack([data.column(e) for e in b.effects])
            mean_square = np.mean(cols**2, axis=0)
            D = np.diag(0.5 * sigma2 / np.where(mean_square > 0, mean_square, 1.0))
            spread = np.sqrt(np.diag(D))
        if not b.pairs:
            D = np.diag(np.diag(D))
        spread = np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)
        w, v = np.linalg.eigh((D + D.T) / 2 / np.outer(spread, spread))
        w = np.maximum(w, MIN_EIGENVALUE)
        Ds.append((v * w) @ v.T * np.outer(spread, spread))
    # GLS at these D_f: X'V^-1 X = (X'X - X'Z Lam A^-1 Lam'Z'X) / s2, A = Lam'Z'Z Lam + s2 I
    lam = _lambda(Ds, data.levels)
    A = lam.T @ ZtZ @ lam + sigma2 * np.eye(ZtZ.shape[0])
    ZXl, Zyl = lam.T @ ZtX, lam.T @ Zty
    XVX = (XtX - ZXl.T @ np.linalg.solve(A, ZXl)) / sigma2
    XVy = (Xty - ZXl.T @ np.linalg.solve(A, Zyl)) / sigma2
    cov = np.linalg.inv(XVX)
    beta = cov @ XVy
    se = np.sqrt(np.maximum(np.diag(cov), sigma2 * np.diag(np.linalg.inv(XtX))))
    return beta, se, Ds, float(sigma2)


def _lambda(Ds: list[np.ndarray], levels: tuple[int, ...]) -> np.ndarray:
    """Dense ``Lambda = blockdiag_f(I_K (x) chol(D_f))`` (L x L)."""
    import scipy.linalg as sl

    blocks = [np.kron(np.eye(k), np.linalg.cholesky(D)) for D, k in zip(Ds, levels, strict=True)]
    return sl.block_diag(*blocks)


def start_region(data: CrossedData) -> StartRegion:
    """Where the chains of ``data`` start: :func:`moment_estimates` as the centre, the
    one-factor engine's jitter (:data:`models.bayes.start.JITTER`)."""
    beta, se, Ds, sigma2 = moment_estimates(data)
    sds, cpcs = [], []
    for b, D in zip(data.structure.bars, Ds, strict=True):
        sd = np.sqrt(np.diag(D))
        sds.append(sd)
        if b.pairs:
            corr = np.clip(D / np.outer(sd, sd), -MAX_CORRELATION, MAX_CORRELATION)
            np.fill_diagonal(corr, 1.0)
            try:
                cpc = np.clip(canonical_partials(corr), -MAX_CORRELATION, MAX_CORRELATION)
            except np.linalg.LinAlgError:
                cpc = np.zeros(len(b.pairs))
            cpcs.append(cpc)
    sd_all = np.concatenate(sds)
    cpc_all = np.concatenate(cpcs) if cpcs else np.zeros(0)
    centre = {
        "beta": beta,
        "sd": sd_all,
        "sigma": np.array(np.sqrt(sigma2)),
        "cpc": (cpc_all + 1.0) / 2.0,
    }
    width = {
        "beta": JITTER["beta"] * se,
        "sd": np.full(sd_all.size, JITTER["sd"]),
        "sigma": np.array(JITTER["sigma"]),
        "cpc": np.full(cpc_all.size, JITTER["cpc"]),
    }
    for name, value in centre.items():
        if not np.all(np.isfinite(value)) or not np.all(np.isfinite(width[name])):
            raise FloatingPointError(f"no finite starting region ({name} = {value})")
    return StartRegion(centre, width)


def failed(structure: CrossedStructure, message: str, seconds: float, trace: str = "") -> FitResult:
    """A failed result for a crossed model: every value NaN, the structure's terms."""
    nan = np.full(len(structure.terms), np.nan)
    return FitResult(
        structure.terms,
        structure.effects,
        nan,
        nan.copy(),
        nan.copy(),
        nan.copy(),
        False,
        seconds,
        message,
        traceback=trace,
    )


def theta_of(structure: CrossedStructure, values: np.ndarray) -> np.ndarray:
    """The kernel's parameter vector (``beta``, each ``T_f`` row-major, ``sigma^2``) at
    the term values ``values`` (:attr:`CrossedStructure.terms` order)."""
    from models.base import correlation_factor

    beta, covs, sigma = structure.split(np.asarray(values, dtype=float))
    Ts = [sds[:, None] * correlation_factor(corr) for sds, corr in covs]
    return np.concatenate([beta, *[T.ravel() for T in Ts], [float(sigma) ** 2]])


def loglik_at(data: CrossedData, values: np.ndarray) -> float:
    """The log marginal likelihood of ``data`` at the term values ``values`` (NumPy, the
    compiled kernel; what the model's ``loglik`` potential computes)."""
    from models.bayes.woodbury import loglik_grad_compiled

    theta = theta_of(data.structure, values)
    return loglik_grad_compiled(pack(data)[DATA], ints_of(plan_of(data)), theta)[0]
