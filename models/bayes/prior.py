"""Draws from the Bayesian engine's prior with numpy alone (no PyMC, no compilation).

:func:`draw_prior` draws the ``terms`` vector of a model's structure
(:attr:`models.structure.Structure.terms` order: beta (q), sd (r), cor (the correlated
pairs), sigma) from exactly the priors :func:`models.bayes.graph.add_priors` declares:

* ``beta_k ~ Normal(fixed_loc_k, fixed_scale_k)`` per fixed effect;
* ``sd_j`` (per random effect) and ``sigma`` from their scale family: ``"halfnormal"``
  ``|N(0, 1)| s``, ``"halft"`` ``|t_df| s``, ``"exponential"`` with mean ``s``;
* for a correlated ``D`` with r >= 2, the correlations from canonical partial
  correlations ``z`` with ``(z + 1) / 2 ~ Beta(b_k, b_k)``, ``b_k = eta + (r - 2 - k) / 2``
  for the pair ``(k, i)``, turned into the Cholesky factor ``Lc`` of the correlation
  matrix by the same canonical-vine formulas as the model, and
  ``cor[a, b] = (Lc Lc')[a, b]``; a diagonal ``D`` has none.

It is called once per simulated dataset in simulation-based calibration, where
building or compiling a PyMC model each time would dominate the cost.
"""

from __future__ import annotations

import math

import numpy as np

from models.bayes.graph import lkj_shapes, pairs, prior_parameters
from models.bayes.options import BayesPriors
from models.structure import Structure


def _scale_draws(
    family: str, scale: np.ndarray | float, df: float, rng: np.random.Generator, shape: tuple
) -> np.ndarray:
    """Draws of a positive scale prior (as in ``graph._scale_prior``): standard draw x scale."""
    if family == "halfnormal":
        unit = np.abs(rng.standard_normal(shape))
    elif family == "halft":
        unit = np.abs(rng.standard_t(df, shape))
    elif family == "exponential":  # pm.Exponential(scale=s): mean s
        unit = rng.standard_exponential(shape)
    else:
        raise ValueError(
            f"unknown scale-prior family {family!r}; expected halfnormal, halft or exponential"
        )
    return unit * scale


def correlation_cholesky(z: np.ndarray, q: int) -> np.ndarray:
    """Cholesky factor of the correlation matrix from canonical partial correlations.

    ``z`` has shape (..., q (q - 1) / 2), one CPC per pair in :func:`pairs` order;
    returns (..., q, q), lower triangular, built exactly as in ``add_priors``:
    ``Lc[i, k] = z[k, i] sqrt(prod_{j<k} (1 - z[j, i]^2))`` for ``k < i`` and
    ``Lc[i, i] = sqrt(prod_{k<i} (1 - z[k, i]^2))``.
    """
    lead = z.shape[:-1]
    zp = {pair: z[..., j] for j, pair in enumerate(pairs(q))}
    Lc = np.zeros((*lead, q, q))
    for i in range(q):
        rem = np.ones(lead)
        for k in range(i):
            Lc[..., i, k] = zp[(k, i)] * np.sqrt(rem)
            rem = rem * (1.0 - zp[(k, i)] ** 2)
        Lc[..., i, i] = np.sqrt(rem)
    return Lc


def draw_prior(
    priors: BayesPriors,
    structure: Structure | int,
    rng: np.random.Generator,
    size: int | None = None,
    scale: float = 1.0,
) -> np.ndarray:
    """Draws of the ``terms`` vector from the prior of the Bayesian engine.

    Parameters
    ----------
    priors : BayesPriors
        The priors (lists must have one value per fixed effect, ``fixed_*``, or per
        random effect, ``sd_scale``).
    structure : Structure or int
        The model's random-effects structure; a number q (>= 1) is the all-slopes
        model with q coefficients, intercept included.
    rng : numpy.random.Generator
    size : int, optional
        Number of draws; ``None`` for one draw.
    scale : float
        Multiplies every prior scale (``fixed_scale``, ``sd_scale``,
        ``sigma_scale``), leaving locations, dfs and the LKJ eta alone: ``scale != 1``
        draws from a deliberately wrong prior.

    Returns
    -------
    ndarray, shape (T,) or (size, T)
        ``T = len(structure.terms)`` terms in that order: beta (q), sd (r), cor (the
        correlated pairs ``a < b``), sigma; ``T = 2 q + q (q - 1) / 2 + 1`` for the
        all-slopes model.
    """
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"scale must be a positive number, got {scale!r}") from None
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(
            f"scale must be a positive finite number (it multiplies the prior scales), got {scale}"
        )
    if not isinstance(structure, Structure):
        q = structure
        if isinstance(q, bool) or not isinstance(q, int | np.integer) or q < 1:
            raise ValueError(
                f"q must be a positive integer (coefficients incl. intercept) or a "
                f"Structure, got {q!r}"
            )
        structure = Structure.full([f"x{j}" for j in range(1, int(q))])
    if size is not None and (isinstance(size, bool) or int(size) != size or size < 0):
        raise ValueError(f"size must be None or a non-negative integer, got {size!r}")
    q, r = structure.q, structure.r
    n = 1 if size is None else int(size)
    loc, fixed_scale, sd_scale = prior_parameters(priors, structure)
    beta = loc + (scale * fixed_scale) * rng.standard_normal((n, q))
    sds = _scale_draws(priors.sd_family, scale * sd_scale, priors.sd_df, rng, (n, r))
    sigma = _scale_draws(
        priors.sigma_family, scale * float(priors.sigma_scale), priors.sigma_df, rng, (n,)
    )
    idx = structure.pairs
    if idx:
        b = lkj_shapes(priors.lkj_eta, r)
        z = 2.0 * rng.beta(b, b, size=(n, len(idx))) - 1.0
        Lc = correlation_cholesky(z, r)
        cols = []
        for a, b_ in idx:  # (Lc Lc')[a, b], summed in the model's order
            acc = np.zeros(n)
            for k in range(a + 1):
                acc = acc + Lc[:, b_, k] * Lc[:, a, k]
            cols.append(acc)
        cors = np.column_stack(cols)
    else:
        cors = np.empty((n, 0))
    out = np.concatenate([beta, sds, cors, sigma[:, None]], axis=1)
    return out[0] if size is None else out
