"""The engine interface: FitResult's typed fields, tidy/glance, the registry, capabilities."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from models import registry as reg
from models.base import (
    GLANCE_COLUMNS,
    TIDY_COLUMNS,
    Capability,
    Engine,
    FitResult,
    PriorEngine,
)
from models.bayes.options import BayesOptions, BayesPriors
from models.builtin import SPECS
from models.data import LMMData
from models.registry import EngineSpec, Registry, default_registry
from models.reml.options import RemlOptions
from models.structure import Structure
from models.validate import OptionError

ROOT = Path(__file__).resolve().parents[2]
FULL = Structure.full(("Days",))


def _result(estimate, std_error, df, structure: Structure = FULL, **kw: Any) -> FitResult:
    k = len(structure.terms)
    est = np.full(k, np.nan)
    se = np.full(k, np.nan)
    d = np.full(k, np.nan)
    est[: len(estimate)], se[: len(std_error)], d[: len(df)] = estimate, std_error, df
    return FitResult(
        structure.terms, structure.effects, est, se, est - se, est + se, True, 0.1, df=d, **kw
    )


@pytest.fixture
def fresh_registry():
    """The default registry re-read around a test that changes the entry points."""
    default_registry.cache_clear()
    yield
    default_registry.cache_clear()


# -- FitResult -----------------------------------------------------------------------------


def test_tidy_p_values_are_t_and_normal_tail_areas():
    """p from t(df) where df is finite, the normal where df = inf, NaN without df or for
    ran_pars.  Reference values: the two-sided 5% points of t(10) (2.228138851986,
    e.g. any t table) and of the normal (1.959963984540) give p = 0.05."""
    fit = _result([2.228138851986 * 3.0, 1.959963984540 * 0.5], [3.0, 0.5], [10.0, math.inf])
    tidy = fit.tidy()
    assert tuple(tidy.columns) == TIDY_COLUMNS
    np.testing.assert_allclose(tidy["p_value"][:2], [0.05, 0.05], rtol=1e-10)
    np.testing.assert_allclose(tidy["statistic"][:2], [2.228138851986, 1.959963984540])
    assert tidy["p_value"][2:].isna().all() and tidy["statistic"][2:].isna().all()
    # against scipy for other df (fixed effects only)
    for df in (1.0, 3.5, 17.0, 1e6):
        fit = _result([1.3, -2.0], [0.7, 0.9], [df, df])
        t = np.array([1.3 / 0.7, -2.0 / 0.9])
        np.testing.assert_allclose(
            fit.tidy()["p_value"][:2], 2 * stats.t.sf(np.abs(t), df), rtol=1e-12
        )
    # no df (a posterior): no p-value
    assert _result([1.0, 2.0], [1.0, 1.0], [np.nan, np.nan]).tidy()["p_value"].isna().all()


def test_tidy_diagnostics_and_glance_columns():
    fit = _result([1.0, 2.0, 3.0, 4.0, 0.1, 25.5], [1.0] * 6, [np.inf] * 6, loglik=-10.0)
    assert list(fit.tidy(diagnostics=True).columns) == [
        *TIDY_COLUMNS,
        "rhat",
        "ess_bulk",
        "ess_tail",
    ]
    glance = fit.glance()
    assert tuple(glance.columns) == GLANCE_COLUMNS and len(glance) == 1
    row = glance.iloc[0]
    assert row["sigma"] == 25.5 and row["logLik"] == -10.0 and bool(row["converged"])
    assert math.isnan(row["AIC"]) and math.isnan(row["divergences"])
    fixed_only = _result([1.0, 2.0], [1.0, 1.0], [1.0, 1.0], Structure(("(Intercept)", "x")))
    assert math.isnan(fixed_only.glance().iloc[0]["sigma"])


def test_failed_result_has_a_typed_traceback():
    fit = FitResult.failed(FULL, "ValueError: boom", 0.5, "Traceback ...\nValueError: boom")
    assert fit.traceback.startswith("Traceback") and not fit.converged
    assert "traceback" not in fit.extra  # typed fields only: extra is engine-specific
    assert FitResult.failed(FULL, "no data").traceback == ""


def test_draws_are_checked_and_aligned_with_the_terms():
    ri = Structure(("(Intercept)", "Days"), ("(Intercept)",))
    draws = np.arange(2 * 3 * len(ri.terms), dtype=float).reshape(2, 3, len(ri.terms))
    fit = _result([1.0, 2.0, 3.0, 4.0], [1.0] * 4, [np.inf] * 4, ri, draws=draws)
    wide = fit.aligned(FULL.terms, FULL.effects)
    assert wide.draws is not None and wide.draws.shape == (2, 3, len(FULL.terms))
    for j, term in enumerate(FULL.terms):
        if term in ri.terms:
            np.testing.assert_array_equal(wide.draws[..., j], draws[..., ri.terms.index(term)])
        else:
            assert np.isnan(wide.draws[..., j]).all()
    with pytest.raises(ValueError, match=r"draws must have shape \(chain, draw, term\)"):
        _result([1.0], [1.0], [1.0], ri, draws=np.zeros((2, 3, 2)))


def test_take_posterior_removes_it():
    posterior = object()
    fit = _result([1.0], [1.0], [1.0], posterior=posterior)
    assert fit.take_posterior() is posterior
    assert fit.posterior is None
    assert fit.take_posterior() is None


# -- registry ------------------------------------------------------------------------------


def test_builtin_engines_come_from_the_entry_points():
    """The built-ins are registered the way a third-party engine is (pyproject.toml)."""
    found = {ep.name: ep.value for ep in entry_points(group=reg.ENTRY_POINT_GROUP)}
    for spec in SPECS:
        assert found.get(spec.name) == f"models.builtin:{spec.name.upper()}"
    registry = Registry.default()
    assert registry.names[:4] == ("reml", "bayes", "gee", "ols")
    assert registry.versions == {
        **{n: registry.spec(n).version for n in registry.names},
        "reml": 2,
        "bayes": 3,
    }
    assert registry.prior_engines == ("bayes",) == reg.PRIOR_ENGINES
    assert reg.ENGINE_VERSIONS["gee"] == 1 and reg.ENGINE_VERSIONS["ols"] == 1


def test_unknown_engines_and_import_paths_are_refused_listing_the_engines():
    with pytest.raises(OptionError, match=r"engine = 'nope': must be one of reml, bayes, gee, ols"):
        reg.build_engine("nope")
    # a configuration names registered engines only, never code to import
    for label in ("models.reml.engine:RemlEngine", "os:system", "reml-KR", "gee-"):
        assert not reg.is_engine_label(label)
        with pytest.raises(OptionError, match=r"engines\.run"):
            reg.engine_kind(label, "engines.run")
    assert reg.engine_kind("reml-kr") == "reml" and reg.engine_kind("gee-t") == "gee"
    with pytest.raises(TypeError, match="must be one of"):
        reg.engine_kind(3)


def test_options_of_the_new_engines_are_validated_with_keys():
    assert reg.build_options("gee", {"cov_type": "bias_reduced"}, level=0.9).level == 0.9
    with pytest.raises(OptionError, match=r"cov_type = 'hc3'"):
        reg.build_options("gee", {"cov_type": "hc3"})
    with pytest.raises(OptionError, match=r"reference = 'z'"):
        reg.build_options("ols-z", {"reference": "z"})
    with pytest.raises(OptionError, match="level"):
        reg.build_options("ols", {"level": 0.9})
    assert reg.options_table(reg.build_options("gee")) == {
        "cov_type": "robust",
        "reference": "normal",
        "maxiter": 60,
    }


def test_registry_is_light_to_read():
    """Reading the registry and validating options imports no engine module (PyMC and
    statsmodels' MixedLM are imported only when an engine is built)."""
    code = (
        "import sys\n"
        "from models.registry import build_options, default_registry\n"
        "r = default_registry()\n"
        "for n in r.names: build_options(n)\n"
        "heavy = [m for m in ('pymc', 'pytensor', 'nutpie', 'statsmodels') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@dataclass(frozen=True)
class _Options:
    level: float = 0.95


class _Plain:
    name = "plain"

    def __init__(self, options: _Options) -> None:
        self.options = options

    def fit(self, data, *, seed=None, keep_posterior=False):
        return FitResult.failed(data.structure, "not implemented")


class _Compiles(_Plain):
    name = "compiles"
    calls: list[int] = []  # noqa: RUF012  (a test probe)

    def compile(self, data) -> float:
        self.calls.append(data.n_obs)
        return 1.5


def test_with_engines_returns_a_new_registry():
    base = Registry.default()
    spec = EngineSpec("plain", _Plain, _Options, summary="a test engine")
    more = base.with_engines(spec)
    assert "plain" in more.names and "plain" not in base.names
    assert "plain" not in Registry.default().names  # the default is never changed
    engine = more.build_engine("plain-two")
    assert isinstance(engine, Engine) and engine.name == "plain"
    with pytest.raises(ValueError, match=r"engines \['plain'\] are already registered"):
        more.with_engines(spec)
    with pytest.raises(ValueError, match=r"registered twice"):
        Registry((spec, spec))


def test_capabilities_are_used_only_when_declared(small_data):
    registry = Registry.default().with_engines(
        EngineSpec("compiles", _Compiles, _Options, capabilities={"compile"}),
        EngineSpec("plain", _Compiles, _Options),  # has compile() but does not declare it
    )
    # the class's name must be the registered one
    with pytest.raises(TypeError, match=r"set it to the registered name 'plain'"):
        registry.build_engine("plain")
    engine = registry.build_engine("compiles")
    _Compiles.calls.clear()
    assert registry.compile_engine("compiles", engine, small_data) == 1.5
    assert _Compiles.calls == [small_data.n_obs]
    # built-ins: only bayes compiles; reml is never asked
    reml = reg.build_engine("reml")
    assert reg.compile_engine(reml, small_data) == 0.0
    assert reg.draws_prior("bayes") and not reg.draws_prior(reml) and not reg.draws_prior("gee")
    # structure checks and thread limits go to the options that declare them
    bayes = BayesOptions(priors=BayesPriors(sd_scale=(1.0, 2.0, 3.0)), cores=2)
    with pytest.raises(OptionError, match=r"priors.sd_scale"):
        reg.check_structure(bayes, FULL)
    reg.check_structure(RemlOptions(), FULL)  # nothing to check
    assert reg.limit_threads(bayes, 1).cores == 1
    assert reg.limit_threads(RemlOptions(), 1) == RemlOptions()


def test_a_declared_capability_that_is_missing_is_refused():
    registry = Registry.default().with_engines(
        EngineSpec("plain", _Plain, _Options, capabilities={Capability.PRIOR, "threads"})
    )
    with pytest.raises(TypeError, match=r"declares capability 'prior' but its engine"):
        registry.build_engine("plain")


def test_builtin_capabilities_are_implemented():
    bayes = reg.build_engine("bayes")  # builds without compiling: no PyMC yet
    assert isinstance(bayes, PriorEngine)
    for name in ("reml", "gee", "ols"):
        assert isinstance(reg.build_engine(name), Engine)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"name": "my-engine"}, ValueError, "'-' starts a variant suffix"),
        ({"name": "Gee"}, ValueError, "lower-case letters"),
        ({"engine": "no_colon"}, ValueError, "'package.module:Attribute' reference"),
        ({"options": 3}, TypeError, "must be a class"),
        ({"version": 0}, ValueError, "version = 0: must be an int >= 1"),
        ({"version": True}, ValueError, "must be an int >= 1"),
        ({"capabilities": {"fly"}}, ValueError, r"\['fly'\]: not capabilities; choose"),
        ({"capabilities": "compile"}, TypeError, "must be a collection"),
    ],
)
def test_engine_spec_validation(kwargs, error, match):
    given = {"name": "mine", "engine": "pkg.mod:Engine", "options": "pkg.mod:Options", **kwargs}
    with pytest.raises(error, match=match):
        EngineSpec(**given)


