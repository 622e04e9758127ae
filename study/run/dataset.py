"""The one dataset builder: a run's joined checkpoint piece -> its xarray Dataset.

Every kind's Dataset has dims (condition, <pair dim>, engine, term) for the variables
of its schema (:class:`study.schema.Schema`), ``done`` over (condition, pair dim),
``<pair dim>s_requested`` over condition (the pairs the run asked for there),
the coordinates condition / condition_id / engine / term / effect, the attributes
every run has, and what its kind adds (:meth:`Kind.coords`, :meth:`Kind.attrs`).
Pairs the piece lacks (a partial run) hold the schema's fill values, ``done`` False.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from study.errors import StoreError
from study.schema import CONDITION_COORDS, PAIR_VARS, REPLICATE_DESCRIPTION

if TYPE_CHECKING:
    from study.design.config import StudyConfig
    from study.run.kinds import Kind
    from study.run.store import Piece

PACKAGES = ("lmm-study", "numpy", "xarray", "statsmodels", "pymc", "pytensor", "nutpie", "arviz")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape the results."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def sparse_counts(counts: Mapping[str, int], replicates: int) -> dict[str, int]:
    """What a manifest records of per-condition ``counts``: those that differ from
    ``replicates`` (the count of every other condition)."""
    return {cid: int(n) for cid, n in counts.items() if int(n) != replicates}


def requested_counts(config: StudyConfig, manifest: Mapping[str, Any]) -> dict[str, int]:
    """The replicates the run asked for per condition (id -> count): the manifest's
    ``replicates_by_condition`` where it names the condition, else its ``replicates``
    (every condition of a manifest written before per-condition counts), else
    ``config``'s count."""
    by = manifest.get("replicates_by_condition") or {}
    base = manifest.get("replicates")
    return {
        c.id: int(by.get(c.id, base if base is not None else config.count(c.id)))
        for c in config.conditions
    }


def build_dataset(
    piece: Piece,
    config: StudyConfig,
    kind: Kind,
    manifest: Mapping[str, Any],
    context: Any = None,
) -> xr.Dataset:
    """The Dataset of a run of ``kind`` from its joined ``piece``.

    ``context`` is the kind's run-wide context (:meth:`Kind.context`: the analytic
    truth of a coverage study).
    """
    schema = kind.layout.schema
    assert schema is not None
    pair = schema.pair_dim
    conditions = config.conditions
    index = {c.id: i for i, c in enumerate(conditions)}
    unknown = sorted(set(piece.condition.tolist()) - set(index))
    if unknown:
        raise StoreError(
            f"checkpoints hold conditions {unknown[:3]} that this configuration does not "
            "have; use overwrite=True or another out=..."
        )
    replicates = np.unique(piece.replicate)
    ci = np.array([index[c] for c in piece.condition.tolist()], dtype=np.int64)
    ri = np.searchsorted(replicates, piece.replicate)
    shape = (len(conditions), len(replicates))
    data_vars: dict[str, Any] = {}
    for name, var in schema.vars.items():
        src = piece.values[name]
        dtype = object if src.dtype.kind == "U" else src.dtype
        arr = np.full((*shape, *src.shape[1:]), var.fill, dtype=dtype)
        arr[ci, ri] = src
        data_vars[name] = (schema.dims_of(name), arr, {"description": var.description})
    done = np.zeros(shape, dtype=bool)
    done[ci, ri] = True
    data_vars["done"] = (("condition", pair), done, {"description": PAIR_VARS["done"]})
    # a variable, not a coordinate: a coordinate would ride along every variable taken
    # from the Dataset (and into summaries), so runs of different lengths would differ
    data_vars[f"{pair}s_requested"] = (
        "condition",
        np.array(list(requested_counts(config, manifest).values()), dtype=np.int64),
        {"description": f"{pair}s the run asked for in the condition"},
    )
    terms, effects = kind.terms(config)
    coords: dict[str, Any] = {
        "condition": np.array([c.label for c in conditions], dtype=object),
        pair: (pair, replicates, {"description": REPLICATE_DESCRIPTION}),
        "engine": np.array(config.engines, dtype=object),
        "term": np.array(terms, dtype=object),
        "effect": ("term", np.array(effects, dtype=object)),
        "condition_id": (
            "condition",
            np.array([c.id for c in conditions], dtype=object),
            {"description": CONDITION_COORDS["condition_id"]},
        ),
        **kind.coords(config, context),
    }
    attrs = {
        "title": f"lmm-study {kind.name} results: {config.name}",
        "study": config.name,
        "kind": kind.name,
        "config": config.to_toml(),
        "config_hash": config.hash(),
        "root_seed": config.seed,
        "level": config.level,
        **kind.attrs(config, manifest),
        f"{pair}s_requested": int(manifest.get("replicates", config.replicates)),
        "package_versions": json.dumps(package_versions()),
        "created": manifest.get("created", ""),
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)
