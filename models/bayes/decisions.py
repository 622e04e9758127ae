"""Bayesian decision rules on a fitted posterior: the ``tests`` of the Bayesian engine.

For each tested term, with ``alpha = 1 - level`` (the engine's interval level):

* ``interval``: reject ``H0: beta = null`` when the engine's credible interval at
  ``level`` (equal-tailed or highest-density, as configured) excludes the null;
* ``sign``: reject when the posterior probability of the sign of ``beta - null`` is
  at least ``1 - alpha / 2``, i.e. ``max(P(beta > null), P(beta < null)) >= 1 - alpha/2``.

Both report the posterior tail probability ``min(P(beta < null), P(beta > null))`` as
their statistic and ``2 x`` that as a p-value-like number (a "posterior p"); with an
equal-tailed interval the two rules agree but for the interpolation of its quantiles,
with a highest-density interval the interval rule has no such p (NaN) and decides by
the interval itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.base import FitResult, TestResult

#: the rules, in order
RULES = ("interval", "sign")


def decisions(
    fit: FitResult,
    terms: Sequence[str],
    null: Sequence[float],
    rules: Sequence[str],
    level: float,
    interval: str,
) -> dict[str, TestResult]:
    """The decision ``rules`` for ``terms`` from ``fit``'s draws and intervals."""
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        raise ValueError(f"tests {unknown}: the Bayesian engine has {', '.join(RULES)}")
    k = len(terms)
    nan = np.full(k, np.nan)
    draws = fit.draws
    idx = [fit.terms.index(t) for t in terms]
    null_arr = np.asarray(null, dtype=float)
    if not isinstance(draws, np.ndarray) or not np.isfinite(draws[..., idx]).all():
        why = fit.message or "the fit gave no posterior draws"
        return {r: TestResult(nan, nan, nan, f"no decision: {why}", nan.copy()) for r in rules}
    flat = draws.reshape(-1, draws.shape[-1])[:, idx]
    above = (flat > null_arr).mean(axis=0)
    below = (flat < null_arr).mean(axis=0)
    tail = np.minimum(above, below)
    inf = np.full(k, np.inf)
    out: dict[str, TestResult] = {}
    alpha = 1.0 - level
    if "interval" in rules:
        lo = np.asarray(fit.ci_lower, dtype=float)[idx]
        hi = np.asarray(fit.ci_upper, dtype=float)[idx]
        reject = ((null_arr < lo) | (null_arr > hi)).astype(float)
        p = np.minimum(2 * tail, 1.0) if interval == "eti" else nan.copy()
        out["interval"] = TestResult(tail, inf, p, "", reject)
    if "sign" in rules:
        reject = (np.maximum(above, below) >= 1 - alpha / 2).astype(float)
        out["sign"] = TestResult(tail, inf, np.minimum(2 * tail, 1.0), "", reject)
    return out
