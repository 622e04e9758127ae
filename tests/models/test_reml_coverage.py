"""End to end: data simulated by the study's generator, fitted by the REML engine, its
intervals checked against the analytic truth (issue 24, item 8).

A random-intercept design (K = 20 groups of 5, a within-group normal predictor), 200
replicates of ``study.design`` data, REML t intervals (K - p = 19 df).  For the fixed
effects the t interval is close to exact here, so its coverage of the true value
(``study.design.truth``) must be the nominal 95% within 3 Monte Carlo SEs,
``sqrt(C (1 - C) / n)`` (Morris, White & Crowther 2019, Table 6): 3 x 0.0154.  A wrong
SE (a missing sigma^2 factor, a wrong df), a wrong truth or a generator drawing from
another model moves it far more.  statsmodels gets one L-BFGS iteration (``maxiter = 1``):
the Newton polish takes its point to the exact optimum, as in every fit, and the test
stays at a few seconds.
"""

from __future__ import annotations

import numpy as np

from models.reml import RemlEngine, RemlOptions
from study.design.config import config_from_dict
from study.design.generate import Design
from study.design.truth import compute_truth

REPLICATES = 200
LEVEL = 0.95


def test_t_intervals_cover_the_true_fixed_effects_at_the_nominal_rate() -> None:
    cfg = config_from_dict(
        {
            "name": "coverage",
            "seed": 24,
            "level": LEVEL,
            "design": {
                "groups": 20,
                "group_size": 5,
                "random": "(1 | g)",
                "re_sd": [1.0],
                "beta": [1.0, 0.5],
                "predictor": {"distribution": "normal"},
            },
            "engines": {"run": ["reml"]},
        },
        default_name="coverage",
    )
    design = Design.from_study(cfg, cfg.conditions[0])
    terms = cfg.terms()[0]
    truth = compute_truth(design, terms)
    fixed = slice(0, 2)  # (Intercept), X
    assert terms[fixed] == ["(Intercept)", "X"]
    engine = RemlEngine(
        RemlOptions(ci="t", level=LEVEL, ran_pars_ci="none", optimizers=("lbfgs",), maxiter=1)
    )
    covered, se = [], []
    for r in range(REPLICATES):
        fit = engine.fit(design.sample(r).data)
        assert fit.converged, (r, fit.message)
        lo, hi = fit.ci_lower[fixed], fit.ci_upper[fixed]
        covered.append((lo <= truth.value[fixed]) & (truth.value[fixed] <= hi))
        se.append(fit.std_error[fixed])
    coverage = np.mean(covered, axis=0)
    mcse = np.sqrt(LEVEL * (1 - LEVEL) / REPLICATES)
    assert np.all(np.abs(coverage - LEVEL) <= 3 * mcse), (coverage, mcse)
    # and the model SEs are on the true SE's scale (RMS of the SEs within 10% of the
    # GLS truth: its Monte Carlo error here is ~1-2%, small-K REML bias a few %)
    mod_se = np.sqrt(np.mean(np.square(se), axis=0))
    np.testing.assert_allclose(mod_se, truth.se[fixed], rtol=0.10)
