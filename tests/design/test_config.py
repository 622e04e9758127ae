"""Configuration: presets, TOML round trip, and every validation error path."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import pytest
from helpers import ROOT, one_line_error

from models.bayes import BayesOptions
from models.reml import RemlOptions
from models.validate import OptionError
from study.cli.main import main
from study.design.config import MAX_REPLICATES, config_from_dict, load_config
from study.errors import ConfigError
from study.run import batch


def test_presets_load(default_config, seed_config):
    assert seed_config.design.repeats == 50 and seed_config.design.fixed_random_effects
    assert seed_config.replicates == 1000
    assert default_config.design.repeats == 1 and not default_config.design.fixed_random_effects
    for cfg in (default_config, seed_config):
        d = cfg.design
        assert (d.groups, d.group_size, d.beta, d.re_sd, d.sigma) == (
            40,
            50,
            (5.0, 2.0),
            (1.0, 2.0),
            1.0,
        )
        assert d.predictor.distribution == "rounded_uniform"


def test_toml_round_trip(default_config, seed_config, write_config):
    for cfg in (default_config, seed_config):
        again = load_config(write_config(cfg.to_toml()))
        assert again.design == cfg.design
        assert again.hash() == cfg.hash()
        assert (again.name, again.replicates, again.seed, again.engines) == (
            cfg.name,
            cfg.replicates,
            cfg.seed,
            cfg.engines,
        )


def test_hash_ignores_replicates_only(default_config):
    assert default_config.with_replicates(7).hash() == default_config.hash()
    other = config_from_dict({"design": {"sigma": 2.0}}, default_name="x")
    base = config_from_dict({"design": {}}, default_name="x")
    assert other.hash() != base.hash()


def test_group_size_per_group():
    cfg = config_from_dict({"design": {"groups": 3, "group_size": [2, 3, 4]}}, default_name="x")
    assert list(cfg.design.sizes) == [2, 3, 4]


BAD = [
    ("[design]\nre_sd = [-1.0, 2.0]\n", r"design.re_sd\[0\] = -1.0: must be >= 0"),
    ("[design]\nsigma = 0\n", r"design.sigma = 0: must be > 0"),
    (
        "[design]\nre_cor = [[1.0, 1.2], [1.2, 1.0]]\n",
        r"design.re_cor = .*must be positive definite",
    ),
    ("[design]\nre_cor = [[1.0, 0.5], [0.4, 1.0]]\n", r"must be symmetric"),
    ("[design]\ngroups = 1\n", r"design.groups = 1: must be >= 2"),
    ("[design]\ngroup_size = 0\n", r"design.group_size = 0: must be >= 1"),
    ("[design]\ngroups = 2\ngroup_size = [3, 0]\n", r"design.group_size\[1\] = 0: must be >= 1"),
    ("[design]\ngroups = 3\ngroup_size = [3, 4]\n", r"must be one number, a list of 3"),
    ("[design]\nbeta = [1.0, 2.0, 3.0]\n", r"design.beta = \[1.0, 2.0, 3.0\]: must have 2 values"),
    ("[design]\nfoo = 1\n", r"unknown key design.foo; allowed keys in \[design\]: beta"),
    ("colour = 1\n", r"unknown key colour; allowed keys: "),
    ("[design]\nrepeats = 1.5\n", r"design.repeats = 1.5: must be an integer >= 1"),
    (
        "[design.predictor]\ndistribution = 'gamma'\n",
        r"must be one of rounded_uniform, uniform, normal",
    ),
    ("[design.predictor]\nlow = 5\nhigh = 1\n", r"design.predictor.high = 1.0: must be > low"),
    ("level = 1.5\n", r"level = 1.5: must be > 0 and < 1"),
    ("[engines]\nrun = ['lmer']\n", r"engines.run\[0\] = 'lmer': must be one of reml, bayes"),
    ("[engines]\nrun = ['reml-KR']\n", r"engines.run\[0\] = 'reml-KR': must be one of"),
    ("[engines]\nrun = ['lmer-kr']\n", r"or one of them with a suffix for a variant"),
    (
        "[engines]\nrun = ['reml']\n[engines.reml-kr]\nci = 'kenward-roger'\n",
        r"does not include 'reml-kr'",
    ),
    ("[engines]\nrun = ['reml-kr']\n[engines.reml-kr]\nci = 'kr'\n", r"engines.reml-kr.ci = 'kr'"),
    ("seed = -3\n", r"seed = -3: must be >= 0"),
    ("[design\n", r"is not valid TOML"),
]


@pytest.mark.parametrize(("text", "pattern"), BAD, ids=[b[1][:30] for b in BAD])
def test_validation_errors(text, pattern, write_config, capsys):
    path = write_config(text)
    with pytest.raises(ConfigError, match=pattern):
        load_config(path)
    # the CLI: one line on stderr, exit code 2, nothing on stdout
    assert main(["truth", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("study: error: ")


def test_missing_config_file(capsys, tmp_path):
    assert main(["truth", str(tmp_path / "none.toml")]) == 2
    err = capsys.readouterr().err
    assert "no such file and not a preset" in err
    assert "default, cluster-power, cluster-trial" in err and "seed" in err


def test_cli_exit_code_in_subprocess(write_config):
    path = write_config("[design]\nsigma = -1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "study", "truth", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == "study: error: design.sigma = -1: must be > 0\n"


def test_engine_variants_run_side_by_side(make_config, tmp_path):
    """``reml-kr`` runs the REML engine with its own options, as its own engine label."""
    from study.api import open_results, run_study

    path = make_config(
        name="variants",
        replicates=2,
        seed=None,
        design={"groups": 5, "group_size": 5, "beta": None, "re_sd": None, "re_cor": None},
        engines={"run": ["reml", "reml-kr"], "reml-kr": {"ci": "kenward-roger"}},
    )
    config = load_config(path)
    assert config.engines == ("reml", "reml-kr")
    assert config.engine_options["reml-kr"] == RemlOptions(ci="kenward-roger")
    assert config.engine_options["reml"] == RemlOptions()
    run_study(config, tmp_path / "out")
    ds = open_results(tmp_path / "out")
    assert list(ds.engine.values) == ["reml", "reml-kr"]
    both = ds.isel(condition=0)
    # same estimates (the same engine on the same data), other intervals and df
    assert (both.estimate.sel(engine="reml") == both.estimate.sel(engine="reml-kr")).all()
    df = both.df.sel(term="X")
    assert (df.sel(engine="reml") == float("inf")).all()
    assert (df.sel(engine="reml-kr") < 10).all()


# -- from the architecture review (defects 1, 4, 6, 7, 10, 12) ----------------------------
def test_hash_distinguishes_engine_lists_and_follows_every_setting():
    base = config_from_dict({}, default_name="x")
    hashes = {
        base.with_engines(e).hash() for e in (("reml",), ("reml", "bayes"), ("bayes", "reml"))
    }
    assert len(hashes) == 3
    # derived from the config: a default written out explicitly changes nothing ...
    explicit = config_from_dict({"engines": {"bayes": {"chains": 4}}}, default_name="x")
    assert explicit.hash() == base.hash()
    # ... and any setting that changes results changes it, the others do not
    for table in (
        {"engines": {"bayes": {"ess_floor": 100}}},
        {"engines": {"reml": {"optimizers": ["bfgs"]}}},
        {"engines": {"bayes": {"priors": {"lkj_eta": 1.0}}}},
        {"design": {"predictor": {"high": 30.0}}},
        {"design": {"repeats": 2}},
        {"seed": 1},
        {"level": 0.9},
    ):
        assert config_from_dict(table, default_name="x").hash() != base.hash(), table
    for table in ({"name": "other"}, {"replicates": 7}, {"keep_draws": 0}):
        assert config_from_dict(table, default_name="x").hash() == base.hash(), table


def test_huge_replicate_count_is_refused_before_anything_is_written(make_config, tmp_path, capsys):
    """A bounded replicate count, never a list of every index."""
    out = tmp_path / "R"
    with pytest.raises(SystemExit) as exc:
        main(["run", "default", "--replicates", "1000000000000", "--out", str(out)])
    assert exc.value.code == 2
    assert f"from 1 to {MAX_REPLICATES:,}" in capsys.readouterr().err
    cfg = make_config(replicates=1000000000000)
    assert main(["run", str(cfg), "--out", str(out)]) == 2
    assert "replicates = 1000000000000: must be <= 1,000,000" in one_line_error(capsys)
    assert not out.exists()


def test_engine_options_are_typed_at_load_and_checked_against_the_design():
    cfg = config_from_dict({"engines": {"reml": {"ci": "t"}}}, default_name="x")
    assert isinstance(cfg.engine_options["reml"], RemlOptions)
    assert cfg.engine_options["reml"].ci == "t"
    assert isinstance(cfg.engine_options["bayes"], BayesOptions)
    bad = {"engines": {"bayes": {"priors": {"fixed_scale": [1.0, 2.0, 3.0]}}}}
    with pytest.raises(ConfigError, match=r"engines.bayes.priors.fixed_scale = \[1.0, 2.0, 3.0\]"):
        config_from_dict(bad, default_name="x")
    # built once per process: the same options object gives the same engine
    again = config_from_dict({"engines": {"reml": {"ci": "t"}}}, default_name="y")
    assert batch.PROCESS.engine(cfg, "reml") is batch.PROCESS.engine(again, "reml")


STYLE = re.compile(r"^[\w.\[\]]+ = .+: (must|has) ")


@pytest.mark.parametrize(
    "make",
    [
        lambda: config_from_dict({"design": {"sigma": -1}}, default_name="x"),
        lambda: config_from_dict({"design": {"groups": 1.5}}, default_name="x"),
        lambda: config_from_dict({"level": 2}, default_name="x"),
        lambda: config_from_dict({"engines": {"reml": {"ci": "z"}}}, default_name="x"),
        lambda: config_from_dict({"engines": {"bayes": {"chains": 0}}}, default_name="x"),
        lambda: config_from_dict(
            {"engines": {"bayes": {"priors": {"sd_df": -1}}}}, default_name="x"
        ),
        lambda: RemlOptions(maxiter=0),
        lambda: RemlOptions(level="0.95"),
        lambda: BayesOptions(draws=2),
        lambda: BayesOptions(sampler="stan"),
    ],
)
def test_every_setting_error_reads_key_value_rule(make):
    """One validation style: ``key = value: must ...``."""
    with pytest.raises(ValueError) as exc:
        make()
    assert isinstance(exc.value, OptionError | ConfigError)
    assert STYLE.match(str(exc.value)), str(exc.value)


def test_config_round_trips_through_tomli_w(write_config):
    table = {
        "replicates": 12,
        "design": {
            "groups": 3,
            "group_size": [2, 3, 4],
            "predictors": ["A", "B"],
            "beta": [1.0, 2.0, 3.0],
            "re_sd": [1.0, 0.5, 0.2],
            "re_cor": [[1.0, 0.1, 0.0], [0.1, 1.0, 0.0], [0.0, 0.0, 1.0]],
            "predictor": {"distribution": "normal", "sd": 2.0},
        },
        "engines": {
            "run": ["bayes", "reml"],
            "bayes": {"priors": {"sd_scale": [1.0, 2.0, 3.0]}},
            "reml": {"optimizers": ["bfgs", "powell"]},
        },
    }
    cfg = config_from_dict(table, default_name="rt")
    text = cfg.to_toml()
    assert tomllib.loads(text)["engines"]["run"] == ["bayes", "reml"]
    again = load_config(write_config(text, "rt.toml"))
    assert again == cfg and again.hash() == cfg.hash()
    assert not (ROOT / "study" / "tomlwrite.py").exists()
    import models.bayes.graph as graph
    import study.analysis.mcse as mcse

    assert not hasattr(graph, "placeholder_stats") and not hasattr(mcse, "ratio_to_truth")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ('engines = ["reml"]\n[engines.bayes]\nchains = 2\n', r"not valid TOML .*run = \["),
        (
            'engines = ["reml"]\n',
            r"engines = \['reml'\]: must be a table, not a list; .*\[engines\]",
        ),
        ("[engines]\nrun = ['reml']\n[engines.bayes]\nchains = 2\n", r"add it to engines.run"),
        ("colour = 1\n", r"allowed keys: conditions, design, engines, keep_draws"),
        (
            "[engines]\nrnu = ['reml']\n",
            r"unknown key engines.rnu \(did you mean run\?\); allowed keys in \[engines\]",
        ),
    ],
)
def test_engine_traps_get_a_fix(text, pattern, write_config, capsys):
    """Config traps met by following the README."""
    path = write_config(text)
    assert main(["truth", str(path)]) == 2
    assert re.search(pattern, one_line_error(capsys))


def test_an_options_table_does_not_drop_the_other_engine():
    cfg = config_from_dict({"engines": {"reml": {"ci": "t"}}}, default_name="x")
    assert cfg.engines == ("reml", "bayes")
