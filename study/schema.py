"""The results schema: the contract between runner, store, measures, plots and users.

An ``xarray.Dataset`` with dims ``replicate``, ``engine``, ``term``.  Its variables are
the per-fit fields every engine returns (:mod:`models.base`: ``TERM_FIELDS``,
``DIAGNOSTIC_FIELDS``, ``FIT_FIELDS``) stacked over replicates and engines, plus the
replicate's seed key; per-term coordinates carry the analytic truth.  Everything
that writes, reads or checks results uses these tables (docs/architecture.md).
"""

from __future__ import annotations

import numpy as np

from models.base import DIAGNOSTIC_FIELDS, FIT_FIELDS, TERM_FIELDS

TERM_DIMS = ("replicate", "engine", "term")
FIT_DIMS = ("replicate", "engine")
#: variables over (replicate, engine, term): name -> description
TERM_VARS: dict[str, str] = {**TERM_FIELDS, **DIAGNOSTIC_FIELDS}
#: variables over (replicate, engine): name -> description
FIT_VARS: dict[str, str] = {name: desc for name, (_, desc) in FIT_FIELDS.items()}
#: numpy dtype of every per-fit variable (checkpoint pieces and the Dataset)
DTYPES: dict[str, type] = {
    **dict.fromkeys(TERM_VARS, float),
    **{name: {"b": bool, "f": float, "U": np.str_}[kind] for name, (kind, _) in FIT_FIELDS.items()},
}
#: variables over (replicate,)
REPLICATE_VARS: dict[str, str] = {
    "seed_key": "the replicate's stream key r: its data depend only on (root_seed, r)",
}
#: coordinates on term: name -> description
TERM_COORDS: dict[str, str] = {
    "effect": "fixed or ran_pars (broom.mixed)",
    "true_value": "marginal true value",
    "true_se": "marginal true SE (GLS, known V)",
    "cond_value": "E[beta_hat | u] for fixed random effects; NaN if redrawn",
    "cond_se": "SD[beta_hat | u] for fixed random effects; NaN if redrawn",
}
#: every per-fit variable a checkpoint piece must hold
PIECE_VARS = (*TERM_VARS, *FIT_VARS)


def dims_of(var: str) -> tuple[str, ...]:
    """The dims of data variable ``var``."""
    if var in TERM_VARS:
        return TERM_DIMS
    if var in FIT_VARS:
        return FIT_DIMS
    if var in REPLICATE_VARS:
        return ("replicate",)
    raise KeyError(f"{var!r} is not a results variable")


def missing_from(names: set[str] | frozenset[str]) -> list[str]:
    """Schema variables and term coordinates not among ``names``."""
    wanted = [*TERM_VARS, *FIT_VARS, *REPLICATE_VARS, *TERM_COORDS]
    return [v for v in wanted if v not in names]
