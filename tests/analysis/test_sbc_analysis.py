"""The SBC analysis (study/analysis/sbc.py, study/analysis/plots/sbc.py) on synthetic
``sbc.nc`` contents: the uniformity test's size and power, its agreement with the
arviz_stats band, the bookkeeping of failed, non-converged and not-run simulations,
the tables and the figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from arviz_stats.ecdf_utils import compute_ecdf, simulate_confidence_bands
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.patches import StepPatch
from scipy.stats import binom, ks_2samp

from study.analysis import sbc
from study.analysis.plots import sbc as psbc

TERMS = ["(Intercept)", "X", "sd__(Intercept)", "sd__Observation", "loglik"]
#: how each term's PIT is drawn: calibrated, shifted, too narrow, too wide, calibrated
SHAPES = {
    "(Intercept)": lambda r, n: r.random(n),
    "X": lambda r, n: r.random(n) ** 1.5,  # mean 0.4: ranks too low
    "sd__(Intercept)": lambda r, n: r.beta(0.5, 0.5, n),  # U-shaped
    "sd__Observation": lambda r, n: r.beta(2.0, 2.0, n),  # hump
    "loglik": lambda r, n: r.random(n),
}
MISCALIBRATED = ("X", "sd__(Intercept)", "sd__Observation")
N_SIM, NOT_DONE = 300, 20
#: per engine: simulations (all done) whose fit failed, and fitted ones not converged
FAILED = {"bayes": [3, 50, 51, 120, 200, 201, 279], "alt": [0, 10]}
NONCONV = {"bayes": [1, 2, 4, 60, 61, 62, 100, 150, 151, 152, 270], "alt": [5]}


def make_sbc(seed: int = 11, R: int = 100) -> xr.Dataset:
    """A synthetic ``sbc.nc``: two conditions, engines ``bayes`` (PIT shapes as in
    :data:`SHAPES`) and ``alt`` (all uniform), the last ``NOT_DONE`` simulations not run
    (filled with junk that would skew the tests if it were used)."""
    rng = np.random.default_rng(seed)
    conds, engines = ["groups=5", "groups=20"], ["bayes", "alt"]
    shape = (len(conds), N_SIM, len(engines), len(TERMS))
    pit = np.empty(shape)
    for c in range(len(conds)):
        for t, term in enumerate(TERMS):
            pit[c, :, 0, t] = SHAPES[term](rng, N_SIM)
            pit[c, :, 1, t] = rng.random(N_SIM)
    n_ranks = np.full(shape[:3], R, dtype=np.int64)
    converged = np.ones(shape[:3], dtype=bool)
    for e, engine in enumerate(engines):
        pit[:, FAILED[engine], e, :] = np.nan
        n_ranks[:, FAILED[engine], e] = 0
        converged[:, FAILED[engine] + NONCONV[engine], e] = False
    done = np.ones(shape[:2], dtype=bool)
    done[:, N_SIM - NOT_DONE :] = False
    pit[:, N_SIM - NOT_DONE :] = 0.001  # junk, must be ignored
    converged[:, N_SIM - NOT_DONE :] = False
    rank = np.where(np.isfinite(pit), np.floor(np.nan_to_num(pit) * R), -1).astype(np.int64)
    per_fit = ("condition", "simulation", "engine")
    per_term = (*per_fit, "term")
    return xr.Dataset(
        {
            "rank": (per_term, rank),
            "n_ranks": (per_fit, n_ranks),
            "pit": (per_term, pit),
            "true_value": (("condition", "simulation", "term"), rng.normal(size=(*shape[:2], 5))),
            "estimate": (per_term, rng.normal(size=shape)),
            "rhat": (per_term, np.full(shape, 1.001)),
            "ess_bulk": (per_term, np.full(shape, 800.0)),
            "converged": (per_fit, converged),
            "divergences": (per_fit, np.zeros(shape[:3])),
            "thin": (per_fit, np.full(shape[:3], 4, dtype=np.int64)),
            "message": (per_fit, np.full(shape[:3], "", dtype=object)),
            "fit_seconds": (per_fit, np.full(shape[:3], 1.5)),
            "done": (("condition", "simulation"), done),
        },
        coords={
            "condition": conds,
            "condition_id": ("condition", ["c0", "c1"]),
            "simulation": np.arange(N_SIM),
            "engine": engines,
            "term": TERMS,
        },
        attrs={"study": "synthetic-sbc", "level": 0.95},
    )


@pytest.fixture(scope="module")
def ds() -> xr.Dataset:
    return make_sbc()


@pytest.fixture(scope="module")
def summary(ds: xr.Dataset) -> xr.Dataset:
    return sbc.summarize_sbc(ds)


def _gamma_by_formula(pit: np.ndarray) -> float:
    """Saeilynoja et al. (2022), eq. for gamma, one evaluation point at a time."""
    n = len(pit)
    tails = []
    for i in range(1, n):
        k = int(np.sum(pit <= i / n))
        tails += [binom.cdf(k, n, i / n), binom.sf(k - 1, n, i / n)]
    return 2 * min(tails)


def test_gamma_statistic_follows_the_formula() -> None:
    rng = np.random.default_rng(5)
    for pit in (rng.random(37), rng.random(120) ** 2, rng.beta(0.4, 0.4, 60)):
        assert sbc.gamma_statistic(pit) == pytest.approx(_gamma_by_formula(pit), rel=1e-9)


def test_null_gammas_match_direct_simulation_and_are_cached() -> None:
    rng = np.random.default_rng(8)
    direct = [sbc.gamma_statistic(rng.random(60)) for _ in range(2000)]
    null = sbc.null_gammas(60, 2000, seed=3)
    assert ks_2samp(null, direct).pvalue > 0.01
    assert sbc.null_gammas(60, 2000, seed=3) is null
    assert not null.flags.writeable


def test_size_of_the_test_is_alpha() -> None:
    rng = np.random.default_rng(2024)
    rejected = [not sbc.uniformity_test(rng.random(500), 0.05).passes for _ in range(200)]
    se = np.sqrt(0.05 * 0.95 / 200)
    assert abs(np.mean(rejected) - 0.05) < 3 * se


@pytest.mark.parametrize(
    "draw",
    [
        lambda r: r.random(500) ** 1.3,  # shifted towards 0
        lambda r: 1 - r.random(500) ** 1.3,  # shifted towards 1
        lambda r: r.beta(0.7, 0.7, 500),  # U-shaped: posterior too narrow
        lambda r: r.beta(1.6, 1.6, 500),  # hump: posterior too wide
    ],
)
def test_miscalibrated_pit_is_flagged(draw) -> None:
    test = sbc.uniformity_test(draw(np.random.default_rng(1)), 0.05)
    assert not test.passes
    assert test.p_value < 0.001
    assert test.statistic < test.critical


def test_direction_hints() -> None:
    rng = np.random.default_rng(4)
    assert "ranks too low" in sbc.direction_hint(rng.random(500) ** 1.5)
    assert "ranks too high" in sbc.direction_hint(1 - rng.random(500) ** 1.5)
    assert "too narrow" in sbc.direction_hint(rng.beta(0.5, 0.5, 500))
    assert "too wide" in sbc.direction_hint(rng.beta(2, 2, 500))


def test_nan_dropped_and_too_few_values_refused() -> None:
    pit = np.r_[np.random.default_rng(0).random(50), [np.nan] * 5]
    assert sbc.uniformity_test(pit).n == 50
    with pytest.raises(ValueError, match="at least 10 finite PIT values, got 9"):
        sbc.uniformity_test(np.r_[np.linspace(0.05, 0.95, 9), np.nan])


def test_band_contains_uniform_ecdf_and_agrees_with_the_test() -> None:
    n, alpha = 200, 0.05
    z, lower, upper = sbc.ecdf_band(n, 1 - alpha)
    assert z[0] == 0 and z[-1] == 1 and len(z) == n + 1
    assert np.all(lower <= z) and np.all(z <= upper) and np.all(upper[1:-1] > lower[1:-1])
    ecdf = compute_ecdf(np.random.default_rng(7).random(n), z)
    assert np.all((lower <= ecdf) & (ecdf <= upper))
    rng, outcomes = np.random.default_rng(9), []
    for _ in range(300):  # a mixture of uniform and mildly skewed samples
        pit = rng.random(n) ** (1 + 0.3 * rng.random())
        ecdf = compute_ecdf(pit, z)
        inside = bool(np.all((lower <= ecdf) & (ecdf <= upper)))
        outcomes.append((inside, sbc.uniformity_test(pit, alpha).passes))
    assert 30 < sum(not p for _, p in outcomes) < 270  # both outcomes occur
    assert sum(i != p for i, p in outcomes) <= 3


def test_critical_gamma_agrees_with_arviz_stats() -> None:
    n, alpha, sims = 100, 0.05, 4000
    z = np.arange(1, n) / n
    pointwise = simulate_confidence_bands(n, 1, z, 1 - alpha, sims, np.random.default_rng(1))
    critical = 1 - pointwise  # arviz_stats simulates 1 - gamma
    null = sbc.null_gammas(n)
    se = np.sqrt(alpha * (1 - alpha) / sims) + np.sqrt(alpha * (1 - alpha) / null.size)
    assert np.mean(null < critical) - 3 * se <= alpha <= np.mean(null <= critical) + 3 * se
    assert sbc.uniformity_test(np.random.default_rng(0).random(n), alpha).critical == (
        pytest.approx(critical, rel=0.35)
    )


def test_summary_counts(ds: xr.Dataset, summary: xr.Dataset) -> None:
    assert dict(summary.sizes) == {"condition": 2, "engine": 2, "term": 5}
    n_done = N_SIM - NOT_DONE
    for engine in ("bayes", "alt"):
        s = summary.sel(engine=engine)
        assert (s["n_failed"] == len(FAILED[engine])).all()
        assert (s["n"] == n_done - len(FAILED[engine])).all()
        assert (s["n_nonconverged"] == len(NONCONV[engine])).all()
    assert summary.attrs["alpha"] == 0.05
    # Bonferroni over every test: 5 terms x 2 conditions x 2 engines
    assert summary.attrs["alpha_term"] == pytest.approx(0.05 / 20)
    assert list(summary["condition_id"].values) == ["c0", "c1"]


def test_summary_verdicts(summary: xr.Dataset) -> None:
    bayes = summary.sel(engine="bayes")
    for term in ("(Intercept)", "loglik"):
        assert bayes["passes"].sel(term=term).all()
    for term in MISCALIBRATED:
        assert not bayes["passes"].sel(term=term).any()
        assert (bayes["p_value"].sel(term=term) <= 0.0025).all()
    assert summary.sel(engine="alt")["passes"].all()
    v = bayes["verdict"].sel(condition="groups=5")
    assert v.sel(term="(Intercept)").item().startswith("passes: PIT uniform within the 99.8% ")
    assert "11 not converged" in v.sel(term="(Intercept)").item()
    assert v.sel(term="X").item().startswith("FLAGGED: PIT-ECDF leaves the 99.8% ")
    assert "posterior sits above the true values" in v.sel(term="X").item()
    assert "too narrow" in v.sel(term="sd__(Intercept)").item()
    assert "too wide" in v.sel(term="sd__Observation").item()


def test_not_done_simulations_are_excluded(ds: xr.Dataset, summary: xr.Dataset) -> None:
    ran = sbc.summarize_sbc(ds.isel(simulation=slice(0, N_SIM - NOT_DONE)))
    xr.testing.assert_identical(ran, summary)


def test_term_without_fits_is_not_tested(ds: xr.Dataset) -> None:
    broken = ds.copy(deep=True)
    broken["pit"].loc[{"engine": "alt", "term": "X"}] = np.nan
    s = sbc.summarize_sbc(broken).sel(engine="alt", term="X")
    assert (s["n"] == 0).all() and (s["n_failed"] == N_SIM - NOT_DONE).all()
    assert not s["passes"].any() and np.isnan(s["p_value"]).all()
    assert (s["verdict"] == "not tested: no fits").all()


def test_tables(summary: xr.Dataset) -> None:
    text = sbc.sbc_table(summary)
    assert "20 tests (5 terms x 2 conditions x 2 engines)" in text
    assert "0.0025 per term, i.e. a 99.8% simultaneous band" in text
    rows = [line for line in text.splitlines() if line.startswith("groups=")]
    assert len(rows) == 2 * 2 * 5
    assert sum("FLAGGED" in r for r in rows) == 6 and sum("passes" in r for r in rows) == 14
    md = sbc.sbc_markdown(summary)
    assert md.startswith("### Simulation-based calibration")
    assert sum(line.startswith("| groups=") for line in md.splitlines()) == 20
    assert "ranks too low: the posterior sits above the true values" in md


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_rank_histograms(ds: xr.Dataset, tmp_path: Path) -> None:
    fig = psbc.rank_histograms(ds, engine="bayes", condition="groups=5")
    assert isinstance(fig, Figure) and len(fig.axes) == len(TERMS)
    n = N_SIM - NOT_DONE - len(FAILED["bayes"])
    for ax, term in zip(fig.axes, TERMS, strict=True):
        assert ax.get_title().splitlines()[0] == term
        (bars,) = [p for p in ax.patches if isinstance(p, StepPatch)]
        values = bars.get_data()[0]
        assert values.sum() == n and len(values) == 20
        flagged = term in MISCALIBRATED
        assert ("FLAGGED" in ax.get_title()) == flagged
        assert (to_hex(bars.get_facecolor()) == psbc.WARN) == flagged
    fig.savefig(tmp_path / "hist.png")


def test_ecdf_difference(ds: xr.Dataset) -> None:
    fig = psbc.ecdf_difference(ds, engine="bayes", condition="groups=20")
    assert isinstance(fig, Figure) and len(fig.axes) == len(TERMS)
    for ax, term in zip(fig.axes, TERMS, strict=True):
        (line,) = ax.get_lines()[1:]  # after the zero line
        assert (to_hex(line.get_color()) == psbc.WARN) == (term in MISCALIBRATED)
        assert len(ax.collections) == 1  # the band


def test_plots_mark_a_term_without_fits(ds: xr.Dataset) -> None:
    broken = ds.copy(deep=True)
    broken["pit"].loc[{"engine": "alt", "term": "sd__Observation"}] = np.nan
    for plot in (psbc.rank_histograms, psbc.ecdf_difference):
        fig = plot(broken, engine="alt", condition="groups=5")
        assert len(fig.axes) == len(TERMS)
        assert _texts(fig) == ["no fits"]
    with pytest.raises(ValueError, match="engine 'nope'"):
        psbc.rank_histograms(ds, engine="nope", condition="groups=5")
