"""The REML engine's hypothesis tests (``fit_tests``, capability ``tests``) against R.

Reference values: ``tests/data/lme4_tests.toml``, made by ``tests/data/make_lme4_tests.R``
(R 4.2.2, lme4 1.1-31, lmerTest 3.1-3, pbkrtest 0.5.2; its header says how) on
``sleepstudy.csv`` (random slopes, and a random intercept only) and
``cluster_trial.csv`` (8 clusters of 10, a cluster-level treatment: :func:`cluster_trial`
below made it), with null values 0 and nonzero ones (the LRT's through an offset).
"""

from __future__ import annotations

import dataclasses
import tomllib

import numpy as np
import pandas as pd
import pytest
from helpers import DATA

from models import base
from models.base import Capability, TestResult
from models.builtin import REML, REML_TESTS
from models.data import LMMData
from models.formula import model_data
from models.registry import EngineSpec, Registry, default_registry
from models.reml import RemlEngine, RemlOptions, ddf
from models.reml import engine as reml_engine
from models.reml.criterion import Criterion
from models.structure import Structure

ALL = list(REML_TESTS)
#: statistics and df: relative agreement (lme4's bobyqa optimum is ~1e-7 from the exact one)
RTOL = 1e-5
#: p-values: absolute agreement
P_ATOL = 1e-6


def cluster_trial() -> pd.DataFrame:
    """The simulated cluster trial of ``tests/data/cluster_trial.csv``: 8 clusters of 10,
    treatment = 1 in the even-numbered clusters, a row-level x, random intercept SD 0.5,
    residual SD 1, y = 0.8 treat + 0.3 x + u + e (values rounded to 4 decimals)."""
    rng = np.random.default_rng(20250611)
    k, m = 8, 10
    cluster = np.repeat(np.arange(k), m)
    treat = (cluster % 2).astype(float)
    u = rng.normal(0.0, 0.5, k)
    x = np.round(rng.normal(0.0, 1.0, k * m), 4)
    e = rng.normal(0.0, 1.0, k * m)
    y = np.round(0.8 * treat + 0.3 * x + u[cluster] + e, 4)
    labels = [f"c{c + 1}" for c in cluster]
    return pd.DataFrame({"y": y, "treat": treat.astype(int), "x": x, "cluster": labels})


with open(DATA / "lme4_tests.toml", "rb") as _fh:
    CASES: dict[str, dict] = {c["name"]: c for c in tomllib.load(_fh)["case"]}


def _data(case: dict) -> LMMData:
    data, dropped = model_data(pd.read_csv(DATA / case["data"]), case["formula"])
    assert dropped == 0
    return data


def _engine(case: dict, **options) -> RemlEngine:
    return RemlEngine(RemlOptions(method=case["method"].lower(), **options))


@pytest.fixture(scope="module")
def sleep() -> LMMData:
    return _data(CASES["sleepstudy_slopes"])


@pytest.fixture(scope="module")
def trial() -> LMMData:
    return _data(CASES["cluster_trial"])


def test_the_cluster_trial_file_is_the_generators():
    on_file = pd.read_csv(DATA / "cluster_trial.csv")
    made = cluster_trial()
    assert list(on_file.columns) == list(made.columns) and len(on_file) == 80
    assert (on_file["cluster"] == made["cluster"]).all()
    assert (on_file["treat"] == made["treat"]).all()
    np.testing.assert_allclose(on_file[["y", "x"]], made[["y", "x"]], atol=1e-12)


# -- against lme4 / lmerTest / pbkrtest ------------------------------------------------
#: our statistic, df and p-value keys in the reference per test
KEYS = {
    "z": ("z", None, "p_z"),
    "t": ("z", "df_t", "p_t"),
    "satterthwaite": ("t_satterthwaite", "df_satterthwaite", "p_satterthwaite"),
    "kenward-roger": ("t_kr", "df_kr", "p_kr"),
    "lrt": ("lrt", None, "p_lrt"),
}


def differences(name: str) -> dict[str, tuple[float, float, float]]:
    """Per test: max relative difference of the statistic and of the df, max absolute
    difference of the p-value, between our ``fit_tests`` and R's (case ``name``)."""
    case = CASES[name]
    fit, out = _engine(case).fit_tests(
        _data(case), terms=case["terms"], null=case["null"], tests=ALL
    )
    assert fit.converged and fit.message == ""
    diffs = {}
    for test, (stat_key, df_key, p_key) in KEYS.items():
        res = out[test]
        assert res.message == "", (test, res.message)
        reference = {"z": np.inf, "lrt": 1.0}.get(test)
        ref_df = np.broadcast_to(
            np.asarray(case[df_key] if reference is None else reference, dtype=float), res.df.shape
        )
        ref_stat = np.asarray(case[stat_key], dtype=float)
        diffs[test] = (
            float(np.max(np.abs(res.statistic / ref_stat - 1))),
            0.0 if np.array_equal(res.df, ref_df) else float(np.max(np.abs(res.df / ref_df - 1))),
            float(np.max(np.abs(res.p_value - np.asarray(case[p_key], dtype=float)))),
        )
    return diffs


