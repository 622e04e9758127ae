"""Standard errors and intervals for the variance parameters of a REML/ML fit.

Parameters on the broom.mixed scale: the SD of each random effect, each correlation,
the residual SD.  Two kinds of interval:

- ``"wald"``: Wald intervals on the log-SD / atanh-correlation / log-sigma scale from the
  observed information (the Hessian of -2 log-likelihood, restricted for REML, by
  central differences of its analytic gradient), mapped back, so they respect the
  parameter space; SEs on the natural scale by the delta method.
- ``"profile"``: profile-likelihood intervals as ``lme4::confint(method = "profile")``:
  for each parameter, the values where the signed root of the criterion's increase,
  with every other parameter re-optimised, reaches ``sqrt(qchisq(level, 1))``.  A
  limit that is not reached before the edge of the parameter space (an SD of 0, a
  correlation of +-1) is that edge, as in lme4.

At a singular fit (``lme4::isSingular``) a parameter on the boundary (an SD of ~0, a
correlation of ~+-1) has no Wald SE or interval, and correlations have none (the
information is singular there); the profile interval still exists.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from models.reml.criterion import Criterion, fd_jacobian

VARPAR_KINDS = ("wald", "profile", "none")
#: an SD is on the boundary below this fraction of the residual SD; a correlation
#: within this of +-1
BOUNDARY_SD = 1e-4
BOUNDARY_COR = 1e-6


@dataclass(frozen=True)
class Natural:
    """The variance parameters on the broom.mixed scale and their unconstrained form.

    ``phi = (log sd_1..r, atanh cor_12.., log sigma)``; correlations in the order of
    the structure's pairs (:attr:`models.structure.Structure.pairs`; none for
    uncorrelated random effects).
    """

    sd: np.ndarray
    cor: np.ndarray
    sigma: float

    @property
    def values(self) -> np.ndarray:
        """``(sd.., cor.., sigma)`` as one vector."""
        return np.concatenate([self.sd, self.cor, [self.sigma]])


Pairs = list[tuple[int, int]]


def pairs(q: int) -> Pairs:
    """Index pairs of all correlations of q random effects, in broom.mixed's order."""
    return list(itertools.combinations(range(q), 2))


