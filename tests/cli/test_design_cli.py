"""`study design DATA.csv "FORMULA"`: a configuration from pilot data, the REML fit's
numbers at full precision, the source named in comments; bad input refused with one
line, exit 2 and nothing written."""

from __future__ import annotations

import contextlib
import datetime
import io
import os
import tomllib
from pathlib import Path

import numpy as np
import pytest
from helpers import DATA, one_line_error

from study.cli.main import main
from study.design.pilot import Pilot
from study.usecases.designing import design_from_pilot
from study.usecases.fitting import fit_csv

SLEEP = DATA / "sleepstudy.csv"
FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def lme4() -> dict:
    """R 4.2.2 / lme4 1.1-31 REML fit of sleepstudy (the file's header says so)."""
    with open(DATA / "sleepstudy_lme4.toml", "rb") as fh:
        return tomllib.load(fh)["reml"]


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, str, str]:
    """``study design`` of sleepstudy into a folder beside a copy of the data: the
    config's path, its text and what the command printed."""
    root = tmp_path_factory.mktemp("pilot")
    (root / "data").mkdir()
    csv = root / "data" / "sleepstudy.csv"
    csv.write_bytes(SLEEP.read_bytes())
    out = root / "configs" / "pilot.toml"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        argv = [str(csv), FORMULA, "--groups", "40", "--group-size", "20", "-o", str(out)]
        code = main(["design", *argv])
    assert code == 0
    return out, out.read_text(), printed.getvalue()


def test_the_config_holds_the_reml_fit_at_full_precision(written, lme4):
    out, text, printed = written
    table = tomllib.loads(text)
    design = table["design"]
    fit = fit_csv(SLEEP, formula=FORMULA).fit
    est = dict(zip(fit.terms, fit.estimate.tolist(), strict=True))
    assert design["beta"] == {"(Intercept)": est["(Intercept)"], "Days": est["Days"]}
    assert design["re_sd"] == [est["sd__(Intercept)"], est["sd__Days"]]
    rho = est["cor__(Intercept).Days"]
    assert design["re_cor"] == [[1.0, rho], [rho, 1.0]]
    assert design["sigma"] == est["sd__Observation"]
    # the same numbers as lme4's (the REML engine's own agreement, tests/models)
    for term, value in lme4["fixed"].items():
        assert design["beta"][term] == pytest.approx(value, rel=1e-4)
    assert design["re_sd"] == pytest.approx([lme4["sd__(Intercept)"], lme4["sd__Days"]], rel=1e-4)
    assert rho == pytest.approx(lme4["cor__(Intercept).Days"], rel=1e-3)
    assert design["sigma"] == pytest.approx(lme4["sd__Observation"], rel=1e-4)
    assert f"REML criterion {fit.criterion!r}" in text
    assert fit.criterion == pytest.approx(lme4["reml_criterion"], rel=1e-6)
    assert "wrote" in printed and str(out) in printed


def test_the_config_names_its_source_and_holds_every_key(written):
    out, text, _ = written
    table = tomllib.loads(text)
    design = table["design"]
    assert design["predictors_from"] == "../data/sleepstudy.csv"
    assert (out.parent / design["predictors_from"]).resolve() == (
        out.parent.parent / "data" / "sleepstudy.csv"
    )
    assert design["group_column"] == "Subject" and design["fixed"] == "Days"
    assert design["random"] == "(Days | Subject)"
    assert (design["groups"], design["group_size"]) == (40, 20)
    assert table["name"] == "pilot" and table["replicates"] == 1000
    assert isinstance(table["seed"], int) and table["engines"] == {"run": ["reml"]}
    head = [line for line in text.splitlines() if line.startswith("#")]
    assert text.startswith("# ") and len(head) >= 8
    comments = "\n".join(head)
    sha = Pilot.load(SLEEP, FORMULA).sha256
    today = datetime.date.today().isoformat()
    named = (f"sha256 {sha}", "sleepstudy.csv", f"Model: {FORMULA}", "engine reml", "logLik")
    for part in (*named, "statsmodels", today):
        assert part in comments, part
    # what the design will do with it: the pilot, found relative to the config
    rhs = f"{design['fixed']} + {design['random']}"
    pilot = Pilot.load(out.parent / design["predictors_from"], rhs)
    assert pilot.sha256 == sha and pilot.group_column == design["group_column"]


