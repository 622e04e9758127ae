"""The study figures (study/analysis/plots/: measures, compare, grid) on real, small runs: what the
figures draw is read back from their artists and checked against the results."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from study.analysis.measures import compute_measures
from study.analysis.plots import common, compare, grid
from study.analysis.plots import measures as pm
from study.design.config import load_config
from study.run.results import open_results
from study.run.runner import run_study

#: both engines, a grid of one factor (two conditions); a short Bayesian run
TWO_ENGINES = """
name = "plots2"
replicates = 8
seed = 3
[design]
groups = 6
group_size = 8
[conditions]
groups = [6, 12]
[engines]
run = ["reml", "bayes"]
[engines.bayes]
chains = 2
draws = 200
tune = 200
"""
#: REML only, random effects fixed (conditional truth), a 2 x 2 grid
FIXED_GRID = """
name = "plotsfx"
replicates = 6
seed = 5
[design]
groups = 6
group_size = 6
fixed_random_effects = true
[conditions]
groups = [6, 10]
group_size = [6, 12]
[engines]
run = ["reml"]
"""


def _run(tmp: Path, text: str) -> tuple[xr.Dataset, xr.Dataset]:
    (tmp / "study.toml").write_text(text)
    run_study(load_config(tmp / "study.toml"), tmp / "run")
    ds = open_results(tmp / "run")
    return ds, compute_measures(ds)


@pytest.fixture(scope="session")
def two(tmp_path_factory: pytest.TempPathFactory) -> tuple[xr.Dataset, xr.Dataset]:
    """Results and summary of both engines (one compile of the Bayesian model)."""
    return _run(tmp_path_factory.mktemp("plots_two"), TWO_ENGINES)


@pytest.fixture(scope="session")
def fixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[xr.Dataset, xr.Dataset]:
    return _run(tmp_path_factory.mktemp("plots_fixed"), FIXED_GRID)


def _first(obj: xr.Dataset) -> xr.Dataset:
    """A one-condition Dataset (the first condition)."""
    return obj.isel(condition=[0])


def _built(make: Callable[[], Figure], path: Path) -> Figure:
    """Build and save a figure with every warning an error; the PNG must not be empty."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = make()
        fig.savefig(path, dpi=60)
    assert isinstance(fig, Figure)
    assert path.stat().st_size > 1000
    return fig


def _visible(fig: Figure) -> int:
    return sum(ax.get_visible() for ax in fig.axes)


FIGURES: dict[str, tuple[Callable[[xr.Dataset, xr.Dataset], Figure], int]] = {
    "coverage": (lambda ds, s: pm.coverage(_first(s)), 1),
    "zip": (lambda ds, s: pm.zip_plot(_first(ds), engine="bayes"), 2),
    "calibration": (lambda ds, s: pm.calibration(_first(s)), 2),
    "bias_relerr": (lambda ds, s: pm.bias_relerr(_first(s)), 2),
    "engines": (lambda ds, s: compare.engines_compared(_first(ds)), 6),
    "engines_one_term": (lambda ds, s: compare.engines_compared(_first(ds), term="X"), 3),
    "estimates": (lambda ds, s: compare.estimates(_first(ds)), 6),
    "grid_lines": (lambda ds, s: grid.grid_lines(s), 1),
    "grid_heatmap": (lambda ds, s: grid.grid_heatmap(s, "relative_error_model_se"), 2),
}


@pytest.mark.parametrize("name", list(FIGURES))
def test_every_figure_builds_and_saves_without_warnings(name, two, tmp_path):
    make, n_axes = FIGURES[name]
    fig = _built(lambda: make(*two), tmp_path / f"{name}.png")
    assert _visible(fig) == n_axes  # the heat map: its panel and the colour bar
    assert fig.get_suptitle()
    assert fig.legends or name == "grid_heatmap"


def test_module_never_uses_pyplot():
    for module in (pm, compare, grid, common):
        source = Path(module.__file__).read_text()
        assert "import matplotlib.pyplot" not in source and "plt." not in source


def test_coverage_draws_one_point_per_engine_and_term_at_the_summary_value(two, tmp_path):
    _, summary = two
    one = summary.isel(condition=0)
    fig = _built(
        lambda: pm.coverage(summary, condition=str(one.condition.item())), tmp_path / "c.png"
    )
    (ax,) = fig.axes
    points = {ln.get_gid(): ln for ln in ax.lines if (ln.get_gid() or "").startswith("coverage|")}
    value = one["value"].sel(measure="coverage")
    expected = {
        f"coverage|{e}|{t}": float(value.sel(engine=e, term=t))
        for e in value.engine.values
        for t in value.term.values
        if np.isfinite(value.sel(engine=e, term=t))
    }
    assert set(points) == set(expected)
    assert {"coverage|reml|X", "coverage|bayes|X", "coverage|bayes|sd__X"} <= set(points)
    for gid, line in points.items():
        assert len(line.get_xdata()) == 1
        assert line.get_xdata()[0] == pytest.approx(expected[gid])
    level = summary.attrs["level"]
    assert any(list(ln.get_xdata()) == [level, level] for ln in ax.lines)  # nominal line


