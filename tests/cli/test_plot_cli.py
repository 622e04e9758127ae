"""`study plot` and `study report`: files, refusals, and a report that says what summarize says."""

from __future__ import annotations

import io
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from study.cli.main import main
from study.design.config import load_config
from study.run.runner import run_study

RUN = """
name = "plots"
replicates = 6
seed = 12
keep_draws = 1

[design]
groups = 8
group_size = 10

[engines]
run = ["reml", "bayes"]

[engines.bayes]
chains = 2
draws = 200
tune = 200
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("plots")
    (tmp / "run.toml").write_text(RUN)
    run_study(load_config(tmp / "run.toml"), tmp / "run")
    return tmp / "run"


def _one_line(capsys) -> str:
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err, (out, err)
    return err


def test_plot_writes_named_files(run_dir, tmp_path, capsys):
    out = tmp_path / "figs"
    args = ["plot", str(run_dir), "--what", "coverage,zip,trace", "--out", str(out)]
    assert main(args) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["coverage.png", "trace-bayes-r0.png", "zip-bayes.png", "zip-reml.png"]
    assert all(p.stat().st_size > 10_000 for p in out.iterdir())
    assert main([*args[:-4], "--what", "coverage", "--format", "svg", "--out", str(out)]) == 0
    assert (out / "coverage.svg").read_text().lstrip().startswith("<?xml")
    capsys.readouterr()


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--what", "coverage,nope"], r"unknown figure nope; choose from coverage, zip,"),
        (["--what", "trace", "--replicate", "4"], r"no kept posterior for replicate 4"),
        (["--what", "intervals", "--replicate", "99"], r"--replicate 99: not in this run"),
    ],
)
def test_plot_refusals_write_nothing(run_dir, tmp_path, capsys, extra, pattern):
    out = tmp_path / "figs"
    assert main(["plot", str(run_dir), "--out", str(out), *extra]) == 2
    assert re.search(pattern, _one_line(capsys))
    assert not out.exists()


def test_posterior_figures_of_a_run_that_kept_none(run_dir, tmp_path, capsys):
    bare = tmp_path / "bare"
    shutil.copytree(run_dir, bare, ignore=shutil.ignore_patterns("posteriors", "plots"))
    assert main(["plot", str(bare), "--what", "trace,rank"]) == 2
    assert "no kept posterior for any replicate" in _one_line(capsys)
    assert not (bare / "plots").exists()
    # asked for everything, the posterior figures are skipped and said so
    assert main(["plot", str(bare), "--what", "coverage,energy"]) == 2
    capsys.readouterr()
    assert main(["plot", str(bare)]) == 0
    out = capsys.readouterr().out
    assert "skipped trace: no kept posterior" in out and (bare / "plots" / "coverage.png").exists()


def test_plot_of_a_missing_run(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nothing")]) == 2
    assert "no such run directory" in _one_line(capsys)
    assert not (tmp_path / "nothing").exists()


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def test_report_is_self_contained_and_matches_summarize(run_dir, capsys):
    assert main(["report", str(run_dir)]) == 0
    capsys.readouterr()
    html = (run_dir / "report.html").read_text()
    parser = _Parser()
    parser.feed(html)
    parser.close()
    pngs = sorted((run_dir / "plots").glob("*.png"))
    assert len(parser.images) == len(pngs) >= 12
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert "http://" not in html and "https://" not in html  # nothing to fetch
    text = " ".join(parser.text)
    assert main(["summarize", str(run_dir), "--format", "csv"]) == 0
    long = pd.read_csv(io.StringIO(capsys.readouterr().out))
    for _, row in long[long.measure.isin(["coverage", "bias"]) & long.value.notna()].iterrows():
        assert f"{row.value:.4f} ({row.mcse:.4f})" in text, (row.engine, row.term, row.measure)
    md = (run_dir / "report.md").read_text()
    assert md.count("](plots/") == len(pngs)
    assert "## Failed fits" in md and "[engines]" in md
