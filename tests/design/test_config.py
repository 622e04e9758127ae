"""Configuration: presets, TOML round trip, and every validation error path."""

from __future__ import annotations

import subprocess
import sys

import pytest

from study.cli.main import main
from study.design.config import config_from_dict, load_config
from study.errors import ConfigError


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
    ("[design]\ngroups = 3\ngroup_size = [3, 4]\n", r"must be one number or a list of 3"),
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
    assert "no such file and not a preset" in err and "default, seed" in err


def test_cli_exit_code_in_subprocess(write_config):
    path = write_config("[design]\nsigma = -1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "study", "truth", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == "study: error: design.sigma = -1: must be > 0\n"


def test_engine_variants_run_side_by_side(tmp_path):
    """``reml-kr`` runs the REML engine with its own options, as its own engine label."""
    from models.reml import RemlOptions
    from study.api import open_results, run_study

    text = (
        "name = 'variants'\nreplicates = 2\n[design]\ngroups = 5\ngroup_size = 5\n"
        "[engines]\nrun = ['reml', 'reml-kr']\n[engines.reml-kr]\nci = 'kenward-roger'\n"
    )
    (tmp_path / "v.toml").write_text(text)
    config = load_config(tmp_path / "v.toml")
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
