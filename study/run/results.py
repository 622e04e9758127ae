"""The results Dataset (:mod:`study.run.schema`): built from fits and checkpoints, opened.

``build_dataset`` turns a run's joined checkpoint piece, its configuration and the
analytic truth into the Dataset; ``open_results`` does that for a run directory
(even a partial, interrupted one) and is what analysis scripts call.
"""

from __future__ import annotations

import importlib.metadata
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from study.design.config import config_from_text
from study.design.generate import Design
from study.design.truth import compute_truth
from study.errors import ConfigError, StoreError
from study.run.store import Piece, Store
from study.schema import (
    DTYPES,
    FIT_VARS,
    REPLICATE_VARS,
    TERM_COORDS,
    TERM_VARS,
    dims_of,
    missing_from,
)

if TYPE_CHECKING:
    from models.base import FitResult
    from study.design.config import StudyConfig
    from study.design.truth import Truth

PACKAGES = ("lmm-study", "numpy", "xarray", "statsmodels", "pymc", "pytensor", "nutpie", "arviz")


def piece_from_fits(replicates: list[int], fits: list[list[FitResult]]) -> Piece:
    """Stack ``fits[i][j]`` (replicate i, engine j) into a checkpoint piece."""
    values: dict[str, np.ndarray] = {
        var: np.array([[getattr(f, var) for f in row] for row in fits], dtype=DTYPES[var])
        for var in (*TERM_VARS, *FIT_VARS)
    }
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
    piece: Piece, config: StudyConfig, truth: Truth, meta: dict[str, Any]
) -> xr.Dataset:
    """The results Dataset of a run from its (joined) piece, truth and configuration."""
    data_vars: dict[str, Any] = {}
    for var, desc in {**TERM_VARS, **FIT_VARS}.items():
        arr = piece.values[var]
        data_vars[var] = (
            dims_of(var),
            arr.astype(object) if var == "message" else arr,
            {"description": desc},
        )
    data_vars["seed_key"] = (
        dims_of("seed_key"),
        piece.replicate.copy(),
        {"description": REPLICATE_VARS["seed_key"]},
    )
    truth_values = {
        "effect": np.array(truth.effects, dtype=object),
        "true_value": truth.value,
        "true_se": truth.se,
        "cond_value": truth.cond_value,
        "cond_se": truth.cond_se,
    }
    coords: dict[str, Any] = {
        "replicate": piece.replicate,
        "engine": np.array(config.engines, dtype=object),
        "term": np.array(truth.terms, dtype=object),
        **{c: ("term", truth_values[c], {"description": d}) for c, d in TERM_COORDS.items()},
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


def stored_config(store: Store) -> StudyConfig:
    """The configuration a run directory was written with."""
    try:
        return config_from_text(
            store.config_text(), default_name=store.path.name, label=str(store.config_path)
        )
    except ConfigError as err:
        raise StoreError(
            f"{store.config_path} is not a valid config ({err}); "
            "rerun with --overwrite or use another --out"
        ) from err


def open_results(run_dir: str | Path) -> xr.Dataset:
    """The results Dataset of a run directory, loaded into memory.

    Built from the checkpoint pieces (so a run that was interrupted, even by kill -9,
    shows every replicate it finished); falls back to ``results.nc`` alone.
    ``ds.attrs["replicates_requested"]`` against ``ds.sizes["replicate"]`` tells
    whether the run is partial (see :func:`is_partial`).

    Raises
    ------
    StoreError
        The directory is missing, holds no results, or a file in it is corrupt.
    """
    store = Store(run_dir)
    if not store.path.is_dir():
        raise StoreError(f"{run_dir}: no such run directory; give a directory `study run` wrote")
    if store.exists() and store.piece_files():
        manifest = store.read_manifest()
        config = stored_config(store)
        piece = store.load()
        assert piece is not None
        return build_dataset(piece, config, compute_truth(Design.from_study(config)), manifest)
    if store.results_path.is_file():
        try:
            with xr.open_dataset(store.results_path) as ds:
                loaded = ds.load()
        except (OSError, ValueError) as err:
            raise StoreError(
                f"{store.results_path} is corrupt ({err}); delete it and run `study run` again"
            ) from err
        missing = missing_from(set(map(str, loaded.variables)))
        if missing:
            raise StoreError(
                f"{store.results_path} is not a results Dataset (lacks {', '.join(missing)}); "
                "give a file `study run` wrote"
            )
        return loaded
    raise StoreError(f"{run_dir}: holds no results yet; run `study run` first")


def is_partial(ds: xr.Dataset) -> bool:
    """Whether fewer replicates are present than the run asked for."""
    return int(ds.sizes["replicate"]) < int(ds.attrs.get("replicates_requested", 0))
