"""The power curve of a sample-size search: a probit fit in sqrt(N), its inverse, where
to simulate next.

A test of a fixed effect whose SE shrinks as ``1 / sqrt(N)`` has power close to
``Phi(ncp - z)`` with ``ncp`` proportional to ``sqrt(N)`` (exactly so for a z test
with known variance), so the curve is modelled as ``P(reject | N) = Phi(a + b
sqrt(N))``, a binomial GLM (probit link) of the rejection counts at the values
simulated.  The answer is the smallest admissible ``N`` whose fitted power reaches the
target; its interval comes from the coefficients' sampling distribution (draws from
their asymptotic normal: the 2.5% and 97.5% points of the inverse).  Later rounds put
their replicates at the answer and at its interval's ends, and the final fit uses the
points near the answer (within a factor 2), where the probit form matters least.
statsmodels fits the GLM; the inversion and the choice of points are ours (no library
does a stochastic root search on a simulation's power: SimDesign's SimSolve is R).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: coefficient draws for the interval of N
DRAWS = 4000


@dataclass(frozen=True)
class Curve:
    """A fitted power curve ``Phi(a + b sqrt(N))`` and its inverse at ``target``."""

    a: float
    b: float
    cov: np.ndarray
    target: float
    #: the continuous N where the fitted curve reaches the target (inf: never)
    n_star: float
    #: 95% interval of n_star from the coefficients' uncertainty
    lower: float
    upper: float

    def power(self, n: np.ndarray | float) -> np.ndarray:
        """The fitted power at ``n``."""
        return stats.norm.cdf(self.a + self.b * np.sqrt(np.asarray(n, dtype=float)))


def _inverse(a: np.ndarray, b: np.ndarray, target: float) -> np.ndarray:
    with np.errstate(all="ignore"):
        root = (stats.norm.ppf(target) - a) / b
    return np.where((b > 0) & (root > 0), root**2, np.inf)


def fit_curve(
    values: Sequence[float], hits: Sequence[int], n: Sequence[int], target: float
) -> Curve:
    """Fit ``Phi(a + b sqrt(N))`` to ``hits`` rejections of ``n`` replicates at each of
    ``values`` and invert it at ``target``."""
    import statsmodels.api as sm

    x = np.sqrt(np.asarray(values, dtype=float))
    k = np.asarray(hits, dtype=float)
    m = np.asarray(n, dtype=float)
    endog = np.column_stack([k, m - k])
    design = sm.add_constant(x, has_constant="add")
    family = sm.families.Binomial(link=sm.families.links.Probit())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # perfect separation at the ends is expected
        res = sm.GLM(endog, design, family=family).fit()
    a, b = (float(v) for v in res.params)
    cov = np.asarray(res.cov_params(), dtype=float)
    n_star = float(_inverse(np.array(a), np.array(b), target))
    rng = np.random.default_rng(0)  # the interval is a property of the fit, not random
    try:
        draws = rng.multivariate_normal([a, b], cov, size=DRAWS, method="eigh")
    except (ValueError, np.linalg.LinAlgError):
        draws = np.full((DRAWS, 2), [a, b])
    inv = _inverse(draws[:, 0], draws[:, 1], target)
    lower, upper = (float(q) for q in np.quantile(inv, [0.025, 0.975]))
    return Curve(a, b, cov, target, n_star, lower, upper)


def admissible(low: int, high: int, step: int) -> list[int]:
    """The values a search may simulate: multiples of ``step`` in [low, high]."""
    first = step * math.ceil(low / step)
    return list(range(first, high + 1, step))


def snap(value: float, grid: Sequence[int], up: bool = True) -> int:
    """The admissible value at or above ``value`` (``up``; else at or below),
    clipped to the grid."""
    if not math.isfinite(value):
        return grid[-1] if value > 0 else grid[0]
    if up:
        return next((g for g in grid if g >= value - 1e-9), grid[-1])
    return next((g for g in reversed(grid) if g <= value + 1e-9), grid[0])


def local(values: Sequence[int], center: float) -> np.ndarray:
    """Which simulated values lie within a factor 2 of ``center`` (all when fewer than
    two distinct values would)."""
    v = np.asarray(values, dtype=float)
    if not math.isfinite(center) or center <= 0:
        return np.ones(v.size, dtype=bool)
    near = (v >= center / 2) & (v <= center * 2)
    return near if np.unique(v[near]).size >= 2 else np.ones(v.size, dtype=bool)


def next_points(curve: Curve, grid: Sequence[int]) -> list[int]:
    """Where the next round simulates: the answer and the ends of its interval, as
    admissible values (distinct, in order)."""
    points = {
        snap(curve.n_star, grid),
        snap(curve.lower, grid, up=False),
        snap(curve.upper, grid),
    }
    return sorted(points)
