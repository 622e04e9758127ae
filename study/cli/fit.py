"""``study fit DATA.csv [FORMULA]``: run an engine on a user's own dataset (a CSV file),
with an lme4-style formula (:mod:`models.formula`) or the all-slopes ``--y/--x/--group``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from models.base import FIXED, FitResult
from models.bayes.scaled_priors import describe_priors, scaled_priors
from models.data import INTERCEPT, LMMData, fit_problem
from models.formula import Formula, model_data, parse
from models.registry import ENGINE_NAMES, build_engine
from models.reml.options import CI_KINDS, RAN_PARS_CI_KINDS
from study.analysis.tables import render
from study.errors import UserError


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
    text, fit = fit_csv(
        args.data,
        formula=args.formula,
        y=args.y,
        x=args.x,
        group=args.group,
        engine=args.engine,
        as_json=args.json,
        level=args.level,
        seed=args.seed,
        ci=args.ci,
        ran_pars_ci=args.ran_pars_ci,
    )
    if text:
        print(text)
    if not fit.converged:
        what = "fit failed" if not text else "fit did not converge"
        print(f"study: {what}: {fit.message or 'no reason given'}", file=sys.stderr)
        return 1
    return 0


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read a CSV with a header and at least one row; :class:`UserError` otherwise."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"data file {str(path)!r} is a directory; give a CSV file")
    if not p.is_file():
        raise UserError(f"data file {str(path)!r} not found; give the path to a CSV file")
    try:
        with p.open("rb") as fh:
            head = fh.read(4096)
    except OSError as err:
        raise UserError(f"data file {str(path)!r} cannot be read ({err.strerror})") from err
    if b"\0" in head:
        raise UserError(
            f"data file {str(path)!r} is not a text file; give a comma-separated CSV "
            "(UTF-8), e.g. exported from a spreadsheet as CSV"
        )
    try:
        frame = pd.read_csv(p)
    except pd.errors.EmptyDataError as err:
        raise UserError(f"data file {str(path)!r} is empty; give a CSV with a header") from err
    except UnicodeDecodeError as err:
        raise UserError(
            f"data file {str(path)!r} is not UTF-8 text ({err.reason} at byte {err.start}); "
            "give a comma-separated CSV in UTF-8"
        ) from err
    except (OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[-1]
        raise UserError(
            f"data file {str(path)!r} cannot be read as CSV ({reason}); give a "
            "comma-separated file with one header row"
        ) from err
    if frame.shape[1] == 1:
        only = str(frame.columns[0])
        for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
            if sep in only:
                raise UserError(
                    f"{path}: the columns look separated by {name} ({only[:40]!r}); save "
                    "the file comma-separated (CSV)"
                )
    if frame.empty:
        raise UserError(f"{path}: the CSV has a header but no data rows; add rows to fit")
    return frame


def load_csv(path: str | Path, y: str, x: list[str], group: str) -> LMMData:
    """Read a CSV and build the engines' data for ``y ~ x + (x | group)`` (missing values
    refused); :class:`UserError` on any problem a fit would meet (the checks lme4 makes
    before fitting among them)."""
    frame = read_csv(path)
    try:
        data = LMMData.from_frame(frame, y=y, x=x, group=group)
    except ValueError as err:
        raise UserError(f"{path}: {err}") from err
    return check_data(path, data, group, kind="column")


def load_formula(path: str | Path, formula: str) -> tuple[LMMData, Formula, int, list[str]]:
    """Read a CSV and build the data of an lme4-style ``formula``: the data, the parsed
    formula, the number of rows dropped for missing values (lme4's ``na.omit``) and the
    columns that held them; :class:`UserError` on any problem."""
    try:
        parsed = parse(formula)
    except ValueError as err:
        raise UserError(str(err)) from err
    frame = read_csv(path)
    try:
        data, dropped = model_data(frame, parsed)
    except ValueError as err:
        raise UserError(f"{path}: {err}") from err
    gaps = [c for c in parsed.columns if bool(frame[c].isna().any())] if dropped else []
    return check_data(path, data, parsed.group, kind="term"), parsed, dropped, gaps


def check_data(path: str | Path, data: LMMData, group: str, kind: str) -> LMMData:
    """The checks every fit needs (as lme4 makes them): :class:`UserError` or ``data``."""
    if INTERCEPT in data.fixed_names:
        for j, name in enumerate(data.fixed_names):
            if name != INTERCEPT and np.ptp(data.X[:, j]) == 0:
                raise UserError(
                    f"{path}: {kind} {name!r} is constant ({data.X[0, j]:g} on every row: "
                    "collinear with the intercept); drop it or give a predictor that varies"
                )
    if data.n_groups < 2:
        raise UserError(
            f"{path}: column {group!r} has {data.n_groups} group; need at least 2 "
            "(give the column that holds the grouping factor)"
        )
    if data.n_groups >= data.n_obs:
        raise UserError(
            f"{path}: column {group!r} has {data.n_groups} groups for {data.n_obs} rows "
            "(one row per group): the number of groups must be < the number of rows, as "
            "lme4 requires; give a grouping with repeated rows"
        )
    if data.n_obs <= data.n_groups * data.r:
        raise UserError(
            f"{path}: {data.n_obs} rows for {data.n_groups} groups x {data.r} random "
            f"effects: the random effects and the residual variance are not identifiable "
            "(lme4: number of observations <= number of random effects); give more rows "
            "per group or fewer random effects"
        )
    problem = fit_problem(data)
    if problem:
        raise UserError(f"{path}: {problem}")
    return data


def fit_csv(
    path: str | Path,
    *,
    formula: str | None = None,
    y: str | None = None,
    x: str | None = None,
    group: str | None = None,
    engine: str = "reml",
    as_json: bool = False,
    level: float = 0.95,
    seed: int = 1,
    ci: str | None = None,
    ran_pars_ci: str | None = None,
) -> tuple[str, FitResult]:
    """Fit one dataset, given an lme4-style ``formula`` or the columns ``y``, ``x``
    (comma-separated) and ``group`` of ``y ~ x + (x | group)``; return the text to print
    (a table or JSON; empty when the fit produced no estimates) and the fit."""
    if not 0 < level < 1:
        raise UserError(f"--level {level}: must be between 0 and 1 (e.g. 0.95)")
    if engine != "reml" and (ci or ran_pars_ci):
        raise UserError("--ci and --ran-pars-ci are options of the reml engine; drop them")
    columns = {"--y": y, "--x": x, "--group": group}
    given = [k for k, v in columns.items() if v is not None]
    if formula is not None and given:
        raise UserError(
            f"give either a formula or --y, --x and --group, not both (drop {', '.join(given)})"
        )
    dropped, gaps = 0, list[str]()
    if formula is not None:
        data, parsed, dropped, gaps = load_formula(path, formula)
        model = parsed.text
    elif y is None or x is None or group is None:
        lacking = ", ".join(k for k in columns if k not in given)
        raise UserError(
            f'give a model: a formula, e.g. study fit {path} "y ~ x + (x | g)", or all of '
            f"--y, --x and --group (missing: {lacking})"
        )
    else:
        predictors = [c.strip() for c in x.split(",") if c.strip()]
        if not predictors:
            raise UserError(f"--x {x!r}: give at least one predictor column")
        data = load_csv(path, y, predictors, group)
        model = f"{y} ~ {' + '.join(predictors)} + {data.structure.bar(group)}"
    note = (
        f"dropped {dropped} row{'s' if dropped != 1 else ''} with missing values in "
        f"{', '.join(gaps)} (lme4 na.omit)"
        if dropped
        else ""
    )
    options: dict[str, Any] = {}
    if engine == "bayes":
        options["priors"] = scaled_priors(data)
    if ci:
        options["ci"] = ci
    if ran_pars_ci:
        options["ran_pars_ci"] = ran_pars_ci
    fit = build_engine(engine, options, level=level).fit(data, seed=seed)
    if not np.isfinite(fit.estimate).any():
        return "", fit
    frame = tidy_frame(fit)
    if as_json:
        doc = _json(fit, frame, engine, seed, options)
        doc = {"formula": model, "dropped_rows": dropped, "dropped_in": gaps, **doc}
        return json.dumps(doc, indent=2), fit
    status = "converged" if fit.converged else "NOT converged"
    head = (
        f"{engine}: {model}\n{data.n_obs} rows, {data.n_groups} groups; {status} in "
        f"{fit.fit_seconds:.2f} s"
    )
    shown = frame if engine == "bayes" else frame.drop(columns=["rhat", "ess_bulk", "ess_tail"])
    lines = [head, *([note] if note else []), render(shown, "table", digits=4), glance_line(fit)]
    if fit.message:
        lines.append(f"message: {fit.message}")
    if engine == "bayes":
        lines.append("priors (scaled to the data, rstanarm-style):")
        lines.append(describe_priors(options["priors"], data.structure))
    return "\n".join(lines), fit


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
