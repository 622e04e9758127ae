"""Public Python API for analysis scripts.

>>> from study.api import open_results, measures, tidy
>>> ds = open_results("outputs/default")        # xarray.Dataset (replicate x engine x term)
>>> summary = measures(ds)                       # value / mcse over (measure, engine, term)
>>> frame = tidy(ds)                             # one row per replicate x engine x term
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import xarray as xr

from study.design.config import ConfigError, config_from_dict
from study.errors import StoreError
from study.analysis.measures import MEASURES, compute_measures
from study.run.store import Store

__all__ = ["MEASURES", "is_partial", "measures", "open_results", "tidy"]


def open_results(run_dir: str | Path) -> xr.Dataset:
    """The results Dataset of a run directory, loaded into memory.

    Built from the checkpoint pieces (so a run that was interrupted, even by kill -9,
    shows every replicate it finished); falls back to ``results.nc`` alone.
    ``ds.attrs["replicates_requested"]`` against ``ds.sizes["replicate"]`` tells
    whether the run is partial (see :func:`is_partial`).
    """
    import tomllib

    from study.design.generate import Design
    from study.run.results import build_dataset
    from study.design.truth import compute_truth

    store = Store(run_dir)
    if not store.path.is_dir():
        raise StoreError(f"{run_dir}: no such run directory; give a directory `study run` wrote")
    if store.exists() and store.piece_files():
        manifest = store.read_manifest()
        try:
            cfg = config_from_dict(
                tomllib.loads(store.config_text()), default_name=str(manifest.get("study", "run"))
            )
        except (ConfigError, tomllib.TOMLDecodeError, TypeError) as err:
            raise StoreError(f"{store.path / 'study.toml'} is not a valid config ({err})") from err
        piece = store.load()
        assert piece is not None
        truth = compute_truth(Design.from_study(cfg))
        return build_dataset(piece, cfg, truth, list(manifest["engines"]), manifest)
    if store.results_path.is_file():
        try:
            with xr.open_dataset(store.results_path) as ds:
                return ds.load()
        except (OSError, ValueError) as err:
            raise StoreError(
                f"{store.results_path} is corrupt ({err}); delete it and run `study run` again"
            ) from err
    raise StoreError(f"{run_dir}: holds no results yet; run `study run` first")


def is_partial(ds: xr.Dataset) -> bool:
    """Whether fewer replicates are present than the run asked for."""
    return int(ds.sizes["replicate"]) < int(ds.attrs.get("replicates_requested", 0))


def measures(ds: xr.Dataset, **kwargs: object) -> xr.Dataset:
    """Performance measures with MCSEs (see :func:`study.analysis.measures.compute_measures`)."""
    return compute_measures(ds, **kwargs)  # type: ignore[arg-type]


def tidy(ds: xr.Dataset) -> pd.DataFrame:
    """One row per replicate x engine x term (the broom::tidy shape plus diagnostics).

    Columns: replicate, engine, term, effect, estimate, std_error, ci_lower, ci_upper,
    rhat, ess_bulk, ess_tail, true_value, true_se, converged, fit_seconds, message.
    """
    term_vars = ["estimate", "std_error", "ci_lower", "ci_upper", "rhat", "ess_bulk", "ess_tail"]
    frame = ds[term_vars].to_dataframe().reset_index()
    per_fit = ds[["converged", "fit_seconds", "message"]].to_dataframe().reset_index()
    frame = frame.merge(per_fit, on=["replicate", "engine"], how="left")
    keep = ["replicate", "engine", "term", "effect", *term_vars, "true_value", "true_se"]
    return frame[[*keep, "converged", "fit_seconds", "message"]]