def test_zip_plot_draws_a_segment_per_replicate_with_a_finite_se(two, tmp_path):
    ds, _ = two
    one = ds.isel(condition=1)
    for engine in ("reml", "bayes"):
        fig = _built(
            lambda e=engine: pm.zip_plot(ds, engine=e, condition=str(one.condition.item())),
            tmp_path / f"zip_{engine}.png",
        )
        for ax, term in zip(fig.axes, ("(Intercept)", "X"), strict=True):
            segments = [
                s for c in ax.collections if isinstance(c, LineCollection) for s in c.get_segments()
            ]
            se = one["std_error"].sel(engine=engine, term=term).values
            assert len(segments) == int(np.isfinite(se).sum()) > 0
            centiles = sorted(float(s[0, 1]) for s in segments)
            assert centiles[0] > 0 and centiles[-1] < 100
            assert len(set(centiles)) == len(centiles)  # one rank per replicate
            truth = float(one["true_value"].sel(term=term))
            assert any(list(ln.get_xdata()) == [truth, truth] for ln in ax.lines)


def test_calibration_has_a_line_at_one_and_conditional_rows_when_u_is_fixed(two, fixed, tmp_path):
    for summary, rows in ((two[1], 2), (fixed[1], 4)):
        fig = _built(lambda s=summary: pm.calibration(_first(s)), tmp_path / f"cal{rows}.png")
        for ax in fig.axes:
            assert any(list(ln.get_xdata()) == [1.0, 1.0] for ln in ax.lines)
            assert len(ax.get_yticks()) == rows
        labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        assert ("ModSE / CondSE" in labels) == (rows == 4)


def test_bias_relerr_labels_the_percent_axis(two, tmp_path):
    fig = _built(lambda: pm.bias_relerr(_first(two[1])), tmp_path / "b.png")
    assert "%" in fig.axes[1].get_xlabel()
    assert all(any(list(ln.get_xdata()) == [0.0, 0.0] for ln in ax.lines) for ax in fig.axes)


def test_figures_of_a_grid_need_a_condition_and_grid_figures_need_a_grid(two):
    ds, summary = two
    labels = [str(c) for c in ds.condition.values]
    with pytest.raises(ValueError, match=labels[1]):
        pm.coverage(summary)
    with pytest.raises(ValueError, match="available"):
        compare.estimates(ds, condition="groups=99")
    for figure in (grid.grid_lines, grid.grid_heatmap):
        with pytest.raises(ValueError, match="several conditions"):
            figure(_first(summary))
    with pytest.raises(ValueError, match="lacks measure"):
        grid.grid_lines(compute_measures(ds, measures=["bias"]), "coverage")


def test_engines_compared_refuses_an_engine_not_in_the_results(two, fixed):
    with pytest.raises(ValueError, match=r"'stan'.*'reml', 'bayes'"):
        compare.engines_compared(_first(two[0]), b="stan")
    with pytest.raises(ValueError, match="engines present"):
        compare.engines_compared(_first(fixed[0]))  # REML only


def test_grid_figures_on_a_two_factor_grid(fixed, tmp_path):
    _, summary = fixed
    lines = _built(lambda: grid.grid_lines(summary, "modse_truese"), tmp_path / "l.png")
    assert _visible(lines) == 2  # a panel per group_size
    assert [ax.get_title() for ax in lines.axes] == ["group_size = 6", "group_size = 12"]
    for ax in lines.axes:
        assert any(list(ln.get_ydata()) == [1.0, 1.0] for ln in ax.lines)
    heat = _built(lambda: grid.grid_heatmap(summary, "bias"), tmp_path / "h.png")
    texts = [t.get_text() for t in heat.axes[0].texts]
    value = summary["value"].sel(measure="bias", term="X", engine="reml")
    assert len(texts) == 4 and sum(np.isfinite(value.values)) == sum(bool(t) for t in texts)
    assert all("(" in t for t in texts if t)


def test_list_valued_factor_levels_sort_by_their_numbers():
    # re_sd levels are stored as JSON text: "[1.0, 0.05]" must come after "[1.0, 0.0]"
    from study.analysis.plots.grid import _key, _show

    levels = ["[1.0, 0.05]", "[1.0, 0.0]", "[1.0, 0.2]", "[0.5, 1.0]"]
    assert sorted(levels, key=_key) == ["[0.5, 1.0]", "[1.0, 0.0]", "[1.0, 0.05]", "[1.0, 0.2]"]
    assert [_show(_key(v)) for v in ("10", "[1.0, 0.2]", "wald")] == ["10", "[1.0, 0.2]", "wald"]
    assert sorted(["40", "5", "10"], key=_key) == ["5", "10", "40"]