class _EntryPoint:
    def __init__(self, name: str, value: str, load: Any) -> None:
        self.name, self.value, self._load = name, value, load

    def load(self) -> Any:
        if isinstance(self._load, Exception):
            raise self._load
        return self._load


def test_broken_entry_points_are_recorded_not_fatal(monkeypatch, fresh_registry):
    """A plug-in that cannot be loaded leaves the others usable and is named when asked
    for; a source tree without entry points still has the built-ins."""
    good = EngineSpec("plain", _Plain, _Options)
    eps = [
        _EntryPoint("plain", "x:GOOD", good),
        _EntryPoint("plain", "x:GOOD", good),  # the same distribution twice on the path
        _EntryPoint("broken", "nowhere:SPEC", ImportError("No module named 'nowhere'")),
        _EntryPoint("notaspec", "x:THING", object()),
        _EntryPoint("misnamed", "x:GOOD", good),
        _EntryPoint("twice", "a:SPEC", EngineSpec("twice", _Plain, _Options)),
        _EntryPoint("twice", "b:SPEC", EngineSpec("twice", _Plain, _Options)),
    ]
    monkeypatch.setattr(reg, "_entry_points", lambda: eps)
    registry = default_registry()
    assert registry.names == ("reml", "bayes", "gee", "ols", "plain")  # built-ins: fallback
    broken = dict(registry.broken)
    assert set(broken) == {"broken", "notaspec", "misnamed", "twice"}
    assert "registered twice (a:SPEC and b:SPEC)" in broken["twice"]
    with pytest.raises(OptionError, match=r"'broken' is installed but cannot be loaded: import"):
        reg.engine_kind("broken")


@pytest.fixture
def small_data() -> LMMData:
    frame = pd.read_csv(ROOT / "tests" / "data" / "sleepstudy.csv")
    return LMMData.from_frame(frame, y="Reaction", x=["Days"], group="Subject")
