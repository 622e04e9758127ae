"""Fitting a user's own dataset (a CSV file) with one engine: the data checks lme4
makes before fitting, an lme4-style formula (:mod:`models.formula`) or the all-slopes
``y ~ x + (x | group)``, and the fit."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.base import FitResult
from models.data import INTERCEPT, LMMData, fit_problem
from models.formula import Formula, model_data, parse
from models.registry import Registry, default_registry
from models.validate import OptionError
from study.errors import UserError


@dataclass
class CsvFit:
    """A fit of a CSV: the result, the data fitted, the model as a formula, the rows
    dropped for missing values (lme4's ``na.omit``) and the columns that held them,
    the engine options used, and notes on them (e.g. the data-scaled priors)."""

    fit: FitResult
    data: LMMData
    model: str
    engine: str
    seed: int
    dropped: int = 0
    dropped_in: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


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
    level: float = 0.95,
    seed: int = 1,
    options: dict[str, Any] | None = None,
    registry: Registry | None = None,
) -> CsvFit:
    """Fit one dataset, given an lme4-style ``formula`` or the columns ``y``, ``x``
    (comma-separated) and ``group`` of ``y ~ x + (x | group)``, with ``engine`` (any
    registered one; ``options`` its settings, over those it proposes for the data, e.g.
    the Bayesian engine's priors scaled to them)."""
    registry = registry or default_registry()
    if not 0 < level < 1:
        raise UserError(f"level={level}: must be between 0 and 1 (e.g. 0.95)")
    try:
        registry.kind(engine)
    except OptionError as err:
        raise UserError(f"engine={engine!r}: {err.rule}") from err
    columns = {"y": y, "x": x, "group": group}
    given = [k for k, v in columns.items() if v is not None]
    if formula is not None and given:
        raise UserError(
            "give either a formula or y=..., x=... and group=..., not both (drop "
            + ", ".join(f"{k}=..." for k in given)
            + ")"
        )
    dropped, gaps = 0, list[str]()
    if formula is not None:
        data, parsed, dropped, gaps = load_formula(path, formula)
        model = parsed.text
    elif y is None or x is None or group is None:
        lacking = ", ".join(f"{k}=..." for k in columns if k not in given)
        raise UserError(
            f'give a model: a formula, e.g. "y ~ x + (x | g)", or all of y=..., x=... and '
            f"group=... (missing: {lacking})"
        )
    else:
        predictors = [c.strip() for c in x.split(",") if c.strip()]
        if not predictors:
            raise UserError(f"x={x!r}: give at least one predictor column")
        data = load_csv(path, y, predictors, group)
        model = f"{y} ~ {' + '.join(predictors)} + {data.structure.bar(group)}"
    _check_option_names(registry, engine, options or {})
    proposed, notes = registry.options_for_data(engine, data)
    table = {**proposed, **(options or {})}
    try:
        built = registry.build_engine(engine, table, level=level)
    except OptionError as err:
        raise UserError(f"engine {engine}: {err}") from err
    fit = built.fit(data, seed=seed)
    return CsvFit(fit, data, model, engine, seed, dropped, gaps, table, notes)


def _check_option_names(registry: Registry, engine: str, options: dict[str, Any]) -> None:
    """Refuse an option the engine does not have, naming the engines that do."""

    def names(label: str) -> set[str]:
        try:
            cls = registry.options_class(label)
        except Exception:  # a broken third-party engine has no options to offer
            return set()
        return {f.name for f in dataclasses.fields(cls)} - {"level"}

    own = names(engine)
    for key in options:
        if key in own:
            continue
        owners = [n for n in registry.names if n != engine and key in names(n)]
        where = f" (an option of {', '.join(owners)})" if owners else ""
        fix = (
            f"drop it or use engine={owners[0]!r}"
            if owners
            else f"choose from {', '.join(sorted(own))}"
        )
        raise UserError(f"{key}=...: not an option of engine {engine}{where}; {fix}")
