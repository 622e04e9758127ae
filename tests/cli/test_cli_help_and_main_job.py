"""The command line tells what there is, and the main job ends with its report."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from study.cli.flags import as_flags, flags_of
from study.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _presets() -> list[str]:
    folder = resources.files("study.design.presets")
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


@pytest.mark.parametrize("command", ["run", "sbc", "truth"])
def test_help_lists_every_preset(command, capsys):
    presets = _presets()
    assert len(presets) >= 4
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    shown = re.sub(r"-\s+", "-", " ".join(capsys.readouterr().out.split()))
    missing = [p for p in presets if p not in shown]
    assert not missing, f"`study {command} --help` does not name {missing}"


def test_make_study_writes_the_report_and_ends_with_its_path():
    recipe = re.search(r"^study:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    assert recipe is not None
    lines = recipe.group(1).strip().splitlines()
    assert lines[-1].strip().endswith("study report outputs/default")
    from study.cli import report

    assert "reversed(done.paths)" in Path(report.__file__).read_text()  # report.html last


def test_library_keywords_become_the_cli_flags():
    flags = flags_of(build_parser())
    assert flags["exclude_nonconverged"] == "--exclude-nonconverged"
    assert flags["fmt"] == "--format" and flags["overwrite"] == "--overwrite"
    text = "use overwrite=True to replace it or out=... for a new directory; level=1.5: no"
    assert as_flags(text, flags) == (
        "use --overwrite to replace it or --out for a new directory; --level 1.5: no"
    )
    # config keys ("chains = 0") and unknown keywords are left alone
    assert as_flags("chains = 0: must be >= 1; shape=(3,)", flags) == (
        "chains = 0: must be >= 1; shape=(3,)"
    )
