"""The results schema: the contract between runner, store, measures, plots and users.

An ``xarray.Dataset`` with dims ``condition``, ``replicate``, ``engine``, ``term``.  Its
variables are the per-fit fields every engine returns (:mod:`models.base`:
``TERM_FIELDS``, ``DIAGNOSTIC_FIELDS``, ``FIT_FIELDS``) stacked over conditions,
replicates and engines, plus ``done`` (which pairs are fitted: all but in a partial
run) and ``observed_true_se`` (condition, replicate, term: the truth of the rows a
replicate observed, when outcomes are missing); per (condition, term) coordinates
carry the analytic truth, and each factor of the grid is a coordinate on
``condition``.  Everything
that writes, reads or checks results uses these tables (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
#: variables over (condition, replicate, term): the truth of the replicate's own data
PAIR_TERM_VARS: dict[str, str] = {
    "observed_true_se": "true SE of the GLS estimator (known V) on the rows observed in this "
    "replicate: sqrt(diag Var(beta_hat | observed rows)); NaN for variance parameters and "
    "when no outcome is missing (then true_se holds for every replicate)",
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


@dataclass(frozen=True)
class Var:
    """One variable of a kind's per-pair schema.

    ``axes`` are its dims after the pair dims (condition, replicate): ``("engine",
    "term")``, ``("engine",)`` or ``("term",)``; ``fill`` is what a pair not yet run
    holds.  ``required=False`` marks a variable added after stores were written:
    checkpoint pieces and results files that lack it still open, holding ``fill``
    (:meth:`Schema.completed`).
    """

    axes: tuple[str, ...]
    dtype: type
    description: str
    fill: Any = float("nan")
    required: bool = True


@dataclass(frozen=True)
class Schema:
    """What every (condition, replicate) pair of a kind of study stores.

    ``pair_dim`` names the replicate dim in the Dataset (``replicate`` for a coverage
    study, ``simulation`` for SBC); ``vars`` the per-pair variables.  Checkpoint
    pieces hold exactly these variables (leading axis: the pair); the one dataset
    builder (:mod:`study.run.dataset`) stacks them over conditions and replicates.
    """

    pair_dim: str
    vars: Mapping[str, Var]
    #: the per-fit flag whose False marks a failure the progress counts (None: none)
    converged: str | None = "converged"

    def failures(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """Failures per pair of a piece's ``values`` (pair, ...) -> (pair,)."""
        first = next(iter(values.values()))
        if self.converged is None:
            return np.zeros(first.shape[0], dtype=np.int64)
        bad = ~np.asarray(values[self.converged], dtype=bool)
        return bad.reshape(bad.shape[0], -1).sum(axis=1)

    @property
    def piece_vars(self) -> tuple[str, ...]:
        """Every variable a checkpoint piece holds when written now."""
        return tuple(self.vars)

    @property
    def required_vars(self) -> tuple[str, ...]:
        """The variables a checkpoint piece or results file must hold (those added
        later, ``required=False``, may be missing from older stores)."""
        return tuple(name for name, v in self.vars.items() if v.required)

    def completed(self, values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A piece's ``values`` (pair, ...) with each optional variable it lacks (a
        piece written before the variable existed) added as its fill value; the
        sizes of its axes are read off the variables the piece holds."""
        out = dict(values)
        absent = [n for n, v in self.vars.items() if n not in out and not v.required]
        if not absent:
            return out
        size: dict[str, int] = {}
        for name, v in self.vars.items():
            if name in out:
                size.update(zip(v.axes, out[name].shape[1:], strict=False))
        pairs = next(iter(out.values())).shape[0]
        for name in absent:
            var = self.vars[name]
            out[name] = np.full((pairs, *(size[a] for a in var.axes)), var.fill, dtype=var.dtype)
        return out

    def shapes(
        self, engines: int, terms: int, axes: Mapping[str, int] | None = None
    ) -> dict[str, tuple[int, ...]]:
        """The shape after the pair axis of each piece variable (``axes``: the sizes of
        a kind's own axes, :meth:`study.run.kinds.base.Kind.axes`)."""
        size = {"engine": engines, "term": terms, **(axes or {})}
        return {name: tuple(size[a] for a in v.axes) for name, v in self.vars.items()}

    def dims_of(self, name: str) -> tuple[str, ...]:
        """The Dataset dims of variable ``name``."""
        return ("condition", self.pair_dim, *self.vars[name].axes)


def _vars(
    table: Mapping[str, str],
    axes: tuple[str, ...],
    dtypes: Mapping[str, type],
    fills: Mapping,
    required: bool = True,
) -> dict[str, Var]:
    return {
        name: Var(axes, dtypes[name], desc, fills.get(name, float("nan")), required)
        for name, desc in table.items()
    }


#: what a (condition, replicate) pair not yet fitted holds, per fit variable
NOT_RUN = {"converged": False, "singular": False, "optimizer": "", "message": "not run"}
#: the coverage study's per-pair schema: the fits of every engine, and the truth of the
#: replicate's observed rows (added with missing outcomes: older stores read it as NaN)
COVERAGE_SCHEMA = Schema(
    "replicate",
    {
        **_vars(TERM_VARS, ("engine", "term"), DTYPES, NOT_RUN),
        **_vars(FIT_VARS, ("engine",), DTYPES, NOT_RUN),
        **_vars(PAIR_TERM_VARS, ("term",), dict.fromkeys(PAIR_TERM_VARS, float), {}, False),
    },
)
#: what an SBC simulation not yet run holds, per variable
SBC_NOT_RUN = {"rank": -1, "n_ranks": 0, "thin": 0, "converged": False, "message": "not run"}
#: the SBC per-pair schema: ranks of every engine, the true values drawn
SBC_SCHEMA = Schema(
    "simulation",
    {
        **_vars(SBC_TERM_VARS, ("engine", "term"), SBC_DTYPES, SBC_NOT_RUN),
        **_vars(SBC_FIT_VARS, ("engine",), SBC_DTYPES, SBC_NOT_RUN),
        **_vars(SBC_TRUE_VARS, ("term",), SBC_DTYPES, SBC_NOT_RUN),
    },
)


# -- power (``study power``, the run's ``power.nc``) ---------------------------------
#: the hypothesis axis: the replicate's own data, then its null twin
HYPOTHESES = ("alternative", "null")
#: variables over (condition, replicate, hypothesis, test, term)
POWER_TEST_VARS: dict[str, str] = {
    "p_value": "two-sided p-value of the test of H0: beta = null (NaN: the rule has none, or "
    "the test failed)",
    "reject": "1 if the test rejects H0 at alpha, 0 if not, NaN if it could not be made",
    "statistic": "test statistic (z, t, chi-square; posterior tail probability for a rule)",
    "df": "reference degrees of freedom of the statistic (inf: normal)",
}
#: variables over (condition, replicate, hypothesis, engine, term)
POWER_TERM_VARS: dict[str, str] = {
    "estimate": "point estimate of the tested term",
    "std_error": "its standard error (posterior SD)",
}
#: variables over (condition, replicate, hypothesis, engine)
POWER_FIT_VARS: dict[str, str] = {
    "converged": "the fit converged",
    "singular": "a boundary (singular) fit",
    "fit_seconds": "wall time of the fit and its tests",
    "message": "why the fit or a test failed; empty otherwise",
}
POWER_DTYPES: dict[str, type] = {
    **dict.fromkeys(POWER_TEST_VARS, float),
    **dict.fromkeys(POWER_TERM_VARS, float),
    "converged": bool,
    "singular": bool,
    "fit_seconds": float,
    "message": np.str_,
}
#: what a pair not yet run holds
POWER_NOT_RUN = {"converged": False, "singular": False, "message": "not run"}
#: the power study's per-pair schema: every test on the data and on the null twin
POWER_SCHEMA = Schema(
    "replicate",
    {
        **_vars(POWER_TEST_VARS, ("hypothesis", "test", "term"), POWER_DTYPES, POWER_NOT_RUN),
        **_vars(POWER_TERM_VARS, ("hypothesis", "engine", "term"), POWER_DTYPES, POWER_NOT_RUN),
        **_vars(POWER_FIT_VARS, ("hypothesis", "engine"), POWER_DTYPES, POWER_NOT_RUN),
    },
)
