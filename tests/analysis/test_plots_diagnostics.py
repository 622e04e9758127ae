"""Diagnostic figures on a tiny real study with both engines (one compile, ~20 s)."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.figure import Figure

from study.analysis.plots import diagnostics as d
from study.analysis.plots import posterior as p
from study.analysis.plots.style import engine_color
from study.design.config import load_config
from study.run.results import open_results
from study.run.runner import run_study
from study.run.store import Store

# Few, small groups with fixed random effects: some fits fail to converge, and the
# conditional truth (cond_value) is finite.
TINY = """
name = "tiny"
replicates = 6
seed = 11
keep_draws = 1

[design]
groups = 5
group_size = 6
beta = [1.0, 0.5]
re_sd = [0.8, 0.4]
re_cor = [[1.0, 0.2], [0.2, 1.0]]
sigma = 1.0
fixed_random_effects = true

[engines.bayes]
draws = 200
tune = 200
chains = 2
"""


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> tuple[xr.Dataset, xr.DataTree]:
    tmp = tmp_path_factory.mktemp("diagnostics")
    (tmp / "tiny.toml").write_text(TINY)
    report = run_study(load_config(tmp / "tiny.toml"), tmp / "run")
    ds = open_results(report.path)
    path = Store(report.path).posterior_path("bayes", str(ds.condition_id.values[0]), 0)
    return ds, xr.open_datatree(path).load()


def _grid(ds: xr.Dataset) -> xr.Dataset:
    """Two conditions: the run's, and a relabelled copy."""
    other = ds.assign_coords(condition=["copy"], condition_id=("condition", ["c0ffee"]))
    return xr.concat([ds, other], "condition")


def _figures(ds: xr.Dataset, tree: xr.DataTree) -> dict[str, Figure]:
    title = "bayes, replicate 0"
    grid = _grid(ds)
    return {
        "convergence": d.convergence(ds),
        "convergence_grid": d.convergence(grid, condition="copy"),
        "convergence_reml_only": d.convergence(ds.sel(engine=["reml"])),
        "fit_times": d.fit_times(grid),
        "failures": d.failures_figure(ds),
        "failures_grid": d.failures_figure(grid),
        "failures_none": d.failures_figure(ds.assign(converged=ds.converged | True)),
        "trace": p.trace(tree, title=title),
        "rank": p.rank(tree, title=title),
        "energy": p.energy(tree, title=title),
        "ess": p.ess(tree, title=title),
        "ess_evolution": p.ess(tree, title=title, kind="evolution"),
        "intervals": d.intervals(ds, replicate=0, tree=tree),
        "intervals_grid": d.intervals(grid, replicate=1, condition="copy"),
    }


@pytest.fixture(scope="session")
def figures(tiny, tmp_path_factory) -> tuple[dict[str, Figure], dict[str, Path]]:
    """Every figure, built and saved with every warning an error."""
    ds, tree = tiny
    out = tmp_path_factory.mktemp("png")
    before = plt.get_fignums()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figs = _figures(ds, tree)
        paths = {name: out / f"{name}.png" for name in figs}
        for name, fig in figs.items():
            fig.savefig(paths[name], dpi=60)
    assert plt.get_fignums() == before  # no figure left in pyplot's manager
    return figs, paths


def test_every_figure_has_axes_and_a_title_and_saves(figures):
    figs, paths = figures
    for name, fig in figs.items():
        assert isinstance(fig, Figure), name
        assert fig.axes or name == "convergence_reml_only", name
        assert fig.get_suptitle(), name
        assert paths[name].stat().st_size > 1000, name


def test_convergence_thresholds_and_counts(tiny, figures):
    ds, _ = tiny
    fig = figures[0]["convergence"]
    rhat_ax, bulk_ax, tail_ax, div_ax = fig.axes
    vlines = {ax: {ln.get_xdata()[0] for ln in ax.get_lines()} for ax in fig.axes}
    assert 1.01 in vlines[rhat_ax]
    assert 400 in vlines[bulk_ax] and 400 in vlines[tail_ax]
    rhat = ds.rhat.sel(engine="bayes").max("term").values.ravel()
    rhat = rhat[np.isfinite(rhat)]
    assert rhat_ax.get_title().endswith(f"bayes {(rhat > 1.01).sum()} of {rhat.size}")
    assert "with divergences" in div_ax.get_title()
    assert "reml" not in rhat_ax.get_title()  # REML has no R-hat
    custom = d.convergence(ds, rhat_max=1.05, ess_min=100)
    assert 1.05 in {ln.get_xdata()[0] for ln in custom.axes[0].get_lines()}