@pytest.mark.parametrize("name", sorted(CASES))
def test_p_values_match_lme4(name):
    for test, (d_stat, d_df, d_p) in differences(name).items():
        assert d_stat < RTOL, (test, "statistic", d_stat)
        assert d_df < RTOL, (test, "df", d_df)
        assert d_p < P_ATOL, (test, "p-value", d_p)


def test_lrt_deviances_are_lme4s():
    """The ML deviances behind the LRT, not only their differences (lme4 prints them to
    the digits it has: its bobyqa optimum, ~1e-7 from the exact one)."""
    for name in ("sleepstudy_slopes", "sleepstudy_slopes_null", "cluster_trial_null"):
        case = CASES[name]
        data = _data(case)
        crit = Criterion(data, reml=False)
        full = reml_engine.polish(crit, np.ones(crit.n_theta))
        assert full.value == pytest.approx(case["deviance_full"], abs=1e-6)
        for j, (c, ref) in enumerate(zip(case["null"], case["deviance_reduced"], strict=True)):
            red = reml_engine._reduced_criterion(data, j, c)
            assert reml_engine.polish(red, full.theta).value == pytest.approx(ref, abs=1e-6)


# -- the fit is the fit; what is computed and what is not ---------------------------------
def test_the_fit_is_the_one_fit_gives(sleep):
    engine = RemlEngine(RemlOptions(ci="kenward-roger"))
    fit, out = engine.fit_tests(sleep, terms=["Days"], null=[0.0], tests=["z", "lrt"])
    alone = engine.fit(sleep)
    for f in dataclasses.fields(fit):
        if f.name in ("fit_seconds", "extra", "posterior", "draws"):
            continue
        a, b = getattr(fit, f.name), getattr(alone, f.name)
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b or (a != a and b != b), f.name  # NaN: the same
    assert list(out) == ["z", "lrt"]
    # the Wald test uses the REML SE, whatever `ci` makes the fit's std_error
    plain, _ = RemlEngine().fit_tests(sleep, terms=["Days"], null=[0.0], tests=["z"])
    z = out["z"].statistic[0]
    assert z == pytest.approx(plain.estimate[1] / plain.std_error[1], rel=1e-12)


def test_only_the_tests_asked_for_are_computed(trial, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("satterthwaite_df computed")

    monkeypatch.setattr(ddf, "satterthwaite_df", refuse)
    _, out = RemlEngine().fit_tests(trial, terms=["treat"], null=[0.0], tests=["kenward-roger"])
    assert list(out) == ["kenward-roger"]
    assert np.isfinite(out["kenward-roger"].p_value).all() and out["kenward-roger"].message == ""
    # the patch is in the path a Satterthwaite test takes: it fails, and says so
    _, out = RemlEngine().fit_tests(trial, terms=["treat"], null=[0.0], tests=["satterthwaite"])
    assert np.isnan(out["satterthwaite"].p_value).all()
    assert "satterthwaite_df computed" in out["satterthwaite"].message


def test_a_failed_fit_gives_nan_p_values_not_an_exception():
    # 3 groups of 1 row: more random effects than rows
    data = LMMData(np.array([1.0, 2.0, 4.0]), np.ones((3, 1)), np.arange(3), ())
    fit, out = RemlEngine().fit_tests(data, terms=["(Intercept)"], null=[0.0], tests=ALL)
    assert not fit.converged and "more rows than random effects" in fit.message
    assert list(out) == ALL
    for name, res in out.items():
        assert np.isnan(res.p_value).all() and np.isnan(res.statistic).all(), name
        assert res.message.startswith("the fit failed"), name
    assert out["z"].df[0] == np.inf and out["lrt"].df[0] == 1.0


def test_t_needs_more_groups_than_fixed_effects():
    rng = np.random.default_rng(3)
    n = 30
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n)])
    group = np.repeat(np.arange(3), 10)
    y = X @ [1.0, 0.5, -0.2] + rng.normal(size=3)[group] + rng.normal(size=n)
    data = LMMData(
        y, X, group, ("a", "b"), structure=Structure(("(Intercept)", "a", "b"), ("(Intercept)",))
    )
    fit, out = RemlEngine().fit_tests(data, terms=["a"], null=[0.0], tests=["t", "z"])
    assert fit.converged
    assert np.isnan(out["t"].p_value).all() and "K - p > 0" in out["t"].message
    assert np.isfinite(out["z"].p_value).all()


