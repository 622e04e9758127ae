"""Long (tidy) frames of a results Dataset for scripts: broom::tidy's shape."""

from __future__ import annotations

import json

import pandas as pd
import xarray as xr

from study.schema import TERM_VARS

TERM_COLUMNS = list(TERM_VARS)
FIT_COLUMNS = ["converged", "fit_seconds", "message"]


def tidy(ds: xr.Dataset) -> pd.DataFrame:
    """One row per condition x replicate x engine x term (broom::tidy plus diagnostics).

    Parameters
    ----------
    ds : xarray.Dataset
        A results Dataset (``study.api.open_results``).

    Returns
    -------
    pandas.DataFrame
        Columns: condition, the grid's factors (rsimsum's ``by``: e.g. groups,
        group_size), replicate, engine, term, effect, estimate, std_error, ci_lower,
        ci_upper, rhat, ess_bulk, ess_tail, true_value, true_se, converged,
        fit_seconds, message.  Pairs of a partial run not fitted yet are left out.
    """
    factors = [str(f) for f in json.loads(ds.attrs.get("factors", "[]"))]
    frame = ds[TERM_COLUMNS].to_dataframe().reset_index()
    keys = ["condition", "replicate", "engine"]
    per_fit = ds[[*FIT_COLUMNS, "done"]].to_dataframe().reset_index()[[*keys, *FIT_COLUMNS, "done"]]
    frame = frame.merge(per_fit, on=keys, how="left")
    frame = frame[frame.pop("done").astype(bool)]
    head = ["condition", *factors, "replicate", "engine", "term", "effect"]
    frame = frame[[*head, *TERM_COLUMNS, "true_value", "true_se", *FIT_COLUMNS]]
    return frame.reset_index(drop=True)
