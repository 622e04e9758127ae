"""Random-effects structures in study designs: generating structure, engines fitting
another one (misspecification), the truth for any Z, and the results' term list."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from helpers import merge, study_toml
from scipy import stats

from models.base import FitResult
from models.data import LMMData
from models.structure import Structure, merged_terms
from study.design.config import config_from_text, load_config
from study.design.generate import Design
from study.design.truth import compute_truth
from study.errors import ConfigError
from study.run.runner import run_study


def _config(text: str):
    return config_from_text(text, default_name="t", label="t.toml")


RI = {
    "name": None,
    "replicates": 4,
    "seed": 11,
    "design": {
        "groups": 6,
        "group_size": 4,
        "predictors": ["X", "W"],
        "beta": [1.0, 0.5, -0.25],
        "random": ["(Intercept)", "W"],
        "re_sd": [0.8, 0.3],
        "re_cor": [[1.0, 0.4], [0.4, 1.0]],
        "sigma": 0.7,
    },
}
"""Random intercept and a random slope on W (not on X), K = 6 groups of 4."""


def _ri(**overrides) -> str:
    """The RI study with `overrides` merged in (``None`` removes a key)."""
    return study_toml(**merge(RI, overrides))


RI_DESIGN = _ri()
ENGINES3 = ["reml", "reml-ri", "reml-diag"]
ONE_RANDOM = {"random": ["(Intercept)"], "re_sd": [0.8], "re_cor": None}


def test_presets_keep_their_hashes_and_condition_ids():
    # the keys added since (structures, issue 25's design keys) are left out at their
    # defaults: every condition keeps its id (its replicate streams); the hash differs
    # from the one pinned before only by the generator version (X is now keyed by the
    # settings that define it), so an older run is never resumed with other data
    import hashlib
    import json

    pins = {
        "default": ("f1e3de6ea8c6a1b8", "78c22ee78f37827e"),
        "seed": ("d9c4734544ce2671", "e915a0bff629cd96"),
        "small-groups": ("ee8090acf5d337ac", "3f7f2a2a779c147d"),
    }
    for name, (config_hash, first_id) in pins.items():
        config = load_config(name)
        settings = config.hashed_settings()
        assert settings.pop("generator") == 2
        text = json.dumps(settings, sort_keys=True)
        assert hashlib.sha256(text.encode()).hexdigest()[:16] == config_hash
        assert config.hash() != config_hash
        assert config.conditions[0].id == first_id
        assert config.design.structure.is_full


def test_design_structure_and_its_terms():
    config = _config(RI_DESIGN)
    s = config.design.structure
    assert s.fixed == ("(Intercept)", "X", "W")
    assert s.random == ("(Intercept)", "W") and s.correlated
    assert config.terms()[0] == [
        "(Intercept)",
        "X",
        "W",
        "sd__(Intercept)",
        "sd__W",
        "cor__(Intercept).W",
        "sd__Observation",
    ]
    # another order would read re_sd and re_cor in the wrong order: refused
    for flipped in (["W", "(Intercept)"], "(0 + W | g) + (1 | g)"):
        with pytest.raises(ConfigError, match="in the order of the fixed effects"):
            _config(_ri(design={"random": flipped}))
    # an engine's list has no SDs attached: put in order
    text = _ri(engines={"reml": {"random": ["W", "(Intercept)"]}})
    assert _config(text).structure_of("reml") == s


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"design": {"random": ["Z"]}}, "design.random = ['Z']: must name"),
        ({"design": {"random": []}}, "must be a non-empty list"),
        ({"design": {"random": "W"}}, "in parentheses"),
        ({"design": {"re_sd": [0.8, 0.3, 0.1]}}, "one per random effect ((Intercept), W)"),
        ({"design": {"re_cor": [[1.0]]}}, "2 x 2 correlation matrix"),
        ({"design": {"correlated": False}}, "must be the identity"),
        ({"design": {"correlated": 1}}, "design.correlated"),
        ({"conditions": {"random": [["W"]]}}, "conditions.random"),
        ({"engines": {"reml": {"random": ["V"]}}}, "engines.reml.random"),
        ({"engines": {"reml": {"correlated": "no"}}}, "engines.reml.correlated"),
    ],
)
def test_structure_settings_are_checked(overrides, message):
    with pytest.raises(ConfigError) as err:
        _config(_ri(**overrides))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_truth_is_the_dense_gls_variance_for_any_z():
    config = _config(RI_DESIGN)
    design = Design.from_study(config)
    truth = compute_truth(design)
    cfg = config.design
    Z = design.X[:, [0, 2]]
    D = np.array(cfg.re_sd)[:, None] * np.array(cfg.re_cor) * np.array(cfg.re_sd)
    V = np.zeros((design.X.shape[0],) * 2)
    for k in range(cfg.groups):
        rows = np.flatnonzero(design.group == k)
        V[np.ix_(rows, rows)] = Z[rows] @ D @ Z[rows].T
    V += cfg.sigma**2 * np.eye(V.shape[0])
    cov = np.linalg.inv(design.X.T @ np.linalg.solve(V, design.X))
    np.testing.assert_allclose(truth.cov, cov, rtol=1e-10)
    np.testing.assert_allclose(truth.se[:3], np.sqrt(np.diag(cov)), rtol=1e-10)
    np.testing.assert_array_equal(truth.value, [1.0, 0.5, -0.25, 0.8, 0.3, 0.4, 0.7])


def test_truth_of_terms_the_generator_does_not_vary():
    # an engine that fits a slope on X and correlations with it: SD 0, correlation NaN
    config = _config(RI_DESIGN)
    full = Structure.full(("X", "W")).terms
    truth = compute_truth(Design.from_study(config), full)
    value = dict(zip(truth.terms, truth.value, strict=True))
    assert value["sd__X"] == 0.0
    assert np.isnan(value["cor__(Intercept).X"]) and np.isnan(value["cor__X.W"])
    assert value["cor__(Intercept).W"] == 0.4
    with pytest.raises(ValueError, match="not terms of a model"):
        compute_truth(Design.from_study(config), ["cor__W.X"])


def test_generator_draws_only_the_random_effects_of_the_structure():
    big = {"groups": 4000, "group_size": 2}
    text = _ri(design=big)
    uncorrelated = _ri(design=big | {"re_cor": None, "correlated": False})
    for source, cor in ((text, 0.4), (uncorrelated, 0.0)):
        design = Design.from_study(_config(source))
        sample = design.sample(0)
        assert sample.data.structure == design.structure
        assert np.all(sample.u[:, 1] == 0.0)  # X has no random effect
        u = sample.u[:, [0, 2]]
        K = u.shape[0]
        # SD of a sample SD ~ sd / sqrt(2K); of a sample correlation ~ (1 - rho^2) / sqrt(K)
        np.testing.assert_allclose(u.std(axis=0), [0.8, 0.3], atol=4 * 0.8 / np.sqrt(2 * K))
        assert abs(np.corrcoef(u.T)[0, 1] - cor) < 4 * (1 - cor**2) / np.sqrt(K)


def test_engine_structures_round_trip_through_toml():
    text = _ri(
        engines={
            "run": ENGINES3,
            "reml-ri": {"random": ["(Intercept)"]},
            "reml-diag": {"correlated": False, "ci": "t"},
        }
    )
    config = _config(text)
    assert config.structure_of("reml") == config.design.structure
    assert config.structure_of("reml-ri").random == ("(Intercept)",)
    diag = config.structure_of("reml-diag")
    assert diag.random == ("(Intercept)", "W") and not diag.correlated
    again = config_from_text(config.to_toml(), default_name="t", label="again")
    assert again.hash() == config.hash()
    assert again.engine_structures == config.engine_structures
    assert config.hash() != _config(_ri(engines={"run": ENGINES3})).hash()


def test_sbc_refuses_an_engine_that_fits_another_structure():
    text = _ri(
        engines={"run": ["bayes"], "bayes": {"random": ["(Intercept)"]}},
        sbc={"simulations": 10},
    )
    with pytest.raises(ConfigError, match=r"engines.bayes.random .*fits the model the data come"):
        _config(text)


def test_aligned_fit_results_and_merged_terms():
    ri = Structure(("(Intercept)", "X"), ("(Intercept)",))
    full = Structure(("(Intercept)", "X"))
    terms = merged_terms(full.fixed, [ri, full])
    assert terms == full.terms
    fit = FitResult.failed(ri, "boom")
    fit.estimate[:] = [1.0, 2.0, 3.0, 4.0]
    out = fit.aligned(terms, full.effects)
    assert out.terms == terms
    np.testing.assert_array_equal(out.estimate, [1.0, 2.0, 3.0, np.nan, np.nan, 4.0])
    with pytest.raises(ValueError, match="not in the term list"):
        FitResult.failed(full, "x").aligned(ri.terms, ri.effects)


SLOPE = study_toml(
    name="slope",
    replicates=150,
    seed=3,
    design={
        "groups": 20,
        "group_size": 10,
        "beta": [5.0, 2.0],
        "re_sd": [1.0, 0.2],
        "re_cor": None,
    },
    engines={"run": ["reml", "reml-ri"], "reml-ri": {"random": ["(Intercept)"]}},
)


@pytest.fixture(scope="module")
def slope_run(tmp_path_factory) -> xr.Dataset:
    report = run_study(_config(SLOPE), tmp_path_factory.mktemp("slope") / "run")
    assert report.complete
    with xr.open_dataset(report.path / "results.nc") as ds:
        return ds.load()


def test_results_hold_the_union_of_the_fitted_terms(slope_run):
    ds = slope_run
    assert list(ds.engine.values) == ["reml", "reml-ri"]
    assert list(ds.term.values) == Structure.full(("X",)).terms
    ri = ds.estimate.sel(engine="reml-ri")
    assert bool(ri.sel(term=["sd__X", "cor__(Intercept).X"]).isnull().all())
    assert bool(ri.sel(term=["(Intercept)", "X", "sd__(Intercept)"]).notnull().all())
    assert bool(ds.converged.all())
    # both fits see the same replicate: the same data, so the same OLS-free pieces
    np.testing.assert_array_equal(ds.nobs.sel(engine="reml"), ds.nobs.sel(engine="reml-ri"))


def test_ignoring_a_random_slope_breaks_the_slope_interval(slope_run):
    ds = slope_run
    level = 0.95
    covered = (ds.ci_lower <= ds.true_value) & (ds.true_value <= ds.ci_upper)
    n = ds.sizes["replicate"]
    mcse = np.sqrt(level * (1 - level) / n)
    full = float(covered.sel(engine="reml", term="X").mean())
    ri = float(covered.sel(engine="reml-ri", term="X").mean())
    # the right model's Wald interval: within 4 MC SEs of its level (K = 20: slightly
    # below, never far); the random-intercept model's: far below (its SE ignores the
    # between-group spread of slopes)
    assert abs(full - level) < 4 * mcse
    assert ri < level - 10 * mcse
    # its SE is too small against the analytic truth of the right model
    se_ratio = ds.std_error.sel(engine="reml-ri", term="X") / ds.true_se.sel(term="X")
    assert float(se_ratio.median()) < 0.6
    # a binomial test of the same claim, for the record
    k = int(covered.sel(engine="reml-ri", term="X").sum())
    assert stats.binomtest(k, n, level, alternative="less").pvalue < 1e-6


def test_lmmdata_structure_checks():
    X = np.column_stack([np.ones(6), np.arange(6.0)])
    group = np.repeat([0, 1], 3)
    with pytest.raises(ValueError, match="structure's fixed effects"):
        LMMData(np.arange(6.0), X, group, ("X",), structure=Structure(("(Intercept)", "Z")))
    data = LMMData(np.arange(6.0), X, group, ("X",))
    ri = data.with_structure(Structure(("(Intercept)", "X"), ("(Intercept)",)))
    assert ri.r == 1 and ri.Z.shape == (6, 1)
    np.testing.assert_array_equal(ri.ZtX, data.XtX[:, :1, :])
    with pytest.raises(ValueError, match="differ from the data's"):
        data.with_structure(Structure(("(Intercept)",)))


@pytest.mark.parametrize(
    ("bar", "random", "correlated"),
    [
        ("(1 | g)", ["(Intercept)"], True),
        ("(W || g)", ["(Intercept)", "W"], False),
        ("(0 + W | subject)", ["W"], True),
        ("(1 | g) + (0 + W | g)", ["(Intercept)", "W"], False),
    ],
)
def test_design_random_part_as_an_lme4_formula_is_the_list_form(bar, random, correlated):
    sds = {"re_sd": [0.5] * len(random), "re_cor": None}
    from_formula = _config(_ri(design={"random": bar} | sds))
    listed = {"random": random} | ({} if correlated else {"correlated": False})
    as_list = _config(_ri(design=listed | sds))
    assert from_formula.design.structure == as_list.design.structure
    assert from_formula.design.structure.correlated is correlated
    assert from_formula.conditions[0].id == as_list.conditions[0].id  # the same seeds


@pytest.mark.parametrize(
    ("bar", "message"),
    [
        ("(1 | g) + (1 | h)", "one grouping factor only"),
        ("(Z | g)", "'Z' is not a fixed effect of the design ((Intercept), X, W); add it to"),
        ("1 + W", "in parentheses"),
        ("(1 | g) + W", "'W' is not a random term"),
    ],
)
def test_design_random_formula_errors(bar, message):
    with pytest.raises(ConfigError, match=r"design\.random") as err:
        _config(_ri(design={"random": bar}))
    assert message in str(err.value)


def test_one_random_effect_is_the_same_model_correlated_or_not():
    a = _config(_ri(design=ONE_RANDOM))
    b = _config(_ri(design=ONE_RANDOM | {"correlated": False}))
    assert a.design.structure == b.design.structure
    assert a.conditions[0].id == b.conditions[0].id and a.hash() == b.hash()
    assert Structure(("(Intercept)",), correlated=False) == Structure(("(Intercept)",))
    # so SBC accepts an engine that says correlated = false about one random effect
    sbc = _ri(
        design=ONE_RANDOM,
        engines={"run": ["bayes"], "bayes": {"correlated": False}},
        sbc={"simulations": 10},
    )
    assert "sbc" in _config(sbc).kind_settings


def test_engine_random_part_as_a_formula_and_the_truth_of_its_terms():
    text = _ri(engines={"run": ["reml", "reml-x"], "reml-x": {"random": "(1 + X || g)"}})
    config = _config(text)
    fitted = config.structure_of("reml-x")
    assert fitted.random == ("(Intercept)", "X") and not fitted.correlated
    terms = config.terms()[0]
    assert terms == [
        "(Intercept)",
        "X",
        "W",
        "sd__(Intercept)",
        "sd__X",
        "sd__W",
        "cor__(Intercept).W",
        "sd__Observation",
    ]
    from study.analysis.design_tables import truth_frame

    frame = truth_frame(config).set_index("term")
    assert list(frame.index) == terms
    assert frame.loc["sd__X", "true_value"] == 0.0  # the data have no random slope on X
    assert frame.loc["sd__W", "true_value"] == 0.3


def test_truth_and_report_headers_name_the_models():
    from study.analysis.design_tables import model_lines

    assert model_lines(_config(SLOPE)) == [
        "generating model: y ~ X + (1 + X | group)",
        "engine reml-ri fits: y ~ X + (1 | group)",
    ]
    assert model_lines(load_config("default")) == ["generating model: y ~ X + (1 + X | group)"]
