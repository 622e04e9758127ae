"""The truth of a replicate's observed rows, stored per replicate (issue 25, item 7).

With missing outcomes each replicate's ``Sample`` carries ``observed_cov``, the
Var(beta_hat) of the GLS estimator with the true V on the rows it observed; the
coverage study stores ``sqrt(diag(observed_cov))`` as ``observed_true_se`` (condition,
replicate, term).  Most tests here attach a known ``observed_cov`` to each sample (so
the stored values can be checked exactly); one runs a design with missing outcomes.
Stores written before the variable existed open with it NaN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from study.analysis.measures import compute_measures
from study.analysis.tidy import tidy
from study.design.config import load_config
from study.design.generate import Design, Sample
from study.run.results import open_results, read_results_file, store_of
from study.run.runner import run_study
from study.run.store import MANIFEST
from study.schema import PAIR_TERM_VARS

#: the observed rows' Var(beta_hat) of replicate r: BASE * (1 + r / 10)
BASE = np.array([[0.09, 0.01], [0.01, 0.04]])


def _with_observed_cov(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Design.sample

    def sample(self: Design, replicate: int) -> Sample:
        s = real(self, replicate)
        return Sample(s.replicate, s.data, s.u, BASE * (1 + replicate / 10))

    monkeypatch.setattr(Design, "sample", sample)


def _strip(path: Path, name: str = "observed_true_se") -> None:
    """Rewrite a checkpoint piece without ``name``: a piece of an older version."""
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k != name}
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def test_observed_true_se_round_trips_through_a_run(make_config, tmp_path, monkeypatch):
    """run_pair stores sqrt(diag(observed_cov)) on the fixed effects, NaN elsewhere; the
    pieces, results.nc and open_results hold it; the measures use its RMS."""
    _with_observed_cov(monkeypatch)
    cfg = load_config(make_config(replicates=3))
    report = run_study(cfg, tmp_path / "R")
    assert report.complete
    ds = open_results(report.path)
    obs = ds["observed_true_se"]
    assert obs.dims == ("condition", "replicate", "term")
    assert obs.attrs["description"] == PAIR_TERM_VARS["observed_true_se"]
    scale = np.sqrt(1 + np.arange(3) / 10)[:, None]
    want = np.sqrt(np.diag(BASE))[None, :] * scale
    np.testing.assert_allclose(obs.sel(term=["(Intercept)", "X"]).values[0], want, rtol=1e-15)
    assert np.isnan(obs.sel(term=[t for t in ds.term.values if t.startswith("sd__")])).all()
    with np.load(next((report.path / "checkpoints").glob("part-*.npz"))) as npz:
        assert npz["observed_true_se"].shape == (3, ds.sizes["term"])
    from_file = read_results_file(store_of(report.path))
    xr.testing.assert_equal(from_file["observed_true_se"], obs)
    # ModSE / TrueSE over the RMS of the replicates' own true SE, not the coordinate
    summary = compute_measures(ds, measures=["model_se", "modse_truese"])
    rms = np.sqrt(np.mean(want**2, axis=0))
    v = summary["value"].sel(condition="base", engine="reml", term=["(Intercept)", "X"])
    np.testing.assert_allclose(
        v.sel(measure="modse_truese").values, v.sel(measure="model_se").values / rms, rtol=1e-12
    )
    assert tidy(ds)["observed_true_se"].notna().sum() == 3 * 2  # a row per replicate x fixed


def test_no_missing_outcomes_stores_nan_and_the_measures_stay(make_config, tmp_path):
    """Without observed_cov the variable is all NaN, and the measures are bit-identical
    to those of the same results without it (the true_se coordinate)."""
    ds = open_results(run_study(load_config(make_config(replicates=3)), tmp_path / "R").path)
    assert np.isnan(ds["observed_true_se"]).all()
    new = compute_measures(ds)
    old = compute_measures(ds.drop_vars("observed_true_se"))
    xr.testing.assert_identical(new, old)


def test_stores_older_than_the_variable_open_with_nan(make_config, tmp_path):
    """Checkpoints and results.nc written before observed_true_se existed still open
    (the variable NaN), resume without refitting, and mix with new pieces."""
    path = make_config(replicates=2)
    out = tmp_path / "R"
    run_study(load_config(path), out)
    (piece,) = (out / "checkpoints").glob("part-*.npz")
    _strip(piece)
    with np.load(piece) as npz:
        assert "observed_true_se" not in npz.files and "estimate" in npz.files
    with xr.open_dataset(out / "results.nc") as ds:
        old = ds.drop_vars("observed_true_se").load()
    old.to_netcdf(out / "results.nc", engine="h5netcdf")
    ds = open_results(out)  # from the pieces
    assert np.isnan(ds["observed_true_se"]).all() and ds.sizes["replicate"] == 2
    # a resume keeps the old piece (nothing set aside) and adds a new one beside it
    report = run_study(load_config(path).with_replicates(3), out)
    assert report.complete and not (out / "damaged").exists()
    ds = open_results(out)
    assert ds.sizes["replicate"] == 3 and np.isnan(ds["observed_true_se"]).all()
    # results.nc alone (no manifest, no pieces): read as the old file, the variable NaN
    bare = tmp_path / "bare"
    bare.mkdir()
    old.to_netcdf(bare / "results.nc", engine="h5netcdf")
    assert not (bare / MANIFEST).exists()
    alone = open_results(bare)
    assert alone["observed_true_se"].dims == ("condition", "replicate", "term")
    assert np.isnan(alone["observed_true_se"]).all()
    assert alone["observed_true_se"].attrs["description"] == PAIR_TERM_VARS["observed_true_se"]


def test_a_design_with_missing_outcomes_stores_each_replicates_truth(tmp_path):
    """MCAR outcomes: every engine fits the complete cases (nobs below the design's rows,
    varying by replicate) and the stored truth is that of the rows observed."""
    text = (
        "name = 'missing'\nreplicates = 4\nseed = 3\n[design]\ngroups = 8\ngroup_size = 10\n"
        "[design.missing]\nmechanism = 'mcar'\nshare = 0.3\n[engines]\nrun = ['reml']\n"
    )
    (tmp_path / "m.toml").write_text(text)
    cfg = load_config(tmp_path / "m.toml")
    report = run_study(cfg, tmp_path / "M")
    ds = open_results(report.path).isel(condition=0)
    nobs = ds["nobs"].sel(engine="reml").values
    design = Design.from_study(cfg)
    assert (nobs < 80).all() and len(set(nobs)) > 1
    for r in range(4):
        sample = design.sample(r)
        assert sample.data.n_obs == nobs[r]
        want = np.sqrt(np.diag(sample.observed_cov))
        got = ds["observed_true_se"].sel(replicate=r, term=["(Intercept)", "X"]).values
        np.testing.assert_allclose(got, want, rtol=1e-12)
