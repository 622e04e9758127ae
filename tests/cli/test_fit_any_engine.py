"""`study fit` runs any registered engine (gee and ols included) and only prints what
the fit's tidy() and glance() say."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.registry import default_registry
from study.cli.main import main
from study.usecases.fitting import fit_csv

DATA = Path(__file__).resolve().parents[1] / "data" / "sleepstudy.csv"
FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.mark.parametrize("engine", ["gee", "ols"])
def test_study_fit_with_a_robust_engine_prints_its_tidy_table(engine, capsys):
    assert main(["fit", str(DATA), FORMULA, "--engine", engine, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    fit = fit_csv(DATA, formula=FORMULA, engine=engine).fit
    tidy = fit.tidy(diagnostics=True)
    assert doc["engine"] == engine and doc["converged"] is True
    for row, (_, want) in zip(doc["terms"], tidy.iterrows(), strict=True):
        assert row["term"] == want["term"]
        if want["effect"] == "fixed":
            assert row["estimate"] == pytest.approx(want["estimate"], rel=1e-12)
            assert row["std_error"] == pytest.approx(want["std_error"], rel=1e-12)
            assert row["p_value"] == pytest.approx(want["p_value"], rel=1e-9, abs=1e-300)
        else:  # fixed effects only: no variance parameters
            assert row["estimate"] is None and row["std_error"] is None
    assert doc["glance"]["nobs"] == 180 and doc["glance"]["ngroups"] == 18


def test_engine_options_from_the_command_line(capsys):
    base = fit_csv(DATA, formula=FORMULA, engine="gee").fit
    args = ["fit", str(DATA), FORMULA, "--engine", "gee", "--json"]
    assert main([*args, "--option", "cov_type=bias_reduced", "--option", "reference=t"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["options"] == {"cov_type": "bias_reduced", "reference": "t"}
    # Mancl-DeRouen inflates the sandwich SE with 18 clusters; t with K - p = 17 df
    assert doc["terms"][1]["std_error"] > base.std_error[1] * 1.01
    assert doc["terms"][1]["df"] == 17
    assert main([*args, "--option", "cov_type=nonsense"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("study: error: engine gee: cov_type = 'nonsense'") and err[-1] == "\n"


def test_every_registered_engine_is_a_choice_and_an_unknown_one_is_refused(capsys):
    names = default_registry().names
    assert {"reml", "bayes", "gee", "ols"} <= set(names)
    with pytest.raises(SystemExit) as stop:
        main(["fit", str(DATA), FORMULA, "--engine", "nope"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert all(n in err for n in names), err
    assert np.isfinite(fit_csv(DATA, formula=FORMULA, engine="ols").fit.estimate[:2]).all()
