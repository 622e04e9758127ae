"""Performance measures over a results Dataset: the xarray layer.

Each measure reduces the ``replicate`` dim of the results (design.md section 3) with
the NumPy functions of :mod:`study.analysis.mcse`, through ``xarray.apply_ufunc``.  The
result is a Dataset with variables ``value`` and ``mcse`` over
``(measure, engine, term)``, plus ``n`` (replicates used) and per-engine counts of
non-converged fits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from study.analysis import mcse as mnp

#: measure name -> description (the order is the order of the summary)
MEASURES: dict[str, str] = {
    "n": "replicates with a finite estimate",
    "mean_estimate": "mean of the estimates",
    "bias": "mean(estimate) - true value",
    "relative_bias": "bias / true value",
    "empirical_se": "SD of the estimates (EmpSE)",
    "mean_se": "arithmetic mean of the model SEs (the 2018 report's AvgSE)",
    "model_se": "root mean square of the model SEs (ModSE)",
    "relative_error_model_se": "100 (ModSE / EmpSE - 1), %",
    "mse": "mean squared error",
    "rmse": "root mean squared error",
    "coverage": "share of intervals covering the true value",
    "bias_eliminated_coverage": "share of intervals covering mean(estimate)",
    "interval_width": "mean interval width",
    "rejection": "share of intervals excluding 0 (fixed effects: power / type I error)",
    "relative_precision": "100 ((EmpSE_ref / EmpSE)^2 - 1), % against the reference engine",
    "correlation_with_reference": "correlation of paired estimates with the reference engine",
    "modse_truese": "ModSE / true SE (calibration against the analytic truth)",
    "empse_truese": "EmpSE / true SE",
    "cond_bias": "mean(estimate) - E[estimate | fixed u]",
    "cond_coverage": "share of intervals covering E[estimate | fixed u]",
    "modse_condse": "ModSE / SD[estimate | fixed u]",
    "empse_condse": "EmpSE / SD[estimate | fixed u]",
    "bias_variance_scale": "mean(estimate^2) - true^2 (SD terms: bias on the variance scale)",
}


def _reduce(func: Callable[..., Any], *arrays: xr.DataArray, n_out: int = 2) -> Any:
    """Apply ``func(*numpy arrays, axis=-1)`` reducing ``replicate``."""
    core = [["replicate"] if "replicate" in a.dims else [] for a in arrays]
    return xr.apply_ufunc(
        lambda *xs: func(*xs, axis=-1),
        *arrays,
        input_core_dims=core,
        output_core_dims=[[] for _ in range(n_out)],
    )


def compute_measures(
    results: xr.Dataset,
    *,
    reference: str = "reml",
    exclude_nonconverged: bool = False,
    measures: Sequence[str] | None = None,
) -> xr.Dataset:
    """Performance measures with Monte Carlo SEs for every engine x term.

    Parameters
    ----------
    results : xarray.Dataset
        A results Dataset (``study.api.open_results``).
    reference : str
        Engine that relative precision is measured against (if present).
    exclude_nonconverged : bool
        Drop non-converged fits (default: keep them; their count is reported).
    measures : sequence of str, optional
        Subset of :data:`MEASURES` (default all).

    Returns
    -------
    xarray.Dataset
        ``value`` and ``mcse`` over ``(measure, engine, term)``; ``nonconverged``
        over ``engine``.
    """
    wanted = list(MEASURES) if measures is None else list(measures)
    unknown = [m for m in wanted if m not in MEASURES]
    if unknown:
        raise ValueError(f"unknown measure(s) {unknown}; choose from {', '.join(MEASURES)}")
    ds = results
    conv = ds["converged"].astype(bool)
    est, se = ds["estimate"], ds["std_error"]
    lo, hi = ds["ci_lower"], ds["ci_upper"]
    if exclude_nonconverged:
        est, se, lo, hi = (v.where(conv) for v in (est, se, lo, hi))
    theta = ds["true_value"].reset_coords(drop=True)
    true_se = ds["true_se"].reset_coords(drop=True)
    cond = ds["cond_value"].reset_coords(drop=True) if "cond_value" in ds.coords else None
    cond_se = ds["cond_se"].reset_coords(drop=True) if "cond_se" in ds.coords else None
    fixed = (ds["effect"] == "fixed").reset_coords(drop=True)
    nan = xr.full_like(est.isel(replicate=0, drop=True), np.nan, dtype=float)
    zero = xr.zeros_like(nan)

    def pair(a: Any, b: Any) -> tuple[xr.DataArray, xr.DataArray]:
        # broadcast every measure to (engine, term)
        return (a + zero, b + zero)

    emp = _reduce(mnp.empirical_se, est)
    mod = _reduce(mnp.model_se, se)
    out: dict[str, tuple[xr.DataArray, xr.DataArray]] = {}
    for name in wanted:
        if name == "n":
            n = xr.apply_ufunc(mnp.count, est, input_core_dims=[["replicate"]], kwargs={"axis": -1})
            out[name] = pair(n.astype(float), nan)
        elif name == "mean_estimate":
            out[name] = pair(*_reduce(mnp.mean_estimate, est))
        elif name == "bias":
            out[name] = pair(*_reduce(mnp.bias, est, theta))
        elif name == "relative_bias":
            out[name] = pair(*_reduce(mnp.relative_bias, est, theta))
        elif name == "empirical_se":
            out[name] = pair(*emp)
        elif name == "mean_se":
            out[name] = pair(*_reduce(mnp.mean_estimate, se))
        elif name == "model_se":
            out[name] = pair(*mod)
        elif name == "relative_error_model_se":
            out[name] = pair(*_reduce(mnp.relative_error_model_se, est, se))
        elif name == "mse":
            out[name] = pair(*_reduce(mnp.mse, est, theta))
        elif name == "rmse":
            out[name] = pair(*_reduce(mnp.rmse, est, theta))
        elif name == "coverage":
            out[name] = pair(*_reduce(mnp.coverage, lo, hi, theta))
        elif name == "bias_eliminated_coverage":
            out[name] = pair(*_reduce(mnp.bias_eliminated_coverage, est, lo, hi))
        elif name == "interval_width":
            out[name] = pair(*_reduce(mnp.interval_width, lo, hi))
        elif name == "rejection":
            v, s = _reduce(lambda a, b, axis: mnp.rejection(a, b, 0.0, axis), lo, hi)
            out[name] = pair(v.where(fixed), s.where(fixed))
        elif name in ("relative_precision", "correlation_with_reference"):
            if reference in ds["engine"].values:
                ref = est.sel(engine=reference, drop=True)
                v, s, rho = _reduce(mnp.relative_precision, est, ref, n_out=3)
                other = ds["engine"] != reference
                if name == "relative_precision":
                    out[name] = pair(v.where(other), s.where(other))
                else:
                    out[name] = pair(rho.where(other), nan)
            else:
                out[name] = pair(nan, nan)
        elif name == "modse_truese":
            out[name] = pair(mod[0] / true_se, mod[1] / true_se)
        elif name == "empse_truese":
            out[name] = pair(emp[0] / true_se, emp[1] / true_se)
        elif name in ("cond_bias", "cond_coverage", "modse_condse", "empse_condse"):
            if cond is None or cond_se is None or bool(np.isnan(cond).all()):
                out[name] = pair(nan, nan)
            elif name == "cond_bias":
                out[name] = pair(*_reduce(mnp.bias, est, cond))
            elif name == "cond_coverage":
                out[name] = pair(*_reduce(mnp.coverage, lo, hi, cond))
            elif name == "modse_condse":
                out[name] = pair(mod[0] / cond_se, mod[1] / cond_se)
            else:
                out[name] = pair(emp[0] / cond_se, emp[1] / cond_se)
        elif name == "bias_variance_scale":
            is_sd = xr.DataArray(
                [str(t).startswith("sd__") for t in ds["term"].values], dims="term"
            )
            v, s = _reduce(mnp.bias, est**2, theta**2)
            out[name] = pair(v.where(is_sd), s.where(is_sd))
    measure = list(out)
    value = xr.concat([out[m][0] for m in measure], dim="measure")
    mcse = xr.concat([out[m][1] for m in measure], dim="measure")
    summary = xr.Dataset(
        {
            "value": value.transpose("measure", "engine", "term"),
            "mcse": mcse.transpose("measure", "engine", "term"),
            "nonconverged": (~conv).sum("replicate"),
            "replicates": ds.sizes["replicate"],
        },
        coords={
            "measure": measure,
            "description": ("measure", [MEASURES[m] for m in measure]),
        },
    )
    for c in ("effect", "true_value", "true_se", "cond_value", "cond_se"):
        if c in ds.coords:
            summary = summary.assign_coords({c: ds[c]})
    summary.attrs = {
        "reference_engine": reference,
        "exclude_nonconverged": int(exclude_nonconverged),
        "level": ds.attrs.get("level", np.nan),
        "study": ds.attrs.get("study", ""),
        "config_hash": ds.attrs.get("config_hash", ""),
        "source": "Morris, White & Crowther (2019) Stat Med 38:2074, Table 6",
    }
    return summary
