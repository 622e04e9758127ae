"""A study design from pilot data, as simr's ``makeLmer`` / ``extend`` make one: fit the
pilot CSV by REML (:func:`study.usecases.fitting.fit_csv`) and write a configuration
that generates from the fitted ``beta``, ``D`` and ``sigma`` and from the pilot's own
predictor values (``predictors_from``: :class:`study.design.pilot.Pilot`).

The configuration (TOML, comments naming the source on top)::

    name = "sleepstudy"
    replicates = 1000
    seed = ...                        # from the file's sha256: the same file, the same seed
    [design]
    predictors_from = "sleepstudy.csv"   # relative to the config's folder (or absolute)
    group_column = "Subject"          # the pilot's grouping column (the bars name it too)
    fixed = "Days"                    # the formula's fixed part (right-hand side)
    random = "(Days | Subject)"       # the formula's random part
    re_sd = [...]                     # SDs of the random effects, in the order of `random`
    re_cor = [[...], [...]]           # their correlations (only for | with > 1 effect)
    sigma = ...                       # residual SD
    groups = 40                       # when given: groups resampled from the pilot's
    group_size = 20                   # when given: rows per group resampled within groups
    [design.beta]                     # fixed effects, keyed by lme4's term names
    "(Intercept)" = ...
    Days = ...
    [engines]
    run = ["reml"]

Numbers are written with full precision (Python's shortest round-trip repr).
"""

from __future__ import annotations

import datetime
import os
import re
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from models.data import LMMData
from models.registry import default_registry
from study.design.pilot import Pilot
from study.errors import UserError
from study.usecases.fitting import CsvFit, fit_csv

__all__ = ["DEFAULT_REPLICATES", "DesignText", "design_from_pilot"]

#: replicates of a design from pilot data: simr's default ``nsim`` (a power of 0.8 then
#: has a Monte Carlo SE of 1.3 percentage points)
DEFAULT_REPLICATES = 1000


@dataclass(frozen=True)
class DesignText:
    """A configuration written from pilot data.

    ``text`` is the TOML (comments on top, then :attr:`table` as ``tomli_w`` writes
    it); ``table`` the settings; ``pilot`` the pilot data as the design reads them;
    ``fit`` the fit the numbers come from; ``out`` the file written (None: none).
    """

    text: str
    table: dict[str, Any]
    pilot: Pilot
    fit: CsvFit
    out: Path | None = None
    comments: list[str] = field(default_factory=list)


