"""Performance measures: hand-computed values, MCSEs against simulated studies, NaNs,
properties, and the xarray layer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import xarray as xr
from helpers import DATA
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from study.analysis import mcse as m
from study.analysis import measure_records as measures_mod
from study.analysis.measures import MEASURES, compute_measures

EST = np.array([1.0, 2.0, 3.0, 4.0])
SE = np.array([1.0, 1.0, 2.0, 2.0])


def test_hand_computed_values():
    v, s = m.bias(EST, 2.0)
    assert v == pytest.approx(0.5) and s == pytest.approx(np.sqrt(5 / 12))
    v, s = m.empirical_se(EST)
    assert v == pytest.approx(np.sqrt(5 / 3)) and s == pytest.approx(np.sqrt(5 / 3) / np.sqrt(6))
    v, s = m.mse(EST, 2.0)  # squared errors 1, 0, 1, 4
    assert v == pytest.approx(1.5) and s == pytest.approx(np.sqrt(9 / 12))
    v, s = m.model_se(SE)  # se^2 = 1, 1, 4, 4: mean 2.5, var 3
    assert v == pytest.approx(np.sqrt(2.5)) and s == pytest.approx(np.sqrt(3 / (4 * 4 * 2.5)))
    v, s = m.relative_error_model_se(EST, SE)
    ratio = np.sqrt(2.5) / np.sqrt(5 / 3)
    assert v == pytest.approx(100 * (ratio - 1))
    assert s == pytest.approx(100 * ratio * np.sqrt(3 / (4 * 4 * 2.5**2) + 1 / 6))
    v, s = m.relative_bias(EST, 2.0)
    assert v == pytest.approx(0.25) and s == pytest.approx(np.sqrt(5 / 12) / 2)
    assert np.isnan(m.relative_bias(EST, 0.0)[0])


def test_coverage_and_rejection_by_hand():
    lo = np.array([0.0, 1.5, -1.0, 2.1])
    hi = np.array([1.0, 2.5, 3.0, 3.0])
    c, s = m.coverage(lo, hi, 2.0)  # covers: no, yes, yes, no
    assert c == 0.5 and s == pytest.approx(np.sqrt(0.25 / 4))
    r, _ = m.rejection(lo, hi, 0.0)  # excludes 0: no (0 in [0,1]), yes, no, yes
    assert r == 0.5
    bec, _ = m.bias_eliminated_coverage(np.array([1, 2, 3, 2.0]), lo, hi)  # mean 2
    assert bec == 0.5
    w, _ = m.interval_width(lo, hi)
    assert w == pytest.approx(np.mean(hi - lo))


def test_relative_precision_by_hand():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    b = 2 * a  # perfectly correlated, EmpSE twice as large
    v, s, rho = m.relative_precision(b, a)
    assert v == pytest.approx(100 * (0.25 - 1)) and rho == pytest.approx(1.0)
    assert s == pytest.approx(0.0, abs=1e-6)


def test_nan_handling():
    est = np.array([1.0, np.nan, 3.0, 4.0, 2.0])
    se = np.array([1.0, 1.0, np.nan, 2.0, 1.0])
    assert m.count(est) == 4
    np.testing.assert_allclose(m.bias(est, 2.0)[0], np.nanmean(est) - 2)
    # relative error in model SE uses replicates with both estimate and SE
    both = np.isfinite(est) & np.isfinite(se)
    np.testing.assert_allclose(
        m.relative_error_model_se(est, se)[0], m.relative_error_model_se(est[both], se[both])[0]
    )
    assert np.isnan(m.bias(np.full(3, np.nan), 0.0)[0])
    assert np.isnan(m.coverage(np.full(3, np.nan), np.full(3, np.nan), 0.0)[0])


def test_axis_argument():
    x = np.arange(12.0).reshape(3, 4)
    np.testing.assert_allclose(m.bias(x, 0.0, axis=0)[0], x.mean(0))
    np.testing.assert_allclose(
        m.bias(x, np.array([0.0, 1.0, 2.0]), axis=1)[0], x.mean(1) - [0, 1, 2]
    )


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, st.integers(1, 30), elements=st.floats(-1e6, 1e6) | st.just(np.nan)),
    st.floats(0.01, 1e3),
    st.floats(-1e6, 1e6),
)
def test_properties_for_arbitrary_inputs(x, half, theta):
    lo, hi = x - half, x + half
    c, cs = m.coverage(lo, hi, theta)
    n = m.count(x)
    assert 0 <= n <= x.size
    if n == 0:
        assert np.isnan(c)
    else:
        assert 0.0 <= c <= 1.0 and 0.0 <= cs <= 0.5
    for func, args in [(m.bias, (x, theta)), (m.empirical_se, (x,)), (m.mse, (x, theta))]:
        _, s = func(*args)
        assert np.isnan(s) or s >= 0


def _fake_results(rng: np.random.Generator, R: int = 300) -> xr.Dataset:
    terms = ["(Intercept)", "X", "sd__(Intercept)"]
    est = rng.normal(0, 1, (R, 2, 3)) + np.array([1.0, 2.0, 0.5])
    se = np.abs(rng.normal(1, 0.1, (R, 2, 3)))
    conv = np.ones((R, 2), bool)
    conv[:5, 1] = False
    return xr.Dataset(
        {
            "estimate": (("replicate", "engine", "term"), est),
            "std_error": (("replicate", "engine", "term"), se),
            "ci_lower": (("replicate", "engine", "term"), est - 1.96 * se),
            "ci_upper": (("replicate", "engine", "term"), est + 1.96 * se),
            "converged": (("replicate", "engine"), conv),
        },
        coords={
            "replicate": np.arange(R),
            "engine": ["reml", "bayes"],
            "term": terms,
            "effect": ("term", ["fixed", "fixed", "ran_pars"]),
            "true_value": ("term", [1.0, 2.0, 0.5]),
            "true_se": ("term", [1.0, 1.0, np.nan]),
            "cond_value": ("term", [np.nan] * 3),
            "cond_se": ("term", [np.nan] * 3),
        },
    )


def test_xarray_layer_matches_numpy_layer():
    ds = _fake_results(np.random.default_rng(1))
    s = compute_measures(ds)
    assert s["value"].dims == ("measure", "engine", "term")
    for e in range(2):
        for t in range(3):
            x = ds.estimate.values[:, e, t]
            theta = ds.true_value.values[t]
            v, se = m.bias(x, theta)
            assert s.value.sel(measure="bias").values[e, t] == pytest.approx(v)
            assert s.mcse.sel(measure="bias").values[e, t] == pytest.approx(se)
            cov = m.coverage(ds.ci_lower.values[:, e, t], ds.ci_upper.values[:, e, t], theta)[0]
            assert s.value.sel(measure="coverage").values[e, t] == pytest.approx(cov)
    # relative precision is against reml; NaN for reml itself
    rp = s.value.sel(measure="relative_precision")
    assert np.isnan(rp.sel(engine="reml")).all() and np.isfinite(rp.sel(engine="bayes")).all()
    # rejection only for fixed effects; variance scale only for sd__ terms
    assert np.isnan(s.value.sel(measure="rejection", term="sd__(Intercept)")).all()
    assert np.isnan(s.value.sel(measure="bias_variance_scale", term="X")).all()
    assert int(s.nonconverged.sel(engine="bayes")) == 5
    excl = compute_measures(ds, exclude_nonconverged=True)
    assert excl.value.sel(measure="n", engine="bayes").values[0] == 295
    assert s.value.sel(measure="n", engine="bayes").values[0] == 300


def test_unknown_measure_is_refused():
    with pytest.raises(ValueError, match="unknown measure"):
        compute_measures(_fake_results(np.random.default_rng(2)), measures=["biass"])


def test_unknown_reference_is_refused_only_when_needed():
    ds = _fake_results(np.random.default_rng(3))
    for name in ("relative_precision", "correlation_with_reference"):
        with pytest.raises(ValueError, match=r"reference engine 'ols'.*'reml', 'bayes'"):
            compute_measures(ds, reference="ols", measures=["bias", name])
    # no reference-dependent measure asked for: no complaint
    s = compute_measures(ds, reference="ols", measures=["bias", "coverage"])
    assert list(s.measure.values) == ["bias", "coverage"]
    # the default (all measures) does not ask for them explicitly: a run without the
    # reference engine (e.g. bayes only) still summarizes, with NaN relative precision
    s = compute_measures(ds.sel(engine=["bayes"]))
    assert np.isnan(s.value.sel(measure=["relative_precision", "correlation_with_reference"])).all()


def test_one_record_per_measure_and_the_views_derive_from_it():
    reg = measures_mod.REGISTRY
    assert list(MEASURES) == list(reg) and all(MEASURES[k] == r.description for k, r in reg.items())
    assert all(name == record.name for name, record in reg.items())
    for record in reg.values():  # a measure computed by name calls an mcse function
        assert not record.numpy or callable(getattr(m, record.numpy))
        assert record.uses and set(record.uses) <= set(measures_mod.INPUTS)
    assert [r.name for r in reg.values() if r.needs_reference] == [
        "relative_precision",
        "correlation_with_reference",
    ]


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"numpy": "biass", "args": ("est",)}, ValueError, r"numpy='biass' is not a function"),
        ({"numpy": "bias", "args": ("est", "truth")}, ValueError, r"args=.*'truth'"),
        ({}, ValueError, "give numpy= .* or compute=, exactly one"),
        ({"numpy": "bias", "args": ("est",), "unit": "pct"}, ValueError, r"unit='pct'"),
        ({"numpy": "bias", "args": ("est",), "reference": 1}, TypeError, r"reference=1; give"),
    ],
)
def test_a_bad_measure_record_is_refused_naming_the_field(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        measures_mod.Measure("x", "a measure", **kwargs)


def _spy_on_mcse(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Wrap every public function of :mod:`study.analysis.mcse`; return the call log."""
    calls: list[str] = []
    for name in dir(m):
        func = getattr(m, name)
        if (
            name.startswith("_")
            or not callable(func)
            or getattr(func, "__module__", "") != m.__name__
        ):
            continue

        def spy(*args: Any, _name: str = name, _func: Any = func, **kwargs: Any) -> Any:
            calls.append(_name)
            return _func(*args, **kwargs)

        monkeypatch.setattr(m, name, spy)
    return calls