def natural_from(D: np.ndarray, sigma2: float, prs: Pairs | None = None) -> Natural:
    """The natural parameters of ``(D, sigma^2)`` (correlations clipped to [-1, 1]) for
    the correlated pairs ``prs`` (default: all)."""
    q = D.shape[0]
    sd = np.sqrt(np.maximum(np.diag(D), 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        cor = np.array([D[j, k] / (sd[j] * sd[k]) for j, k in (pairs(q) if prs is None else prs)])
    return Natural(sd, np.clip(cor, -1.0, 1.0), float(np.sqrt(sigma2)))


def _cor_matrix(values: np.ndarray, q: int, prs: Pairs) -> np.ndarray:
    R = np.eye(q)
    for (j, k), r in zip(prs, values[q:-1], strict=True):
        R[j, k] = R[k, j] = r
    return R


def _cov(values: np.ndarray, q: int, prs: Pairs) -> tuple[np.ndarray, float]:
    """``(D, sigma^2)`` from natural values ``(sd.., cor.., sigma)``."""
    sd = values[:q]
    return sd[:, None] * _cor_matrix(values, q, prs) * sd[None, :], float(values[-1] ** 2)


def to_phi(values: np.ndarray, q: int) -> np.ndarray:
    """``phi = (log sd.., atanh cor.., log sigma)`` of the natural values."""
    with np.errstate(divide="ignore"):
        return np.concatenate([np.log(values[:q]), np.arctanh(values[q:-1]), [np.log(values[-1])]])


def dvalues_dphi(values: np.ndarray, q: int) -> np.ndarray:
    """d(natural value) / d(phi), elementwise: ``sd``, ``1 - cor^2``, ``sigma``."""
    return np.concatenate([values[:q], 1.0 - values[q:-1] ** 2, [values[-1]]])


def from_phi(phi: np.ndarray, q: int) -> np.ndarray:
    """Natural values ``(sd.., cor.., sigma)`` of ``phi``: the inverse of :func:`to_phi`."""
    return np.concatenate([np.exp(phi[:q]), np.tanh(phi[q:-1]), [np.exp(phi[-1])]])


class Deviance:
    """-2 log-likelihood (restricted for REML) over the natural parameters, ``beta`` profiled."""

    def __init__(self, crit: Criterion) -> None:
        # q: the number of random effects (the SDs among the natural values)
        self.crit, self.q, self.pairs = crit, crit.r, crit.structure.pairs

    def value(self, values: np.ndarray) -> float:
        """-2 log-likelihood at the natural values ``(sd.., cor.., sigma)``."""
        D, s2 = _cov(values, self.q, self.pairs)
        return self.crit.full(self.crit.parts(D / s2), s2)

    def grad_natural(self, values: np.ndarray) -> np.ndarray:
        """Gradient in the natural parameters ``(sd.., cor.., sigma)``."""
        return self.value_grad_natural(values)[1]

    def value_grad_natural(self, values: np.ndarray) -> tuple[float, np.ndarray]:
        """Value and gradient in the natural parameters, from one evaluation."""
        crit, q = self.crit, self.q
        D, s2 = _cov(values, q, self.pairs)
        parts = crit.parts(D / s2)
        value = crit.full(parts, s2)
        GD, d_s2 = crit.grad_cov(parts, s2)
        sd = values[:q]
        out = np.empty(values.size)
        R = _cor_matrix(values, q, self.pairs)
        for j in range(q):
            # D_jk = sd_j sd_k R_jk: dD/dsd_j touches row and column j
            out[j] = 2.0 * float(GD[j] @ (R[j] * sd))
        for i, (j, k) in enumerate(self.pairs):
            out[q + i] = 2.0 * GD[j, k] * sd[j] * sd[k]
        out[-1] = 2.0 * values[-1] * d_s2
        return value, out

    def grad_phi(self, phi: np.ndarray) -> np.ndarray:
        """Gradient in the unconstrained parameters ``phi``."""
        values = from_phi(phi, self.q)
        return self.grad_natural(values) * dvalues_dphi(values, self.q)


@dataclass(frozen=True)
class Intervals:
    """SEs and interval limits of the natural parameters (NaN where none)."""

    se: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def boundary(values: np.ndarray, q: int, prs: Pairs | None = None) -> np.ndarray:
    """Which natural parameters sit on the edge of the parameter space (``prs``: the
    correlated pairs, default all)."""
    sigma = values[-1]
    at_sd = values[:q] < BOUNDARY_SD * sigma
    at_cor = np.array(
        [
            1.0 - abs(r) < BOUNDARY_COR or at_sd[j] or at_sd[k]
            for (j, k), r in zip(pairs(q) if prs is None else prs, values[q:-1], strict=True)
        ],
        dtype=bool,
    )
    return np.concatenate([at_sd, at_cor, [False]])


def wald(dev: Deviance, values: np.ndarray, level: float, singular: bool) -> Intervals:
    """Wald intervals on the log-SD / atanh-cor / log-sigma scale (module docstring)."""
    q, k = dev.q, values.size
    nan = np.full(k, np.nan)
    fixed = boundary(values, q, dev.pairs)
    if singular:
        fixed[q:-1] = True  # no correlation SE at a singular fit
    free = np.flatnonzero(~fixed)
    phi = to_phi(values, q)

    def grad_free(x: np.ndarray) -> np.ndarray:
        full = phi.copy()
        full[free] = x
        return dev.grad_phi(full)[free]

    with np.errstate(all="ignore"):
        H = fd_jacobian(grad_free, phi[free], 1e-4)
    try:
        chol = np.linalg.cholesky(H)
    except np.linalg.LinAlgError:
        return Intervals(nan, nan, nan)
    cov = 2.0 * np.linalg.inv(chol.T) @ np.linalg.inv(chol)
    se_phi = nan.copy()
    se_phi[free] = np.sqrt(np.diag(cov))
    z = float(stats.norm.ppf(0.5 + level / 2))
    lo, hi = from_phi(phi - z * se_phi, q), from_phi(phi + z * se_phi, q)
    return Intervals(se_phi * dvalues_dphi(values, q), lo, hi)


def profile(
    dev: Deviance,
    values: np.ndarray,
    level: float,
    criterion: float,
    step: np.ndarray | None = None,
) -> Intervals:
    """Profile-likelihood intervals (module docstring); SEs are NaN.

    ``criterion`` is the minimum of ``dev``; ``step`` the marching step of each
    parameter on the unconstrained (``phi``) scale (default 0.25; half a Wald SE on
    that scale is a good choice).
    """
    q, k = dev.q, values.size
    cut = float(np.sqrt(stats.chi2.ppf(level, 1)))
    lower, upper = np.full(k, np.nan), np.full(k, np.nan)
    steps = (
        np.full(k, 0.25) if step is None else np.where(np.isfinite(step) & (step > 0), step, 0.25)
    )
    for i in range(k):
        zeta = _Zeta(dev, values, i, criterion)
        lower[i] = _limit(zeta, i, q, k, values[i], -cut, float(steps[i]))
        upper[i] = _limit(zeta, i, q, k, values[i], cut, float(steps[i]))
    return Intervals(np.full(k, np.nan), lower, upper)


class _Zeta:
    """Signed root of the profiled criterion's increase, as a function of parameter i."""

    def __init__(self, dev: Deviance, values: np.ndarray, i: int, criterion: float) -> None:
        self.dev, self.values, self.i, self.criterion = dev, values, i, criterion
        self.q = dev.q
        self.rest = np.array([j for j in range(values.size) if j != i])
        # start the others from the estimate, nudged off any boundary
        inner = values.copy()
        inner[: self.q] = np.maximum(inner[: self.q], 1e-3 * values[-1])
        inner[self.q : -1] = np.clip(inner[self.q : -1], -0.999, 0.999)
        # solutions so far, by focal value: each solve starts from the nearest one
        self.solved: dict[float, np.ndarray] = {float(values[i]): to_phi(inner, self.q)[self.rest]}

    def __call__(self, v: float) -> float:
        dev, i, rest = self.dev, self.i, self.rest
        side = 1 if v >= self.values[i] else -1
        x0 = self.solved[min(self.solved, key=lambda u: abs(u - v))]

        def full(x: np.ndarray) -> np.ndarray:
            vals = from_phi(_insert(x, rest, 0.0), self.q)
            vals[i] = v
            return vals

        def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
            vals = full(x)
            jac = dvalues_dphi(vals, self.q)
            try:
                value, grad = dev.value_grad_natural(vals)
            except (np.linalg.LinAlgError, OverflowError):  # a step far out: reject it
                return float("inf"), np.zeros(rest.size)
            return value, (grad * jac)[rest]

        with np.errstate(all="ignore"):
            res = optimize.minimize(fg, x0, jac=True, method="BFGS", options={"gtol": 1e-7})
        self.solved[float(v)] = res.x
        rise = max(float(res.fun) - self.criterion, 0.0)
        return side * float(np.sqrt(rise))


def _insert(x: np.ndarray, rest: np.ndarray, value: float) -> np.ndarray:
    out = np.full(rest.size + 1, value)
    out[rest] = x
    return out


def _limit(zeta: _Zeta, i: int, q: int, k: int, est: float, target: float, step: float) -> float:
    """Where ``zeta`` reaches ``target``, marching out from the estimate.

    The march goes in steps of ``step`` on the unconstrained scale (log SD, atanh
    correlation, log sigma), each inner fit starting from the previous one (lme4
    marches likewise); the last step that crosses ``target`` is bisected (Brent).  An
    SD that reaches 0, or a correlation that reaches +-1, before the crossing gives
    that edge as the limit.
    """
    if not np.isfinite(est):
        return float("nan")
    is_sd, is_cor = i < q, q <= i < k - 1
    to_v = np.tanh if is_cor else np.exp
    edge = (-1.0 if target < 0 else 1.0) if is_cor else (0.0 if (is_sd and target < 0) else None)
    if edge is not None and abs(est - edge) < 1e-9:
        return edge
    x = float(np.arctanh(est) if is_cor else np.log(est))
    direction = 1.0 if target > 0 else -1.0
    prev = est
    # the first probe goes 2 Wald SEs out (4 steps), where the limit usually is, so
    # that Brent mostly brackets the root at once
    x += direction * 3 * step
    for _ in range(200):
        x += direction * step
        v = float(to_v(x))
        near_edge = edge is not None and abs(v - edge) < (
            1e-7 if is_cor else 1e-6 * zeta.values[-1]
        )
        if near_edge:
            assert edge is not None
            v = edge
        z = zeta(v)
        if abs(z) >= abs(target):
            lo, hi = sorted((prev, v))
            tol = 1e-8 * max(abs(est), 1e-8)
            return float(optimize.brentq(lambda u: zeta(u) - target, lo, hi, xtol=tol, rtol=1e-9))
        if near_edge:
            return float(edge)  # type: ignore[arg-type]
        prev = v
        step *= 1.25
    return float("nan")
