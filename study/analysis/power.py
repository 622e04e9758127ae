"""Power and type I error of a power study, with Monte Carlo SEs and Wilson intervals.

Per (condition, hypothesis, test, term): the share of replicates whose test rejected
``H0: beta = null`` (``rejection``: the power on the data, ``hypothesis =
"alternative"``; the type I error on the null twins, ``"null"``), its Monte Carlo SE
``sqrt(p (1 - p) / n)``, the 95% Wilson interval, ``n`` (replicates whose test could be
made) and ``failed`` (done replicates whose test could not: a failed fit or test).
Beside it, ``z_power``: the power of a z test with the analytic true SE (GLS with the
true V), the reference a small-sample test approaches as K grows.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from study.analysis.mcse import wilson_interval
from study.analysis.tables import render

#: the hypothesis whose rejections are the power, and the one whose are the type I error
ALTERNATIVE, NULL = "alternative", "null"


def factors(ds: xr.Dataset) -> list[str]:
    """The grid's factors, as coordinates on condition (in the config's order)."""
    return [f for f in json.loads(ds.attrs.get("factors", "[]")) if f in ds.coords]


def rejections(ds: xr.Dataset, exclude_nonconverged: bool = False) -> xr.DataArray:
    """``reject`` of the done pairs (NaN elsewhere; with ``exclude_nonconverged``
    also where the test's engine did not converge)."""
    reject = ds["reject"].where(ds["done"])
    if exclude_nonconverged:
        engine = ds["test_engine"]
        ok = ds["converged"].sel(engine=engine).drop_vars("engine", errors="ignore")
        reject = reject.where(ok)
    return reject


def power_summary(ds: xr.Dataset, exclude_nonconverged: bool = False) -> xr.Dataset:
    """The summary of a power run (see the module docstring)."""
    reject = rejections(ds, exclude_nonconverged)
    valid = reject.notnull()
    n = valid.sum("replicate")
    hits = reject.fillna(0).sum("replicate")
    with np.errstate(all="ignore"):
        share = hits / n.where(n > 0)
        mcse = np.sqrt(share * (1 - share) / n.where(n > 0))
    lower, upper = wilson_interval(share.values, n.values)
    failed = (ds["done"] & ~valid).sum("replicate")
    alpha = float(ds.attrs["alpha"])
    z = stats.norm.ppf(1 - alpha / 2)
    delta = np.abs(ds["true_value"] - ds["null_value"]) / ds["true_se"]
    z_power = xr.apply_ufunc(lambda d: stats.norm.sf(z - d) + stats.norm.cdf(-z - d), delta)
    keep = [c for c in ds.coords if set(ds[c].dims) <= {"condition", "test", "term"}]
    out = xr.Dataset(
        {
            "rejection": share,
            "mcse": mcse,
            "lower": (share.dims, np.asarray(lower)),
            "upper": (share.dims, np.asarray(upper)),
            "n": n,
            "failed": failed,
            "z_power": z_power,
        },
        coords={c: ds[c] for c in keep},
        attrs={k: ds.attrs[k] for k in ("alpha", "target", "factors", "study") if k in ds.attrs},
    )
    out["rejection"].attrs["description"] = (
        "share of replicates rejecting H0 (alternative: power; null: type I error)"
    )
    out["z_power"].attrs["description"] = "power of a z test with the true SE (GLS, known V)"
    return out


def _cell(value: float, mcse: float) -> str:
    if not np.isfinite(value):
        return "NA"
    return f"{value:.3f} ({mcse:.3f})"


def power_frame(summary: xr.Dataset) -> pd.DataFrame:
    """One row per (condition, test, term): the factors, test, term, power (MCSE), its
    Wilson interval, type I error (MCSE), whether the type I error lies in the Monte
    Carlo band of alpha, the z power with the true SE, replicates and failures."""
    alpha = float(summary.attrs["alpha"])
    names = factors(summary)
    rows = []
    for ci, condition in enumerate(map(str, summary["condition"].values)):
        for ti, test in enumerate(map(str, summary["test"].values)):
            for ki, term in enumerate(map(str, summary["term"].values)):
                one = summary.isel(condition=ci, test=ti, term=ki)
                alt, null = one.sel(hypothesis=ALTERNATIVE), one.sel(hypothesis=NULL)
                n0 = int(null["n"])
                band = 1.959963984540054 * np.sqrt(alpha * (1 - alpha) / max(n0, 1))
                t1 = float(null["rejection"])
                row: dict[str, object] = {"condition": condition}
                row.update({f: one[f].item() for f in names})
                row.update(
                    {
                        "test": test,
                        "term": term,
                        "power (MCSE)": _cell(float(alt["rejection"]), float(alt["mcse"])),
                        "power 95% CI": f"[{float(alt['lower']):.3f}, {float(alt['upper']):.3f}]"
                        if int(alt["n"])
                        else "NA",
                        "type I (MCSE)": _cell(t1, float(null["mcse"])),
                        "type I in band": (
                            "NA"
                            if not np.isfinite(t1)
                            else ("yes" if abs(t1 - alpha) <= band else "no")
                        ),
                        "z power (true SE)": round(float(one["z_power"]), 4),
                        "n": int(alt["n"]),
                        "failed": int(alt["failed"]) + int(null["failed"]),
                    }
                )
                rows.append(row)
    frame = pd.DataFrame(rows)
    if names:
        frame = frame.drop(columns="condition")
    return frame


def power_text(summary: xr.Dataset, fmt: str) -> str:
    """The summary table rendered (text, markdown or CSV), with its note."""
    frame = power_frame(summary)
    alpha = float(summary.attrs["alpha"])
    text = render(frame, fmt, keep=[c for c in frame.columns if c in ("test", "term")])
    if fmt == "csv":
        return text
    return f"{text}\n\n{POWER_NOTE.format(alpha=alpha)}"


POWER_NOTE = (
    "Power: share of replicates whose test rejects H0 at alpha = {alpha:g}; type I: the "
    "same on each replicate's null twin (the same draws with the tested effects at the "
    "null). (MCSE) is the Monte Carlo SE sqrt(p(1-p)/n); the CI a 95% Wilson interval; "
    "'in band': the type I error within alpha +- 1.96 sqrt(alpha(1-alpha)/n), where a "
    "test of exact size falls 95% of the time. z power: a z test with the true SE."
)