def test_only_the_requested_measures_are_computed(monkeypatch: pytest.MonkeyPatch):
    ds = _fake_results(np.random.default_rng(4))
    calls = _spy_on_mcse(monkeypatch)
    s = compute_measures(ds, measures=["bias"])
    assert list(s.measure.values) == ["bias"]
    assert set(calls) == {"bias", "mean_estimate"}  # bias calls mean_estimate inside
    calls.clear()
    compute_measures(ds, measures=["rmse", "coverage"])
    assert set(calls) == {"rmse", "mse", "coverage"}
    # shared pieces are computed once, however many measures use them
    calls.clear()
    compute_measures(ds, measures=["model_se", "modse_truese", "empse_truese", "empirical_se"])
    assert sorted(calls) == ["empirical_se", "model_se"]
    calls.clear()
    compute_measures(ds, measures=["relative_precision", "correlation_with_reference"])
    assert calls.count("relative_precision") == 1
    assert "model_se" not in calls


def _golden_results(cond: str = "present") -> xr.Dataset:
    """Fixed-seed results: NaNs, non-converged fits, a zero truth, fixed and ran_pars
    terms, three engines, and conditional truth present / all NaN / absent."""
    rng = np.random.default_rng(20240611)
    R, engines = 40, ["reml", "bayes", "ml"]
    terms = ["(Intercept)", "X", "Z", "sd__(Intercept)", "sigma"]
    truth = np.array([1.0, 0.0, -0.5, 0.8, 0.6])
    est = truth + rng.normal(0, [[1.0], [1.2], [0.9]], (R, 3, 5))
    se = np.abs(rng.normal(1, 0.2, (R, 3, 5)))
    lo, hi = est - 1.96 * se, est + 1.96 * se
    for a in (est, se, lo, hi):
        a[rng.random(a.shape) < 0.05] = np.nan
    est[:, 2, 2] = np.nan  # a term one engine never estimates
    conv = rng.random((R, 3)) > 0.1
    coords: dict[str, Any] = {
        "replicate": np.arange(R),
        "engine": engines,
        "term": terms,
        "effect": ("term", ["fixed"] * 3 + ["ran_pars"] * 2),
        "true_value": ("term", truth),
        "true_se": ("term", [0.9, 1.1, 1.0, np.nan, np.nan]),
    }
    if cond != "absent":
        present = cond == "present"
        coords["cond_value"] = ("term", [1.1, 0.1, np.nan, 0.7, 0.65] if present else [np.nan] * 5)
        coords["cond_se"] = ("term", [0.8, 1.0, np.nan, 0.2, 0.1] if present else [np.nan] * 5)
    dims = ("replicate", "engine", "term")
    return xr.Dataset(
        {
            "estimate": (dims, est),
            "std_error": (dims, se),
            "ci_lower": (dims, lo),
            "ci_upper": (dims, hi),
            "converged": (("replicate", "engine"), conv),
        },
        coords=coords,
        attrs={"level": 0.95, "study": "golden", "config_hash": "abc"},
    )


