"""Defect 1a (issue 24): figures and the report work for any predictor name.

Before the fix, on a grid whose predictor is called ``treat``, ``study plot`` refused
(``term 'X' is not in the results``) and ``study report`` crashed: the grid figures
took the term ``"X"`` as their default.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from study.cli.main import main
from study.design.config import load_config
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


@pytest.fixture(scope="module")
def treat_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("treat")
    (tmp / "study.toml").write_text(TREAT_GRID)
    run_study(load_config(tmp / "study.toml"), tmp / "run")
    return tmp / "run"


def test_every_figure_of_a_grid_with_predictor_treat(treat_run, tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["plot", str(treat_run), "--out", str(out)]) == 0, capsys.readouterr().err
    names = {p.stem for p in out.iterdir()}
    assert {"grid-lines-coverage", "grid-heatmap-coverage", "grid-lines-bias"} <= names
    # the one-condition figures too, once per condition
    assert any(n.startswith("coverage--") for n in names)
    assert any(n.startswith("zip-reml--") for n in names)


def test_report_of_a_grid_with_predictor_treat(treat_run, capsys):
    assert main(["report", str(treat_run)]) == 0, capsys.readouterr().err
    text = (treat_run / "report.md").read_text()
    assert "grid-lines-coverage" in text and "treat" in text


def test_figures_and_report_of_one_condition_with_two_named_predictors(tmp_path, capsys):
    (tmp_path / "study.toml").write_text(TWO_PREDICTORS)
    run = tmp_path / "run"
    run_study(load_config(tmp_path / "study.toml"), run)
    assert main(["plot", str(run), "--out", str(tmp_path / "figs")]) == 0, capsys.readouterr()
    names = {p.stem for p in (tmp_path / "figs").iterdir()}
    assert {"coverage", "zip-reml", "calibration", "bias", "estimates"} <= names
    assert main(["report", str(run)]) == 0, capsys.readouterr().err
    text = (run / "report.md").read_text()
    assert "dose" in text and "age" in text
