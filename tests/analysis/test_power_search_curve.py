"""The sample-size search's power curve (study.analysis.search): the probit fit in
sqrt(N) recovers a known curve, its 95% interval for the N that reaches the target
covers the true one about 95% of the time, and the points it proposes are admissible."""

from __future__ import annotations

import numpy as np
from scipy import stats

from study.analysis.search import admissible, fit_curve, next_points, snap

A, B, TARGET = -1.5, 0.35, 0.8
TRUE_N = ((stats.norm.ppf(TARGET) - A) / B) ** 2  # 62.3


def _simulate(rng, values, n):
    p = stats.norm.cdf(A + B * np.sqrt(values))
    return rng.binomial(n, p)


def test_fit_recovers_the_curve_and_its_interval_covers():
    rng = np.random.default_rng(1)
    values = np.array([20, 40, 60, 80, 120])
    covered, trials = 0, 300
    for _ in range(trials):
        hits = _simulate(rng, values, 200)
        curve = fit_curve(values, hits, [200] * values.size, TARGET)
        covered += curve.lower <= TRUE_N <= curve.upper
    # 95% nominal: the count is Binomial(300, 0.95) when the interval is right
    mcse = np.sqrt(0.95 * 0.05 / trials)
    assert abs(covered / trials - 0.95) <= 3 * mcse + 0.01, covered
    big = fit_curve(values, _simulate(rng, values, 200_000), [200_000] * 5, TARGET)
    assert abs(big.a - A) < 0.02 and abs(big.b - B) < 0.003
    assert abs(big.n_star - TRUE_N) < 0.5
    assert abs(float(big.power(TRUE_N)) - TARGET) < 0.002


def test_points_are_admissible_values():
    grid = admissible(5, 200, 2)
    assert grid[0] == 6 and grid[-1] == 200 and all(g % 2 == 0 for g in grid)
    assert snap(51.2, grid) == 52 and snap(51.2, grid, up=False) == 50
    assert snap(float("inf"), grid) == 200
    rng = np.random.default_rng(2)
    values = np.array([6, 30, 200])
    curve = fit_curve(values, _simulate(rng, values, 100), [100] * 3, TARGET)
    points = next_points(curve, grid)
    assert points == sorted(set(points)) and all(p in grid for p in points)
