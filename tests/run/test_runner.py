"""Runner and storage: schema, resume after kill -9, extension, refusals, corrupt stores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from helpers import DATA, comparable

from study.cli.main import main
from study.design.config import load_config
from study.run.runner import run_study
from study.run.store import Store

SMALL = """
name = "small"
replicates = 6
seed = 7

[design]
groups = 8
group_size = 12
beta = [1.0, 0.5]
re_sd = [0.8, 0.4]
re_cor = [[1.0, 0.2], [0.2, 1.0]]
sigma = 1.0

[engines]
run = ["reml"]
"""

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> tuple[Path, xr.Dataset]:
    tmp = tmp_path_factory.mktemp("small")
    cfg_path = tmp / "small.toml"
    cfg_path.write_text(SMALL)
    report = run_study(load_config(cfg_path), tmp / "run")
    assert report.complete and report.done == 6
    with xr.open_dataset(report.path / "results.nc") as ds:
        return cfg_path, ds.load()


def test_results_schema(small_run):
    _, ds = small_run
    assert dict(ds.sizes) == {"condition": 1, "replicate": 6, "engine": 1, "term": 6}
    assert list(ds.condition.values) == ["base"]  # a study without [conditions]
    assert list(ds.term.values) == [
        "(Intercept)",
        "X",
        "sd__(Intercept)",
        "sd__X",
        "cor__(Intercept).X",
        "sd__Observation",
    ]
    assert list(ds.effect.values) == ["fixed"] * 2 + ["ran_pars"] * 4
    for var in ("estimate", "std_error", "ci_lower", "ci_upper", "rhat", "ess_bulk", "ess_tail"):
        assert ds[var].dims == ("condition", "replicate", "engine", "term")
    for var in ("converged", "fit_seconds", "message", "divergences"):
        assert ds[var].dims == ("condition", "replicate", "engine")
    assert ds.done.dims == ("condition", "replicate") and ds.done.all()
    assert ds.converged.dtype == bool
    # REML has no R-hat, ESS or divergences: NaN, never a made-up value
    assert np.isnan(ds.rhat).all() and np.isnan(ds.divergences).all()
    assert np.isfinite(ds.estimate.sel(term=["(Intercept)", "X"])).all()
    assert ds.true_value.dims == ("condition", "term")
    np.testing.assert_allclose(ds.true_value.values[0, :2], [1.0, 0.5])
    se = ds.true_se.values[0]
    assert np.isfinite(se[:2]).all() and np.isnan(se[2:]).all()
    assert np.isnan(ds.cond_value).all()  # random effects redrawn
    for key in ("config", "config_hash", "root_seed", "package_versions", "created"):
        assert key in ds.attrs
    assert ds.attrs["root_seed"] == 7
    np.testing.assert_array_equal(ds.replicate.values, np.arange(6))
    assert ds.condition_id.values[0] == load_config(small_run[0]).conditions[0].id
    assert load_config("default").hash() != ds.attrs["config_hash"]


def test_rerun_is_a_no_op_and_extension_adds(small_run, tmp_path):
    cfg_path, first = small_run
    cfg = load_config(cfg_path)
    out = tmp_path / "ext"
    run_study(cfg.with_replicates(4), out)
    report = run_study(cfg.with_replicates(6), out)  # extends: replicate count not hashed
    assert report.new == 2 and report.done == 6
    with xr.open_dataset(out / "results.nc") as ds:
        xr.testing.assert_identical(comparable(ds.load()), comparable(first))
    again = run_study(cfg.with_replicates(6), out)
    assert again.new == 0


def test_different_config_is_refused(small_run, tmp_path, capsys):
    cfg_path, _ = small_run
    out = tmp_path / "run"
    run_study(load_config(cfg_path).with_replicates(1), out)
    other = tmp_path / "other.toml"
    other.write_text(SMALL.replace("sigma = 1.0", "sigma = 2.0"))
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert main(["run", str(other), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different configuration" in err and "--overwrite" in err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before  # nothing lost
    assert (
        main(
            [
                "run",
                str(other),
                "--out",
                str(out),
                "--overwrite",
                "--replicates",
                "1",
                "--workers",
                "1",
            ]
        )
        == 0
    )


def test_corrupt_checkpoint_is_named(small_run, tmp_path, capsys):
    """Reading commands name a damaged piece and the repair (more in test_damaged_stores)."""
    cfg_path, _ = small_run
    out = tmp_path / "run"
    run_study(load_config(cfg_path).with_replicates(2), out)
    piece = next((out / "checkpoints").iterdir())
    piece.write_bytes(b"not a zip file")
    assert main(["summarize", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and piece.name in err and "recompute its replicates" in err
    assert main(["info", str(out)]) == 0
    assert f"{piece.name} (unreadable: ValueError)" in capsys.readouterr().out


def test_info_describes_a_run(small_run, tmp_path, capsys):
    cfg_path, _ = small_run
    out = tmp_path / "run"
    run_study(load_config(cfg_path).with_replicates(3), out)
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "done:       3 of 3 replicates" in text and "reml" in text and "[design]" in text
    assert main(["info", str(tmp_path / "nothing")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_kill_and_resume_matches_uninterrupted(tmp_path):
    """kill -9 mid-run, run again: same values as an uninterrupted run."""
    cmd = [sys.executable, "-m", "study", "run", "default", "--engines", "reml", "--workers", "1"]
    # 30 replicates: after the third piece ~1 s of fits remain (quiet machine), the
    # margin for the kill to land mid-run however the two cores are shared
    n = 30
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen(
        [*cmd, "--replicates", str(n), "--out", str(killed_dir)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300  # a hung start-up, not a slow one
        ck = killed_dir / "checkpoints"
        while not (ck.is_dir() and len(list(ck.glob("part-*.npz"))) >= 3):
            assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before 3 pieces"
            assert time.monotonic() < deadline, "the run wrote no 3 pieces in 300 s"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    partial = Store(killed_dir).load()
    assert partial is not None and 3 <= len(partial) < n, "kill came too late to test resume"
    assert not (killed_dir / "results.nc").exists()
    subprocess.run(
        [*cmd, "--replicates", str(n), "--out", str(killed_dir)],
        env=ENV,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*cmd, "--replicates", str(n), "--out", str(clean_dir)],
        env=ENV,
        check=True,
        capture_output=True,
    )
    with (
        xr.open_dataset(killed_dir / "results.nc") as a,
        xr.open_dataset(clean_dir / "results.nc") as b,
    ):
        assert a.sizes["replicate"] == n
        xr.testing.assert_identical(comparable(a.load()), comparable(b.load()))


def test_bad_cli_input_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "default", "--engines", "lmer"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["run", "default", "--replicates", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "must be a whole number from 1 to 1,000,000" in err
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["run", "default", "--out", str(f), "--engines", "reml"]) == 2
    assert "is a file" in capsys.readouterr().err


def test_fit_csv_json_is_tidy(capsys):
    import json

    data = DATA / "sleepstudy.csv"
    assert (
        main(["fit", str(data), "--y", "Reaction", "--x", "Days", "--group", "Subject", "--json"])
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    rows = doc["terms"]
    assert [r["term"] for r in rows][:2] == ["(Intercept)", "Days"]
    assert {"term", "effect", "estimate", "std_error", "ci_lower", "ci_upper", "df"} <= set(rows[0])
    assert {"statistic", "p_value", "rhat", "ess_bulk", "ess_tail"} <= set(rows[0])
    # lme4 1.1-31 REML (tests/data/sleepstudy_lme4.toml)
    assert rows[0]["estimate"] == pytest.approx(251.40510485, rel=1e-4)
    assert rows[0]["statistic"] == pytest.approx(rows[0]["estimate"] / rows[0]["std_error"])
    assert rows[0]["df"] == "inf" and rows[2]["statistic"] is None
    assert doc["engine"] == "reml" and doc["converged"] is True and doc["message"] == ""
    glance = doc["glance"]
    assert glance["criterion"] == pytest.approx(1743.628272, rel=1e-8)
    assert (glance["nobs"], glance["ngroups"], glance["singular"]) == (180, 18, False)
    assert set(doc["diagnostics"]) == {"divergences", "restarts", "max_rhat", "min_ess_bulk"}


def test_fit_csv_ci_options(capsys):
    import json

    data = DATA / "sleepstudy_unbalanced.csv"
    args = ["fit", str(data), "--y", "Reaction", "--x", "Days", "--group", "Subject"]
    assert main([*args, "--ci", "kenward-roger", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["terms"]
    # pbkrtest 0.5.2 (tests/data/lme4_inference.toml)
    assert rows[0]["df"] == pytest.approx(16.286291, rel=1e-4)
    assert rows[0]["std_error"] == pytest.approx(7.271989378, rel=1e-5)
    assert main([*args, "--ci", "satterthwaite"]) == 0
    out = capsys.readouterr().out
    assert "12.75" in out and "fit: nobs 131, ngroups 18" in out and "singular no" in out
    assert main([*args, "--engine", "bayes", "--ci", "t"]) == 2
    assert "--ci: not an option of engine bayes (an option of reml)" in capsys.readouterr().err


def test_fit_csv_errors(tmp_path, capsys):
    data = DATA / "sleepstudy.csv"
    assert main(["fit", str(data), "--y", "Reaction", "--x", "Nope", "--group", "Subject"]) == 2
    assert "Nope" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "x.csv"), "--y", "a", "--x", "b", "--group", "c"]) == 2
    assert "not found" in capsys.readouterr().err


def test_both_engines_side_by_side_with_kept_posteriors(tmp_path):
    """reml and bayes in one Dataset; the first keep_draws posteriors kept as netCDF."""
    cfg_path = tmp_path / "both.toml"
    cfg_path.write_text(
        SMALL.replace('run = ["reml"]', 'run = ["reml", "bayes"]').replace(
            "seed = 7", "seed = 7\nkeep_draws = 1"
        )
    )
    report = run_study(load_config(cfg_path).with_replicates(2), tmp_path / "run")
    with xr.open_dataset(report.path / "results.nc") as ds:
        assert list(ds.engine.values) == ["reml", "bayes"]
        bayes = ds.sel(engine="bayes")
        assert np.isfinite(bayes.rhat).all() and np.isfinite(bayes.ess_bulk).all()
        assert (bayes.divergences >= 0).all()
        assert np.isnan(ds.sel(engine="reml").rhat).all()
        # both engines estimate the same fixed effects on the same data
        diff = abs(bayes.estimate - ds.sel(engine="reml").estimate).sel(term=["(Intercept)", "X"])
        assert (diff < 2 * bayes.std_error.sel(term=["(Intercept)", "X"])).all()
    kept = sorted(p.name for p in (report.path / "posteriors").iterdir())
    cid = load_config(cfg_path).conditions[0].id
    assert kept == [f"bayes-{cid}-replicate-0000000.nc"]
    tree = xr.open_datatree(report.path / "posteriors" / kept[0])
    assert "posterior" in tree.children and "sample_stats" in tree.children


def test_summarize_partial_run_and_api(small_run, tmp_path, capsys):
    from study.api import compute_measures, is_partial, open_results, tidy

    cfg_path, _ = small_run
    out = tmp_path / "run"
    run_study(load_config(cfg_path).with_replicates(3), out)
    # pretend the run was asked for more and killed before finishing
    manifest = Store(out).read_manifest()
    manifest["replicates"] = 10
    Store(out).write_manifest(manifest, Store(out).config_text())
    (out / "results.nc").unlink()
    ds = open_results(out)
    assert ds.sizes["replicate"] == 3 and is_partial(ds)
    assert main(["summarize", str(out), "--format", "markdown"]) == 0
    text = capsys.readouterr().out
    assert "3 replicates of 10 requested (PARTIAL run" in text
    assert "| term | AvgEst | TrueEst | AvgSE | TrueSE |" in text
    with xr.open_dataset(out / "summary.nc") as s:
        assert s["value"].dims == ("measure", "condition", "engine", "term")
        chosen = [str(m) for m in s.measure.values]  # only what the summary shows
        xr.testing.assert_allclose(
            s["value"].load(), compute_measures(ds, measures=chosen)["value"]
        )
    frame = tidy(ds)
    assert len(frame) == 3 * 1 * 6 and {"replicate", "engine", "term", "estimate"} <= set(frame)
    assert main(["summarize", str(out), "--measures", "bias,nope"]) == 2
    assert "unknown nope" in capsys.readouterr().err
