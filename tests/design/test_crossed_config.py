"""A crossed design's configuration: keys, defaults, round trips, term names, grids,
engines and the load-time checks (the CLI's one-line refusals are in
tests/cli/test_bad_inputs.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tomli_w
from helpers import crossed_ols_spec

from models.crossed import CrossedStructure
from models.registry import Registry
from study.design.config import config_from_text
from study.design.generate import CrossedDesign, design_of
from study.errors import ConfigError

LATIN = {"distribution": "latin_square", "levels": [-0.5, 0.5]}
DESIGN = {
    "crossed": {"subj": 8, "item": 6},
    "fixed": "cond",
    "beta": {"(Intercept)": 0.0, "cond": 0.3},
    "random": "(1 + cond | subj) + (1 + cond | item)",
    "re_sd": {"subj": [0.6, 0.3], "item": [0.4, 0.2]},
    "re_cor": {"subj": 0.3},
    "predictors": {"cond": LATIN},
}


def _config(design: dict | None = None, **top):
    table = {"name": "t", "seed": 5, "design": design or DESIGN, **top}
    table.setdefault("engines", {"run": ["crossed_ols"]})
    registry = Registry.default().with_engines(crossed_ols_spec())
    return config_from_text(tomli_w.dumps(table), default_name="t", label="t", registry=registry)


def test_round_trip_keeps_the_design_and_its_hash():
    config = _config()
    again = config_from_text(
        config.to_toml(), default_name="t", label="t", registry=config.registry
    )
    assert again.hash() == config.hash()
    assert again.design == config.design
    assert again.conditions[0].id == config.conditions[0].id
    d = config.design
    assert d.re_cor == {"subj": ((1.0, 0.3), (0.3, 1.0))}  # a number: the 2 x 2 matrix
    assert d.random == "(1 + cond | subj) + (1 + cond | item)"
    assert isinstance(d.structure, CrossedStructure)


def test_defaults_random_intercepts_and_one_sd_a_number():
    design = {k: v for k, v in DESIGN.items() if k not in ("random", "re_cor")}
    config = _config({**design, "re_sd": {"subj": 0.6, "item": 0.4}})
    assert config.design.random == "(1 | subj) + (1 | item)"
    assert config.terms()[0] == [
        "(Intercept)",
        "cond",
        "sd__(Intercept)|subj",
        "sd__(Intercept)|item",
        "sd__Observation",
    ]


def test_engine_structures_and_the_merged_term_order():
    engines = {
        "run": ["crossed_ols", "crossed_ols-int"],
        "crossed_ols-int": {"random": "(1 | item) + (1 + cond || subj)"},
    }
    config = _config(engines=engines)
    fitted = config.structure_of("crossed_ols-int")
    assert isinstance(fitted, CrossedStructure)
    assert fitted.text() == "(1 | item) + (1 + cond || subj)"
    assert config.structure_of("crossed_ols") == config.design.structure
    # fixed, then per factor of design.crossed: its SDs, then its correlations, then sigma
    assert config.terms()[0] == [
        "(Intercept)",
        "cond",
        "sd__(Intercept)|subj",
        "sd__cond|subj",
        "cor__(Intercept).cond|subj",
        "sd__(Intercept)|item",
        "sd__cond|item",
        "cor__(Intercept).cond|item",
        "sd__Observation",
    ]
    again = config_from_text(
        config.to_toml(), default_name="t", label="t", registry=config.registry
    )
    assert again.hash() == config.hash()


def test_grids_over_the_factors_levels_and_effects():
    grid = {"crossed.subj": [8, 12], "crossed.item": [6], "beta.cond": [0.0, 0.4]}
    config = _config(conditions=grid)
    assert [c.label for c in config.conditions] == [
        "crossed.subj=8, crossed.item=6, beta.cond=0.0",
        "crossed.subj=8, crossed.item=6, beta.cond=0.4",
        "crossed.subj=12, crossed.item=6, beta.cond=0.0",
        "crossed.subj=12, crossed.item=6, beta.cond=0.4",
    ]
    rows = [design_of(config, c).data.n_obs for c in config.conditions]
    assert rows == [48, 48, 72, 72]
    with pytest.raises(ConfigError, match=r"conditions\.groups"):
        _config(conditions={"groups": [4, 8]})
    with pytest.raises(ConfigError, match=r"conditions\.random.*cannot vary"):
        _config(conditions={"random": ["(1 | subj) + (1 | item)"]})


def test_a_subject_level_covariate_and_a_categorical_latin_square():
    design = {
        "crossed": {"subj": 6, "item": 6},
        "fixed": "cond + age",
        "beta": [0.0, 0.1, -0.1, 0.2],
        "random": "(1 + cond | subj) + (1 + age | item)",
        "re_sd": {"subj": [0.5, 0.2, 0.2], "item": [0.4, 0.1]},
        "predictors": {
            "cond": {"distribution": "latin_square", "levels": ["a", "b", "c"]},
            "age": {
                "distribution": "normal",
                "level": "subj",
                "mean": 40,
                "sd": 5,
                "center": "grand",
            },
        },
    }
    config = _config(design)
    d = config.design
    assert d.structure.fixed == ("(Intercept)", "condb", "condc", "age")
    assert d.structure.bars[0].effects == ("(Intercept)", "condb", "condc")
    design_ = design_of(config)
    assert isinstance(design_, CrossedDesign)
    age = design_.frame["age"].to_numpy()
    subj = design_.codes["subj"]
    assert all(np.unique(age[subj == s]).size == 1 for s in range(6))
    assert abs(age.mean()) < 1e-12
    cond = design_.frame["cond"].astype(str).to_numpy()
    for s in range(6):
        assert sorted(cond[subj == s]) == ["a", "a", "b", "b", "c", "c"]
    # a slope by subject of a subject-level predictor is not identified
    bad = {
        **design,
        "random": "(1 + age | subj) + (1 | item)",
        "re_sd": {"subj": [0.5, 0.2], "item": 0.4},
    }
    with pytest.raises(ConfigError, match=r"slope of age by subj is not identified.*\(1 \| subj\)"):
        _config(bad)


def test_engines_that_fit_one_grouping_factor_are_refused():
    assert _config(engines={"run": ["reml", "reml-kr"]}).engines == ("reml", "reml-kr")
    assert _config(engines={"run": ["bayes"]}).engines == ("bayes",)  # it declares crossed
    for engine in ("gee", "ols"):
        with pytest.raises(
            ConfigError, match=rf"engines\.run\[0\] = '{engine}'.*one grouping factor"
        ):
            _config(engines={"run": [engine]})


def test_one_factor_keys_kinds_and_engine_tables_are_refused():
    with pytest.raises(ConfigError, match=r"unknown key design\.groups"):
        _config({**DESIGN, "groups": 4})
    with pytest.raises(ConfigError, match=r"engines\.crossed_ols\.correlated.*\|\|"):
        _config(engines={"run": ["crossed_ols"], "crossed_ols": {"correlated": False}})
    with pytest.raises(ConfigError, match=r"engines\.crossed_ols\.random.*rater.*not a factor"):
        _config(engines={"run": ["crossed_ols"], "crossed_ols": {"random": "(1 | rater)"}})
    with pytest.raises(ConfigError, match=r"sbc.*crossed design"):
        _config(sbc={"prior_from": "crossed_ols"})


def test_an_engine_structure_the_list_design_cannot_identify_is_refused():
    lists = {
        **DESIGN,
        "seen": "list",
        "random": "(1 | subj) + (1 | item)",
        "re_sd": {"subj": 0.6, "item": 0.4},
    }
    lists.pop("re_cor")
    engines = {"run": ["crossed_ols"], "crossed_ols": {"random": "(1 + cond | subj) + (1 | item)"}}
    with pytest.raises(ConfigError, match=r"engines\.crossed_ols\.random.*slope of cond by subj"):
        _config(lists, engines=engines)
