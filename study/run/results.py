"""Opening a run directory of any kind: its store, its configuration, its Dataset.

:func:`open_results` is the one way to open a run (what analysis scripts call): the
Dataset of whatever kind of study the directory holds, built from its checkpoint
pieces (so a run that was interrupted, even by kill -9, shows every pair it
finished), else read from its results file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from models.registry import default_registry
from study.design.config import config_from_text
from study.design.generate import design_of
from study.errors import ConfigError, StoreError
from study.run.dataset import build_dataset, package_versions
from study.run.integrity import load_checked, stamp_of
from study.run.kinds import Kind, kind_named, kind_of, kind_of_files
from study.run.store import MANIFEST, Store

if TYPE_CHECKING:
    from models.registry import Registry
    from models.spec import EngineSpec
    from study.design.config import StudyConfig

__all__ = [
    "dataset_of",
    "default_out",
    "open_results",
    "package_versions",
    "read_results_file",
    "results_problem",
    "store_of",
    "stored_config",
]


def kind_of_store(path: Path) -> Kind:
    """The kind of the run in directory ``path``: its manifest's ``kind``; for a
    manifest that is missing or damaged, what its files say."""
    try:
        return kind_named(json.loads((path / MANIFEST).read_text()).get("kind"))
    except (OSError, ValueError, AttributeError, KeyError):
        return kind_of_files(path)


def store_of(run_dir: str | Path) -> Store:
    """The run directory as a :class:`Store` with its kind's layout."""
    path = Path(run_dir)
    return Store(path, kind_of_store(path).layout)


def store_for(config: StudyConfig, out: str | Path | None = None) -> Store:
    """The store a run of ``config`` writes: ``out``, or its kind's default."""
    kind = kind_of(config)
    return Store(out if out is not None else kind.default_out(config), kind.layout)


def default_out(config: StudyConfig) -> Path:
    """Where a run goes without ``out``: its kind's default (outputs/<name>, ...)."""
    return kind_of(config).default_out(config)


def run_context(config: StudyConfig) -> Any:
    """The kind's run-wide context of ``config`` (the analytic truth of a coverage
    study), from freshly built designs."""
    designs = {c.id: c for c in config.conditions}
    return kind_of(config).context(config, lambda cid: design_of(config, designs[cid]))


def dataset_of(
    piece: Any, config: StudyConfig, manifest: Mapping[str, Any], context: Any = None
) -> xr.Dataset:
    """The Dataset a run's joined piece makes (``context`` computed when not given)."""
    kind = kind_of(config)
    if context is None:
        context = run_context(config)
    return build_dataset(piece, config, kind, manifest, context)


def stored_config(store: Store, registry: Registry | None = None) -> StudyConfig:
    """The configuration a run directory was written with (its engines from
    ``registry``, default: the installed ones)."""
    try:
        return config_from_text(
            store.config_text(),
            default_name=store.path.name,
            label=str(store.config_path),
            registry=registry,
        )
    except ConfigError as err:
        raise StoreError(
            f"{store.config_path} is not a valid config ({err}); "
            "rerun with overwrite=True or use another out=..."
        ) from err


def open_results(run_dir: str | Path, *, register: Sequence[EngineSpec] = ()) -> xr.Dataset:
    """The Dataset of a run directory of any kind, loaded into memory.

    Built from the checkpoint pieces (so a run that was interrupted, even by kill -9,
    shows every pair it finished); falls back to the results file alone.
    ``ds.attrs["kind"]`` names the kind of study; ``is_partial(ds)`` whether some
    pair it asked for is not done yet.  ``register``: the engines of one's own the run
    was made with (``run_study(..., engines=...)``).

    Raises
    ------
    StoreError
        The directory is missing, holds no results, or a file in it is corrupt.
    """
    store = store_of(run_dir)
    if not store.path.is_dir():
        raise StoreError(f"{run_dir}: no such run directory; give a directory `study run` wrote")
    if store.piece_files() or store.exists():
        manifest = store.read_manifest()
        registry = default_registry().with_engines(*register) if register else None
        config = stored_config(store, registry)
        piece = load_checked(store, manifest, stamp_of(config))
        if piece is not None:
            return dataset_of(piece, config, manifest)
    if store.results_path.is_file():
        return read_results_file(store)
    raise StoreError(f"{run_dir}: holds no results yet; run `{store.command}` first")


def read_results_file(store: Store) -> xr.Dataset:
    """The run's results file loaded into memory; :class:`StoreError` if it is damaged."""
    path = store.results_path
    try:
        with xr.open_dataset(path) as ds:
            loaded = ds.load()
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        if store.piece_files():
            fix = f"rebuild it from the run's checkpoints with `study merge {path.parent}`"
        else:
            fix = "there are no checkpoints to rebuild it from: run the study again"
        raise StoreError(f"{path} is damaged ({type(err).__name__}); {fix}") from err
    missing = _missing(store, set(map(str, loaded.variables)))
    if missing:
        raise StoreError(
            f"{path} is not a results Dataset (lacks {', '.join(missing)}); "
            "give a file `study run` wrote"
        )
    return _completed(store, loaded)


def _completed(store: Store, ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with each optional variable of the store's schema it lacks (a results
    file written before the variable existed) added as its fill value."""
    schema = store.layout.schema
    if schema is None:
        return ds
    for name, var in schema.vars.items():
        if name in ds.variables or var.required:
            continue
        dims = schema.dims_of(name)
        arr: np.ndarray = np.full(tuple(ds.sizes[d] for d in dims), var.fill, dtype=var.dtype)
        ds[name] = (dims, arr, {"description": var.description})
    return ds


def results_problem(store: Store) -> str | None:
    """Why the run's ``results.nc`` cannot be read (``None``: readable or absent)."""
    if not store.results_path.is_file():
        return None
    try:
        with xr.open_dataset(store.results_path) as ds:
            missing = _missing(store, set(map(str, ds.variables)))
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        return f"damaged ({type(err).__name__})"
    return f"lacks {', '.join(missing)}" if missing else None


def _missing(store: Store, names: set[str]) -> list[str]:
    """The variables and coordinates of the store's kind that ``names`` lacks."""
    schema = store.layout.schema
    wanted = [*(schema.required_vars if schema else ()), "done", "condition_id"]
    return [v for v in wanted if v not in names]
