"""Analytic truth for the fixed effects of the simulated LMM, in q x q algebra.

With ``Z_i`` a subset of ``X_i``'s columns, ``Z_i D_r Z_i' = X_i D X_i'`` for ``D`` the
random-effects covariance embedded in the q x q space of the fixed effects (zero rows
and columns for the effects without a random effect: :attr:`DesignConfig.D`), so the
algebra below on ``X`` serves every structure.  With ``G_i = X_i'X_i`` and
``M_i = G_i + sigma^2 D^-1`` (applied as ``M_i^-1 = D (G_i D + sigma^2 I)^-1``, so D
may be singular), Woodbury gives
``V_i^-1 = (I - X_i M_i^-1 X_i') / sigma^2`` and so

* ``W_i = X_i'V_i^-1 X_i = (G_i - G_i M_i^-1 G_i) / sigma^2``,
* ``X_i'V_i^-2 X_i = (G_i - 2 G_i M_i^-1 G_i + G_i M_i^-1 G_i M_i^-1 G_i) / sigma^4``.

Marginal: ``Var(beta_hat) = A = (sum_i W_i)^-1`` (GLS with known V).
Conditional on fixed random effects u (docs/architecture.md):
``E[beta_hat | u] = beta + A sum_i W_i u_i`` (as ``X_i'V_i^-1 X_i = W_i``, ``u_i``
embedded likewise) and
``Var(beta_hat | u) = A (sum_i sigma^2 X_i'V_i^-2 X_i) A``.
No n_i x n_i matrix is ever formed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.structure import Structure, term_effects
from study.design.generate import Design


@dataclass(frozen=True)
class Truth:
    """True values and SEs per term.

    ``value``/``se``: marginal truth (SE NaN for variance parameters);
    ``cond_value``/``cond_se``: conditional on the fixed random effects, NaN when the
    study redraws them.  ``report_se`` (only when ``repeats > 1``): the SE the 2018
    report called true, the marginal formula on one copy of each class; it is not
    the truth for the repeated data actually generated.
    """

    terms: list[str]
    effects: list[str]
    value: np.ndarray
    se: np.ndarray
    cond_value: np.ndarray
    cond_se: np.ndarray
    cov: np.ndarray
    cond_cov: np.ndarray | None
    report_se: np.ndarray | None = None

    def to_frame(self) -> pd.DataFrame:
        """One row per term."""
        frame = pd.DataFrame(
            {
                "term": self.terms,
                "effect": self.effects,
                "true_value": self.value,
                "true_se": self.se,
            }
        )
        if self.cond_cov is not None:
            frame["cond_value"] = self.cond_value
            frame["cond_se"] = self.cond_se
        if self.report_se is not None:
            frame["report_se"] = self.report_se
        return frame


def _minv_times(XtX: np.ndarray, D: np.ndarray, s2: float, B: np.ndarray) -> np.ndarray:
    """``M_i^-1 B_i`` as ``D (G_i D + sigma^2 I)^-1 B_i``: no ``D^-1``, so a D with an
    SD of 0 (a random effect absent from the data) is fine."""
    q = D.shape[0]
    return D[None] @ np.linalg.solve(XtX @ D[None] + s2 * np.eye(q)[None], B)


def _woodbury_parts(
    XtX: np.ndarray, D: np.ndarray, sigma: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``W_i``, ``G_i M_i^-1 G_i`` and ``G_i`` stacked over groups."""
    s2 = sigma**2
    GMinvG = XtX @ _minv_times(XtX, D, s2, XtX)
    W = (XtX - GMinvG) / s2
    return W, GMinvG, XtX


def marginal_cov(XtX: np.ndarray, D: np.ndarray, sigma: float) -> np.ndarray:
    """``(sum_i X_i'V_i^-1 X_i)^-1`` from the per-group ``X_i'X_i`` (K, q, q)."""
    W, _, _ = _woodbury_parts(XtX, D, sigma)
    return np.linalg.inv(W.sum(axis=0))


def conditional_moments(
    XtX: np.ndarray, D: np.ndarray, sigma: float, beta: np.ndarray, u: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``E[beta_hat | u]`` and ``Var(beta_hat | u)`` of the GLS estimator with known V."""
    s2 = sigma**2
    W, GMinvG, G = _woodbury_parts(XtX, D, sigma)
    A = np.linalg.inv(W.sum(axis=0))
    mean = beta + A @ np.einsum("kab,kb->a", W, u)
    GMinvGMinvG = GMinvG @ _minv_times(XtX, D, s2, G)
    middle = ((G - 2.0 * GMinvG + GMinvGMinvG) / s2).sum(axis=0)
    return mean, A @ middle @ A


def _ran_pars_values(design: Design) -> np.ndarray:
    """SDs, correlations and sigma of the all-slopes model (q x q): an effect without a
    random effect has SD 0, and every correlation with it is undefined (NaN)."""
    cfg = design.config
    q = cfg.q
    cor = cfg.cor_full
    sd = cfg.sd_full
    # the correlation of a random effect that is absent (SD 0) is undefined
    cors = [
        cor[a, b] if sd[a] > 0 and sd[b] > 0 else np.nan for a in range(q) for b in range(a + 1, q)
    ]
    return np.array([*sd, *cors, cfg.sigma])


def compute_truth(design: Design, terms: list[str] | None = None) -> Truth:
    """The true values and SEs of ``terms`` (default: the generating model's).

    ``terms`` may name terms of any structure on the design's fixed effects (what the
    engines fit): the SD of an effect the data do not vary is 0, a correlation with
    it NaN, a correlation the generator sets to 0 (``correlated = false``) is 0.
    """
    cfg = design.config
    full = Structure.full(cfg.predictors).terms
    terms = list(cfg.structure.terms if terms is None else terms)
    unknown = [t for t in terms if t not in full]
    if unknown:
        raise ValueError(f"terms {unknown} are not terms of a model on {list(cfg.structure.fixed)}")
    effects = term_effects(terms, cfg.structure.fixed)
    pick = np.array([full.index(t) for t in terms], dtype=np.int64)
    q = cfg.q
    cov = marginal_cov(design.XtX, cfg.D, cfg.sigma)
    value = np.concatenate([design.beta, _ran_pars_values(design)])[pick]
    se = np.full(len(terms), np.nan)
    se[:q] = np.sqrt(np.diag(cov))
    cond_value = np.full(len(terms), np.nan)
    cond_se = np.full(len(terms), np.nan)
    cond_cov = None
    if design.fixed_u is not None:
        mean, cond_cov = conditional_moments(
            design.XtX, cfg.D, cfg.sigma, design.beta, design.fixed_u
        )
        cond_value[:q] = mean
        cond_se[:q] = np.sqrt(np.diag(cond_cov))
    report_se = None
    if cfg.repeats > 1:
        # the 2018 report's "true SE": the formula applied to one copy of each class
        # (n_i subjects), ignoring that every class was analysed `repeats` times over
        report_se = np.full(len(terms), np.nan)
        single = marginal_cov(design.XtX / cfg.repeats, cfg.D, cfg.sigma)
        report_se[:q] = np.sqrt(np.diag(single))
    return Truth(terms, effects, value, se, cond_value, cond_se, cov, cond_cov, report_se)
