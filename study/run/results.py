"""The results Dataset (design.md section 3): built from fit results and checkpoints.

dims ``replicate``, ``engine``, ``term``; per term coordinates ``effect``,
``true_value``, ``true_se`` (marginal truth) and ``cond_value``, ``cond_se`` (truth
conditional on fixed random effects, NaN when they are redrawn); data variables
``estimate``, ``std_error``, ``ci_lower``, ``ci_upper``, ``rhat``, ``ess_bulk``,
``ess_tail`` (replicate, engine, term) and ``converged``, ``fit_seconds``,
``divergences``, ``message`` (replicate, engine); ``seed_key`` (replicate).
"""

from __future__ import annotations

import importlib.metadata
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from study.run.store import FIT_VARS, TERM_VARS, Piece

if TYPE_CHECKING:
    from models.base import FitResult
    from study.design.config import StudyConfig
    from study.design.truth import Truth

PACKAGES = ("lmm-study", "numpy", "xarray", "statsmodels", "pymc", "pytensor", "nutpie", "arviz")

DESCRIPTIONS = {
    "estimate": "point estimate (REML/ML estimate; posterior mean or median)",
    "std_error": "standard error (model-based SE; posterior SD)",
    "ci_lower": "lower interval limit at the study level",
    "ci_upper": "upper interval limit at the study level",
    "rhat": "rank-normalised split R-hat (Bayesian engines only)",
    "ess_bulk": "bulk effective sample size (Bayesian engines only)",
    "ess_tail": "tail effective sample size (Bayesian engines only)",
    "converged": "fit converged (REML: optimizer; Bayes: R-hat, divergences, ESS floor)",
    "fit_seconds": "wall-clock seconds of the fit",
    "divergences": "divergent transitions (Bayesian engines only)",
    "message": "warnings or error of the fit; empty when clean",
    "seed_key": "replicate r's data come from SeedSequence(root_seed, spawn_key=(r,))",
}


def piece_from_fits(replicates: list[int], fits: list[list[FitResult]]) -> Piece:
    """Stack ``fits[i][j]`` (replicate i, engine j) into a checkpoint piece."""
    values: dict[str, np.ndarray] = {}
    for var in TERM_VARS:
        values[var] = np.array([[getattr(f, var) for f in row] for row in fits], dtype=float)
    values["converged"] = np.array([[f.converged for f in row] for row in fits], dtype=bool)
    values["fit_seconds"] = np.array([[f.fit_seconds for f in row] for row in fits], dtype=float)
    values["divergences"] = np.array([[f.divergences for f in row] for row in fits], dtype=float)
    values["message"] = np.array([[f.message for f in row] for row in fits], dtype=np.str_)
    return Piece(np.array(replicates, dtype=np.int64), values)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape the results."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def build_dataset(
    piece: Piece, config: StudyConfig, truth: Truth, engines: list[str], meta: dict[str, Any]
) -> xr.Dataset:
    """The results Dataset of a run from its (joined) piece, truth and configuration."""
    terms = truth.terms
    dims3 = ("replicate", "engine", "term")
    dims2 = ("replicate", "engine")
    data_vars: dict[str, Any] = {}
    for var in TERM_VARS:
        data_vars[var] = (dims3, piece.values[var], {"description": DESCRIPTIONS[var]})
    for var in FIT_VARS:
        arr = piece.values[var]
        if var == "message":
            arr = arr.astype(object)
        data_vars[var] = (dims2, arr, {"description": DESCRIPTIONS[var]})
    data_vars["seed_key"] = (
        ("replicate",),
        piece.replicate.copy(),
        {"description": DESCRIPTIONS["seed_key"]},
    )
    coords = {
        "replicate": piece.replicate,
        "engine": np.array(engines, dtype=object),
        "term": np.array(terms, dtype=object),
        "effect": ("term", np.array(truth.effects, dtype=object)),
        "true_value": ("term", truth.value, {"description": "marginal true value"}),
        "true_se": ("term", truth.se, {"description": "marginal true SE (GLS, known V)"}),
        "cond_value": (
            "term",
            truth.cond_value,
            {"description": "E[beta_hat | u] for fixed random effects; NaN if redrawn"},
        ),
        "cond_se": (
            "term",
            truth.cond_se,
            {"description": "SD[beta_hat | u] for fixed random effects; NaN if redrawn"},
        ),
    }
    attrs = {
        "title": f"lmm-study results: {config.name}",
        "study": config.name,
        "config": config.to_toml(),
        "config_hash": config.hash(),
        "root_seed": config.seed,
        "level": config.level,
        "replicates_requested": int(meta.get("replicates", config.replicates)),
        "package_versions": json.dumps(package_versions()),
        "created": meta.get("created", ""),
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)
