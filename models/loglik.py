"""The log marginal likelihood of the LMM with numpy, from per-group sufficient statistics.

Group ``i`` has ``y_i ~ N(X_i beta, V_i)``, ``V_i = Z_i D Z_i' + sigma^2 I`` with ``Z_i``
the r columns of ``X_i`` that have a random effect (``data.structure``,
:class:`models.structure.Structure`) and ``D = diag(sd) C diag(sd)`` (``C`` the
correlation matrix of the random effects, the identity when they are uncorrelated).
With ``L = diag(sd) chol(C)`` (``D = L L'``), ``r_i = y_i - X_i beta`` and
``A_i = L' Z_i'Z_i L + sigma^2 I_r`` (the algebra of :mod:`models.bayes.marginal`):

* ``r_i'V_i^-1 r_i = (r_i'r_i - v_i' A_i^-1 v_i) / sigma^2``, ``v_i = L' Z_i'r_i``;
* ``log|V_i| = log|A_i| + (n_i - r) log sigma^2``;
* ``r_i'r_i = y_i'y_i - 2 beta'X_i'y_i + beta'X_i'X_i beta``, ``Z_i'r_i = Z_i'y_i -
  Z_i'X_i beta`` (``Z'Z``, ``Z'X``, ``Z'y`` are sub-blocks of ``X'X`` and ``X'y``).

One evaluation costs O(K (q^2 + r^3)) whatever the n_i, and ``D^-1`` is never formed,
so an SD of exactly 0 is fine.  Vectorised over draws and groups; no PyMC or PyTensor.
"""

from __future__ import annotations

import numpy as np

from models.base import correlation_factor
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
    r = corr.shape[-1]
    if r > 1:
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
        Parameter values in ``data.structure.terms`` order: beta (q), sd (r), cor (the
        correlated pairs ``a < b``; none for uncorrelated random effects), sigma; for
        the all-slopes model ``T = 2 q + q (q - 1) / 2 + 1``.
    data : LMMData

    Returns
    -------
    ndarray, shape (S,), or a 0-d array for one row (``float()`` it for a number).
    """
    structure = data.structure
    r = structure.r
    n_terms = len(structure.terms)
    arr = np.asarray(terms, dtype=float)
    if arr.ndim not in (1, 2) or arr.shape[-1] != n_terms:
        raise ValueError(
            f"terms must have shape (T,) or (S, T) with T = {n_terms} for the structure "
            f"{structure.bar()} with q = {structure.q} ({', '.join(structure.terms)}), "
            f"got shape {arr.shape}"
        )
    flat = arr.reshape(-1, n_terms)
    beta_all, sds_all, corr_all, sigma_all = structure.split(flat)
    _check(flat, sds_all, corr_all, sigma_all)
    L_all = sds_all[:, :, None] * correlation_factor(corr_all)  # diag(sd) chol(C)
    K = data.n_groups
    XtX, Xty, yty = data.XtX, data.Xty, data.yty
    ZtX, ZtZ, Zty = data.ZtX, data.ZtZ, data.Zty
    n_tot = float(data.n.sum())
    out = np.empty(flat.shape[0])
    q = structure.q
    chunk = max(1, _CHUNK_ELEMENTS // max(1, K * max(q, r) ** 2))
    eye = np.eye(r)
    for start in range(0, flat.shape[0], chunk):
        sl = slice(start, start + chunk)
        beta, L, sigma = beta_all[sl], L_all[sl], sigma_all[sl]
        s2 = sigma**2
        xtr = Xty[None] - np.einsum("kab,sb->ska", XtX, beta)  # X_i'r_i, (s, K, q)
        rr = yty[None] - np.einsum("sa,ska->sk", beta, Xty[None] + xtr)  # r_i'r_i
        ztr = Zty[None] - np.einsum("kab,sb->ska", ZtX, beta)  # Z_i'r_i, (s, K, r)
        Lt = np.swapaxes(L, -1, -2)[:, None]  # (s, 1, r, r)
        A = Lt @ ZtZ[None] @ L[:, None] + s2[:, None, None, None] * eye
        v = np.einsum("sai,ska->ski", L, ztr)  # L' Z_i'r_i
        R = np.linalg.cholesky(A)
        w = np.linalg.solve(R, v[..., None])[..., 0]  # R^-1 v: quad = |w|^2
        logdet = 2.0 * np.log(np.diagonal(R, axis1=-2, axis2=-1)).sum(axis=(-2, -1))
        quad = np.sum(w**2, axis=-1)
        out[sl] = -0.5 * (
            n_tot * np.log(2 * np.pi)
            + (n_tot - r * K) * np.log(s2)
            + logdet
            + np.sum(rr - quad, axis=-1) / s2
        )
    return out.reshape(arr.shape[:-1])