def test_convergence_without_diagnostics_says_so(figures):
    fig = figures[0]["convergence_reml_only"]
    assert any("no engine here reports" in t.get_text() for t in fig.texts)


def test_titles_say_which_condition(figures):
    figs = figures[0]
    assert figs["convergence"].get_suptitle() == "Convergence diagnostics over replicates"
    assert "condition copy" in figs["convergence_grid"].get_suptitle()
    assert "all 2 conditions pooled" in figs["fit_times"].get_suptitle()


def test_intervals_one_row_per_term_engine_colours_and_truth(tiny, figures):
    ds, _ = tiny
    fig = figures[0]["intervals"]
    terms, engines = list(ds.term.values), list(ds.engine.values)
    assert len(fig.axes) == len(terms)
    one = ds.isel(condition=0).sel(replicate=0)
    for ax, term in zip(fig.axes, terms, strict=True):
        assert ax.get_ylabel() == term
        lines = {ln.get_gid(): ln for ln in ax.get_lines()}
        ranges = {c.get_gid(): c for c in ax.collections if c.get_gid()}
        for engine in engines:
            point = lines[f"estimate:{engine}"]
            assert point.get_color() == engine_color(engine)
            est = float(one.estimate.sel(engine=engine, term=term))
            assert point.get_xdata()[0] == pytest.approx(est)
            lo = float(one.ci_lower.sel(engine=engine, term=term))
            assert (f"interval:{engine}" in ranges) == bool(np.isfinite(lo))
        truth = float(one.true_value.sel(term=term))
        assert lines["true_value"].get_xdata()[0] == pytest.approx(truth)
        cond = float(one.cond_value.sel(term=term))
        assert ("cond_value" in lines) == bool(np.isfinite(cond))
    assert np.isfinite(one.cond_value).any()  # fixed random effects: a conditional truth
    bayes_x = {c.get_gid() for ax in fig.axes for c in ax.collections}
    assert "interval:bayes" in bayes_x
    assert len(fig.axes[0].collections) > len(engines)  # the posterior's density too


def test_intervals_needs_a_condition_in_a_grid(tiny):
    ds, _ = tiny
    with pytest.raises(ValueError, match="choose a condition"):
        d.intervals(_grid(ds), replicate=0)
    with pytest.raises(ValueError, match="not in the results"):
        d.convergence(ds, condition="nope")


def test_failures_table(tiny):
    ds, _ = tiny
    table = d.failures(ds)
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["condition", "replicate", "engine", "message"]
    expected = int((ds.done & ~ds.converged).sum())
    assert len(table) == expected
    assert (table.message != "").all()
    partial = ds.assign(done=ds.done.copy(data=np.zeros(ds.done.shape, bool)))
    assert d.failures(partial).empty  # fits not run are not failures


def test_failures_figure_counts(tiny, figures):
    ds, _ = tiny
    figs = figures[0]
    bad = (ds.done & ~ds.converged).sum("replicate").isel(condition=0)
    if int(bad.sum()):
        texts = {t.get_text() for t in figs["failures"].axes[0].texts}
        for engine in ds.engine.values:
            assert f"{int(bad.sel(engine=engine))} / {ds.sizes['replicate']}" in texts
    texts = [t.get_text() for t in figs["failures_none"].axes[0].texts]
    assert any(t.startswith("no failed fits") for t in texts)


def test_arviz_figures_are_detached_and_sized(figures):
    figs = figures[0]
    for name in ("trace", "rank", "energy", "ess", "ess_evolution"):
        fig = figs[name]
        assert fig.get_size_inches()[0] >= 10, name
        assert fig.get_layout_engine() is not None, name
        assert fig.canvas.manager is None, name  # not owned by pyplot
