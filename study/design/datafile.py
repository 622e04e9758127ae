"""A user's data file (a CSV) read and checked as every fit needs it: the checks lme4
makes before fitting, for an lme4-style formula (:mod:`models.formula`) or the columns
of ``y ~ x + (x | group)``.  ``study fit`` (:mod:`study.usecases.fitting`) fits such a
file; a design built from pilot data (:mod:`study.design.pilot`) reads its predictors
from one, refused exactly when ``study fit`` would refuse it.  Every problem is a
one-line :class:`UserError` that names the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from models.crossed.data import CrossedData, crossed_problem
from models.data import INTERCEPT, LMMData, fit_problem
from models.formula import Formula, model_data, parse
from study.errors import UserError

__all__ = ["check_data", "formula_data", "load_csv", "load_formula", "read_csv"]

#: a dataset of one grouping factor, or of several (crossed or nested)
Data = LMMData | CrossedData


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
    check_data(path, data, group, kind="column")
    return data


def load_formula(path: str | Path, formula: str) -> tuple[Data, Formula, int, list[str]]:
    """Read a CSV and build the data of an lme4-style ``formula``: the data, the parsed
    formula, the number of rows dropped for missing values (lme4's ``na.omit``) and the
    columns that held them; :class:`UserError` on any problem."""
    try:
        parsed = parse(formula)
    except ValueError as err:
        raise UserError(str(err)) from err
    data, dropped, gaps = formula_data(path, read_csv(path), parsed)
    return data, parsed, dropped, gaps


def formula_data(
    path: str | Path, frame: pd.DataFrame, formula: Formula
) -> tuple[Data, int, list[str]]:
    """The data of a parsed ``formula`` from ``frame`` (read from ``path``, which the
    messages name): the data, the number of rows dropped for missing values and the
    columns that held them; :class:`UserError` on any problem (:func:`check_data`)."""
    try:
        data, dropped = model_data(frame, formula)
    except ValueError as err:
        raise UserError(f"{path}: {err}") from err
    gaps = [c for c in formula.columns if bool(frame[c].isna().any())] if dropped else []
    check_data(path, data, formula.group, kind="term")
    return data, dropped, gaps


def check_data(path: str | Path, data: Data, group: str, kind: str) -> None:
    """The checks every fit needs (as lme4 makes them): :class:`UserError` if one fails.
    Several grouping factors: lme4's ``checkNlevels`` and ``checkNobs`` on each
    (:func:`models.crossed.crossed_problem`)."""
    if INTERCEPT in data.fixed_names:
        for j, name in enumerate(data.fixed_names):
            if name != INTERCEPT and np.ptp(data.X[:, j]) == 0:
                raise UserError(
                    f"{path}: {kind} {name!r} is constant ({data.X[0, j]:g} on every row: "
                    "collinear with the intercept); drop it or give a predictor that varies"
                )
    if isinstance(data, CrossedData):
        problem = crossed_problem(data)
        if problem:
            raise UserError(f"{path}: {problem}")
        return
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
