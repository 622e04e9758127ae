"""Commands end to end in-process: a resume that would mix configurations, fits that
cannot or do not work, a summary's reference engine, and the files' permissions.

From the architecture review (its defects 1, 3, 5 and 13): each failed before its fix
with a traceback or a silent wrong result.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from helpers import DATA, constant_predictor, one_line_error

from models.reml.engine import RemlEngine
from study.cli.main import main


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_resume_with_other_engines_is_refused_not_a_crash(make_config, tmp_path, capsys):
    out = tmp_path / "R"
    args = ["run", str(make_config()), "--out", str(out), "--workers", "1"]
    assert main([*args, "--replicates", "2", "--engines", "reml"]) == 0
    capsys.readouterr()
    before = _tree(out)
    assert main([*args, "--replicates", "3", "--engines", "bayes,reml"]) == 2
    err = one_line_error(capsys)
    assert "different configuration" in err and "engines.run: ['reml'] -> ['bayes', 'reml']" in err
    assert "--overwrite" in err
    assert _tree(out) == before  # nothing written, nothing lost


def test_fit_header_only_csv(tmp_path, capsys):
    csv = tmp_path / "empty.csv"
    csv.write_text("Reaction,Days,Subject\n")
    assert main(["fit", str(csv), "--y", "Reaction", "--x", "Days", "--group", "Subject"]) == 2
    assert "header but no data rows" in one_line_error(capsys)


def test_fit_failure_exits_1_with_the_reason(tmp_path, capsys, monkeypatch):
    """Data no fit can use are refused up front (exit 2); a fit that runs and fails
    exits 1 with its reason."""
    data = constant_predictor()
    csv = tmp_path / "const.csv"
    data.to_frame().to_csv(csv, index=False)
    assert main(["fit", str(csv), "--y", "y", "--x", "x", "--group", "group"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "column 'x' is constant" in err
    good = tmp_path / "good.csv"
    pd.read_csv(DATA / "sleepstudy.csv").to_csv(good, index=False)

    def fail(self, data):
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(RemlEngine, "_fit", fail)
    argv = ["fit", str(good), "--y", "Reaction", "--x", "Days", "--group", "Subject"]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == "study: fit failed: LinAlgError: Singular matrix\n"


def test_unknown_reference_refused_and_files_follow_umask(make_config, tmp_path, capsys):
    out = tmp_path / "R"
    old = os.umask(0o027)
    try:
        argv = ["run", str(make_config()), "--out", str(out), "--replicates", "2"]
        assert main([*argv, "--workers", "1"]) == 0
        assert main(["summarize", str(out)]) == 0
    finally:
        os.umask(old)
    capsys.readouterr()
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"results.nc", "summary.nc", "manifest.json", "study.toml"}
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {oct(0o640)}
    (out / "summary.nc").unlink()
    assert main(["summarize", str(out), "--reference", "bayes"]) == 2
    assert "--reference 'bayes': not an engine of this run; choose one of reml" in one_line_error(
        capsys
    )
    assert not (out / "summary.nc").exists()