def test_the_reduced_criterion_is_the_criterion_where_lmmdata_can_say_it(sleep):
    """The LRT's reduced model with a random slope on the dropped column is built from
    the arrays; with every column kept it must be :class:`Criterion` itself."""
    free = reml_engine._FreeZCriterion(sleep.y, sleep.X, sleep.Z, sleep.n, sleep.structure)
    crit = Criterion(sleep, reml=False)
    for theta in ([1.0, 0.0, 0.3], [0.9, 0.05, 0.23], [0.2, -0.1, 0.5]):
        t = np.asarray(theta)
        assert free.value_theta(t) == pytest.approx(crit.value_theta(t), rel=1e-12)
        np.testing.assert_allclose(free.grad_theta(t), crit.grad_theta(t), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tests": ["wald"]}, r"\['wald'\]: not tests of the reml engine; choose from z, t"),
        ({"tests": ["z", "z"]}, r"asked more than once"),
        ({"tests": "z"}, r"not one string"),
        ({"terms": ["Dayz"]}, r"\['Dayz'\]: not fixed effects of the model"),
        ({"null": [0.0, 1.0]}, r"null has 2 values for 1 terms"),
        ({"null": [np.nan]}, r"must be finite"),
    ],
)
def test_requests_that_are_wrong_whatever_the_data_raise(sleep, kwargs, match):
    given = {"terms": ["Days"], "null": [0.0], "tests": ["z"], **kwargs}
    with pytest.raises(ValueError, match=match):
        RemlEngine().fit_tests(sleep, **given)


# -- registration ------------------------------------------------------------------------
def test_the_reml_engine_declares_and_implements_its_tests():
    assert REML.has(Capability.TESTS) and REML.tests == REML_TESTS == reml_engine.TESTS
    registry = default_registry()
    assert registry.tests_of("reml") == REML_TESTS
    assert registry.tests_of("reml-kr") == REML_TESTS  # a variant is its kind
    assert registry.tests_of("gee") == () and registry.tests_of("bayes") == ("interval", "sign")
    assert isinstance(registry.build_engine("reml"), base.Testing)
    assert not isinstance(registry.build_engine("gee"), base.Testing)


@dataclasses.dataclass(frozen=True)
class _Options:
    level: float = 0.95


class _NoTests:
    name = "notests"

    def __init__(self, options: _Options) -> None:
        self.options = options

    def fit(self, data, *, seed=None, keep_posterior=False):  # pragma: no cover - never fitted
        raise NotImplementedError


def test_a_declared_tests_capability_without_fit_tests_is_refused():
    spec = EngineSpec("notests", _NoTests, _Options, capabilities={"tests"}, tests=("z",))
    with pytest.raises(TypeError, match=r"capability 'tests' but its engine .* fit_tests"):
        Registry().with_engines(spec).build_engine("notests")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"tests": ("z",)}, ValueError, r"does not declare the 'tests' capability; add"),
        ({"capabilities": {"tests"}}, ValueError, r"names no tests; list them"),
        ({"capabilities": {"tests"}, "tests": "z"}, TypeError, r"must be a tuple of test names"),
        ({"capabilities": {"tests"}, "tests": ("z", "")}, ValueError, r"non-empty string"),
        ({"capabilities": {"tests"}, "tests": ("z", 1)}, ValueError, r"non-empty string"),
        ({"capabilities": {"tests"}, "tests": ("z", "z")}, ValueError, r"more than once"),
    ],
)
def test_engine_spec_tests_validation(kwargs, error, match):
    given = {"name": "mine", "engine": "pkg.mod:Engine", "options": "pkg.mod:Options", **kwargs}
    with pytest.raises(error, match=match):
        EngineSpec(**given)


def test_engine_spec_tests_become_a_tuple():
    spec = EngineSpec("mine", "pkg.mod:E", "pkg.mod:O", capabilities={"tests"}, tests=["z", "lrt"])
    assert spec.tests == ("z", "lrt")


def test_test_result_checks_its_shapes():
    res = TestResult([1.0, 2.0], [np.inf, np.inf], [0.3, 0.04])
    assert res.statistic.dtype == float and res.message == ""
    with pytest.raises(ValueError, match="one shape"):
        TestResult([1.0, 2.0], [1.0], [0.3, 0.04])