def design_from_pilot(
    csv: str | Path,
    formula: str,
    groups: int | None = None,
    group_size: int | None = None,
    engine: str = "reml",
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    name: str | None = None,
    replicates: int = DEFAULT_REPLICATES,
    seed: int | None = None,
    today: datetime.date | None = None,
) -> DesignText:
    """Fit ``formula`` to the pilot ``csv`` with ``engine`` and write the configuration
    of a study that generates from the fit and the pilot's predictor values.

    ``groups`` / ``group_size``: the design's groups (resampled with replacement from
    the pilot's) and rows per group (whole copies of a group's rows, the rest
    subsampled without replacement; :class:`study.design.pilot.Pilot`); None keeps
    the pilot's.  ``out``: the file to write (``predictors_from`` is then relative to
    its folder, absolute when the two share no folder but the root; without ``out``,
    relative to the current directory, and nothing is written);
    an existing file is refused unless ``overwrite``.  ``name`` (default the stem of
    ``out``, else of ``csv``), ``replicates`` and ``seed`` (default: from the file's
    sha256) are the configuration's; ``today`` dates the comments (default today).

    Raises
    ------
    UserError
        One line, before anything is written: a CSV or formula ``study fit`` refuses,
        ``groups`` < 2, a ``group_size`` too small for the random effects, a fit that
        failed or did not converge, an existing ``out``.
    """
    if groups is not None:
        _whole("groups", groups, 2, "a mixed model needs at least 2 groups")
    if group_size is not None:
        _whole("group_size", group_size, 2, "groups need repeated rows")
    target = _target(out, csv, overwrite)
    pilot = Pilot.load(csv, formula)
    done = fit_csv(csv, formula=formula, engine=engine)
    fit, data = done.fit, done.data
    assert isinstance(data, LMMData)  # Pilot.load refused several grouping factors
    structure = data.structure
    if group_size is not None and group_size <= structure.r:
        raise UserError(
            f"group_size={group_size}: {group_size} rows per group for {structure.r} random "
            "effects leave the random effects and the residual variance not identifiable "
            f"(lme4: observations <= random effects); give group_size={structure.r + 1} "
            "or more"
        )
    if not fit.converged:
        raise UserError(
            f"{csv}: the {engine} fit of {done.model} did not converge "
            f"({fit.message or 'no reason given'}); a design needs estimates to start "
            f"from: check the data with `study fit {csv} {formula!r}`"
        )
    bad = [t for t, v in zip(fit.terms, fit.estimate, strict=True) if not np.isfinite(v)]
    if bad:
        raise UserError(
            f"engine={engine!r} gives no estimate of {', '.join(bad)}; a design needs "
            "them all: use engine='reml'"
        )
    beta, sds, cor, sigma = structure.split(fit.estimate)
    where = Path(os.path.abspath(target.parent if target is not None else Path.cwd()))
    digest = pilot.sha256
    study_name = name or (target.stem if target is not None else Path(csv).stem)
    design: dict[str, Any] = {
        "predictors_from": _relative(Path(csv), where),
        "group_column": pilot.group_column,
        "fixed": pilot.formula.fixed,
        "random": _random_part(pilot),
        "beta": {n: float(b) for n, b in zip(structure.fixed, beta, strict=True)},
        "re_sd": [float(s) for s in sds],
    }
    if structure.correlated and structure.r > 1:
        design["re_cor"] = [[float(c) for c in row] for row in cor]
    design["sigma"] = float(sigma)
    if groups is not None:
        design["groups"] = int(groups)
    if group_size is not None:
        design["group_size"] = int(group_size)
    table = {
        "name": study_name,
        "replicates": int(replicates),
        "seed": int(seed) if seed is not None else int(digest[:15], 16),
        "design": design,
        "engines": {"run": ["reml"]},
    }
    comments = _comments(csv, pilot, done, engine, groups, group_size, today)
    text = "".join(f"# {c}".rstrip() + "\n" for c in comments) + "\n" + _toml(table)
    if target is not None:
        _write(target, text, overwrite)
    return DesignText(text, table, pilot, done, target, comments)


