"""The results Dataset (:mod:`study.run.schema`): built from fits and checkpoints, opened.

``build_dataset`` turns a run's joined checkpoint piece, its configuration and the
analytic truth into the Dataset; ``open_results`` does that for a run directory
(even a partial, interrupted one) and is what analysis scripts call.
"""

from __future__ import annotations

import importlib.metadata
import json
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from study.design.conditions import factor_names, factor_values
from study.design.config import config_from_text
from study.design.generate import Design
from study.design.truth import compute_truth
from study.errors import ConfigError, StoreError
from study.run.integrity import load_checked, stamp_of
from study.run.sbc import build_sbc_dataset, sbc_terms
from study.run.store import CONFIG, MANIFEST, SBC_RESULTS, Piece, Store
from study.schema import (
    CONDITION_COORDS,
    DTYPES,
    FIT_VARS,
    PAIR_VARS,
    REPLICATE_DESCRIPTION,
    SBC_PIECE_VARS,
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


def piece_from_fits(pairs: list[tuple[str, int]], fits: list[list[FitResult]]) -> Piece:
    """Stack ``fits[i][j]`` (pair i = (condition id, replicate), engine j) into a piece."""
    values: dict[str, np.ndarray] = {
        var: np.array([[getattr(f, var) for f in row] for row in fits], dtype=DTYPES[var])
        for var in (*TERM_VARS, *FIT_VARS)
    }
    condition = np.array([c for c, _ in pairs], dtype=np.str_)
    replicate = np.array([r for _, r in pairs], dtype=np.int64)
    return Piece(condition, replicate, values)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape the results."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


#: what a (condition, replicate) pair not yet fitted holds, per fit variable
_NOT_RUN = {"converged": False, "singular": False, "optimizer": "", "message": "not run"}


def build_dataset(
    piece: Piece, config: StudyConfig, truths: Mapping[str, Truth], meta: Mapping[str, Any]
) -> xr.Dataset:
    """The results Dataset of a run from its (joined) piece, truths and configuration.

    ``truths`` maps each condition id to its :class:`~study.design.truth.Truth`.  Pairs
    the piece lacks (a partial run) are NaN, not converged, with ``done`` False.
    """
    conditions = config.conditions
    index = {c.id: i for i, c in enumerate(conditions)}
    unknown = sorted(set(piece.condition.tolist()) - set(index))
    if unknown:
        raise StoreError(
            f"checkpoints hold conditions {unknown[:3]} that this configuration does not "
            "have; use --overwrite or another --out"
        )
    replicates = np.unique(piece.replicate)
    ci = np.array([index[c] for c in piece.condition.tolist()], dtype=np.int64)
    ri = np.searchsorted(replicates, piece.replicate)
    n_cond, n_rep = len(conditions), len(replicates)
    first = truths[conditions[0].id]
    data_vars: dict[str, Any] = {}
    for var, desc in {**TERM_VARS, **FIT_VARS}.items():
        src = piece.values[var]
        fill = _NOT_RUN.get(var, np.nan)
        dtype = object if src.dtype.kind == "U" else src.dtype
        arr = np.full((n_cond, n_rep, *src.shape[1:]), fill, dtype=dtype)
        arr[ci, ri] = src
        data_vars[var] = (dims_of(var), arr, {"description": desc})
    done = np.zeros((n_cond, n_rep), dtype=bool)
    done[ci, ri] = True
    data_vars["done"] = (dims_of("done"), done, {"description": PAIR_VARS["done"]})
    per_condition = {
        "true_value": [truths[c.id].value for c in conditions],
        "true_se": [truths[c.id].se for c in conditions],
        "cond_value": [truths[c.id].cond_value for c in conditions],
        "cond_se": [truths[c.id].cond_se for c in conditions],
    }
    coords: dict[str, Any] = {
        "condition": np.array([c.label for c in conditions], dtype=object),
        "replicate": ("replicate", replicates, {"description": REPLICATE_DESCRIPTION}),
        "engine": np.array(config.engines, dtype=object),
        "term": np.array(first.terms, dtype=object),
        "effect": ("term", np.array(first.effects, dtype=object)),
        "condition_id": (
            "condition",
            np.array([c.id for c in conditions], dtype=object),
            {"description": CONDITION_COORDS["condition_id"]},
        ),
    }
    for name in factor_names(conditions):
        values = factor_values(conditions, name)
        kind = object if any(isinstance(v, str) for v in values) else None
        coords[name] = ("condition", np.array(values, dtype=kind), {"description": "factor"})
    for name, rows in per_condition.items():
        coords[name] = (("condition", "term"), np.stack(rows), {"description": TERM_COORDS[name]})
    attrs = {
        "title": f"lmm-study results: {config.name}",
        "study": config.name,
        "config": config.to_toml(),
        "config_hash": config.hash(),
        "root_seed": config.seed,
        "level": config.level,
        "factors": json.dumps(factor_names(conditions)),
        "replicates_requested": int(meta.get("replicates", config.replicates)),
        "package_versions": json.dumps(package_versions()),
        "created": meta.get("created", ""),
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def run_kind(config: StudyConfig) -> str:
    """``"sbc"`` for a simulation-based calibration (an ``[sbc]`` table), else ``"study"``."""
    return "study" if config.sbc is None else "sbc"


def run_terms(config: StudyConfig) -> tuple[list[str], list[str]]:
    """The terms of a run's results and their effect kinds (SBC adds derived ones)."""
    terms, effects = config.terms()
    if config.sbc is None:
        return terms, effects
    extra = sbc_terms(config.design.structure)[len(terms) :]
    return [*terms, *extra], [*effects, *(["derived"] * len(extra))]


def store_of(run_dir: str | Path) -> Store:
    """The run directory as a :class:`Store` of its kind (the manifest's ``kind``; an
    sbc.nc without a manifest also marks an SBC run)."""
    path = Path(run_dir)
    kind = "study"
    try:
        kind = str(json.loads((path / MANIFEST).read_text()).get("kind", "study"))
    except (OSError, ValueError, AttributeError):  # damaged or missing: the config says
        if (path / SBC_RESULTS).is_file() or _has_sbc_table(path / CONFIG):
            kind = "sbc"
    return Store(path, kind if kind in ("study", "sbc") else "study")


def _has_sbc_table(path: Path) -> bool:
    try:
        return "sbc" in tomllib.loads(path.read_text())
    except (OSError, ValueError):
        return False


def dataset_of(
    piece: Piece,
    config: StudyConfig,
    manifest: Mapping[str, Any],
    truths: Mapping[str, Truth] | None = None,
) -> xr.Dataset:
    """The Dataset a run's joined piece makes: results.nc's (with ``truths``, computed
    when not given) or, for SBC, sbc.nc's."""
    if config.sbc is not None:
        return build_sbc_dataset(piece, config, manifest, package_versions())
    return build_dataset(piece, config, truths or compute_truths(config), manifest)


def default_out(config: StudyConfig) -> Path:
    """Where a run goes without ``--out``: outputs/<name>, or outputs/sbc/<name>."""
    return Path("outputs") / ("sbc" if config.sbc is not None else "") / config.name


def open_sbc(run_dir: str | Path) -> xr.Dataset:
    """The SBC Dataset of a run directory (from its checkpoints, so a partial run
    shows what it finished; else its sbc.nc), loaded into memory."""
    store = Store(run_dir, "sbc")
    if store.piece_files() or store.exists():
        manifest = store.read_manifest()
        config = stored_config(store)
        piece = load_checked(store, manifest, stamp_of(config))
        if piece is not None:
            return dataset_of(piece, config, manifest)
    if store.results_path.is_file():
        try:
            with xr.open_dataset(store.results_path) as ds:
                return ds.load()
        except (OSError, ValueError, RuntimeError, KeyError) as err:
            raise StoreError(
                f"{store.results_path} is damaged ({type(err).__name__}); run the SBC again"
            ) from err
    raise StoreError(f"{run_dir}: holds no simulations yet; run `study sbc` first")


def compute_truths(config: StudyConfig) -> dict[str, Truth]:
    """The analytic truth of every condition of a study, by condition id."""
    return {
        c.id: compute_truth(Design.from_study(config, c), config.terms()[0])
        for c in config.conditions
    }


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
    if store.piece_files() or store.exists():
        manifest = store.read_manifest()
        config = stored_config(store)
        piece = load_checked(store, manifest, stamp_of(config))
        if piece is not None:
            return build_dataset(piece, config, compute_truths(config), manifest)
    if store.results_path.is_file():
        return read_results_file(store.results_path)
    raise StoreError(f"{run_dir}: holds no results yet; run `study run` first")


def read_results_file(path: Path) -> xr.Dataset:
    """A ``results.nc`` loaded into memory; :class:`StoreError` if it is damaged."""
    try:
        with xr.open_dataset(path) as ds:
            loaded = ds.load()
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        if Store(path.parent).piece_files():
            fix = f"rebuild it from the run's checkpoints with `study merge {path.parent}`"
        else:
            fix = "there are no checkpoints to rebuild it from: run the study again"
        raise StoreError(f"{path} is damaged ({type(err).__name__}); {fix}") from err
    missing = missing_from(set(map(str, loaded.variables)))
    if missing:
        raise StoreError(
            f"{path} is not a results Dataset (lacks {', '.join(missing)}); "
            "give a file `study run` wrote"
        )
    return loaded


def results_problem(store: Store) -> str | None:
    """Why the run's ``results.nc`` cannot be read (``None``: readable or absent)."""
    if not store.results_path.is_file():
        return None
    try:
        with xr.open_dataset(store.results_path) as ds:
            names = set(map(str, ds.variables))
            if store.kind == "sbc":
                missing = [v for v in (*SBC_PIECE_VARS, "done") if v not in names]
            else:
                missing = missing_from(names)
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        return f"damaged ({type(err).__name__})"
    return f"lacks {', '.join(missing)}" if missing else None


def is_partial(ds: xr.Dataset) -> bool:
    """Whether some (condition, replicate) pair the run asked for is not fitted yet."""
    requested = int(ds.attrs.get("replicates_requested", 0))
    return int(ds.sizes["replicate"]) < requested or not bool(ds["done"].all())
