"""The results schema: the contract between runner, store, measures, plots and users.

An ``xarray.Dataset`` with dims ``condition``, ``replicate``, ``engine``, ``term``.  Its
variables are the per-fit fields every engine returns (:mod:`models.base`:
``TERM_FIELDS``, ``DIAGNOSTIC_FIELDS``, ``FIT_FIELDS``) stacked over conditions,
replicates and engines, plus ``done`` (which pairs are fitted: all but in a partial
run); per (condition, term) coordinates carry the analytic truth, and each factor of
the grid is a coordinate on ``condition``.  Everything
that writes, reads or checks results uses these tables (docs/architecture.md).
"""

from __future__ import annotations

import numpy as np

from models.base import DIAGNOSTIC_FIELDS, FIT_FIELDS, TERM_FIELDS

TERM_DIMS = ("condition", "replicate", "engine", "term")
FIT_DIMS = ("condition", "replicate", "engine")
PAIR_DIMS = ("condition", "replicate")
#: variables over (condition, replicate, engine, term): name -> description
TERM_VARS: dict[str, str] = {**TERM_FIELDS, **DIAGNOSTIC_FIELDS}
#: variables over (condition, replicate, engine): name -> description
FIT_VARS: dict[str, str] = {name: desc for name, (_, desc) in FIT_FIELDS.items()}
#: numpy dtype of every per-fit variable (checkpoint pieces and the Dataset)
DTYPES: dict[str, type] = {
    **dict.fromkeys(TERM_VARS, float),
    **{name: {"b": bool, "f": float, "U": np.str_}[kind] for name, (kind, _) in FIT_FIELDS.items()},
}
#: variables over (condition, replicate)
PAIR_VARS: dict[str, str] = {
    "done": "this (condition, replicate) was fitted (False only while a run is partial)",
}
#: what the replicate coordinate means
REPLICATE_DESCRIPTION = (
    "replicate r: its data come from the stream keyed (condition key, r) of the root seed "
    "(docs/architecture.md, seed policy)"
)
#: coordinates on condition: name -> description (plus one per factor of the grid)
CONDITION_COORDS: dict[str, str] = {
    "condition_id": "hash of the condition's full design: the key of its random streams",
}
#: coordinates on (condition, term): name -> description
TERM_COORDS: dict[str, str] = {
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
    if var in PAIR_VARS:
        return PAIR_DIMS
    raise KeyError(f"{var!r} is not a results variable")


def missing_from(names: set[str] | frozenset[str]) -> list[str]:
    """Schema variables and coordinates not among ``names``."""
    wanted = [*TERM_VARS, *FIT_VARS, *PAIR_VARS, "effect", *CONDITION_COORDS, *TERM_COORDS]
    return [v for v in wanted if v not in names]


# -- simulation-based calibration (``study sbc``, the run's ``sbc.nc``) -------------
#: derived quantities ranked beside the parameters (appended to the term list)
SBC_DERIVED = ("loglik",)
#: variables over (condition, simulation, engine, term)
SBC_TERM_VARS: dict[str, str] = {
    "rank": "rank of the true value among the thinned posterior draws (0 .. n_ranks - 1; "
    "-1 when the fit gave no draws)",
    "pit": "randomized PIT (rank + U(0,1)) / n_ranks: U(0,1) when the posterior is right",
    "estimate": "posterior mean",
    "rhat": "rank-normalized split R-hat (NaN for derived quantities)",
    "ess_bulk": "bulk effective sample size (NaN for derived quantities)",
}
#: variables over (condition, simulation, engine)
SBC_FIT_VARS: dict[str, str] = {
    "n_ranks": "number of possible ranks (thinned draws + 1); 0 when the fit gave no draws",
    "thin": "thinning step of the draws (total draws / min bulk ESS, rounded up)",
    "converged": "the fit met the engine's convergence criteria (R-hat, ESS, divergences)",
    "divergences": "divergent transitions",
    "fit_seconds": "wall time of the fit",
    "message": "why the fit failed or did not converge; empty otherwise",
}
#: variables over (condition, simulation, term)
SBC_TRUE_VARS: dict[str, str] = {
    "true_value": "the parameters drawn from the prior (and the derived quantities at them)",
}
SBC_DTYPES: dict[str, type] = {
    **dict.fromkeys(SBC_TERM_VARS, float),
    **dict.fromkeys(SBC_TRUE_VARS, float),
    "rank": np.int64,
    "n_ranks": np.int64,
    "thin": np.int64,
    "converged": bool,
    "divergences": float,
    "fit_seconds": float,
    "message": np.str_,
}
#: every variable a checkpoint piece of an SBC run holds
SBC_PIECE_VARS = (*SBC_TERM_VARS, *SBC_FIT_VARS, *SBC_TRUE_VARS)


def piece_shapes(kind: str, engines: int, terms: int) -> dict[str, tuple[int, ...]]:
    """The shape after the pair axis of each checkpoint variable of a run of ``kind``
    (``"study"`` or ``"sbc"``)."""
    if kind == "sbc":
        return {
            **dict.fromkeys(SBC_TERM_VARS, (engines, terms)),
            **dict.fromkeys(SBC_FIT_VARS, (engines,)),
            **dict.fromkeys(SBC_TRUE_VARS, (terms,)),
        }
    return {v: (engines, terms) if "term" in dims_of(v) else (engines,) for v in PIECE_VARS}
