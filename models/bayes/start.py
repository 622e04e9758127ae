"""Where the chains start: a data-scaled region around moment estimates.

PyMC's default starting point (the priors' support points, jittered by U(-1, 1) on the
unconstrained scale) ignores the data: with 100,000 rows a chain that starts with the
slope at -1 when the data say 2.3 meets very steep gradients in its first steps and
can be thrown far into the tail, where its step size collapses and it stays for the
whole run (seed preset, replicate 370, engine version 2: one chain of four at
``sd__X`` = 1.7e4 with step size 2e-12, R-hat 1.57).  Here every chain starts in a
region scaled by the data instead, built from the per-group sufficient statistics in
O(K q^3) (about 0.3 ms), for the model's structure (``Z_i`` = the r columns of ``X_i``
with a random effect):

* per-group OLS fits ``b_i = (X_i'X_i)^-1 X_i'y_i`` (groups with ``n_i > q`` and a
  full-rank ``X_i'X_i``), the pooled residual variance ``sigma^2``, and the
  method-of-moments ``D = cov(b_i) - sigma^2 mean((X_i'X_i)^-1)`` restricted to the
  random effects (the REML engine's moment start values; ``b_i = beta + E u_i +
  noise`` with ``E`` selecting Z's columns, so the restriction is the moment estimator
  of ``D`` whatever the structure) with its eigenvalues floored on the scale of
  ``cov(b_i)`` (:data:`MIN_EIGENVALUE`), so that each SD starts at about a tenth of the
  spread of its coefficient across groups or more; the fixed effects at ``mean(b_i)``
  with standard errors ``sqrt(diag(cov(b_i)) / K)`` (the two-stage estimator);
* with fewer than ``q + 1`` such groups (e.g. a predictor constant within groups, with
  a random intercept only) but more than ``r`` groups with ``n_i > r`` and a full-rank
  ``Z_i'Z_i``: pooled OLS for ``beta``, per-group OLS fits ``c_i`` of its residuals on
  ``Z_i``, ``sigma^2`` from their residuals and ``D = cov(c_i) - sigma^2
  mean((Z_i'Z_i)^-1)``, floored as above (for the all-slopes model, Z = X, this case
  never arises);
* otherwise: pooled OLS, half the residual variance for ``sigma^2`` and for each
  random-effect variance (scaled by the column's mean square).

Each chain starts at that centre plus independent U(-1, 1) jitter on the unconstrained
scale, times a half-width per coordinate (:data:`JITTER`): two standard errors for
each fixed effect, a factor ``e`` for each SD, ``e^0.5`` for the residual SD, one unit
of log-odds for each canonical partial correlation.  The region is wider than the
posterior (over-dispersed starts, as R-hat assumes) but on the data's scale.  The
jitter is drawn from the chain's own seed (nutpie passes one per chain), so a seed
gives the same starting points whatever the number of cores.  A chain that gets
stuck all the same is caught and rerun by the engine
(:func:`models.bayes.sample.stuck_chains`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from models.bayes.graph import pairs

if TYPE_CHECKING:
    from models.data import LMMData

#: half-widths of the U(-1, 1) jitter on the unconstrained scale: fixed effects in
#: standard errors, log SDs, log residual SD, log-odds of the CPCs
JITTER = {"beta": 2.0, "sd": 1.0, "sigma": 0.5, "cpc": 1.0}
#: largest |correlation| a start may have (keeps the log-odds of the CPCs finite)
MAX_CORRELATION = 0.9
#: floor of the eigenvalues of D scaled by the spread of the per-group estimates
MIN_EIGENVALUE = 1e-2


@dataclass(frozen=True)
class StartRegion:
    """Centre (constrained scale) and jitter half-widths (unconstrained scale) of the
    starting points, per free variable of the model: ``beta``, ``sd``, ``sigma``,
    ``cpc`` (the canonical partial correlations mapped to (0, 1), as in the model)."""

    centre: dict[str, np.ndarray]
    width: dict[str, np.ndarray]

    def draw(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One starting point, as unconstrained values by the names of PyMC's value
        variables (``beta``, ``sd_log__``, ``sigma_log__``, ``cpc_logodds__``)."""
        out = {}
        for name, (transformed, forward) in _TRANSFORMS.items():
            centre = forward(self.centre[name])
            jitter = rng.uniform(-1.0, 1.0, size=centre.shape)
            out[transformed] = centre + self.width[name] * jitter
        return out

    def draw_constrained(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """:meth:`draw` mapped back to the model's scale, by random variable name."""
        point = self.draw(rng)
        return {
            name: _BACKWARD[name](point[transformed])
            for name, (transformed, _) in _TRANSFORMS.items()
        }


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


_TRANSFORMS: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "beta": ("beta", lambda x: x),
    "sd": ("sd_log__", np.log),
    "sigma": ("sigma_log__", np.log),
    "cpc": ("cpc_logodds__", _logit),
}
_BACKWARD: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "beta": lambda x: x,
    "sd": np.exp,
    "sigma": np.exp,
    "cpc": lambda x: 1.0 / (1.0 + np.exp(-x)),
}


