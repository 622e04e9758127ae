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
