"""The log marginal likelihood of the LMM with numpy, from per-group sufficient statistics.

Group ``i`` has ``y_i ~ N(X_i beta, V_i)``, ``V_i = X_i D X_i' + sigma^2 I`` with
``D = diag(sd) C diag(sd)`` (``C`` the correlation matrix of the random effects).  With
``L = diag(sd) chol(C)`` (``D = L L'``), ``r_i = y_i - X_i beta`` and
``A_i = L' X_i'X_i L + sigma^2 I`` (the algebra of :mod:`models.bayes.graph`):

* ``r_i'V_i^-1 r_i = (r_i'r_i - v_i' A_i^-1 v_i) / sigma^2``, ``v_i = L' X_i'r_i``;
* ``log|V_i| = log|A_i| + (n_i - q) log sigma^2``;
* ``r_i'r_i = y_i'y_i - 2 beta'X_i'y_i + beta'X_i'X_i beta``, ``X_i'r_i = X_i'y_i -
  X_i'X_i beta``.

One evaluation costs O(K q^3) whatever the n_i, and ``D^-1`` is never formed, so an SD
of exactly 0 is fine.  Vectorised over draws and groups; no PyMC or PyTensor.
"""

from __future__ import annotations

import numpy as np

from models.base import correlation_factor, split_terms
from models.data import LMMData

#: Upper bound on the elements of one (draws, groups, q, q) block of work.
_CHUNK_ELEMENTS = 2_000_000


def _check(terms: np.ndarray, sds: np.ndarray, corr: np.ndarray, sigma: np.ndarray) -> None:
    """Refuse parameter values outside the model's parameter space (first bad row named)."""
    problems = [
        (~np.isfinite(terms).all(axis=1), "a non-finite value"),
        ((sds < 0).any(axis=1), "a negative random-effect SD"),
        (sigma <= 0, "a residual SD sigma <= 0"),
    ]
    q = corr.shape[-1]
    if q > 1:
        finite = np.where(np.isfinite(corr), corr, 0.0)
        low = np.linalg.eigvalsh(finite)[:, 0]
        bad_cor = (np.abs(finite) > 1 + 1e-10).any(axis=(1, 2)) | (low < -1e-10)
        problems.append((bad_cor, "correlations that form no correlation matrix"))
    for bad, what in problems:
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"terms row {row} has {what}: {terms[row].tolist()}; "
                "expected beta, sd >= 0, cor (a positive semi-definite matrix), sigma > 0"
            )


def marginal_loglik(terms: np.ndarray, data: LMMData) -> np.ndarray:
    """Log marginal likelihood (random effects integrated out) at each row of ``terms``.

    Parameters
    ----------
    terms : ndarray, shape (S, T) or (T,)
        Parameter values in ``term_names`` order: beta (q), sd (q), cor (pairs
        ``a < b``), sigma; ``T = 2 q + q (q - 1) / 2 + 1``.
    data : LMMData

    Returns
    -------
    ndarray, shape (S,), or a 0-d array for one row (``float()`` it for a number).
    """
    q = data.q
    n_terms = 2 * q + q * (q - 1) // 2 + 1
    arr = np.asarray(terms, dtype=float)
    if arr.ndim not in (1, 2) or arr.shape[-1] != n_terms:
        raise ValueError(
            f"terms must have shape (T,) or (S, T) with T = {n_terms} for q = {q} "
            f"(beta, sd, cor, sigma), got shape {arr.shape}"
        )
    flat = arr.reshape(-1, n_terms)
    beta_all, sds_all, corr_all, sigma_all = split_terms(flat, q)
    _check(flat, sds_all, corr_all, sigma_all)
    L_all = sds_all[:, :, None] * correlation_factor(corr_all)  # diag(sd) chol(C)
    K = data.n_groups
    XtX, Xty, yty = data.XtX, data.Xty, data.yty
    n_tot = float(data.n.sum())
    out = np.empty(flat.shape[0])
    chunk = max(1, _CHUNK_ELEMENTS // max(1, K * q * q))
    eye = np.eye(q)
    for start in range(0, flat.shape[0], chunk):
        sl = slice(start, start + chunk)
        beta, L, sigma = beta_all[sl], L_all[sl], sigma_all[sl]
        s2 = sigma**2
        ztr = Xty[None] - np.einsum("kab,sb->ska", XtX, beta)  # X_i'r_i, (s, K, q)
        rr = yty[None] - np.einsum("sa,ska->sk", beta, Xty[None] + ztr)  # r_i'r_i
        Lt = np.swapaxes(L, -1, -2)[:, None]  # (s, 1, q, q)
        A = Lt @ XtX[None] @ L[:, None] + s2[:, None, None, None] * eye
        v = np.einsum("sai,ska->ski", L, ztr)  # L' X_i'r_i
        R = np.linalg.cholesky(A)
        w = np.linalg.solve(R, v[..., None])[..., 0]  # R^-1 v: quad = |w|^2
        logdet = 2.0 * np.log(np.diagonal(R, axis1=-2, axis2=-1)).sum(axis=(-2, -1))
        quad = np.sum(w**2, axis=-1)
        out[sl] = -0.5 * (
            n_tot * np.log(2 * np.pi)
            + (n_tot - q * K) * np.log(s2)
            + logdet
            + np.sum(rr - quad, axis=-1) / s2
        )
    return out.reshape(arr.shape[:-1])
