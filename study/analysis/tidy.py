"""Long (tidy) frames of a results Dataset for scripts: broom::tidy's shape."""

from __future__ import annotations

import json

import numpy as np
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
        ci_upper, rhat, ess_bulk, ess_tail, true_value, true_se, observed_true_se
        (the true SE of the rows this replicate observed; NaN without missing
        outcomes), converged, fit_seconds, message.  Pairs of a partial run not fitted
        yet are left out.
    """
    factors = [str(f) for f in json.loads(ds.attrs.get("factors", "[]"))]
    frame = ds[TERM_COLUMNS].to_dataframe().reset_index()
    if "observed_true_se" in ds:  # (condition, replicate, term): the same for every engine
        per_pair = ds["observed_true_se"].to_dataframe().reset_index()
        keys_t = ["condition", "replicate", "term"]
        frame = frame.merge(per_pair[[*keys_t, "observed_true_se"]], on=keys_t, how="left")
    else:  # results made before the variable existed
        frame["observed_true_se"] = np.nan
    keys = ["condition", "replicate", "engine"]
    per_fit = ds[[*FIT_COLUMNS, "done"]].to_dataframe().reset_index()[[*keys, *FIT_COLUMNS, "done"]]
    frame = frame.merge(per_fit, on=keys, how="left")
    frame = frame[frame.pop("done").astype(bool)]
    head = ["condition", *factors, "replicate", "engine", "term", "effect"]
    truth = ["true_value", "true_se", "observed_true_se"]
    frame = frame[[*head, *TERM_COLUMNS, *truth, *FIT_COLUMNS]]
    return frame.reset_index(drop=True)
