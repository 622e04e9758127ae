"""The Bayesian engine's decision rules (models.bayes.decisions) on known draws."""

from __future__ import annotations

import numpy as np

from models.base import FitResult
from models.bayes.decisions import decisions
from models.structure import Structure


def _fit(draws: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> FitResult:
    s = Structure(("(Intercept)", "treat"), ("(Intercept)",), True)
    k = len(s.terms)
    fit = FitResult.failed(s, "")
    fit.estimate = np.zeros(k)
    fit.ci_lower, fit.ci_upper = lo, hi
    fit.draws = draws
    return fit


def test_interval_and_sign_rules():
    rng = np.random.default_rng(3)
    k = 4  # (Intercept), treat, sd__(Intercept), sd__Observation
    draws = np.zeros((2, 2000, k))
    draws[..., 1] = rng.normal(0.3, 0.1, (2, 2000))  # P(treat < 0) about 0.13%
    flat = draws.reshape(-1, k)
    lo, hi = np.quantile(flat, 0.025, axis=0), np.quantile(flat, 0.975, axis=0)
    fit = _fit(draws, lo, hi)
    out = decisions(fit, ["treat"], [0.0], ["interval", "sign"], 0.95, "eti")
    tail = float((flat[:, 1] < 0).mean())
    assert out["sign"].statistic[0] == tail
    assert out["sign"].reject[0] == 1.0 and out["interval"].reject[0] == 1.0
    np.testing.assert_allclose(out["interval"].p_value, 2 * tail)
    # a null inside the posterior bulk: neither rule rejects
    out = decisions(fit, ["treat"], [0.3], ["interval", "sign"], 0.95, "hdi")
    assert out["sign"].reject[0] == 0.0 and out["interval"].reject[0] == 0.0
    assert np.isnan(out["interval"].p_value[0])  # an HDI has no tail p
    # a null at the 1.5% point: outside the 95% ETI, sign probability 0.985 >= 0.975
    q = float(np.quantile(flat[:, 1], 0.015))
    out = decisions(fit, ["treat"], [q], ["interval", "sign"], 0.95, "eti")
    assert out["sign"].reject[0] == 1.0 and out["interval"].reject[0] == 1.0


def test_no_draws_decide_nothing():
    fit = _fit(None, np.zeros(4), np.zeros(4))  # type: ignore[arg-type]
    fit.message = "sampler failed"
    out = decisions(fit, ["treat"], [0.0], ["interval", "sign"], 0.95, "eti")
    assert np.isnan(out["sign"].reject[0]) and "sampler failed" in out["sign"].message
