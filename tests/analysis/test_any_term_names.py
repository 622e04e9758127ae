"""Defect 1a (issue 24): figures and the report work for any predictor name.

Before the fix, on a grid whose predictor is called ``treat``, ``study plot`` refused
(``term 'X' is not in the results``) and ``study report`` crashed: the grid figures
took the term ``"X"`` as their default.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import xarray as xr

from study.analysis.measures import compute_measures
from study.analysis.plots.catalog import FIGURES, PlotInput, build
from study.cli.main import main
from study.design.config import load_config
from study.run.results import open_results
from study.run.runner import run_study

#: REML only (fast), a grid of two conditions, the predictor named ``treat``
TREAT_GRID = """
name = "treat-grid"
replicates = 6
seed = 7

[design]
groups = 6
group_size = 6
predictors = ["treat"]

[conditions]
groups = [6, 10]

[engines]
run = ["reml"]
"""
#: one condition, two predictors with names that are not X
TWO_PREDICTORS = """
name = "dose-age"
replicates = 5
seed = 8

[design]
groups = 6
group_size = 8
predictors = ["dose", "age"]
beta = [1.0, 0.5, -0.3]
re_sd = [1.0, 0.5, 0.5]

[engines]
run = ["reml"]
"""


def _run(tmp: Path, text: str) -> Path:
    (tmp / "study.toml").write_text(text)
    run_study(load_config(tmp / "study.toml"), tmp / "run")
    return tmp / "run"


@pytest.fixture(scope="module")
def treat_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(tmp_path_factory.mktemp("treat"), TREAT_GRID)


def _every_figure(ds: xr.Dataset) -> dict[str, str]:
    """Build (not save) every figure ``study plot`` / ``study report`` draw: stem ->
    its title."""
    inp = PlotInput(ds, compute_measures(ds, reference="reml"))
    return {stem: fig.get_suptitle() for stem, fig in build(list(FIGURES), inp, strict=False)}


def test_every_figure_of_a_grid_with_predictor_treat(treat_run):
    titles = _every_figure(open_results(treat_run))
    for stem in ("grid-lines-coverage", "grid-heatmap-coverage", "grid-lines-bias"):
        assert "of treat" in titles[stem], (stem, titles[stem])
    assert any(s.startswith("coverage--") for s in titles)  # once per condition
    assert any(s.startswith("zip-reml--") for s in titles)


def test_study_plot_draws_the_grid_figures_of_treat(treat_run, tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["plot", str(treat_run), "--what", "grid", "--out", str(out)]) == 0, (
        capsys.readouterr().err
    )
    assert {p.stem for p in out.iterdir()} == {
        "grid-lines-coverage",
        "grid-lines-modse_truese",
        "grid-lines-bias",
        "grid-lines-rejection",
        "grid-heatmap-coverage",
        "grid-heatmap-modse_truese",
    }


def test_every_figure_of_one_condition_with_two_named_predictors(tmp_path):
    titles = _every_figure(open_results(_run(tmp_path, TWO_PREDICTORS)))
    assert {"coverage", "zip-reml", "calibration", "bias", "estimates"} <= set(titles)


@pytest.mark.slow
def test_report_of_a_grid_with_predictor_treat(treat_run, capsys):
    assert main(["report", str(treat_run)]) == 0, capsys.readouterr().err
    text = (treat_run / "report.md").read_text()
    assert "grid-lines-coverage" in text and "treat" in text
