"""Simulation-based calibration on the runner: ranks, configuration, the command, and
that SBC runs like a study (resume, workers, shards give the same numbers)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import xarray as xr
from helpers import file_tree, study_toml
from scipy import stats

from models.bayes.options import BayesOptions
from models.validate import OptionError
from study.cli.main import main
from study.design.config import config_from_text, load_config
from study.design.sbc import as_sbc, sbc_settings
from study.design.seeds import fixed_u_rng, sbc_rng
from study.errors import ConfigError
from study.run.kinds.sbc import RANK_COUNTS, thinned_ranks
from study.run.results import open_results
from study.run.runner import run_study
from study.run.shards import merge, parse_shard

BAYES = {"chains": 2, "draws": 200, "tune": 200}


def _sbc(engines: dict | None = None, conditions: dict | None = None, **sbc) -> str:
    """SBC of K = 12 groups of 8 (6 simulations, reml and a short bayes); `sbc` keys
    override the [sbc] table, `engines` replaces the [engines] table."""
    return study_toml(
        name="sbc-small",
        replicates=None,
        seed=4,
        design={"groups": 12, "group_size": 8, "re_cor": [[1.0, 0.0], [0.0, 1.0]]},
        engines=engines or {"run": ["reml", "bayes"], "bayes": BAYES},
        conditions=conditions,
        sbc={"simulations": 6} | sbc,
    )


SMALL = _sbc()


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


# -- ranks ----------------------------------------------------------------------------
def test_ranks_of_an_exchangeable_truth_are_uniform():
    """A truth drawn like the draws has a uniform rank (Talts et al. 2018, Theorem 1):
    2,000 replications, 20-bin chi-square on the PIT, fixed seed."""
    rng = np.random.default_rng(1)
    pits = []
    for _ in range(2000):
        sample = rng.standard_normal((2, 250, 3))  # iid: ESS = 500 draws
        truth = rng.standard_normal(3)
        rank, n_ranks, thin, _ = thinned_ranks(sample, truth, 500.0, rng)
        assert thin == 1 and n_ranks == 500
        pits.append((rank + rng.uniform(size=3)) / n_ranks)
    counts = np.histogram(np.ravel(pits), bins=20, range=(0, 1))[0]
    assert stats.chisquare(counts).pvalue > 0.001


def test_thinning_follows_the_ess_and_the_rank_count_is_divisor_friendly():
    rng = np.random.default_rng(2)
    draws = rng.standard_normal((4, 250, 2))  # 1000 draws
    rank, n_ranks, thin, chosen = thinned_ranks(draws, np.zeros(2), 250.0, rng)
    assert thin == 4 and n_ranks == 200 and chosen.shape == (199, 2)  # 250 kept -> 200 ranks
    assert ((rank >= 0) & (rank < n_ranks)).all()
    assert all(r % 20 == 0 for r in RANK_COUNTS)
    # no usable ESS: thinned as far as 19 draws allow, 20 ranks
    _, n_ranks, thin, _ = thinned_ranks(draws, np.zeros(2), float("nan"), rng)
    assert n_ranks == 20 and 4 * len(range(0, 250, thin)) >= 19
    # the selection depends on positions, not values: the truth above every draw
    rank, _, _, _ = thinned_ranks(draws, np.full(2, 99.0), 1000.0, rng)
    assert (rank == 999).all()
    with pytest.raises(ValueError, match="at least 19"):
        thinned_ranks(draws[:, :4], np.zeros(2), 8.0, rng)


def test_the_sbc_stream_is_not_a_design_stream():
    """Simulation 0's key (c, 0, 2, 0, 0) must not collide with the fixed-u key (c, 0, 2)."""
    cid = "0123abcd" * 2
    assert not np.array_equal(sbc_rng(5, cid, 0).random(4), fixed_u_rng(5, cid).random(4))


