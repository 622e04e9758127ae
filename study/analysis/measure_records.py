"""The measures, one :class:`Measure` record each (:data:`REGISTRY`), and the context
their functions see: the xarray layer over the NumPy functions of
:mod:`study.analysis.mcse`.

Every measure is one record: its name and description, the inputs it needs finite in
a replicate, the NumPy function (of :mod:`study.analysis.mcse`, by name) that computes
its value and MCSE, and how tables and figures show it (unit, reference value, axis
label, digits).  Everything else (:data:`MEASURES`, the tables' units, the figures'
reference lines, the shares whose error bars are Wilson intervals) derives from it.
Pieces several measures share (EmpSE, ModSE, the comparison with the reference engine)
are computed lazily on the context: at most once, and only if a requested measure
needs them.  :mod:`study.analysis.measures` applies them to a results Dataset.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

import numpy as np
import xarray as xr

from study.analysis import mcse as mnp

Pair = tuple[xr.DataArray, xr.DataArray]

#: per-replicate inputs a measure can use ("ref": the reference engine's estimate)
INPUTS = ("est", "se", "lo", "hi", "ref")
#: what a measure's arguments may name: the inputs, and per-term truths of the context
_ARGS = ("est", "se", "lo", "hi", "theta", "cond")
#: units a table header can show ("": the estimate's scale, a ratio or a count)
UNITS = ("", "share", "%", "fraction")
#: denominators of a ratio measure (ModSE / true SE ...)
_OVER = ("", "true_se", "cond_se")
#: the terms a measure is restricted to ("": all)
_ONLY = ("", "fixed")


def _reduce(func: Callable[..., Any], *arrays: xr.DataArray, n_out: int = 2) -> Any:
    """Apply ``func(*numpy arrays, axis=-1)`` reducing ``replicate``."""
    core = [["replicate"] if "replicate" in a.dims else [] for a in arrays]
    return xr.apply_ufunc(
        lambda *xs: func(*xs, axis=-1),
        *arrays,
        input_core_dims=core,
        output_core_dims=[[] for _ in range(n_out)],
    )


def observed_se_of(ds: xr.Dataset) -> xr.DataArray | None:
    """The per-replicate true SE of a results Dataset (``observed_true_se``: the truth
    of the rows a replicate observed), or None when it is absent or all NaN (no
    outcome missing: the ``true_se`` coordinate is every replicate's truth)."""
    if "observed_true_se" not in ds:
        return None
    observed = ds["observed_true_se"].reset_coords(drop=True)
    return None if bool(observed.isnull().all()) else observed


def rms_true_se(
    true_se: xr.DataArray, observed: xr.DataArray | None, used: xr.DataArray | None = None
) -> xr.DataArray:
    """TrueSE: the ``true_se`` coordinate, or, in a condition whose replicates carry
    their own truth (``observed``, the per-replicate true SE, not all NaN there), its
    root mean square ``sqrt(mean_r se_r^2)`` over the replicates ``used`` (default:
    those with a finite ``se_r``, i.e. every replicate fitted).

    Why the root mean square: with missing outcomes the rows observed differ per
    replicate, and ``Var(beta_hat) = E[Var(beta_hat | observed rows)]`` when the GLS
    estimator is conditionally unbiased (MCAR, or MAR on a predictor), so the mean of
    ``se_r^2`` estimates the variance the spread of the estimates measures.
    """
    if observed is None:
        return true_se
    kept = observed if used is None else observed.where(used)
    rms, _ = _reduce(mnp.model_se, kept)  # sqrt(mean(se_r^2)) over the finite se_r
    per = [d for d in observed.dims if d not in ("replicate", "term")]
    active = observed.notnull().any([d for d in observed.dims if d not in per])
    out: xr.DataArray = rms.where(active, true_se)
    return out


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
    #: per-replicate true SE (the rows a replicate observed); None if absent or all NaN
    observed_se: xr.DataArray | None = None
    _pairs: dict[tuple[str, tuple[str, ...]], Pair] = field(default_factory=dict)
    _true_se: dict[tuple[str, ...], xr.DataArray] = field(default_factory=dict)

    def used(self, uses: tuple[str, ...]) -> xr.DataArray | None:
        """Where all the inputs ``uses`` are finite, per replicate (None: no such input,
        e.g. only the reference engine's estimate, and no reference engine)."""
        mask: xr.DataArray | None = None
        for name in uses:
            arr = self.input(name)
            if arr is None:  # no reference engine: the measure is NaN, n counts the rest
                continue
            ok = arr.notnull() & np.isfinite(arr)
            mask = ok if mask is None else mask & ok
        return mask

    def true_se_for(self, uses: tuple[str, ...]) -> xr.DataArray:
        """TrueSE of a measure with inputs ``uses``: the ``true_se`` coordinate, or where
        replicates carry their own truth (missing outcomes) its root mean square over
        the replicates the measure uses (:func:`rms_true_se`); computed once per
        ``uses``."""
        if self.observed_se is None:
            return self.true_se
        if uses not in self._true_se:
            self._true_se[uses] = rms_true_se(self.true_se, self.observed_se, self.used(uses))
        return self._true_se[uses]

    def pair(self, numpy: str, args: tuple[str, ...]) -> Pair:
        """``mcse.<numpy>`` of the context's ``args``, computed once per context (the
        function is looked up when called)."""
        key = (numpy, args)
        if key not in self._pairs:
            self._pairs[key] = _reduce(getattr(mnp, numpy), *(getattr(self, a) for a in args))
        return self._pairs[key]

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

    def input(self, name: str) -> xr.DataArray | None:
        """A per-replicate input by its :data:`INPUTS` name (None: no reference engine)."""
        if name == "ref":
            if self.reference not in self.est["engine"].values:
                return None
            return self.est.sel(engine=self.reference, drop=True)
        arr: xr.DataArray = getattr(self, name)
        return arr


@dataclass(frozen=True)
class Measure:
    """One performance measure: what it is, what it needs, how it is computed and shown.

    Either ``numpy`` and ``args`` (the measure is ``mcse.<numpy>(*args)``, optionally
    divided by the truth ``over`` and restricted to the terms ``only``) or ``compute``
    (a function of the context returning ``(value, mcse)``) says how it is computed.

    Parameters
    ----------
    name : str
        The measure's name (``--measures``, the ``measure`` coordinate).
    description : str
        One line, kept in the summary's ``description`` coordinate.
    numpy : str
        Name of the function of :mod:`study.analysis.mcse` returning value and MCSE.
    args : tuple of str
        Its arguments, from :data:`_ARGS` (``theta``: the true value; ``cond``: the
        conditional truth, NaN where the results carry none).
    over : str
        ``"true_se"`` or ``"cond_se"``: a ratio over that truth (``""``: none).  With
        missing outcomes (the results' ``observed_true_se``), ``true_se`` is the root
        mean square of the per-replicate true SE over the replicates the measure uses
        (:func:`rms_true_se`); the MCSE treats it as known.
    only : str
        ``"fixed"``: NaN except for fixed effects (``""``: every term).
    compute : callable, optional
        ``compute(context) -> (value, mcse)`` for a measure no ``numpy`` call states.
    uses : tuple of str, optional
        The :data:`INPUTS` that must be finite in a replicate for it to count in the
        measure's ``n`` (default: the per-replicate ``args``).
    unit : str
        Unit shown in a table header, one of :data:`UNITS` (``"share"``: a proportion
        of replicates, with a binomial MCSE and Wilson intervals in figures).
    reference : float or "level" or None
        Reference value of the figures (``"level"``: the nominal level).
    label : str
        Axis label of the figures (default ``name (description)``).
    digits : int
        Decimals of the table cells.
    mcse : bool
        Whether the measure has a Monte Carlo SE (a count or a correlation has none):
        what a precision target (``study run --mcse``) may name.
    """

    name: str
    description: str
    numpy: str = ""
    args: tuple[str, ...] = ()
    over: str = ""
    only: str = ""
    compute: Callable[[_Context], Pair] | None = None
    uses: tuple[str, ...] | None = None
    unit: str = ""
    reference: float | str | None = None
    label: str = ""
    digits: int = 4
    mcse: bool = True

    def __post_init__(self) -> None:
        if not self.name or not self.name.isidentifier():
            raise ValueError(f"Measure name={self.name!r}: give an identifier, e.g. 'bias'")
        if bool(self.numpy) == (self.compute is not None):
            raise ValueError(
                f"Measure {self.name!r}: give numpy= (a function of study.analysis.mcse) "
                "or compute=, exactly one"
            )
        if self.numpy and not callable(getattr(mnp, self.numpy, None)):
            raise ValueError(
                f"Measure {self.name!r}: numpy={self.numpy!r} is not a function of "
                "study.analysis.mcse"
            )
        bad = [a for a in self.args if a not in _ARGS]
        if bad or (self.numpy and not self.args):
            raise ValueError(
                f"Measure {self.name!r}: args={self.args!r}; each must be one of {_ARGS}"
            )
        for key, value, allowed in (
            ("over", self.over, _OVER),
            ("only", self.only, _ONLY),
            ("unit", self.unit, UNITS),
        ):
            if value not in allowed:
                raise ValueError(f"Measure {self.name!r}: {key}={value!r}; choose from {allowed}")
        if self.uses is None:
            object.__setattr__(self, "uses", tuple(a for a in self.args if a in INPUTS))
        assert self.uses is not None
        if not self.uses or any(u not in INPUTS for u in self.uses):
            raise ValueError(
                f"Measure {self.name!r}: uses={self.uses!r}; name the inputs it needs, "
                f"from {INPUTS}"
            )
        if self.reference not in (None, "level") and not isinstance(self.reference, float):
            raise TypeError(
                f"Measure {self.name!r}: reference={self.reference!r}; give a float, "
                "'level' or None"
            )

    @property
    def share(self) -> bool:
        """A proportion of replicates (coverage, rejection)."""
        return self.unit == "share"

    @property
    def needs_reference(self) -> bool:
        """Compared with the reference engine."""
        return "ref" in (self.uses or ())

    def __call__(self, c: _Context) -> Pair:
        """``(value, mcse)`` on the context (before broadcasting to engine x term)."""
        if self.compute is not None:
            return self.compute(c)
        conditional = "cond" in self.args or self.over == "cond_se"
        if conditional and (c.cond is None or c.cond_se is None):  # no conditional truth
            return c.nan, c.nan
        value, mcse = c.pair(self.numpy, self.args)
        if self.over == "true_se":  # per replicate with missing outcomes: its RMS
            denominator = c.true_se_for(self.uses or ())
            value, mcse = value / denominator, mcse / denominator
        elif self.over:
            denominator = getattr(c, self.over)
            value, mcse = value / denominator, mcse / denominator
        if self.only == "fixed":
            value, mcse = value.where(c.fixed), mcse.where(c.fixed)
        return value, mcse


def _n(c: _Context) -> Pair:
    n = xr.apply_ufunc(mnp.count, c.est, input_core_dims=[["replicate"]], kwargs={"axis": -1})
    return n.astype(float), c.nan


def _relative_precision(c: _Context) -> Pair:
    vs = c.vs_reference
    return (c.nan, c.nan) if vs is None else (vs[0], vs[1])


def _correlation_with_reference(c: _Context) -> Pair:
    vs = c.vs_reference
    return (c.nan if vs is None else vs[2]), c.nan


def _bias_variance_scale(c: _Context) -> Pair:
    is_sd = xr.DataArray([str(t).startswith("sd__") for t in c.est["term"].values], dims="term")
    v, s = _reduce(mnp.bias, c.est**2, c.theta**2)
    return v.where(is_sd), s.where(is_sd)


_M = Measure
#: the measures, in the order of the summary
REGISTRY: Mapping[str, Measure] = MappingProxyType(
    {
        m.name: m
        for m in (
            _M("n", "replicates with a finite estimate", compute=_n, uses=("est",), mcse=False),
            _M("mean_estimate", "mean of the estimates", "mean_estimate", ("est",)),
            _M(
                "bias",
                "mean(estimate) - true value",
                "bias",
                ("est", "theta"),
                reference=0.0,
                label="Bias (estimate units)",
            ),
            _M(
                "relative_bias",
                "bias / true value",
                "relative_bias",
                ("est", "theta"),
                unit="fraction",
                reference=0.0,
            ),
            _M("empirical_se", "SD of the estimates (EmpSE)", "empirical_se", ("est",)),
            _M(
                "mean_se",
                "arithmetic mean of the model SEs (the 2018 report's AvgSE)",
                "mean_estimate",
                ("se",),
            ),
            _M("model_se", "root mean square of the model SEs (ModSE)", "model_se", ("se",)),
            _M(
                "relative_error_model_se",
                "100 (ModSE / EmpSE - 1), %",
                "relative_error_model_se",
                ("est", "se"),
                unit="%",
                reference=0.0,
                label="Relative error of ModSE (%)",
            ),
            _M("mse", "mean squared error", "mse", ("est", "theta")),
            _M("rmse", "root mean squared error", "rmse", ("est", "theta")),
            _M(
                "coverage",
                "share of intervals covering the true value",
                "coverage",
                ("lo", "hi", "theta"),
                unit="share",
                reference="level",
                label="Coverage (proportion)",
            ),
            _M(
                "bias_eliminated_coverage",
                "share of intervals covering mean(estimate)",
                "bias_eliminated_coverage",
                ("est", "lo", "hi"),
                unit="share",
                reference="level",
            ),
            _M("interval_width", "mean interval width", "interval_width", ("lo", "hi")),
            _M(
                "rejection",
                "share of intervals excluding 0 (fixed effects: power / type I error)",
                "rejection",
                ("lo", "hi"),
                only="fixed",
                unit="share",
            ),
            _M(
                "relative_precision",
                "100 ((EmpSE_ref / EmpSE)^2 - 1), % against the reference engine",
                compute=_relative_precision,
                uses=("est", "ref"),
                unit="%",
                reference=0.0,
                label="Relative precision (%)",
            ),
            _M(
                "correlation_with_reference",
                "correlation of paired estimates with the reference engine",
                compute=_correlation_with_reference,
                uses=("est", "ref"),
                mcse=False,
            ),
            _M(
                "modse_truese",
                "ModSE / true SE (calibration against the analytic truth; with missing "
                "outcomes the true SE is the RMS of the replicates' own)",
                "model_se",
                ("se",),
                over="true_se",
                reference=1.0,
                label="ModSE / TrueSE",
            ),
            _M(
                "empse_truese",
                "EmpSE / true SE (with missing outcomes: the RMS of the replicates' own)",
                "empirical_se",
                ("est",),
                over="true_se",
                reference=1.0,
                label="EmpSE / TrueSE",
            ),
            _M(
                "cond_bias",
                "mean(estimate) - E[estimate | fixed u]",
                "bias",
                ("est", "cond"),
                reference=0.0,
            ),
            _M(
                "cond_coverage",
                "share of intervals covering E[estimate | fixed u]",
                "coverage",
                ("lo", "hi", "cond"),
                unit="share",
                reference="level",
            ),
            _M(
                "modse_condse",
                "ModSE / SD[estimate | fixed u]",
                "model_se",
                ("se",),
                over="cond_se",
                reference=1.0,
                label="ModSE / CondSE",
            ),
            _M(
                "empse_condse",
                "EmpSE / SD[estimate | fixed u]",
                "empirical_se",
                ("est",),
                over="cond_se",
                reference=1.0,
                label="EmpSE / CondSE",
            ),
            _M(
                "bias_variance_scale",
                "mean(estimate^2) - true^2 (SD terms: bias on the variance scale)",
                compute=_bias_variance_scale,
                uses=("est",),
                reference=0.0,
            ),
        )
    }
)
del _M

#: the measures with a Monte Carlo SE, in the order of the summary
WITH_MCSE: tuple[str, ...] = tuple(m.name for m in REGISTRY.values() if m.mcse)

#: measure name -> description, in the order of the summary (a view of :data:`REGISTRY`)
MEASURES: Mapping[str, str] = MappingProxyType({m.name: m.description for m in REGISTRY.values()})
