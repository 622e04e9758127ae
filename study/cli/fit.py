"""``study fit DATA.csv``: run an engine on a user's own dataset (a CSV file)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.base import FitResult
from models.bayes.scaled_priors import describe_priors, scaled_priors
from models.data import LMMData
from models.registry import ENGINE_NAMES, build_engine
from study.analysis.tables import render
from study.errors import UserError


def register(sub: Any) -> None:
    """Add the ``fit`` command to the ``study`` parser."""
    p = sub.add_parser("fit", help="fit one dataset from a CSV file and print a tidy table")
    p.add_argument("data", help="CSV file")
    p.add_argument("--y", required=True, help="response column")
    p.add_argument("--x", required=True, help="predictor column(s), comma-separated")
    p.add_argument("--group", required=True, help="grouping column")
    p.add_argument("--engine", choices=ENGINE_NAMES, default="reml")
    p.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    p.add_argument("--seed", type=int, default=1, help="sampler seed (bayes)")
    p.add_argument("--json", action="store_true", help="print a JSON list (broom::tidy shape)")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Fit and print; exit 1 (reason on stderr) when the fit failed or did not converge."""
    text, fit = fit_csv(
        args.data,
        y=args.y,
        x=args.x,
        group=args.group,
        engine=args.engine,
        as_json=args.json,
        level=args.level,
        seed=args.seed,
    )
    if text:
        print(text)
    if not fit.converged:
        what = "fit failed" if not text else "fit did not converge"
        print(f"study: {what}: {fit.message or 'no reason given'}", file=sys.stderr)
        return 1
    return 0


def load_csv(path: str | Path, y: str, x: list[str], group: str) -> LMMData:
    """Read a CSV and build the engines' data; :class:`UserError` on any problem."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"data file {str(path)!r} not found; give the path to a CSV file")
    try:
        frame = pd.read_csv(p)
    except pd.errors.EmptyDataError as err:
        raise UserError(f"data file {str(path)!r} is empty; give a CSV with a header") from err
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise UserError(f"data file {str(path)!r} cannot be read as CSV ({err})") from err
    if frame.empty:
        raise UserError(f"{path}: the CSV has a header but no data rows; add rows to fit")
    try:
        data = LMMData.from_frame(frame, y=y, x=x, group=group)
    except ValueError as err:
        raise UserError(f"{path}: {err}") from err
    if data.n_groups < 2:
        raise UserError(f"{path}: column {group!r} has {data.n_groups} group; need at least 2")
    return data


def fit_csv(
    path: str | Path,
    *,
    y: str,
    x: str,
    group: str,
    engine: str = "reml",
    as_json: bool = False,
    level: float = 0.95,
    seed: int = 1,
) -> tuple[str, FitResult]:
    """Fit one dataset; return the text to print (a table or a JSON list in the
    broom::tidy shape; empty when the fit produced no estimates) and the fit."""
    if not 0 < level < 1:
        raise UserError(f"--level {level}: must be between 0 and 1 (e.g. 0.95)")
    predictors = [c.strip() for c in x.split(",") if c.strip()]
    if not predictors:
        raise UserError(f"--x {x!r}: give at least one predictor column")
    data = load_csv(path, y, predictors, group)
    options: dict[str, Any] = {}
    if engine == "bayes":
        options["priors"] = scaled_priors(data)
    fit = build_engine(engine, options, level=level).fit(data, seed=seed)
    if not np.isfinite(fit.estimate).any():
        return "", fit
    frame = fit.to_frame()
    if as_json:
        records = [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")
        ]
        return json.dumps(records, indent=2), fit
    status = "converged" if fit.converged else "NOT converged"
    head = (
        f"{engine}: {data.n_obs} rows, {data.n_groups} groups; {status} in {fit.fit_seconds:.2f} s"
    )
    lines = [head, render(frame, "table", digits=4)]
    if fit.message:
        lines.append(f"message: {fit.message}")
    if engine == "bayes":
        lines.append("priors (scaled to the data, rstanarm-style):")
        lines.append(describe_priors(options["priors"], data.fixed_names))
    return "\n".join(lines), fit
