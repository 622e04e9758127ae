"""Fitting a user's own dataset (a CSV file) with one engine: an lme4-style formula
(:mod:`models.formula`) or the all-slopes ``y ~ x + (x | group)``, the data checks lme4
makes before fitting (:mod:`study.design.datafile`, shared with designs from pilot
data), and the fit."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.base import FitResult
from models.crossed import CrossedData
from models.data import LMMData
from models.registry import Registry, default_registry
from models.validate import OptionError
from study.design.datafile import load_csv, load_formula
from study.errors import UserError


@dataclass
class CsvFit:
    """A fit of a CSV: the result, the data fitted, the model as a formula, the rows
    dropped for missing values (lme4's ``na.omit``) and the columns that held them,
    the engine options used, and notes on them (e.g. the data-scaled priors)."""

    fit: FitResult
    data: LMMData | CrossedData
    model: str
    engine: str
    seed: int
    dropped: int = 0
    dropped_in: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


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
    refused = registry.fits(engine, data.structure)
    if refused:
        raise UserError(refused)
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
