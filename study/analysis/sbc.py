"""Simulation-based calibration (SBC): is each posterior calibrated, term by term?

Under a correctly implemented model and sampler, the rank of the true value among the
posterior draws is uniform (Talts et al. 2018), hence so is the randomized PIT
``(rank + u) / R`` stored in a run's ``sbc.nc``.  Uniformity of the PIT is tested with
the ECDF statistic of Saeilynoja, Buerkner & Vehtari (2022), whose null distribution is
simulated: a term is flagged when its PIT-ECDF leaves the simultaneous band, i.e. when
the Monte Carlo p-value is at most the per-test level ``alpha / (terms x conditions x
engines)`` (Bonferroni over every test of the run: a calibrated engine passes every
term of every condition with probability at least ``1 - alpha``).  Test quantities
such as ``loglik`` (Modrak et al. 2023) are terms like the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import xarray as xr
from arviz_stats.ecdf_utils import compute_ecdf, get_pointwise_confidence_band
from scipy.special import bdtr, bdtrc

from study.analysis.tables import render

#: fewer PIT values than this are not tested
MIN_N = 10
#: simulated null statistics per sample size
N_SIMULATIONS = 10_000
SEED = 20220131
METHOD = "PIT-ECDF uniformity test, Saeilynoja et al. (2022)"
_CHUNK = 1_000  # null samples simulated at once


@dataclass(frozen=True)
class UniformityTest:
    """A uniformity test: gamma (``statistic``, small = non-uniform), its Monte Carlo
    p-value, the ``alpha``-quantile of its null (``critical``); ``p_value > alpha``."""

    n: int
    statistic: float
    p_value: float
    critical: float
    passes: bool
    alpha: float


def gamma_statistic(pit: np.ndarray) -> float:
    """The PIT-ECDF uniformity statistic of Saeilynoja et al. (2022).

    With N values, ``z_i = i / N`` and ``K_i = N ECDF(z_i)`` (i = 1..N-1),
    ``gamma = 2 min_i min(P(Bin(N, z_i) <= K_i), P(Bin(N, z_i) >= K_i))``.  This is
    ``1 -`` the quantity whose quantile arviz_stats' ``simulate_confidence_bands``
    takes to size the simultaneous band of ``plot_ecdf_pit``; arviz_stats returns
    only that band, not a p-value, hence this function.  The upper tail is computed
    as ``bdtrc(K_i - 1, N, z_i)``, equal to ``1 - bdtr(K_i - 1, N, z_i)`` but exact
    far in the tail.

    Parameters
    ----------
    pit : numpy.ndarray
        PIT values in [0, 1] (no NaN).

    Returns
    -------
    float
        gamma, in (0, ~1]; small means the ECDF is far from uniform somewhere.
    """
    pit = np.asarray(pit, dtype=float)
    n = len(pit)
    z = np.arange(1, n) / n
    k = np.rint(compute_ecdf(pit, z) * n).astype(np.int64)  # arviz_stats' ECDF, as counts
    return float(2 * np.minimum(bdtr(k, n, z), bdtrc(k - 1, n, z)).min())


@lru_cache(maxsize=64)
def null_gammas(n: int, n_simulations: int = N_SIMULATIONS, seed: int = SEED) -> np.ndarray:
    """gamma of ``n_simulations`` samples of ``n`` iid U(0, 1) values (cached, read-only).

    The tail probabilities are looked up in a table over the counts within 10
    binomial SDs of ``n z_i`` (wider counts have probability below 1e-20 and are
    clipped to the window), so 10,000 x 500 takes well under a second.

    Parameters
    ----------
    n : int
        Sample size (at least 2).
    n_simulations : int
        Number of simulated null samples.
    seed : int
        Seed of the uniform draws.

    Returns
    -------
    numpy.ndarray
        The ``n_simulations`` null statistics, sorted.
    """
    rng = np.random.default_rng([seed, n])
    z = np.arange(1, n) / n
    half = math.ceil(5 * math.sqrt(n)) + 2  # 10 SDs of Bin(n, 1/2)
    start = np.clip(np.floor(n * z).astype(np.int64) - half, 0, None)[:, None]
    k = np.minimum(start + np.arange(2 * half + 1), n)  # (n - 1, window)
    table = np.minimum(bdtr(k, n, z[:, None]), bdtrc(k - 1, n, z[:, None]))
    rows, out = np.arange(n - 1), []
    for size in np.diff(np.r_[0:n_simulations:_CHUNK, n_simulations]):
        cell = np.minimum((rng.random((size, n)) * n).astype(np.int64), n - 1)
        flat = (cell + n * np.arange(size)[:, None]).ravel()
        counts = np.bincount(flat, minlength=size * n).reshape(size, n).cumsum(axis=1)
        idx = np.clip(counts[:, :-1] - start.T, 0, 2 * half)
        out.append(2 * table[rows, idx].min(axis=1))
    gammas = np.sort(np.concatenate(out))
    gammas.flags.writeable = False
    return gammas


def uniformity_test(
    pit: np.ndarray, alpha: float = 0.05, *, n_simulations: int = N_SIMULATIONS, seed: int = SEED
) -> UniformityTest:
    """Test the PIT values for uniformity (Saeilynoja et al. 2022), NaN dropped.

    ``p_value = (1 + #{null gamma <= gamma}) / (1 + n_simulations)``; the test passes
    when ``p_value > alpha``, i.e. (up to Monte Carlo error) when the PIT-ECDF stays
    inside the simultaneous ``1 - alpha`` band of :func:`ecdf_band`.

    Raises
    ------
    ValueError
        With fewer than 10 finite PIT values.
    """
    pit = np.asarray(pit, dtype=float).ravel()
    pit = pit[np.isfinite(pit)]
    if len(pit) < MIN_N:
        raise ValueError(
            f"uniformity_test needs at least {MIN_N} finite PIT values, got {len(pit)}"
        )
    null, g = null_gammas(len(pit), n_simulations, seed), gamma_statistic(pit)
    p = (1 + np.searchsorted(null, g, side="right")) / (1 + n_simulations)
    critical = float(np.quantile(null, alpha))
    return UniformityTest(len(pit), g, float(p), critical, bool(p > alpha), alpha)


def ecdf_band(
    n: int, prob: float, seed: int = SEED, n_simulations: int = N_SIMULATIONS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The simultaneous ``prob`` band of the PIT-ECDF of ``n`` values.

    arviz_stats' ``get_pointwise_confidence_band`` at the pointwise level
    ``1 - critical`` (what ``ecdf_pit`` does after ``simulate_confidence_bands``),
    with ``critical`` taken from the same :func:`null_gammas` as the p-values, so
    that leaving the band and failing :func:`uniformity_test` agree.

    Returns
    -------
    tuple of numpy.ndarray
        Evaluation points ``0, 1/n, ..., 1`` and the band's lower and upper ECDF values.
    """
    critical = float(np.quantile(null_gammas(n, n_simulations, seed), 1 - prob))
    z = np.arange(1, n) / n
    lower, upper = get_pointwise_confidence_band(1 - critical, n, z)
    z, lower, upper = (np.concatenate([[0.0], b, [1.0]]) for b in (z, lower, upper))
    return z, lower, upper


def direction_hint(pit: np.ndarray) -> str:
    """What a non-uniform PIT suggests: a shift (mean PIT) or a wrong width (spread).

    Whichever departs more, in SEs under uniformity: the mean from 1/2 (SD of a
    uniform: sqrt(1/12)) or the variance from 1/12 (SE about sqrt(1/180 / n)).  The
    variance is taken about the PIT's own mean, so that a pure shift (every rank at
    one end) reads as a shift, not as a wrong width.
    """
    pit = np.asarray(pit, dtype=float)
    pit, n = pit[np.isfinite(pit)], int(np.isfinite(pit).sum())
    z_mean = (pit.mean() - 0.5) * math.sqrt(12 * n) if n else 0.0
    z_spread = (pit.var() - 1 / 12) * math.sqrt(180 * n) if n else 0.0
    if max(abs(z_mean), abs(z_spread)) < 2:
        return "no clear shift or width error (see the ECDF plot)"
    if abs(z_mean) >= abs(z_spread):
        if z_mean > 0:
            return "ranks too high: the posterior sits below the true values"
        return "ranks too low: the posterior sits above the true values"
    if z_spread > 0:
        return "too many ranks at both ends: the posterior is too narrow (overconfident)"
    return "too few ranks at both ends: the posterior is too wide (underconfident)"


def format_p(p: float, n_simulations: int = N_SIMULATIONS) -> str:
    """``p = 0.52``; ``p < 0.0001`` when no null statistic was as small."""
    if p <= 1.5 / (n_simulations + 1):
        return f"p < {1 / n_simulations:.2g}"
    return f"p = {p:.2g}"


def verdict(test: UniformityTest, hint: str = "", n_nonconverged: int = 0) -> str:
    """One line: passes or FLAGGED, the band, gamma, p, n (and the non-converged fits)."""
    band = f"{100 * (1 - test.alpha):.3g}% simultaneous band"
    nc = f", {n_nonconverged} not converged" if n_nonconverged else ""
    numbers = f"(gamma = {test.statistic:.2g}, {format_p(test.p_value)}, n = {test.n}{nc})"
    if test.passes:
        return f"passes: PIT uniform within the {band} {numbers}"
    return f"FLAGGED: PIT-ECDF leaves the {band} {numbers}" + (f"; {hint}" if hint else "")


def n_tests(ds: xr.Dataset) -> int:
    """The uniformity tests of a run: one per term, condition and engine."""
    return max(math.prod(ds.sizes.get(d, 1) for d in ("term", "condition", "engine")), 1)


def term_alpha(ds: xr.Dataset, alpha: float = 0.05) -> float:
    """The per-test level: ``alpha`` Bonferroni-adjusted over every test of ``ds``."""
    return alpha / n_tests(ds)


def summarize_sbc(ds: xr.Dataset, alpha: float = 0.05) -> xr.Dataset:
    """Test the PIT of every condition, engine and term of an ``sbc.nc`` Dataset.

    Simulations not done are excluded; those done whose fit failed (no PIT) are
    counted in ``n_failed``; non-converged fits are tested like the others and
    counted in ``n_nonconverged``.

    Returns
    -------
    xarray.Dataset
        Over ``(condition, engine, term)``: ``n``, ``n_failed``, ``n_nonconverged``,
        ``statistic`` (gamma), ``p_value``, ``critical``, ``passes``, ``mean_pit``,
        ``hint`` and ``verdict``; attrs ``alpha``, ``alpha_term``, ``n_terms``.
    """
    a_term = term_alpha(ds, alpha)
    done = ds["done"].astype(bool)
    pit = ds["pit"].where(done).transpose("condition", "engine", "term", "simulation")
    ok = np.isfinite(pit.values)
    conv = ds["converged"].astype(bool).transpose("condition", "engine", "simulation").values
    n_nc = (ok & ~conv[:, :, None, :]).sum(axis=-1)
    shape, names = pit.shape[:3], ("statistic", "p_value", "critical", "mean_pit")
    num = np.full((len(names), *shape), np.nan)
    passes, text = np.zeros(shape, bool), np.full((2, *shape), "", dtype=object)
    for idx in np.ndindex(shape):
        values = pit.values[idx][ok[idx]]
        if (n := len(values)) < MIN_N:
            text[(1, *idx)] = f"not tested: only {n} PIT values" if n else "not tested: no fits"
            continue
        test = uniformity_test(values, a_term)
        num[(slice(None), *idx)] = test.statistic, test.p_value, test.critical, values.mean()
        passes[idx] = test.passes
        hint = "" if test.passes else direction_hint(values)
        text[(slice(None), *idx)] = hint, verdict(test, hint, int(n_nc[idx]))
    dims = ("condition", "engine", "term")
    out = xr.Dataset(
        {
            "n": (dims, ok.sum(axis=-1)),
            "n_failed": (dims, (done.sum("simulation").values[:, None, None] - ok.sum(-1))),
            "n_nonconverged": (dims, n_nc),
            **{k: (dims, v) for k, v in zip(names, num, strict=True)},
            "passes": (dims, passes),
            "hint": (dims, text[0].astype(str)),
            "verdict": (dims, text[1].astype(str)),
        },
        coords={d: pit[d] for d in dims},
    )
    if "condition_id" in ds.coords:
        out = out.assign_coords(condition_id=ds["condition_id"])
    out.attrs.update(alpha=alpha, alpha_term=a_term, n_terms=n_tests(ds), method=METHOD)
    out.attrs["study"] = ds.attrs.get("study", "?")
    for key in ("prior_from", "generator_prior_scale", "root_seed"):
        if key in ds.attrs:
            out.attrs[key] = ds.attrs[key]
    return out


def sbc_frame(summary: xr.Dataset) -> pd.DataFrame:
    """One row per condition, engine and term, numbers formatted for reading."""
    cols = ["n", "n_nonconverged", "n_failed", "statistic", "p_value", "verdict", "hint"]
    f = summary[cols].to_dataframe().reset_index()
    f["verdict"] = f["verdict"].str.split(":").str[0]
    f["suggests"] = f["hint"]
    f["gamma"] = f["statistic"].map(lambda g: "NA" if math.isnan(g) else f"{g:.2g}")
    f["p"] = f["p_value"].map(lambda p: "NA" if math.isnan(p) else format_p(p)[2:].lstrip("= "))
    keep = ["condition", "engine", "term", *cols[:3], "gamma", "p", "verdict", "suggests"]
    return f[keep].astype({c: str for c in keep[:3]})


def _head(summary: xr.Dataset) -> str:
    a, at = summary.attrs["alpha"], summary.attrs["alpha_term"]
    return (
        f"SBC of study {summary.attrs.get('study', '?')}: {summary.attrs['method']}; "
        f"alpha = {a:g} over {_tests(summary)} (Bonferroni), {at:.2g} per "
        f"term, i.e. a {100 * (1 - at):.3g}% simultaneous band. Parameters drawn from the "
        f"priors of {summary.attrs.get('prior_from', '?')}"
        + _scaled(float(summary.attrs.get("generator_prior_scale", 1.0)))
        + f", root seed {summary.attrs.get('root_seed', '?')}"
    )


def _tests(summary: xr.Dataset) -> str:
    sizes = [summary.sizes.get(d, 1) for d in ("term", "condition", "engine")]
    if sizes[1:] == [1, 1]:
        return f"{sizes[0]} terms"
    return (
        f"{math.prod(sizes)} tests ({sizes[0]} terms x {sizes[1]} conditions x {sizes[2]} engines)"
    )


def _scaled(scale: float) -> str:
    if scale == 1.0:
        return " (as the model's)"
    return f" with every scale x {scale:g} (NOT the model's: a deliberate error)"


_FOOT = (
    "gamma: smallest two-sided binomial tail probability of the PIT-ECDF (small = not uniform); "
    "p: Monte Carlo p-value; n: fits tested, non-converged included; n_failed: fits without draws"
)


def sbc_table(summary: xr.Dataset) -> str:
    """The SBC summary as an aligned text table with a header and a footnote."""
    return "\n\n".join([_head(summary), render(sbc_frame(summary), keep=3), _FOOT])


def sbc_markdown(summary: xr.Dataset) -> str:
    """The SBC summary as markdown (for a ``summary.md``)."""
    table = render(sbc_frame(summary), "markdown")
    return "\n\n".join(["### Simulation-based calibration", _head(summary), table, _FOOT])
