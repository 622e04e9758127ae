"""Shared fixtures: fixed seeds, small designs, and configs written to temp files.

The test modules mirror the stages: tests/design, run, analysis, cli and models.
Helpers that modules import by name live in tests/helpers.py (``import helpers``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import study_toml

from study.design.config import DesignConfig, PredictorSpec, StudyConfig, load_config


@pytest.fixture(autouse=True)
def _terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """Text tables split at the terminal's width: give every test the same one (the
    fallback of ``shutil.get_terminal_size`` in the tables), whatever terminal runs
    pytest and in xdist workers too (which have none, and saw 80 columns)."""
    monkeypatch.setenv("COLUMNS", "120")


@pytest.fixture
def small_design() -> DesignConfig:
    """A small, unbalanced, correlated two-predictor design (K = 6)."""
    return DesignConfig(
        groups=6,
        group_size=(3, 5, 4, 7, 2, 6),
        predictors=("A", "B"),
        beta=(1.0, -0.5, 2.0),
        re_sd=(0.8, 0.3, 1.2),
        re_cor=((1.0, 0.3, -0.2), (0.3, 1.0, 0.1), (-0.2, 0.1, 1.0)),
        sigma=0.7,
        predictor=PredictorSpec(distribution="normal", mean=1.0, sd=2.0),
    )


@pytest.fixture
def write_config(tmp_path: Path):
    """Write a StudyConfig (or raw TOML text) to a file and return its path."""

    def _write(cfg: StudyConfig | str, name: str = "study.toml") -> Path:
        path = tmp_path / name
        path.write_text(cfg if isinstance(cfg, str) else cfg.to_toml())
        return path

    return _write


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Path]:
    """The config factory: write the base study with keyword overrides to a TOML file.

    ``make_config(replicates=2, design={"groups": 4})`` returns the path of a file in
    `tmp_path` (``name=`` is the study's name; ``file=`` the file's, default
    ``study.toml``); see `helpers.study_table` for how overrides merge.
    """

    def _make(file: str = "study.toml", **overrides: Any) -> Path:
        path = tmp_path / file
        path.write_text(study_toml(**overrides))
        return path

    return _make


@pytest.fixture(scope="session")
def default_config() -> StudyConfig:
    return load_config("default")


@pytest.fixture(scope="session")
def seed_config() -> StudyConfig:
    return load_config("seed")


# -- scheduling for pytest-xdist (``make test`` runs ``-n 2 --dist loadgroup``) -------------
# Each module is one xdist group, so that its module- and session-scoped fixtures (runs,
# compiled engines) are built once, on one worker; the modules in SPREAD have long tests
# that share no expensive fixture, and run test by test on either worker. Groups start
# longest first (LONGEST: seconds from --durations of a `make test` on the 2 cores while
# other jobs ran, issue 24) so that no long module is left to run alone at the end.
SPREAD = frozenset({"models/test_reml_inference.py", "design/test_generator_truth.py"})
LONGEST = {
    "run/test_scale_out.py": 320,
    "models/test_reml_inference.py": 310,
    "run/test_reliability.py": 310,
    "run/test_interruption.py": 190,
    "run/test_runner.py": 65,
    "cli/test_plot_cli.py": 45,
    "design/test_structures.py": 30,
    "design/test_conditions.py": 28,
    "run/test_sbc.py": 26,
    "models/test_bayes_structure.py": 20,
    "analysis/test_plots_measures.py": 20,
}
_TESTS = Path(__file__).parent


def _module(item: pytest.Item) -> str:
    return item.path.relative_to(_TESTS).as_posix()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group the tests by module (except SPREAD) and put the longest modules first."""
    for item in items:
        module = _module(item)
        if module not in SPREAD and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(module))
    items.sort(key=lambda item: -LONGEST.get(_module(item), 0))  # stable: modules stay whole