def test_without_out_the_config_is_printed_and_nothing_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.csv").write_bytes(SLEEP.read_bytes())
    assert main(["design", "study.csv", "Reaction ~ Days + (1 | Subject)"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and [p.name for p in tmp_path.iterdir()] == ["study.csv"]
    table = tomllib.loads(out)
    design = table["design"]
    assert design["predictors_from"] == "study.csv"  # relative to the current folder
    assert design["random"] == "(1 | Subject)" and "re_cor" not in design
    assert len(design["re_sd"]) == 1 and "groups" not in design and "group_size" not in design
    assert table["name"] == "study"
    # a file that shares no folder with the config but the root: its absolute path
    far = design_from_pilot(SLEEP, FORMULA, out=None).table["design"]["predictors_from"]
    shared = os.path.commonpath([SLEEP, tmp_path])
    assert far == (SLEEP.as_posix() if shared == "/" else os.path.relpath(SLEEP, tmp_path))


def test_uncorrelated_and_categorical_models(tmp_path):
    diagonal = design_from_pilot(SLEEP, "Reaction ~ Days + (Days || Subject)").table["design"]
    assert diagonal["random"] == "(Days || Subject)" and "re_cor" not in diagonal
    assert len(diagonal["re_sd"]) == 2
    dose = DATA / "sleepstudy_dose.csv"
    done = design_from_pilot(dose, "Reaction ~ Days + C(Dose) + (Days | Subject)", groups=5)
    design = done.table["design"]
    levels = [f"C(Dose){v}" for v in ("0.5", "1.0", "1.5", "2.0")]
    assert list(design["beta"]) == ["(Intercept)", "Days", *levels]
    assert design["fixed"] == "Days + C(Dose)" and design["groups"] == 5
    assert done.pilot.predictors == ("Days", "Dose")


def test_the_same_file_gives_the_same_config():
    a = design_from_pilot(SLEEP, FORMULA, today=datetime.date(2025, 1, 2))
    b = design_from_pilot(SLEEP, FORMULA, today=datetime.date(2025, 1, 2))
    assert a.text == b.text and "2025-01-02" in a.text


def test_an_existing_out_is_kept_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "pilot.toml"
    out.write_text("keep me\n")
    assert main(["design", str(SLEEP), FORMULA, "-o", str(out)]) == 2
    err = one_line_error(capsys)
    assert "exists" in err and "--overwrite" in err and out.read_text() == "keep me\n"
    assert main(["design", str(SLEEP), FORMULA, "-o", str(out), "--overwrite"]) == 0
    assert tomllib.loads(out.read_text())["design"]["fixed"] == "Days"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pilot.toml"]  # no temporary left


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nope.csv", FORMULA], "data file 'nope.csv' not found"),
        (["semi.csv", FORMULA], "the columns look separated by semicolons"),
        (["good.csv", "Reaction ~ Dayz + (1 | Subject)"], r"column(s) ['Dayz'] not in the data"),
        (["good.csv", "Reaction ~ Days"], "has no random part"),
        (["good.csv", FORMULA, "--groups", "1"], "--groups 1: must be a whole number >= 2"),
        (["good.csv", FORMULA, "--group-size", "1"], "--group-size 1: must be a whole"),
        (["good.csv", FORMULA, "--group-size", "2"], "--group-size 2: 2 rows per group for 2"),
        (["good.csv", FORMULA, "-o", "good.csv", "--overwrite"], "is the pilot data file"),
        (["good.csv", FORMULA, "-o", "."], "is a directory"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    argv, message, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    Path("good.csv").write_bytes(SLEEP.read_bytes())
    Path("semi.csv").write_text(SLEEP.read_text().replace(",", ";"))
    before = sorted(p.name for p in tmp_path.iterdir())
    more = [] if "-o" in argv else ["-o", "pilot.toml"]
    assert main(["design", *argv, *more]) == 2
    err = one_line_error(capsys)
    assert err.startswith("study: error: ") and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert Path("good.csv").read_bytes() == SLEEP.read_bytes()


def test_the_written_config_runs_from_the_pilots_own_values(written, tmp_path, monkeypatch):
    """The config of sleepstudy runs from another working directory (the CSV is found
    relative to the config), its X holds only the pilot's Days values, 40 groups of 20
    rows, the truth is the GLS truth of that X, and a changed CSV is refused."""
    from study.design.config import load_config
    from study.design.generate import Design
    from study.design.truth import compute_truth
    from study.run.results import open_results

    out, text, _ = written
    monkeypatch.chdir(tmp_path)
    config = load_config(out)
    design = Design.from_study(config)
    assert design.X.shape == (800, 2) and set(design.X[:, 1]) <= set(range(10))
    assert (design.sizes == 20).all()
    # each group holds its pilot group's days 0..9 twice (whole copies)
    assert (np.bincount(design.X[:20, 1].astype(int)) == 2).all()
    truth = compute_truth(design)
    assert truth.value[1] == pytest.approx(10.467, abs=1e-3)  # the REML fit's slope
    (tmp_path / "run.toml").write_text(text.replace("replicates = 1000", "replicates = 2"))
    # the copy sits in another folder: its relative path no longer finds the CSV
    assert main(["run", str(tmp_path / "run.toml"), "--workers", "1"]) == 2
    small = out.parent / "small.toml"
    small.write_text(text.replace("replicates = 1000", "replicates = 2"))
    assert main(["run", str(small), "--out", str(tmp_path / "R"), "--workers", "1"]) == 0
    ds = open_results(tmp_path / "R")
    assert int(ds["nobs"].min()) == 800 and bool(ds["converged"].all())
    # the hash counts the file's content, not where it is: a moved copy is the same study
    moved = tmp_path / "elsewhere" / "sleepstudy.csv"
    moved.parent.mkdir()
    moved.write_bytes(SLEEP.read_bytes())
    there = tmp_path / "elsewhere" / "c.toml"
    there.write_text(
        text.replace(
            'predictors_from = "../data/sleepstudy.csv"', 'predictors_from = "sleepstudy.csv"'
        )
    )
    assert load_config(there).hash() == config.hash()
    moved.write_bytes(SLEEP.read_bytes() + b"\n")
    assert load_config(there).hash() != config.hash()  # another file, another study


def test_a_pilot_that_changed_since_the_run_is_refused(written, tmp_path):
    from study.design.config import load_config
    from study.errors import ConfigError

    out, _, _ = written
    csv = tmp_path / "p.csv"
    csv.write_bytes(SLEEP.read_bytes())
    stored = (
        load_config(out)
        .to_toml()
        .replace(str((out.parent / "../data/sleepstudy.csv").resolve()), str(csv))
    )
    (tmp_path / "stored.toml").write_text(stored)
    assert load_config(tmp_path / "stored.toml").design.predictors_sha256
    csv.write_bytes(SLEEP.read_bytes().replace(b"249.56", b"249.57"))
    with pytest.raises(ConfigError, match="has changed since the configuration was written"):
        load_config(tmp_path / "stored.toml")