def _full_rank(n: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """Groups with more rows than columns of ``gram`` (K, p, p) and a full-rank one."""
    p = gram.shape[-1]
    ok = n > p
    if ok.any():
        ok[ok] = np.linalg.matrix_rank(gram[ok]) == p
    return ok


def moment_estimates(data: LMMData) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(beta (q), se(beta) (q), D (r x r), sigma^2)`` by the method of moments for
    ``data.structure`` (module docstring)."""
    q, r = data.q, data.r
    idx = data.z_index
    sub = np.ix_(idx, idx)
    ok = _full_rank(data.n, data.XtX)
    xtx, xty = data.XtX.sum(axis=0), data.Xty.sum(axis=0)
    xtx_inv_all = np.linalg.pinv(xtx)
    ok_z = ok if ok.sum() > q else _full_rank(data.n, data.ZtZ)
    if ok.sum() > q:
        xtx_inv = np.linalg.inv(data.XtX[ok])
        b = np.einsum("kij,kj->ki", xtx_inv, data.Xty[ok])
        rss = data.yty[ok] - np.einsum("ki,ki->k", b, data.Xty[ok])
        sigma2 = float(rss.sum() / (data.n[ok] - q).sum())
        S = np.atleast_2d(np.cov(b, rowvar=False))
        beta = b.mean(axis=0)
        var_beta = np.diag(S) / ok.sum()
        D = (S - max(sigma2, 0.0) * xtx_inv.mean(axis=0))[sub]
        spread = np.sqrt(np.diag(S))[idx]  # each coefficient's scale across groups
    elif ok_z.sum() > r:  # per-group fits of the pooled residuals on Z
        beta = xtx_inv_all @ xty
        ztz = data.ZtZ[ok_z]
        ztr = data.Zty[ok_z] - data.ZtX[ok_z] @ beta
        xtr = data.Xty[ok_z] - data.XtX[ok_z] @ beta
        rtr = data.yty[ok_z] - (data.Xty[ok_z] + xtr) @ beta  # r_i'r_i
        ztz_inv = np.linalg.inv(ztz)
        c = np.einsum("kij,kj->ki", ztz_inv, ztr)
        rss = rtr - np.einsum("ki,ki->k", c, ztr)
        sigma2 = float(rss.sum() / (data.n[ok_z] - r).sum())
        S = np.atleast_2d(np.cov(c, rowvar=False))
        var_beta = np.zeros(q)
        var_beta[idx] = np.diag(S) / ok_z.sum()
        D = S - max(sigma2, 0.0) * ztz_inv.mean(axis=0)
        spread = np.sqrt(np.diag(S))
    else:
        beta = xtx_inv_all @ xty
        rss = float(data.yty.sum() - beta @ xty)
        sigma2 = 0.5 * rss / max(data.n_obs - q, 1)
        var_beta = np.zeros(q)
        mean_square = np.diag(xtx)[idx] / max(data.n_obs, 1)
        D = np.diag(sigma2 / np.where(mean_square > 0, mean_square, 1.0))
        spread = np.sqrt(np.diag(D))
    if not (np.isfinite(sigma2) and sigma2 > 0):  # a perfect fit: any positive scale
        sigma2 = float(np.var(data.y)) if np.var(data.y) > 0 else 1.0
    # a fixed effect's SE at least that of pooled OLS
    se = np.sqrt(np.maximum(var_beta, sigma2 * np.diag(xtx_inv_all)))
    # floor the eigenvalues of D in units of each coefficient's own scale, so that a
    # random-effect SD starts at >= ~0.1 times the spread of its per-group estimates
    spread = np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)
    w, v = np.linalg.eigh((D + D.T) / 2 / np.outer(spread, spread))
    w = np.maximum(w, MIN_EIGENVALUE)
    return beta, se, (v * w) @ v.T * np.outer(spread, spread), sigma2


def canonical_partials(corr: np.ndarray) -> np.ndarray:
    """Canonical partial correlations of a (q x q) correlation matrix, in ``pairs(q)``
    order (the inverse of the model's construction of its Cholesky factor)."""
    q = corr.shape[0]
    Lc = np.linalg.cholesky(corr)
    z = {}
    for i in range(q):
        rem = 1.0
        for k in range(i):
            z[(k, i)] = Lc[i, k] / np.sqrt(rem)
            rem *= 1.0 - z[(k, i)] ** 2
    return np.array([z[pair] for pair in pairs(q)])


def start_region(data: LMMData) -> StartRegion:
    """The starting region of ``data``'s chains, for ``data.structure`` (see the module
    docstring): a CPC per correlated pair, none for a diagonal ``D``."""
    r = data.r
    n_pairs = len(data.structure.pairs)
    beta, se, D, sigma2 = moment_estimates(data)
    sd = np.sqrt(np.diag(D))
    if n_pairs:
        corr = D / np.outer(sd, sd)
        corr = np.clip(corr, -MAX_CORRELATION, MAX_CORRELATION)
        np.fill_diagonal(corr, 1.0)
        try:
            cpc = np.clip(canonical_partials(corr), -MAX_CORRELATION, MAX_CORRELATION)
        except np.linalg.LinAlgError:
            cpc = np.zeros(n_pairs)
    else:
        cpc = np.zeros(0)
    centre = {
        "beta": beta,
        "sd": sd,
        "sigma": np.array(np.sqrt(sigma2)),
        "cpc": (cpc + 1.0) / 2.0,
    }
    width = {
        "beta": JITTER["beta"] * se,
        "sd": np.full(r, JITTER["sd"]),
        "sigma": np.array(JITTER["sigma"]),
        "cpc": np.full(n_pairs, JITTER["cpc"]),
    }
    for name, value in centre.items():
        if not np.all(np.isfinite(value)) or not np.all(np.isfinite(width[name])):
            raise FloatingPointError(f"no finite starting region ({name} = {value})")
    return StartRegion(centre, width)


def layout(model: object) -> dict[str, slice]:
    """Where each free variable of a PyMC model sits in the flat unconstrained vector
    that nutpie samples (the order of ``model.free_RVs``), by value-variable name."""
    point = model.initial_point()  # type: ignore[attr-defined]
    out, start = {}, 0
    for rv in model.free_RVs:  # type: ignore[attr-defined]
        name = model.rvs_to_values[rv].name  # type: ignore[attr-defined]
        size = int(np.size(point[name]))
        out[name] = slice(start, start + size)
        start += size
    return out


def initial_point_fn(
    region: StartRegion, where: dict[str, slice], fallback: Callable[[int], np.ndarray]
) -> Callable[[int], np.ndarray]:
    """nutpie's ``initial_point_func``: the flat starting point of the chain whose
    seed is given, drawn from ``region``; variables the region does not cover (latent
    random effects) keep PyMC's jittered default from ``fallback``."""

    size = max(s.stop for s in where.values())
    covered = {transformed for transformed, _ in _TRANSFORMS.values()}

    def initial_point(seed: int) -> np.ndarray:
        if covered.issuperset(where):
            flat = np.empty(size)
        else:
            flat = np.array(fallback(seed), dtype=float, copy=True)
        rng = np.random.default_rng(seed)
        for name, value in region.draw(rng).items():
            if name in where:
                flat[where[name]] = np.ravel(value)
        return flat

    return initial_point
