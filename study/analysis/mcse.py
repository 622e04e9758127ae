"""Performance measures and their Monte Carlo SEs: the NumPy layer.

Formulas from Morris, White & Crowther (2019), Statistics in Medicine 38:2074-2102,
Table 6 (docs/architecture.md, Measures).  Every function takes arrays with the replicates along
``axis``, ignores NaNs (each measure's ``n`` counts the replicates it could use), and
returns ``(estimate, mcse)`` with ``axis`` reduced.  ``theta`` (the truth) broadcasts
against the reduced shape.  Where a measure is undefined (n too small, zero truth for a
relative measure) the result is NaN, never a made-up value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

Pair = tuple[np.ndarray, np.ndarray]


def _last(x: ArrayLike, axis: int) -> np.ndarray:
    return np.moveaxis(np.asarray(x, dtype=float), axis, -1)


def _theta(theta: ArrayLike) -> np.ndarray:
    return np.asarray(theta, dtype=float)[..., None]


def _quiet(func: Any) -> Any:
    """Silence NumPy's warnings for all-NaN slices / 0/0: those give NaN by design."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with np.errstate(invalid="ignore", divide="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return func(*args, **kwargs)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


def _paired(a: ArrayLike, b: ArrayLike, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``a`` and ``b`` (replicates last) with NaN wherever either is missing, and n."""
    x, y = _last(a, axis), _last(b, axis)
    both = np.isfinite(x) & np.isfinite(y)
    return np.where(both, x, np.nan), np.where(both, y, np.nan), both.sum(-1)


def count(x: ArrayLike, axis: int = -1) -> np.ndarray:
    """Number of finite values along ``axis``."""
    return np.isfinite(_last(x, axis)).sum(axis=-1)


@_quiet
def mean_estimate(est: ArrayLike, axis: int = -1) -> Pair:
    """Mean of the estimates; MCSE ``sd / sqrt(n)``."""
    x = _last(est, axis)
    n = np.isfinite(x).sum(-1)
    return np.nanmean(x, -1), np.nanstd(x, -1, ddof=1) / np.sqrt(n)


@_quiet
def bias(est: ArrayLike, theta: ArrayLike, axis: int = -1) -> Pair:
    """``mean(th) - theta``; MCSE ``sqrt(sum (th - mean)^2 / (n (n - 1)))``."""
    m, se = mean_estimate(est, axis)
    return m - np.asarray(theta, dtype=float), se


@_quiet
def relative_bias(est: ArrayLike, theta: ArrayLike, axis: int = -1) -> Pair:
    """``bias / theta`` (NaN where theta = 0); MCSE ``MCSE(bias) / |theta|``."""
    b, se = bias(est, theta, axis)
    t = np.asarray(theta, dtype=float)
    t = np.where(t == 0, np.nan, t)
    return b / t, se / np.abs(t)


@_quiet
def empirical_se(est: ArrayLike, axis: int = -1) -> Pair:
    """``sd(th)``; MCSE ``EmpSE / sqrt(2 (n - 1))``."""
    x = _last(est, axis)
    n = np.isfinite(x).sum(-1)
    s = np.nanstd(x, -1, ddof=1)
    return s, s / np.sqrt(2.0 * (n - 1))


@_quiet
def mse(est: ArrayLike, theta: ArrayLike, axis: int = -1) -> Pair:
    """``mean((th - theta)^2)``; MCSE ``sqrt(sum((th-theta)^2 - MSE)^2 / (n (n-1)))``."""
    d2 = (_last(est, axis) - _theta(theta)) ** 2
    n = np.isfinite(d2).sum(-1)
    m = np.nanmean(d2, -1)
    return m, np.sqrt(np.nansum((d2 - m[..., None]) ** 2, -1) / (n * (n - 1)))


@_quiet
def rmse(est: ArrayLike, theta: ArrayLike, axis: int = -1) -> Pair:
    """``sqrt(MSE)``; MCSE by the delta method ``MCSE(MSE) / (2 RMSE)``."""
    m, se = mse(est, theta, axis)
    r = np.sqrt(m)
    return r, se / (2.0 * r)


@_quiet
def model_se(se: ArrayLike, axis: int = -1) -> Pair:
    """``sqrt(mean(se^2))``; MCSE ``sqrt(var(se^2) / (4 n ModSE^2))``."""
    s2 = _last(se, axis) ** 2
    n = np.isfinite(s2).sum(-1)
    mod = np.sqrt(np.nanmean(s2, -1))
    return mod, np.sqrt(np.nanvar(s2, -1, ddof=1) / (4.0 * n * mod**2))


@_quiet
def relative_error_model_se(est: ArrayLike, se: ArrayLike, axis: int = -1) -> Pair:
    """``100 (ModSE / EmpSE - 1)``; MCSE
    ``100 (ModSE/EmpSE) sqrt(var(se^2) / (4 n ModSE^4) + 1 / (2 (n - 1)))``.

    Uses the replicates where both estimate and SE are finite.
    """
    x, s, n = _paired(est, se, axis)
    emp, _ = empirical_se(x)
    mod, _ = model_se(s)
    ratio = mod / emp
    var_s2 = np.nanvar(s**2, -1, ddof=1)
    mcse = 100.0 * ratio * np.sqrt(var_s2 / (4.0 * n * mod**4) + 1.0 / (2.0 * (n - 1)))
    return 100.0 * (ratio - 1.0), mcse


@_quiet
def _proportion(hit: np.ndarray, valid: np.ndarray) -> Pair:
    n = valid.sum(-1)
    p = np.where(valid, hit, False).sum(-1) / n
    return p, np.sqrt(p * (1.0 - p) / n)


def coverage(lo: ArrayLike, hi: ArrayLike, theta: ArrayLike, axis: int = -1) -> Pair:
    """``mean(lo <= theta <= hi)``; MCSE ``sqrt(C (1 - C) / n)``."""
    lo_, hi_ = _last(lo, axis), _last(hi, axis)
    t = _theta(theta)
    valid = np.isfinite(lo_) & np.isfinite(hi_) & np.isfinite(t)
    with np.errstate(invalid="ignore"):
        return _proportion((lo_ <= t) & (t <= hi_), valid)


def bias_eliminated_coverage(est: ArrayLike, lo: ArrayLike, hi: ArrayLike, axis: int = -1) -> Pair:
    """Coverage of ``mean(th)`` instead of theta; MCSE ``sqrt(C (1 - C) / n)``."""
    lo_, hi_ = _last(lo, axis), _last(hi, axis)
    m, _ = mean_estimate(np.where(np.isfinite(lo_) & np.isfinite(hi_), _last(est, axis), np.nan))
    return coverage(lo_, hi_, m)


def rejection(lo: ArrayLike, hi: ArrayLike, null: ArrayLike = 0.0, axis: int = -1) -> Pair:
    """Share of intervals excluding ``null`` (power / type I error); binomial MCSE."""
    c, se = coverage(lo, hi, null, axis)
    return 1.0 - c, se


@_quiet
def interval_width(lo: ArrayLike, hi: ArrayLike, axis: int = -1) -> Pair:
    """Mean of ``hi - lo``; MCSE ``sd(width) / sqrt(n)``."""
    return mean_estimate(_last(hi, axis) - _last(lo, axis))


@_quiet
def relative_precision(
    est: ArrayLike, ref: ArrayLike, axis: int = -1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Relative % precision of ``est`` (method B) against ``ref`` (method A).

    ``100 ((EmpSE_A / EmpSE_B)^2 - 1)`` with MCSE
    ``200 (EmpSE_A / EmpSE_B)^2 sqrt((1 - rho^2) / (n - 1))``, on the replicates where
    both are finite; also returns the paired correlation ``rho``.
    """
    b, a, n = _paired(est, ref, axis)
    sa, _ = empirical_se(a)
    sb, _ = empirical_se(b)
    ca, cb = a - np.nanmean(a, -1)[..., None], b - np.nanmean(b, -1)[..., None]
    rho = np.nansum(ca * cb, -1) / np.sqrt(np.nansum(ca**2, -1) * np.nansum(cb**2, -1))
    r2 = (sa / sb) ** 2
    return 100.0 * (r2 - 1.0), 200.0 * r2 * np.sqrt((1.0 - rho**2) / (n - 1)), rho


@_quiet
def wilson_interval(share: ArrayLike, n: ArrayLike, z: float = 1.959963984540054) -> Pair:
    """Wilson score interval of a share (coverage, rejection) from ``n`` trials.

    ``(p + z^2/(2n) +- z sqrt(p (1 - p) / n + z^2 / (4 n^2))) / (1 + z^2 / n)``
    (Wilson 1927; Brown, Cai & DasGupta 2001, Statistical Science 16:101): inside
    [0, 1] and of non-zero width at a share of 0 or 1, where the Wald interval
    ``p +- z sqrt(p (1 - p) / n)`` runs past the bounds or collapses.  NaN where
    ``n < 1`` or the share is NaN.
    """
    p = np.asarray(share, dtype=float)
    k = np.asarray(n, dtype=float)
    k = np.where(k >= 1, k, np.nan)
    z2 = z * z
    centre = (p + z2 / (2 * k)) / (1 + z2 / k)
    half = z / (1 + z2 / k) * np.sqrt(p * (1 - p) / k + z2 / (4 * k * k))
    # it contains p in exact arithmetic; min / max undo rounding at p = 0 or 1
    lo, hi = np.minimum(centre - half, p), np.maximum(centre + half, p)
    return np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0)
