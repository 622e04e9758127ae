"""``study fit DATA.csv [FORMULA]``: run an engine on a user's own dataset (a CSV file),
with an lme4-style formula (:mod:`models.formula`) or the all-slopes ``--y/--x/--group``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from models.base import FIXED, FitResult
from models.registry import ENGINE_NAMES
from models.reml.options import CI_KINDS, RAN_PARS_CI_KINDS
from study.analysis.tables import render
from study.usecases.fitting import CsvFit, fit_csv


def register(sub: Any) -> None:
    """Add the ``fit`` command to the ``study`` parser."""
    p = sub.add_parser("fit", help="fit one dataset from a CSV file and print a tidy table")
    p.add_argument("data", help="CSV file")
    p.add_argument(
        "formula",
        nargs="?",
        default=None,
        help='lme4-style model formula, e.g. "Reaction ~ Days + (Days | Subject)"; or give '
        "--y, --x and --group instead",
    )
    p.add_argument("--y", help="response column (shorthand for y ~ x + (x | group))")
    p.add_argument("--x", help="predictor column(s), comma-separated, each with a random slope")
    p.add_argument("--group", help="grouping column")
    p.add_argument("--engine", choices=ENGINE_NAMES, default="reml")
    p.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    p.add_argument("--seed", type=int, default=1, help="sampler seed (bayes)")
    p.add_argument(
        "--ci",
        choices=CI_KINDS,
        default=None,
        help="reml fixed-effect intervals: wald (default), t (K - p df), satterthwaite "
        "(lmerTest) or kenward-roger (pbkrtest)",
    )
    p.add_argument(
        "--ran-pars-ci",
        choices=RAN_PARS_CI_KINDS,
        default=None,
        help="reml variance-parameter intervals: wald on the log-SD scale (default), "
        "profile (lme4 confint) or none",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print JSON: fit statistics (broom::glance), diagnostics and the terms (broom::tidy)",
    )
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Fit and print; exit 1 (reason on stderr) when the fit failed or did not converge."""
    done = fit_csv(
        args.data,
        formula=args.formula,
        y=args.y,
        x=args.x,
        group=args.group,
        engine=args.engine,
        level=args.level,
        seed=args.seed,
        ci=args.ci,
        ran_pars_ci=args.ran_pars_ci,
    )
    fit = done.fit
    text = render_fit(done, as_json=args.json)
    if text:
        print(text)
    if not fit.converged:
        what = "fit failed" if not text else "fit did not converge"
        print(f"study: {what}: {fit.message or 'no reason given'}", file=sys.stderr)
        return 1
    return 0


def render_fit(done: CsvFit, *, as_json: bool = False) -> str:
    """The text ``study fit`` prints: a table (or JSON); empty when the fit produced no
    estimates."""
    fit, engine = done.fit, done.engine
    if not np.isfinite(fit.estimate).any():
        return ""
    frame = tidy_frame(fit)
    if as_json:
        doc = _json(fit, frame, engine, done.seed, done.options)
        doc = {
            "formula": done.model,
            "dropped_rows": done.dropped,
            "dropped_in": done.dropped_in,
            **doc,
        }
        return json.dumps(doc, indent=2)
    status = "converged" if fit.converged else "NOT converged"
    head = (
        f"{engine}: {done.model}\n{done.data.n_obs} rows, {done.data.n_groups} groups; "
        f"{status} in {fit.fit_seconds:.2f} s"
    )
    note = (
        f"dropped {done.dropped} row{'s' if done.dropped != 1 else ''} with missing values "
        f"in {', '.join(done.dropped_in)} (lme4 na.omit)"
        if done.dropped
        else ""
    )
    diagnostics = ["rhat", "ess_bulk", "ess_tail"]
    shown = frame.drop(columns=[c for c in diagnostics if not frame[c].notna().any()])
    lines = [head, *([note] if note else []), render(shown, "table", digits=4), glance_line(fit)]
    if fit.message:
        lines.append(f"message: {fit.message}")
    lines += done.notes
    return "\n".join(lines)


def tidy_frame(fit: FitResult) -> pd.DataFrame:
    """broom::tidy columns plus ``df``, the t/z ``statistic`` and ``p_value`` of the
    fixed effects (estimate / SE against t(df), normal when df is inf), diagnostics."""
    frame = fit.to_frame()
    fixed = frame["effect"].to_numpy() == FIXED
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = np.where(fixed, fit.estimate / fit.std_error, np.nan)
        p = np.where(fixed, 2 * stats.t.sf(np.abs(stat), fit.df), np.nan)
    frame.insert(4, "statistic", stat)
    frame.insert(5, "p_value", p)
    for name in ("rhat", "ess_bulk", "ess_tail"):
        frame[name] = getattr(fit, name)
    return frame


#: fit statistics, as broom::glance (name in the output, FitResult attribute)
GLANCE = (
    ("nobs", "nobs"),
    ("ngroups", "ngroups"),
    ("logLik", "loglik"),
    ("criterion", "criterion"),
    ("AIC", "aic"),
    ("BIC", "bic"),
    ("singular", "singular"),
    ("optimizer", "optimizer"),
)


def glance_line(fit: FitResult) -> str:
    """One line of fit statistics (only those the engine has)."""
    parts = []
    for label, attr in GLANCE:
        v = getattr(fit, attr)
        if isinstance(v, float) and not math.isfinite(v):
            continue
        if attr in ("nobs", "ngroups"):
            v = int(v)
        elif isinstance(v, float):
            v = f"{v:.2f}"
        elif isinstance(v, bool):
            v = "yes" if v else "no"
        parts.append(f"{label} {v}")
    if math.isfinite(fit.divergences):
        parts.append(f"divergences {int(fit.divergences)}")
    if math.isfinite(fit.restarts):
        parts.append(f"restarted chains {int(fit.restarts)}")
    return "fit: " + ", ".join(parts)


def _clean(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return v


def _json(
    fit: FitResult, frame: pd.DataFrame, engine: str, seed: int, options: dict[str, Any]
) -> dict[str, Any]:
    """The JSON document of ``study fit --json``."""
    glance = {label: _clean(getattr(fit, attr)) for label, attr in GLANCE}
    rhat, ess = np.asarray(fit.rhat, dtype=float), np.asarray(fit.ess_bulk, dtype=float)
    out: dict[str, Any] = {
        "engine": engine,
        "converged": bool(fit.converged),
        "message": fit.message,
        "seed": seed if engine == "bayes" else None,
        "fit_seconds": _clean(fit.fit_seconds),
        "glance": glance,
        "diagnostics": {
            "divergences": _clean(fit.divergences),
            "restarts": _clean(fit.restarts),
            "max_rhat": float(np.nanmax(rhat)) if np.isfinite(rhat).any() else None,
            "min_ess_bulk": float(np.nanmin(ess)) if np.isfinite(ess).any() else None,
        },
        "options": {k: _clean(v) for k, v in options.items() if k != "priors"},
        "priors": {k: _clean_tree(v) for k, v in options.get("priors", {}).items()} or None,
        "terms": [
            {k: _clean(v) for k, v in row.items()} for row in frame.to_dict(orient="records")
        ],
    }
    return out


def _clean_tree(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return _clean(v)