# -- configuration ------------------------------------------------------------------------
def test_sbc_configuration_round_trips_and_extends_without_a_new_hash():
    cfg = config_from_text(SMALL, default_name="x", label="x")
    sbc = as_sbc(cfg)
    settings = sbc_settings(sbc)
    assert sbc.engines == ("bayes",) and sbc.replicates == 6 and settings.prior_from == "bayes"
    again = config_from_text(sbc.to_toml(), default_name="x", label="x")
    assert again.hash() == sbc.hash() and sbc_settings(again) == settings
    assert as_sbc(cfg, 50).hash() == sbc.hash()  # more simulations extend the run
    wide = config_from_text(_sbc(generator_prior_scale=2.0), default_name="x", label="x")
    assert as_sbc(wide).hash() != sbc.hash()
    assert load_config("default").hash() == "6e63bb92b426f31c"  # (generator 2) SBC adds nothing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (_sbc(thin=3), "unknown key sbc.thin; allowed keys in [sbc]"),
        (_sbc(generator_prior_scale=0), "sbc.generator_prior_scale = 0: must be > 0"),
        (_sbc(simulations=0), "sbc.simulations = 0"),
        (_sbc(prior_from="reml"), "sbc.prior_from = 'reml': must be an engine"),
        (_sbc({"run": ["reml"]}), "has no engine with a prior"),
    ],
)
def test_bad_sbc_tables_are_refused_with_the_key(text, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        config_from_text(text, default_name="x", label="x")


def test_sbc_of_a_study_without_a_bayesian_engine_is_refused():
    cfg = load_config("default").with_engines(("reml",))
    with pytest.raises(ConfigError, match="add an engine with a prior"):
        as_sbc(cfg, 10)


def test_the_wrong_likelihood_needs_the_marginal_model_and_no_kernel():
    assert BayesOptions(likelihood="no-logdet").likelihood == "no-logdet"
    with pytest.raises(OptionError, match="parameterization"):
        BayesOptions(likelihood="no-logdet", parameterization="centered")
    with pytest.raises(OptionError, match="no hand-written kernel"):
        BayesOptions(likelihood="no-logdet", algebra="kernel")


def test_cli_refuses_misuse_in_one_line(tmp_path, capsys):
    cfg = tmp_path / "s.toml"
    cfg.write_text(SMALL)
    assert main(["run", str(cfg), "--out", str(tmp_path / "r")]) == 2
    err = _one_line(capsys)
    assert "has an [sbc] table" in err and f"study sbc {cfg}" in err
    with pytest.raises(SystemExit) as exit_:
        main(["sbc", str(cfg), "--simulations", "0"])
    assert exit_.value.code == 2 and "--simulations" in _one_line(capsys)
    assert main(["sbc", str(tmp_path / "missing.toml")]) == 2
    assert "no such file" in _one_line(capsys)
    assert not (tmp_path / "r").exists()


# -- a small SBC run, end to end ----------------------------------------------------
@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sbc")
    cfg = tmp / "small.toml"
    cfg.write_text(SMALL)
    out = tmp / "run"
    assert main(["sbc", str(cfg), "--out", str(out), "--workers", "1"]) == 0
    return cfg, out


def test_the_run_writes_sbc_nc_with_ranks_pit_and_the_drawn_parameters(small_run, capsys):
    _, out = small_run
    ds = xr.open_dataset(out / "sbc.nc").load()
    assert dict(ds.sizes) == {"condition": 1, "simulation": 6, "engine": 1, "term": 7}
    assert list(ds["term"].values)[-1] == "loglik" and list(ds["engine"].values) == ["bayes"]
    n_ranks = ds["n_ranks"].values[..., None]
    rank = ds["rank"].values
    assert ((rank >= 0) & (rank < n_ranks)).all() and np.isin(n_ranks, RANK_COUNTS).all()
    pit = ds["pit"].values
    assert ((rank / n_ranks <= pit) & (pit < (rank + 1) / n_ranks)).all()
    truth = ds["true_value"].values[0]
    assert (truth[:, 2:4] > 0).all() and (truth[:, 5] > 0).all()  # SDs and sigma
    assert np.isfinite(truth).all() and ds["done"].all()
    assert (out / "summary.md").read_text().startswith("### Simulation-based calibration")


def test_summarize_plot_report_and_info_read_an_sbc_run(small_run, capsys):
    _, out = small_run
    capsys.readouterr()
    assert main(["summarize", str(out)]) == 0
    text = capsys.readouterr().out
    assert "PIT-ECDF uniformity test" in text and "loglik" in text
    assert main(["info", str(out)]) == 0
    assert "simulations" in capsys.readouterr().out
    assert main(["plot", str(out)]) == 0
    assert {p.name for p in (out / "plots").glob("*.png")} == {
        "sbc-ranks-bayes.png",
        "sbc-ecdf-bayes.png",
    }
    assert main(["report", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert "Uniformity of the ranks" in html and "sbc-ecdf-bayes" in html


def _ranks(out) -> xr.Dataset:
    ds = open_results(out)
    return ds[["rank", "pit", "true_value", "n_ranks", "thin", "estimate"]].drop_attrs()


def test_extending_resuming_workers_and_shards_give_the_same_simulations(small_run, tmp_path):
    """Simulation s depends on (root seed, design, s) alone: extend 6 -> 9 in place,
    a fresh 9 with 2 workers, and 2 shards merged all hold the same numbers."""
    cfg_path, out = small_run
    cfg = as_sbc(load_config(cfg_path), 9)
    extended = tmp_path / "extended"
    run_study(as_sbc(load_config(cfg_path), 6), extended)
    run_study(cfg, extended)
    first = _ranks(out)
    xr.testing.assert_identical(_ranks(extended).isel(simulation=slice(0, 6)), first)
    workers = tmp_path / "workers"
    assert main(["sbc", str(cfg_path), "--simulations", "9", "--out", str(workers)]) == 0
    xr.testing.assert_identical(_ranks(workers), _ranks(extended))
    sharded = tmp_path / "sharded"
    for i in (1, 2):
        run_study(cfg, sharded, shard=parse_shard(f"{i}/2"))
    merge([sharded])
    xr.testing.assert_identical(_ranks(sharded), _ranks(extended))
    assert (sharded / "sbc.nc").is_file() and not (sharded / "results.nc").exists()


def test_a_grid_is_calibrated_per_condition(tmp_path, capsys):
    """Each condition draws its own simulations with its own design; summaries and
    figures come per condition."""
    cfg = tmp_path / "grid.toml"
    cfg.write_text(_sbc(conditions={"groups": [8, 12]}, simulations=3))
    out = tmp_path / "grid"
    assert main(["sbc", str(cfg), "--out", str(out), "--workers", "1"]) == 0
    ds = open_results(out)
    assert list(ds["condition"].values) == ["groups=8", "groups=12"] and ds.sizes["simulation"] == 3
    truth = ds["true_value"].values
    assert not np.allclose(truth[0], truth[1])  # each condition its own streams
    capsys.readouterr()
    assert main(["plot", str(out)]) == 0
    stems = {p.stem for p in (out / "plots").glob("*.png")}
    assert stems == {f"sbc-{k}-bayes-groups={g}" for k in ("ranks", "ecdf") for g in (8, 12)}
    assert main(["summarize", str(out)]) == 0
    text = capsys.readouterr().out
    assert "groups=8" in text and "groups=12" in text


@pytest.mark.slow
def test_an_sbc_on_a_dask_cluster_gives_the_serial_simulations(small_run, tmp_path):
    from distributed import LocalCluster

    cfg, out = small_run
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        dask = tmp_path / "dask"
        args = ["sbc", str(cfg), "--out", str(dask), "--scheduler", cluster.scheduler_address]
        assert main(args) == 0
    xr.testing.assert_identical(_ranks(dask), _ranks(out))


def test_engines_of_one_sbc_run_must_share_the_prior_it_draws_from():
    engines = {"run": ["bayes", "bayes-narrow"], "bayes": BAYES}
    two = _sbc(engines | {"bayes-narrow": {"likelihood": "no-logdet"}})
    ok = as_sbc(config_from_text(two, default_name="x", label="x"))
    assert ok.engines == ("bayes", "bayes-narrow")  # same priors, other likelihood: fine
    narrow = _sbc(
        engines | {"bayes-narrow": {"likelihood": "no-logdet", "priors": {"sd_scale": 0.1}}}
    )
    with pytest.raises(ConfigError, match=re.escape("engines.bayes-narrow.priors = '(a table)'")):
        as_sbc(config_from_text(narrow, default_name="x", label="x"))


def test_a_correlation_of_one_generates_data_instead_of_crashing():
    """LKJ draws can hit |cor| = 1 for a small eta: C is then only semi-definite."""
    from study.design.generate import Design

    cfg = config_from_text(SMALL, default_name="x", label="x")
    design = Design.from_study(cfg)
    terms = np.array([1.0, 0.5, 0.8, 0.4, 1.0, 0.7])  # beta, SDs, cor = 1, sigma
    sample = design.sample_from(terms, np.random.default_rng(0), 0)
    u = sample.u
    assert np.isfinite(sample.data.y).all()
    assert np.allclose(u[:, 1], 0.5 * u[:, 0])  # perfectly correlated: u_1 = (0.4/0.8) u_0


def test_an_sbc_run_with_a_damaged_manifest_is_still_an_sbc_run(small_run, tmp_path, capsys):
    import shutil

    from study.run.results import store_of

    _, out = small_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "sbc.nc").unlink()
    (copy / "manifest.json").write_text("{not json")
    assert store_of(copy).layout.results_file == "sbc.nc"
    assert main(["summarize", str(copy)]) == 2
    err = _one_line(capsys)
    assert "manifest.json is corrupt" in err and "study sbc" in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["summarize", "RUN", "--measures", "bias"],
            "--measures: not an option of a simulation-based calibration's summary",
        ),
        (
            ["summarize", "RUN", "--format", "csv"],
            "--format 'csv': the summary of a simulation-based calibration is one of table",
        ),
        (["plot", "RUN", "--what", "coverage"], "--what: unknown figure coverage; choose from sbc"),
        (
            ["plot", "RUN", "--replicate", "1"],
            "--replicate: not an option of a simulation-based calibration's figures",
        ),
    ],
)
def test_coverage_options_on_an_sbc_run_are_refused(small_run, args, expected, capsys):
    _, out = small_run
    before = file_tree(out)
    capsys.readouterr()
    assert main([str(out) if a == "RUN" else a for a in args]) == 2
    assert expected in _one_line(capsys)
    assert file_tree(out) == before
