"""Engines beyond the two first ones run in studies like them: the built-in gee and ols,
and the example engine of docs/engines.md, given through the Python API or installed
through an entry point (as a third-party package would be)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from models.registry import ENTRY_POINT_GROUP, default_registry
from study.cli.main import main
from study.design.config import load_config
from study.design.generate import Design
from study.errors import ConfigError
from study.run.results import open_results
from study.usecases.running import run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "example_engine"

STUDY = """
name = "engines"
seed = 5
replicates = 3
[design]
groups = 8
group_size = 6
beta = [1.0, 0.5]
re_sd = [0.7, 0.3]
[engines]
run = RUN
"""


def _config(tmp_path: Path, engines: list[str]) -> Path:
    path = tmp_path / "engines.toml"
    path.write_text(STUDY.replace("RUN", repr(engines).replace("'", '"')))
    return path


@pytest.fixture
def example(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    sys.modules.pop("naive_ols", None)
    import naive_ols

    return naive_ols


def test_gee_and_ols_run_in_a_study_beside_reml(tmp_path):
    cfg = _config(tmp_path, ["reml", "gee", "ols", "gee-br"])
    cfg.write_text(cfg.read_text() + '[engines.gee-br]\ncov_type = "bias_reduced"\n')
    report = run(cfg, tmp_path / "run", workers=1)
    ds = open_results(report.path).isel(condition=0)
    assert list(ds.engine.values) == ["reml", "gee", "ols", "gee-br"]
    fixed = ds.sel(term=["(Intercept)", "X"])
    assert np.isfinite(fixed.estimate).all() and bool(ds.converged.all())
    # GEE with an exchangeable working correlation and OLS are both unbiased for beta;
    # the bias-reduced covariance only changes the SE (larger with 8 clusters)
    np.testing.assert_allclose(
        fixed.estimate.sel(engine="gee-br"), fixed.estimate.sel(engine="gee"), rtol=1e-12
    )
    assert (fixed.std_error.sel(engine="gee-br") > fixed.std_error.sel(engine="gee")).all()
    assert (fixed.df.sel(engine="ols") == 7).all()  # t with K - 1 df
    ran = ds.sel(term=["sd__(Intercept)", "sd__Observation"], engine=["gee", "ols"])
    assert np.isnan(ran.estimate).all() and np.isnan(ran.rhat).all()
    assert main(["summarize", str(report.path)]) == 0


def test_an_engine_given_through_the_python_api_runs_in_a_study(tmp_path, example, capsys):
    cfg = _config(tmp_path, ["reml", "naive_ols"])
    with pytest.raises(ConfigError, match=r"engines.run\[1\] = 'naive_ols': must be one of"):
        load_config(cfg)  # not registered: a config names registered engines only
    report = run(cfg, tmp_path / "run", workers=1, register=[example.SPEC])
    ds = open_results(report.path, register=[example.SPEC])
    assert list(ds.engine.values) == ["reml", "naive_ols"]
    # the engine's numbers: pooled OLS of each replicate's data
    config = load_config(cfg, default_registry().with_engines(example.SPEC))
    design = Design.from_study(config)
    for r in range(3):
        data = design.sample(r).data
        beta = np.linalg.lstsq(data.X, data.y, rcond=None)[0]
        got = ds.estimate.isel(condition=0).sel(replicate=r, engine="naive_ols")
        np.testing.assert_allclose(got.sel(term=["(Intercept)", "X"]), beta, rtol=1e-10)
    # resuming with the same engines is the same run; the version is stamped
    again = run(cfg, tmp_path / "run", workers=1, register=[example.SPEC])
    assert again.new == 0 and again.complete
    assert "damaged" not in capsys.readouterr().err  # its study.toml read with the engine
    with xr.open_dataset(report.path / "results.nc") as stored:
        assert "naive_ols" in stored.engine.values


def test_an_installed_engine_is_found_by_the_cli(tmp_path, monkeypatch, capsys):
    dist = tmp_path / "site" / "lmm_naive_ols-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lmm-naive-ols\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nnaive_ols = naive_ols:SPEC\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    default_registry.cache_clear()
    try:
        cfg = _config(tmp_path, ["naive_ols"])
        assert main(["run", str(cfg), "--out", str(tmp_path / "run"), "--workers", "1"]) == 0
        ds = open_results(tmp_path / "run")
        assert list(ds.engine.values) == ["naive_ols"] and bool(ds.converged.all())
    finally:
        default_registry.cache_clear()


def test_a_config_cannot_name_code_to_import(tmp_path, capsys):
    cfg = _config(tmp_path, ["reml", "os:system"])
    assert main(["run", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("study: error: engines.run[1] = 'os:system': must be one of")
    assert not (tmp_path / "run").exists()