GOLDEN = DATA / "measures_golden.nc"


@pytest.mark.parametrize("cond", ["present", "nan", "absent"])
@pytest.mark.parametrize("reference", ["reml", "bayes"])
@pytest.mark.parametrize("exclude", [False, True])
def test_identical_to_the_if_elif_implementation(cond: str, reference: str, exclude: bool):
    """The dispatch table reproduces, to the bit, what the if/elif chain it replaced
    computed on the same results (tests/data/measures_golden.nc, see its README)."""
    ds = _golden_results(cond)
    kw: dict[str, Any] = {"reference": reference, "exclude_nonconverged": exclude}
    new = compute_measures(ds, **kw)
    with xr.open_dataset(GOLDEN, engine="h5netcdf") as golden:
        old = golden.sel(case=f"{cond}-{reference}-{int(exclude)}", drop=True).load()
    for var in ("value", "mcse", "nonconverged"):
        np.testing.assert_array_equal(new[var].values, old[var].values)
    assert list(new.measure.values) == list(old.measure.values)
    # subsets in the caller's order, duplicates collapsed, equal to the full computation
    sub = ["rmse", "n", "bias", "rmse", "cond_bias", "empse_condse", "relative_precision"]
    part = compute_measures(ds, measures=sub, **kw)
    unique = list(dict.fromkeys(sub))
    assert list(part.measure.values) == unique
    xr.testing.assert_identical(part[["value", "mcse"]], new[["value", "mcse"]].sel(measure=unique))


@pytest.mark.parametrize("exclude", [False, True])
def test_a_per_replicate_truth_of_nan_changes_nothing(exclude: bool):
    """Results of a study without missing outcomes carry ``observed_true_se`` all NaN:
    every measure is bit-identical to the golden values (the ``true_se`` coordinate)."""
    ds = _golden_results("present")
    ds["observed_true_se"] = (("replicate", "term"), np.full((ds.sizes["replicate"], 5), np.nan))
    new = compute_measures(ds, reference="reml", exclude_nonconverged=exclude)
    with xr.open_dataset(GOLDEN, engine="h5netcdf") as golden:
        old = golden.sel(case=f"present-reml-{int(exclude)}", drop=True).load()
    for var in ("value", "mcse", "nonconverged"):
        np.testing.assert_array_equal(new[var].values, old[var].values)
