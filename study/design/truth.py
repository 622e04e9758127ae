"""Analytic truth for the fixed effects of the simulated LMM: the GLS algebra of
:mod:`study.design.gls` on a design's per-group ``H_i = X_i'R_i^-1 X_i``.

The truth depends on the random effects and residuals only through their covariance
(``D`` and ``R_i``), so it holds unchanged for the non-normal distributions of
``[design.random_effects]`` and ``[design.residuals]`` (standardised to that
covariance).  With missing outcomes, the rows observed differ per replicate: each
replicate's truth is in ``Sample.observed_cov``, and the design's truth here is the one
of the complete data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.structure import Structure, term_effects
from study.design.crossed.algebra import fixed_cov, ran_pars_values
from study.design.generate import AnyDesign, CrossedDesign, Design
from study.design.gls import conditional_moments, gls_cov


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


def marginal_cov(XtX: np.ndarray, D: np.ndarray, sigma: float) -> np.ndarray:
    """``(sum_i X_i'V_i^-1 X_i)^-1`` from the per-group ``X_i'X_i`` (K, q, q) of a
    homoscedastic design."""
    return gls_cov(XtX / sigma**2, D)


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


def compute_truth(design: AnyDesign, terms: list[str] | None = None) -> Truth:
    """The true values and SEs of ``terms`` (default: the generating model's).

    ``terms`` may name terms of any structure on the design's fixed effects (what the
    engines fit): the SD of an effect the data do not vary is 0, a correlation with
    it NaN, a correlation the generator sets to 0 (``correlated = false``) is 0.  A
    crossed design's truth: :mod:`study.design.crossed.algebra`.
    """
    if isinstance(design, CrossedDesign):
        return crossed_truth(design, terms)
    cfg = design.config
    full = Structure.full(cfg.effects).terms
    terms = list(cfg.structure.terms if terms is None else terms)
    unknown = [t for t in terms if t not in full]
    if unknown:
        raise ValueError(f"terms {unknown} are not terms of a model on {list(cfg.structure.fixed)}")
    effects = term_effects(terms, cfg.structure.fixed)
    pick = np.array([full.index(t) for t in terms], dtype=np.int64)
    q = cfg.q
    cov = gls_cov(design.H, cfg.D)
    value = np.concatenate([design.beta, _ran_pars_values(design)])[pick]
    se = np.full(len(terms), np.nan)
    se[:q] = np.sqrt(np.diag(cov))
    cond_value = np.full(len(terms), np.nan)
    cond_se = np.full(len(terms), np.nan)
    cond_cov = None
    if design.fixed_u is not None:
        mean, cond_cov = conditional_moments(design.H, cfg.D, design.beta, design.fixed_u)
        cond_value[:q] = mean
        cond_se[:q] = np.sqrt(np.diag(cond_cov))
    report_se = None
    if cfg.repeats > 1:
        # the 2018 report's "true SE": the formula applied to one copy of each class
        # (n_i subjects), ignoring that every class was analysed `repeats` times over
        report_se = np.full(len(terms), np.nan)
        single = gls_cov(design.H / cfg.repeats, cfg.D)
        report_se[:q] = np.sqrt(np.diag(single))
    return Truth(terms, effects, value, se, cond_value, cond_se, cov, cond_cov, report_se)


def crossed_truth(design: CrossedDesign, terms: list[str] | None = None) -> Truth:
    """The truth of a crossed design: ``Var(beta_hat) = (X'V^-1 X)^-1`` through Woodbury
    on the random-effect levels, and the variance parameters' true values of ``terms``
    (default: the generating model's) on its factors (no conditional truth: a crossed
    design redraws its random effects)."""
    cfg = design.config
    structure = cfg.structure
    terms = list(structure.terms if terms is None else terms)
    fixed = list(structure.fixed)
    effects = term_effects(terms, fixed)
    cov = fixed_cov(design.data, design.factors, cfg.sigma)
    ran = ran_pars_values(structure, cfg.bar_factors(), cfg.sigma, terms, fixed, cfg.factors)
    beta = dict(zip(fixed, design.beta, strict=True))
    sd = dict(zip(fixed, np.sqrt(np.diag(cov)), strict=True))
    value = np.array([beta[t] if t in beta else ran[t] for t in terms])
    se = np.array([sd.get(t, np.nan) for t in terms])
    nan = np.full(len(terms), np.nan)
    return Truth(terms, effects, value, se, nan, nan.copy(), cov, None)
