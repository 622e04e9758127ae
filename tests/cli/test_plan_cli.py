"""``study plan RUN_DIR --mcse ...`` and ``study run --mcse`` on the command line."""

from __future__ import annotations

import math

import pytest
from helpers import study_toml

from study.cli.main import main
from study.run.results import open_results
from study.usecases.precision import plan

TOML = study_toml(
    name="tiny",
    replicates=4,
    design={"groups": 6, "group_size": 5, "re_sd": [0.1, 0.05]},
    conditions={"sigma": [0.3, 3.0]},
)


@pytest.fixture(scope="module")
def pilot(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("plan")
    (base / "tiny.toml").write_text(TOML)
    out = base / "run"
    assert main(["run", str(base / "tiny.toml"), "--out", str(out), "--workers", "1"]) == 0
    return base


def test_plan_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["plan", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "--mcse" in text and "--max-replicates" in text and "RUN_DIR" in text.upper()


def test_plan_prints_the_needed_counts(pilot, capsys):
    capsys.readouterr()
    assert main(["plan", str(pilot / "run"), "--mcse", "bias=0.05", "--max-replicates", "40"]) == 0
    out = capsys.readouterr().out
    got = plan(pilot / "run", {"bias": 0.05}, 40)
    for row in got.rows:
        assert row.needed == math.ceil(4 * (row.mcse["bias"] / 0.05) ** 2)
        line = next(line for line in out.splitlines() if line.startswith(row.condition))
        assert f" {row.needed} " in f" {line} " and row.status(40) in line
    assert "condition(s) short of their targets" in out


def test_run_with_mcse_prints_rounds_and_the_table(pilot, capsys):
    capsys.readouterr()
    args = ["run", str(pilot / "tiny.toml"), "--out", str(pilot / "run"), "--workers", "1"]
    assert main([*args, "--mcse", "bias=0.3", "--mcse", "rejection=0.3"]) == 0
    out, err = capsys.readouterr()
    assert "study: round 1:" in err and "done," in err
    assert "bias MCSE (<= 0.3)" in out and "rejection MCSE (<= 0.3)" in out
    assert out.strip().endswith("results.nc")
    ds = open_results(pilot / "run")
    assert ds["replicates_requested"].values.tolist() == ds["done"].sum("replicate").values.tolist()
