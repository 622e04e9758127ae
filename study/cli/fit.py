"""``study fit``: run an engine on a user's own dataset (a CSV file)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from models.data import LMMData
from models.registry import build_engine
from study.errors import UserError
from study.analysis.tables import render


def load_csv(path: str | Path, y: str, x: list[str], group: str) -> LMMData:
    """Read a CSV and build the engines' data; :class:`UserError` on any problem."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"data file {str(path)!r} not found; give the path to a CSV file")
    try:
        frame = pd.read_csv(p)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise UserError(f"data file {str(path)!r} cannot be read as CSV ({err})") from err
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
) -> str:
    """Fit one dataset and return a table (or JSON list in the broom::tidy shape)."""
    if not 0 < level < 1:
        raise UserError(f"--level {level}: must be between 0 and 1 (e.g. 0.95)")
    predictors = [c.strip() for c in x.split(",") if c.strip()]
    if not predictors:
        raise UserError(f"--x {x!r}: give at least one predictor column")
    data = load_csv(path, y, predictors, group)
    options: dict[str, object] = {}
    if engine == "bayes":
        from models.bayes.scaled_priors import scaled_priors

        options["priors"] = scaled_priors(data)
    eng = build_engine(engine, options, level=level)
    fit = eng.fit(data, seed=seed)
    frame = fit.to_frame()
    if as_json:
        records = [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")
        ]
        return json.dumps(records, indent=2)
    status = "converged" if fit.converged else "NOT converged"
    head = (
        f"{engine}: {data.n_obs} rows, {data.n_groups} groups; {status} in {fit.fit_seconds:.2f} s"
    )
    lines = [head, render(frame, "table", digits=4)]
    if fit.message:
        lines.append(f"message: {fit.message}")
    if engine == "bayes":
        from models.bayes.scaled_priors import describe_priors

        priors = options["priors"]
        assert isinstance(priors, dict)
        lines.append("priors (scaled to the data, rstanarm-style):")
        lines.append(describe_priors(priors, data.fixed_names))
    return "\n".join(lines)
