"""Long (tidy) frames of a results Dataset for scripts: broom::tidy's shape."""

from __future__ import annotations

import pandas as pd
import xarray as xr

from study.schema import TERM_VARS

TERM_COLUMNS = list(TERM_VARS)
FIT_COLUMNS = ["converged", "fit_seconds", "message"]


def tidy(ds: xr.Dataset) -> pd.DataFrame:
    """One row per replicate x engine x term (the broom::tidy shape plus diagnostics).

    Parameters
    ----------
    ds : xarray.Dataset
        A results Dataset (``study.api.open_results``).

    Returns
    -------
    pandas.DataFrame
        Columns: replicate, engine, term, effect, estimate, std_error, ci_lower,
        ci_upper, rhat, ess_bulk, ess_tail, true_value, true_se, converged,
        fit_seconds, message.
    """
    frame = ds[TERM_COLUMNS].to_dataframe().reset_index()
    per_fit = ds[FIT_COLUMNS].to_dataframe().reset_index()
    frame = frame.merge(per_fit, on=["replicate", "engine"], how="left")
    keep = ["replicate", "engine", "term", "effect", *TERM_COLUMNS, "true_value", "true_se"]
    return frame[[*keep, *FIT_COLUMNS]]
