"""Performance measures over a results Dataset: :func:`compute_measures`.

Each measure (one :class:`~study.analysis.measure_records.Measure` record of
:data:`REGISTRY`) reduces the ``replicate`` dim of the results with the NumPy functions
of :mod:`study.analysis.mcse`, through ``xarray.apply_ufunc``.  The result is a Dataset
with variables ``value`` and ``mcse`` over ``(measure, condition, engine, term)`` (every
dim of the results but ``replicate``), plus per condition and engine the counts of
replicates fitted and of non-converged fits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from study.analysis.measure_records import (
    MEASURES,
    REGISTRY,
    WITH_MCSE,
    Measure,
    _Context,
    observed_se_of,
    rms_true_se,
)

__all__ = ["MEASURES", "REGISTRY", "WITH_MCSE", "Measure", "compute_measures", "true_se"]


def _n_used(c: _Context, measure: Measure) -> xr.DataArray:
    """Replicates a measure could use: those where all its inputs are finite."""
    mask = c.used(measure.uses or ())
    assert mask is not None
    return mask.sum("replicate")


def true_se(results: xr.Dataset) -> xr.DataArray:
    """The TrueSE of every (condition, term) that tables show: the ``true_se``
    coordinate, or in a condition with missing outcomes (``observed_true_se`` not all
    NaN) the root mean square of the replicates' own true SE over the replicates
    fitted (:func:`~study.analysis.measure_records.rms_true_se`)."""
    coordinate = results["true_se"].reset_coords(drop=True)
    return rms_true_se(coordinate, observed_se_of(results))


def _context(
    ds: xr.Dataset, reference: str, exclude_nonconverged: bool, exclude_singular: bool = False
) -> _Context:
    """The context of :func:`compute_measures` (``ds`` has ``estimate`` etc.)."""
    est, se = ds["estimate"], ds["std_error"]
    lo, hi = ds["ci_lower"], ds["ci_upper"]
    if exclude_nonconverged:
        conv = ds["converged"].astype(bool)
        est, se, lo, hi = (v.where(conv) for v in (est, se, lo, hi))
    if exclude_singular and "singular" in ds:
        regular = ~ds["singular"].astype(bool)
        est, se, lo, hi = (v.where(regular) for v in (est, se, lo, hi))
    cond = ds["cond_value"].reset_coords(drop=True) if "cond_value" in ds.coords else None
    cond_se = ds["cond_se"].reset_coords(drop=True) if "cond_se" in ds.coords else None
    if cond is None or cond_se is None or bool(np.isnan(cond).all()):
        cond = cond_se = None
    return _Context(
        est=est,
        se=se,
        lo=lo,
        hi=hi,
        theta=ds["true_value"].reset_coords(drop=True),
        true_se=ds["true_se"].reset_coords(drop=True),
        cond=cond,
        cond_se=cond_se,
        fixed=(ds["effect"] == "fixed").reset_coords(drop=True),
        reference=reference,
        nan=xr.full_like(est.isel(replicate=0, drop=True), np.nan, dtype=float),
        observed_se=observed_se_of(ds),
    )


def compute_measures(
    results: xr.Dataset,
    *,
    reference: str | None = None,
    exclude_nonconverged: bool = False,
    measures: Sequence[str] | None = None,
    exclude_singular: bool = False,
) -> xr.Dataset:
    """Performance measures with Monte Carlo SEs for every engine x term.

    Parameters
    ----------
    results : xarray.Dataset
        A results Dataset (``study.api.open_results``).
    reference : str, optional
        Engine that relative precision and correlation are measured against (default:
        the first engine of the results).
    exclude_nonconverged : bool
        Drop non-converged fits (default: keep them; their count is reported).
    exclude_singular : bool
        Drop singular (boundary) fits, ``lme4::isSingular`` (default: keep them; their
        count is reported as ``singular``).
    measures : sequence of str, optional
        Subset of :data:`MEASURES`, in the order wanted (default all, in the order of
        :data:`MEASURES`).  Only these are computed.

    Returns
    -------
    xarray.Dataset
        ``value``, ``mcse`` and ``n`` (the replicates each measure used: those where
        all its inputs are finite) over ``(measure, ..., engine, term)`` (``...``: the
        results' other dims, e.g. ``condition``); ``nonconverged`` and ``replicates``
        (fits counted) and ``singular`` over the same dims without ``measure`` and
        ``term``; the results' coordinates (truth, factors of the grid) carried over.
        With missing outcomes (``observed_true_se`` in ``results``, not all NaN in a
        condition), ModSE / TrueSE and EmpSE / TrueSE divide by the root mean square
        of the per-replicate true SE over the replicates each uses (:func:`true_se`,
        docs/architecture.md).

    Raises
    ------
    ValueError
        If a measure name is unknown, or if ``measures`` names a measure against the
        reference engine and ``reference`` is not an engine of ``results``.  With the
        default ``measures=None`` a missing reference engine gives NaN for those
        measures instead (e.g. a run of one engine).
    """
    wanted = list(dict.fromkeys(MEASURES if measures is None else measures))
    unknown = [m for m in wanted if m not in MEASURES]
    if unknown:
        raise ValueError(f"unknown measure(s) {unknown}; choose from {', '.join(MEASURES)}")
    ds = results
    engines = [str(e) for e in ds["engine"].values]
    if reference is None:
        reference = engines[0]
    needs_ref = [m for m in wanted if REGISTRY[m].needs_reference]
    if measures is not None and needs_ref and reference not in engines:
        raise ValueError(
            f"reference engine {reference!r} (for {', '.join(needs_ref)}) is not in the "
            f"results; engines present: {', '.join(map(repr, engines))}"
        )
    ctx = _context(ds, reference, exclude_nonconverged, exclude_singular)
    zero = xr.zeros_like(ctx.nan)
    # every measure broadcast to (engine, term)
    out = {m: tuple(x + zero for x in REGISTRY[m](ctx)) for m in wanted}
    value = xr.concat([out[m][0] for m in wanted], dim="measure")
    mcse = xr.concat([out[m][1] for m in wanted], dim="measure")
    used = xr.concat([_n_used(ctx, REGISTRY[m]) + zero.astype(int) for m in wanted], dim="measure")
    fitted = ds["done"] if "done" in ds else xr.ones_like(ds["converged"], dtype=bool)
    summary = xr.Dataset(
        {
            "value": value.transpose("measure", ..., "engine", "term"),
            "mcse": mcse.transpose("measure", ..., "engine", "term"),
            "n": used.transpose("measure", ..., "engine", "term"),
            "nonconverged": (~ds["converged"].astype(bool) & fitted).sum("replicate"),
            "replicates": fitted.broadcast_like(ds["converged"]).sum("replicate"),
            "singular": (
                (ds["singular"].astype(bool) & fitted).sum("replicate")
                if "singular" in ds
                else xr.zeros_like(ds["converged"], dtype=int).sum("replicate")
            ),
        },
        coords={
            "measure": wanted,
            "description": ("measure", [MEASURES[m] for m in wanted]),
        },
    )
    keep = [c for c in ds.coords if c not in ("replicate", "engine") and c not in summary.coords]
    summary = summary.assign_coords({c: ds[c] for c in keep if "replicate" not in ds[c].dims})
    summary.attrs = {
        "reference_engine": reference,
        "exclude_nonconverged": int(exclude_nonconverged),
        "exclude_singular": int(exclude_singular),
        "level": ds.attrs.get("level", np.nan),
        "study": ds.attrs.get("study", ""),
        "config_hash": ds.attrs.get("config_hash", ""),
        "source": "Morris, White & Crowther (2019) Stat Med 38:2074, Table 6",
    }
    return summary