def _whole(name: str, value: object, low: int, why: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(f"{name}={value!r}: must be a whole number >= {low} ({why})")


def _target(out: str | Path | None, csv: str | Path, overwrite: bool) -> Path | None:
    """The file to write, refused up front when it cannot or may not be written."""
    if out is None:
        return None
    target = Path(out)
    if target.is_dir():
        raise UserError(f"out={str(out)!r} is a directory; give a file name, e.g. pilot.toml")
    if target.exists() and not overwrite:
        raise UserError(
            f"out={str(out)!r} exists; use overwrite=True to replace it or out=... for another file"
        )
    if target.exists() and Path(csv).exists() and target.samefile(csv):
        raise UserError(f"out={str(out)!r} is the pilot data file; give another file name")
    return target


def _write(target: Path, text: str, overwrite: bool) -> None:
    """Write ``text`` to ``target`` whole or not at all (a temporary file renamed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temp.write_text(text, encoding="utf-8")
        if overwrite:
            os.replace(temp, target)
        else:
            os.link(temp, target)  # fails if the file appeared meanwhile
    except FileExistsError as err:
        raise UserError(
            f"out={str(target)!r} exists; use overwrite=True to replace it or out=... for "
            "another file"
        ) from err
    finally:
        temp.unlink(missing_ok=True)


#: an array of scalars as tomli_w writes it: one item a line
_ARRAY = re.compile(r"\[\n((?:[ ]*[^\[\]\n]+,\n)+)[ ]*\]")


def _toml(table: dict[str, Any]) -> str:
    """``table`` as ``tomli_w`` writes it, arrays on one line (as the presets write
    them) where that reads back the same."""
    text = tomli_w.dumps(table)
    compact = text
    while True:
        shorter = _ARRAY.sub(
            lambda m: "[" + ", ".join(x.strip().removesuffix(",") for x in m[1].splitlines()) + "]",
            compact,
        )
        if shorter == compact:
            break
        compact = shorter
    return compact if tomllib.loads(compact) == tomllib.loads(text) else text


def _relative(csv: Path, folder: Path) -> str:
    """``csv`` relative to ``folder`` (``/`` separated), or absolute when the two share
    no folder but the root (or a drive)."""
    full = os.path.abspath(csv)
    try:
        common = os.path.commonpath([full, folder])
    except ValueError:  # another drive
        return Path(full).as_posix()
    if os.path.dirname(common) == common:
        return Path(full).as_posix()
    return Path(os.path.relpath(full, folder)).as_posix()


def _random_part(pilot: Pilot) -> str:
    """The formula's random part as written: ``(Days | Subject)``, ``(Days || Subject)``
    or ``(1 | Subject) + (0 + Days | Subject)``."""
    f = pilot.formula
    if len(f.random) == 1:
        return f"({f.random[0]} {'|' if f.correlated else '||'} {f.group})"
    return " + ".join(f"({lhs} | {f.group})" for lhs in f.random)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def _comments(
    csv: str | Path,
    pilot: Pilot,
    done: CsvFit,
    engine: str,
    groups: int | None,
    group_size: int | None,
    today: datetime.date | None,
) -> list[str]:
    """The header: the source, the fit, what the design generates."""
    fit, data = done.fit, done.data
    spec = default_registry().spec(engine)
    day = (today or datetime.date.today()).isoformat()
    reml = engine == "reml" and done.options.get("method", "reml") == "reml"
    what = "REML criterion" if reml else "criterion (-2 logLik)"
    sizes = np.unique(pilot.sizes)
    rows = f"{sizes[0]}" if sizes.size == 1 else f"{sizes.min()} to {sizes.max()}"
    lines = [
        f"A study design from pilot data, written by `study design` on {day}",
        f"(lmm-study {_version('lmm-study')}), as simr's makeLmer / extend make one.",
        f"Pilot data: {Path(csv).as_posix()} ({pilot.n_obs} rows, {pilot.n_groups} groups of "
        f"{pilot.group_column}, {rows} rows each)",
        f"  sha256 {pilot.sha256}",
    ]
    if done.dropped:
        lines.append(
            f"  {done.dropped} row{'s' if done.dropped != 1 else ''} with missing values in "
            f"{', '.join(done.dropped_in)} left out (lme4 na.omit)"
        )
    lines += [
        f"Model: {done.model}",
        f"Fit: engine {engine} (version {spec.version}; statsmodels "
        f"{_version('statsmodels')}, numpy {_version('numpy')}), {data.n_obs} rows, "
        f"{data.n_groups} groups",
        f"  {what} {fit.criterion!r}, logLik {fit.loglik!r}, "
        f"{'converged' if fit.converged else 'NOT converged'}"
        + (", singular (a random-effect covariance on the boundary)" if fit.singular else "")
        + f", optimizer {fit.optimizer or 'unknown'}",
        "The data are generated from the fitted beta, re_sd, re_cor and sigma below and the",
        f"pilot's own values of {', '.join(pilot.predictors) or 'no predictor'} "
        "(predictors_from, relative to this file):",
        (
            f"  groups: {groups}, drawn with replacement from the pilot's {pilot.n_groups}"
            if groups is not None
            else f"  groups: the pilot's {pilot.n_groups}, as they are"
        ),
        (
            f"  group_size: {group_size} rows per group: copies of the group's rows, the rest "
            "a subsample without replacement"
            if group_size is not None
            else "  group_size: each group's own rows"
        ),
        "Change beta (the effect to detect), groups or group_size, or add [conditions],",
        "to study power and coverage for other designs.",
    ]
    return lines
