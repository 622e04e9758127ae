"""``study fit DATA.csv [FORMULA]``: run an engine on a user's own dataset (a CSV file),
with an lme4-style formula or the all-slopes ``--y/--x/--group``; prints broom's tidy
table and glance line (or JSON)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import tomllib
from typing import Any

from study.usecases.fitting import CsvFit, fit_csv
from study.usecases.vocabulary import engine_names, render

#: the largest seed (a 64-bit signed integer, what NumPy's and PyMC's seeds take)
MAX_SEED = 2**63 - 1


def seed_arg(text: str) -> int:
    """``--seed N``: a whole number from 0 to :data:`MAX_SEED`."""
    value = int(text) if text.strip().isdigit() else -1
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a whole number from 0 to {MAX_SEED:,}")
    return value


def option_arg(text: str) -> tuple[str, Any]:
    """``--option KEY=VALUE``: an engine option, the value read as a TOML value."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: give KEY=VALUE, e.g. ci=satterthwaite")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()  # a bare word: a string
    return key.strip(), parsed


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
    names = engine_names()
    p.add_argument("--engine", choices=names, default="reml", help=f"one of {', '.join(names)}")
    p.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    p.add_argument("--seed", type=seed_arg, default=1, help="sampler seed (engines that sample)")
    p.add_argument(
        "--option",
        type=option_arg,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of the engine, as in its [engines.NAME] table (repeatable), e.g. "
        "cov_type=bias_reduced for gee",
    )
    p.add_argument(
        "--ci",
        default=None,
        help="reml fixed-effect intervals (--option ci=...): wald (default), t (K - p df), "
        "satterthwaite (lmerTest) or kenward-roger (pbkrtest)",
    )
    p.add_argument(
        "--ran-pars-ci",
        default=None,
        help="reml variance-parameter intervals (--option ran_pars_ci=...): wald on the "
        "log-SD scale (default), profile (lme4 confint) or none",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print JSON: fit statistics (broom::glance), diagnostics and the terms (broom::tidy)",
    )
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Fit and print; exit 1 (reason on stderr) when the fit failed or did not converge."""
    options = dict(args.option)
    for key in ("ci", "ran_pars_ci"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    done = fit_csv(
        args.data,
        formula=args.formula,
        y=args.y,
        x=args.x,
        group=args.group,
        engine=args.engine,
        level=args.level,
        seed=args.seed,
        options=options,
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


#: diagnostics shown only when the engine has them (a sampler's)
DIAGNOSTICS = ("rhat", "ess_bulk", "ess_tail")


def render_fit(done: CsvFit, *, as_json: bool = False) -> str:
    """The text ``study fit`` prints: a table (or JSON); empty when the fit produced no
    estimates."""
    fit = done.fit
    if not any(math.isfinite(v) for v in fit.estimate):
        return ""
    tidy = fit.tidy(diagnostics=True)
    if as_json:
        return json.dumps(_json(done, tidy), indent=2)
    shown = tidy.drop(columns=[c for c in DIAGNOSTICS if not tidy[c].notna().any()])
    status = "converged" if fit.converged else "NOT converged"
    levels = getattr(done.data, "group_levels", None)  # several grouping factors
    groups = (
        " x ".join(f"{k} {g}" for g, k in levels.items())
        if levels
        else f"{done.data.n_groups} groups"
    )
    head = (
        f"{done.engine}: {done.model}\n{done.data.n_obs} rows, {groups}; "
        f"{status} in {fit.fit_seconds:.2f} s"
    )
    note = (
        f"dropped {done.dropped} row{'s' if done.dropped != 1 else ''} with missing values "
        f"in {', '.join(done.dropped_in)} (lme4 na.omit)"
        if done.dropped
        else ""
    )
    lines = [head, *([note] if note else []), render(shown, "table", digits=4), glance_line(done)]
    if fit.message:
        lines.append(f"message: {fit.message}")
    lines += done.notes
    return "\n".join(lines)


#: glance's statistics on the one line of the table output (those the engine has)
GLANCE_LINE = ("nobs", "ngroups", "logLik", "criterion", "AIC", "BIC", "singular", "optimizer")


def glance_line(done: CsvFit) -> str:
    """One line of fit statistics (only those the engine has)."""
    row = done.fit.glance().iloc[0]
    parts = []
    for label in GLANCE_LINE:
        v = row[label]
        if isinstance(v, float) and not math.isfinite(v):
            continue
        if label in ("nobs", "ngroups"):
            v = int(v)
        elif type(v).__name__ in ("bool", "bool_"):  # Python's or NumPy's
            v = "yes" if v else "no"
        elif isinstance(v, float):
            v = f"{v:.2f}"
        parts.append(f"{label} {v}")
    for label, name in (("divergences", "divergences"), ("restarted chains", "restarts")):
        if math.isfinite(float(row[name])):
            parts.append(f"{label} {int(row[name])}")
    return "fit: " + ", ".join(parts)


def _clean(v: Any) -> Any:
    if hasattr(v, "item") and not isinstance(v, str):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return v


def _clean_tree(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, dict):
        return {k: _clean_tree(x) for k, x in v.items()}
    return _clean(v)


def _json(done: CsvFit, tidy: Any) -> dict[str, Any]:
    """The JSON document of ``study fit --json``: glance, diagnostics, options, terms."""
    fit = done.fit
    glance = {k: _clean(v) for k, v in fit.glance().iloc[0].items()}
    rhat = [float(v) for v in tidy["rhat"] if math.isfinite(v)]
    ess = [float(v) for v in tidy["ess_bulk"] if math.isfinite(v)]
    return {
        "formula": done.model,
        "dropped_rows": done.dropped,
        "dropped_in": done.dropped_in,
        "engine": done.engine,
        "converged": bool(fit.converged),
        "message": fit.message,
        "seed": done.seed,
        "fit_seconds": _clean(fit.fit_seconds),
        "glance": glance,
        "diagnostics": {
            "divergences": _clean(fit.divergences),
            "restarts": _clean(fit.restarts),
            "max_rhat": max(rhat) if rhat else None,
            "min_ess_bulk": min(ess) if ess else None,
        },
        "options": {k: _clean_tree(v) for k, v in done.options.items()},
        "terms": [{k: _clean(v) for k, v in row.items()} for row in tidy.to_dict("records")],
    }
