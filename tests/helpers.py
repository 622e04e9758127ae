"""Helpers shared by the test stages (imported as ``helpers``: tests/ is on sys.path).

``study_table`` / ``study_toml`` are the one config factory: a small study (reml only,
K = 8 groups of 10) with keyword overrides; the ``make_config`` fixture in conftest.py
writes its TOML to a temporary file.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import tomli_w
import xarray as xr

from models.data import LMMData

if TYPE_CHECKING:
    from study.design.generate import Design

ROOT = Path(__file__).resolve().parents[1]
"""The repository root."""
DATA = Path(__file__).resolve().parent / "data"
"""External reference data (provenance in tests/data/README.md)."""

BASE_STUDY: dict[str, Any] = {
    "name": "small",
    "replicates": 3,
    "seed": 11,
    "design": {
        "groups": 8,
        "group_size": 10,
        "beta": [1.0, 0.5],
        "re_sd": [0.8, 0.4],
        "re_cor": [[1.0, 0.2], [0.2, 1.0]],
    },
    "engines": {"run": ["reml"]},
}
"""The base of every config the tests write: small, fast, REML only."""


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` merged in, tables recursively. A ``None`` value stays as a
    marker that removes the key, also from a table the result is merged into later
    (`study_table` drops the markers)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is None:
            out[key] = None
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _drop_none(table: dict[str, Any]) -> dict[str, Any]:
    return {
        k: _drop_none(v) if isinstance(v, dict) else v for k, v in table.items() if v is not None
    }


def study_table(**overrides: Any) -> dict[str, Any]:
    """The base study as a TOML table with `overrides` merged in.

    Parameters
    ----------
    **overrides
        Top-level keys of the config. A dict merges into the table of that name
        (``design={"groups": 4}`` keeps the other design keys); any other value
        replaces; ``None`` removes the key (``engines=None`` uses the defaults).
    """
    return _drop_none(merge(BASE_STUDY, overrides))


def study_toml(**overrides: Any) -> str:
    """`study_table` written as TOML text (see there for `overrides`)."""
    return tomli_w.dumps(study_table(**overrides))


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The CLI's refusal: nothing on stdout, one line on stderr, no traceback."""
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err, (out, err)
    return err


def comparable(ds: xr.Dataset) -> xr.Dataset:
    """A results Dataset without what legitimately differs between runs (timings, attrs)."""
    return ds.drop_vars("fit_seconds").drop_attrs()


def file_tree(root: Path) -> dict[str, str]:
    """Every path under `root` with the SHA-256 of its content ("" for directories)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        for p in sorted(root.rglob("*"))
    }


def constant_predictor() -> LMMData:
    """Six groups of eight rows whose predictor is constant: a rank-deficient design."""
    rng = np.random.default_rng(5)
    group = np.repeat(np.arange(6), 8)
    X = np.column_stack([np.ones(48), np.full(48, 3.0)])
    return LMMData(rng.normal(size=48), X, group, ("x",))


def design_of_generator_1(config: Any, condition: Any = None) -> Any:
    """The design of ``condition`` (default: the only one) as generator version 1 drew
    it: X keyed by the full design id, the shared predictor distribution drawn subject by
    subject.  The replicate streams are keyed as before, so the regression cases found
    then (a replicate of a preset that once broke a fit) keep their data exactly."""
    from study.design.generate import Design
    from study.design.seeds import design_rng

    condition = condition or config.conditions[0]
    design = Design(condition.design, config.seed)
    cfg = condition.design
    rng = design_rng(config.seed, design.id)
    sizes, p = cfg.sizes, len(cfg.predictors)
    subjects = cfg.predictor.draw(rng, int(sizes.sum()) * p).reshape(-1, p)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    idx = np.concatenate(
        [np.tile(np.arange(s, s + n), cfg.repeats) for s, n in zip(starts, sizes, strict=True)]
    )
    design.X = np.column_stack([np.ones(idx.size), subjects[idx]])
    return design


# -- brute force: the GLS estimator with the true V (tests of analytic truths) ----
def gls_estimates(design: Design, X: np.ndarray, group: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """GLS estimates with the design's true V of the responses ``Y`` (R, n) on rows
    ``X``, ``group`` (all rows of the design, or one replicate's observed rows)."""
    from study.design.generate import per_group_crossprod
    from study.design.gls import _minv_times

    cfg = design.config
    n = np.bincount(group)
    if design.row_sd is None:
        w = np.full(X.shape[0], 1.0 / cfg.sigma**2)
    else:  # (heteroscedastic designs here have no missing outcomes: all rows)
        assert X.shape[0] == design.X.shape[0]
        w = 1.0 / design.row_sd**2
    H = per_group_crossprod(X, n, w)
    starts = np.concatenate(([0], np.cumsum(n)[:-1]))
    b = np.add.reduceat((w * Y)[:, :, None] * X[None], starts, axis=1)  # (R, K, q)
    D = cfg.D
    minv_b = np.stack([_minv_times(H, D, bk[:, :, None])[:, :, 0] for bk in b])
    Wb = b - np.einsum("kab,rkb->rka", H, minv_b)
    W = H - H @ _minv_times(H, D, H)
    return np.linalg.solve(W.sum(axis=0), Wb.sum(axis=1).T).T


def sd_and_mcse(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The SD of draws ``x`` (R, ...) over R and its MCSE, ``sqrt(m4 - s^4) / (2 s
    sqrt(R))`` (delta method on the sample variance)."""
    d = x - x.mean(axis=0)
    s2 = (d**2).mean(axis=0)
    m4 = (d**4).mean(axis=0)
    s = np.sqrt(s2)
    return s, np.sqrt(m4 - s2**2) / (2 * s * np.sqrt(x.shape[0]))


# -- a test engine for data with several grouping factors ---------------------------
@dataclass(frozen=True)
class CrossedOlsOptions:
    """The options of :class:`CrossedOls` (an engine's options need ``level``)."""

    level: float = 0.95


class CrossedOls:
    """OLS on :class:`models.crossed.CrossedData` from its cross-products: the fixed
    effects with their naive SEs and normal intervals, the residual SD, NaN for the
    random terms.  A stand-in engine that fits crossed designs (what the pipeline
    needs of one), not a model of them."""

    name = "crossed_ols"

    def __init__(self, options: CrossedOlsOptions | None = None) -> None:
        self.options = options or CrossedOlsOptions()

    def fit(self, data: Any, *, seed: int | None = None, keep_posterior: bool = False) -> Any:
        from scipy import stats

        from models.base import FitResult

        s = data.structure
        beta = np.linalg.solve(data.XtX, data.Xty)
        n, q = data.n_obs, data.q
        s2 = (data.yty - beta @ data.Xty) / (n - q)
        T = len(s.terms)
        est, se = np.full(T, np.nan), np.full(T, np.nan)
        est[:q], est[-1] = beta, np.sqrt(s2)
        se[:q] = np.sqrt(np.diag(np.linalg.inv(data.XtX)) * s2)
        z = stats.norm.ppf(0.5 + self.options.level / 2)
        return FitResult(
            list(s.terms),
            list(s.effects),
            est,
            se,
            est - z * se,
            est + z * se,
            True,
            0.0,
            nobs=float(n),
            ngroups=float(data.n_groups),
        )


def crossed_ols_spec() -> Any:
    """The registration of :class:`CrossedOls` (it fits several grouping factors)."""
    from models.base import Capability
    from models.spec import EngineSpec

    return EngineSpec(
        "crossed_ols",
        CrossedOls,
        CrossedOlsOptions,
        capabilities={Capability.CROSSED},
        summary="test: OLS on crossed data",
    )
