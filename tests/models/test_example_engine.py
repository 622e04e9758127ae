"""The example engine of docs/engines.md, installed as a package would install it (a
``*.dist-info`` with its entry point on ``sys.path``), is found by the default registry
and fits data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from models.data import LMMData
from models.registry import ENTRY_POINT_GROUP, default_registry

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "example_engine"


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """docs/example_engine on the path, with the metadata ``pip install`` would write."""
    dist = tmp_path / "lmm_naive_ols-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lmm-naive-ols\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nnaive_ols = naive_ols:SPEC\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    default_registry.cache_clear()
    yield
    default_registry.cache_clear()


def test_the_example_declares_what_the_test_installs():
    """The metadata the fixture writes is the example's own pyproject entry point."""
    text = (EXAMPLE / "pyproject.toml").read_text()
    assert f'[project.entry-points."{ENTRY_POINT_GROUP}"]\nnaive_ols = "naive_ols:SPEC"' in text


def test_installed_example_engine_is_registered_and_fits(installed):
    registry = default_registry()
    assert "naive_ols" in registry.names and registry.broken == ()
    assert registry.names[:4] == ("reml", "bayes", "gee", "ols")
    assert registry.versions["naive_ols"] == 1
    frame = pd.read_csv(ROOT / "tests" / "data" / "sleepstudy.csv")
    data = LMMData.from_frame(frame, y="Reaction", x=["Days"], group="Subject")
    engine = registry.build_engine("naive_ols", {}, level=0.95)
    fit = engine.fit(data, seed=1)
    assert fit.converged and fit.terms == data.structure.terms
    # reference: the textbook OLS fit, sigma^2 (X'X)^-1 with N - p = 178 df
    X, y = data.X, data.y
    beta = np.linalg.solve(X.T @ X, X.T @ y)
    resid = y - X @ beta
    se = np.sqrt(resid @ resid / 178 * np.diag(np.linalg.inv(X.T @ X)))
    np.testing.assert_allclose(fit.estimate[:2], beta, rtol=1e-10)
    np.testing.assert_allclose(fit.std_error[:2], se, rtol=1e-10)
    np.testing.assert_allclose(fit.ci_upper[:2], beta + stats.t.ppf(0.975, 178) * se, rtol=1e-10)
    assert np.isnan(fit.estimate[2:]).all()
    tidy = fit.tidy()
    np.testing.assert_allclose(
        tidy["p_value"][:2], 2 * stats.t.sf(np.abs(beta / se), 178), rtol=1e-10
    )
