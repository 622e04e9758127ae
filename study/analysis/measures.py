"""Performance measures over a results Dataset: the xarray layer.

Each measure reduces the ``replicate`` dim of the results (study/schema.py) with
the NumPy functions of :mod:`study.analysis.mcse`, through ``xarray.apply_ufunc``.  The
result is a Dataset with variables ``value`` and ``mcse`` over
``(measure, condition, engine, term)`` (every dim of the results but ``replicate``),
plus per condition and engine the counts of replicates fitted and of non-converged
fits.

Measures are dispatched by name through ``_TABLE`` (name -> function of a
:class:`_Context`), which has the same keys, in the same order, as :data:`MEASURES`.
Pieces several measures share (EmpSE, ModSE, the comparison with the reference engine)
are computed lazily on the context: at most once, and only if a requested measure needs
them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
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


Pair = tuple[xr.DataArray, xr.DataArray]

#: measures that compare each engine with the reference engine
_NEEDS_REFERENCE = ("relative_precision", "correlation_with_reference")


def _reduce(func: Callable[..., Any], *arrays: xr.DataArray, n_out: int = 2) -> Any:
    """Apply ``func(*numpy arrays, axis=-1)`` reducing ``replicate``."""
    core = [["replicate"] if "replicate" in a.dims else [] for a in arrays]
    return xr.apply_ufunc(
        lambda *xs: func(*xs, axis=-1),
        *arrays,
        input_core_dims=core,
        output_core_dims=[[] for _ in range(n_out)],
    )


@dataclass
class _Context:
    """What a measure function sees: the results after the non-convergence policy,
    the truth, the reference engine, and shared pieces computed on first use."""

    est: xr.DataArray
    se: xr.DataArray
    lo: xr.DataArray
    hi: xr.DataArray
    theta: xr.DataArray  # true value, over term
    true_se: xr.DataArray
    cond: xr.DataArray | None  # conditional truth; None if absent or all NaN
    cond_se: xr.DataArray | None
    fixed: xr.DataArray  # term is a fixed effect
    reference: str
    nan: xr.DataArray  # NaN over (engine, term)

    @cached_property
    def emp(self) -> Pair:
        """EmpSE and its MCSE."""
        return _reduce(mnp.empirical_se, self.est)

    @cached_property
    def mod(self) -> Pair:
        """ModSE and its MCSE."""
        return _reduce(mnp.model_se, self.se)

    @cached_property
    def vs_reference(self) -> tuple[xr.DataArray, ...] | None:
        """Relative precision, its MCSE and the correlation against the reference
        engine, NaN for the reference itself; None without the reference engine."""
        engine = self.est["engine"]
        if self.reference not in engine.values:
            return None
        ref = self.est.sel(engine=self.reference, drop=True)
        other = engine != self.reference
        return tuple(
            x.where(other) for x in _reduce(mnp.relative_precision, self.est, ref, n_out=3)
        )


def _n(c: _Context) -> Pair:
    n = xr.apply_ufunc(mnp.count, c.est, input_core_dims=[["replicate"]], kwargs={"axis": -1})
    return n.astype(float), c.nan


def _rejection(c: _Context) -> Pair:
    v, s = _reduce(lambda a, b, axis: mnp.rejection(a, b, 0.0, axis), c.lo, c.hi)
    return v.where(c.fixed), s.where(c.fixed)


def _relative_precision(c: _Context) -> Pair:
    vs = c.vs_reference
    return (c.nan, c.nan) if vs is None else (vs[0], vs[1])


def _correlation_with_reference(c: _Context) -> Pair:
    vs = c.vs_reference
    return (c.nan if vs is None else vs[2]), c.nan


def _ratio(pair: Pair, denominator: xr.DataArray) -> Pair:
    """A measure and its MCSE over a known truth (e.g. ModSE / true SE)."""
    return pair[0] / denominator, pair[1] / denominator


def _conditional(
    func: Callable[[_Context, xr.DataArray, xr.DataArray], Pair],
) -> Callable[[_Context], Pair]:
    """``func(context, cond, cond_se)``, a measure against the conditional truth; NaN
    where the results carry none."""

    def measure(c: _Context) -> Pair:
        if c.cond is None or c.cond_se is None:
            return c.nan, c.nan
        return func(c, c.cond, c.cond_se)

    return measure


def _bias_variance_scale(c: _Context) -> Pair:
    is_sd = xr.DataArray([str(t).startswith("sd__") for t in c.est["term"].values], dims="term")
    v, s = _reduce(mnp.bias, c.est**2, c.theta**2)
    return v.where(is_sd), s.where(is_sd)


#: measure name -> function of the context returning ``(value, mcse)``; the functions
#: of :mod:`study.analysis.mcse` are looked up when called
_TABLE: dict[str, Callable[[_Context], Pair]] = {
    "n": _n,
    "mean_estimate": lambda c: _reduce(mnp.mean_estimate, c.est),
    "bias": lambda c: _reduce(mnp.bias, c.est, c.theta),
    "relative_bias": lambda c: _reduce(mnp.relative_bias, c.est, c.theta),
    "empirical_se": lambda c: c.emp,
    "mean_se": lambda c: _reduce(mnp.mean_estimate, c.se),
    "model_se": lambda c: c.mod,
    "relative_error_model_se": lambda c: _reduce(mnp.relative_error_model_se, c.est, c.se),
    "mse": lambda c: _reduce(mnp.mse, c.est, c.theta),
    "rmse": lambda c: _reduce(mnp.rmse, c.est, c.theta),
    "coverage": lambda c: _reduce(mnp.coverage, c.lo, c.hi, c.theta),
    "bias_eliminated_coverage": lambda c: _reduce(mnp.bias_eliminated_coverage, c.est, c.lo, c.hi),
    "interval_width": lambda c: _reduce(mnp.interval_width, c.lo, c.hi),
    "rejection": _rejection,
    "relative_precision": _relative_precision,
    "correlation_with_reference": _correlation_with_reference,
    "modse_truese": lambda c: _ratio(c.mod, c.true_se),
    "empse_truese": lambda c: _ratio(c.emp, c.true_se),
    "cond_bias": _conditional(lambda c, cond, _: _reduce(mnp.bias, c.est, cond)),
    "cond_coverage": _conditional(lambda c, cond, _: _reduce(mnp.coverage, c.lo, c.hi, cond)),
    "modse_condse": _conditional(lambda c, _, cond_se: _ratio(c.mod, cond_se)),
    "empse_condse": _conditional(lambda c, _, cond_se: _ratio(c.emp, cond_se)),
    "bias_variance_scale": _bias_variance_scale,
}
if list(_TABLE) != list(MEASURES):  # the registry and the dispatch table must agree
    raise RuntimeError("measures._TABLE and measures.MEASURES have different keys or order")

#: measure name -> the results it needs finite in a replicate for that replicate to
#: count in the measure's n ("ref": the reference engine's estimate)
_USES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        (
            "n",
            "mean_estimate",
            "bias",
            "relative_bias",
            "empirical_se",
            "mse",
            "rmse",
            "empse_truese",
            "cond_bias",
            "empse_condse",
            "bias_variance_scale",
        ),
        ("est",),
    ),
    **dict.fromkeys(("mean_se", "model_se", "modse_truese", "modse_condse"), ("se",)),
    "relative_error_model_se": ("est", "se"),
    **dict.fromkeys(("coverage", "interval_width", "rejection", "cond_coverage"), ("lo", "hi")),
    "bias_eliminated_coverage": ("est", "lo", "hi"),
    **dict.fromkeys(_NEEDS_REFERENCE, ("est", "ref")),
}
if set(_USES) != set(MEASURES):
    raise RuntimeError("measures._USES must name the inputs of every measure")


def _n_used(c: _Context, measure: str) -> xr.DataArray:
    """Replicates a measure could use: those where all its inputs are finite."""
    mask: xr.DataArray | None = None
    for name in _USES[measure]:
        if name == "ref":
            if c.reference not in c.est["engine"].values:
                continue
            arr = c.est.sel(engine=c.reference, drop=True)
        else:
            arr = getattr(c, name)
        ok = arr.notnull() & np.isfinite(arr)
        mask = ok if mask is None else mask & ok
    assert mask is not None
    return mask.sum("replicate")


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
    )


def compute_measures(
    results: xr.Dataset,
    *,
    reference: str = "reml",
    exclude_nonconverged: bool = False,
    measures: Sequence[str] | None = None,
    exclude_singular: bool = False,
) -> xr.Dataset:
    """Performance measures with Monte Carlo SEs for every engine x term.

    Parameters
    ----------
    results : xarray.Dataset
        A results Dataset (``study.api.open_results``).
    reference : str
        Engine that relative precision and correlation are measured against.
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
        ``term``; the
        results' coordinates (truth, factors of the grid) carried over.

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
    needs_ref = [m for m in wanted if m in _NEEDS_REFERENCE]
    if measures is not None and needs_ref and reference not in engines:
        raise ValueError(
            f"reference engine {reference!r} (for {', '.join(needs_ref)}) is not in the "
            f"results; engines present: {', '.join(map(repr, engines))}"
        )
    ctx = _context(ds, reference, exclude_nonconverged, exclude_singular)
    zero = xr.zeros_like(ctx.nan)
    # every measure broadcast to (engine, term)
    out = {m: tuple(x + zero for x in _TABLE[m](ctx)) for m in wanted}
    value = xr.concat([out[m][0] for m in wanted], dim="measure")
    mcse = xr.concat([out[m][1] for m in wanted], dim="measure")
    used = xr.concat([_n_used(ctx, m) + zero.astype(int) for m in wanted], dim="measure")
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
