"""``study sbc PRESET_OR_TOML``: simulation-based calibration of the Bayesian engine.

Runs on the study runner (workers, Dask, shards, checkpoints, resume as ``study run``)
into ``outputs/sbc/<name>`` and prints a verdict per term.  ``study summarize``,
``study plot`` and ``study report`` of an SBC run directory call the functions here.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from study.analysis.failures import reasons_table
from study.analysis.plots.catalog import slug
from study.analysis.plots.sbc import ecdf_difference, rank_histograms
from study.analysis.report import Report, ReportFigure, png_bytes
from study.analysis.sbc import sbc_frame, sbc_markdown, sbc_table, summarize_sbc, term_alpha
from study.cli.run import add_run_options, execute, whole_number
from study.design.config import load_config
from study.design.sbc import MAX_SIMULATIONS
from study.errors import UserError
from study.run.results import default_out, open_sbc
from study.run.store import Store, atomic_path, write_text_atomic

#: family-wise level of the uniformity tests of a run (Bonferroni over all its tests)
ALPHA = 0.05


#: ``--simulations N``
simulations_arg = whole_number(MAX_SIMULATIONS)


def register(sub: Any) -> None:
    """Add the ``sbc`` command to the ``study`` parser."""
    p = sub.add_parser(
        "sbc", help="simulation-based calibration of the Bayesian engine (ranks, PIT, verdicts)"
    )
    p.add_argument("config", help="preset name (default, seed) or path to a TOML file")
    p.add_argument(
        "--simulations",
        type=simulations_arg,
        help="simulations per condition (default: the [sbc] table's, else 500)",
    )
    p.add_argument("--out", help="run directory (default outputs/sbc/<study name>)")
    add_run_options(p, "simulation")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Run (or resume, or extend) the SBC; print the verdicts and where they are."""
    cfg = load_config(args.config).as_sbc(args.simulations)
    out = args.out if args.out is not None else str(default_out(cfg))
    report = execute(cfg, out, args, "simulations")
    if isinstance(report, int):
        return report
    print(summarize_sbc_run(out))
    print(Path(out) / "sbc.nc")
    return 0


def summarize_sbc_run(run_dir: str | Path, fmt: str = "table") -> str:
    """Test every term of an SBC run; write summary.nc and summary.md beside it."""
    if fmt == "csv":
        raise UserError("--format csv is for study runs; an SBC run: table or markdown")
    ds = open_sbc(run_dir)
    summary = summarize_sbc(ds, ALPHA)
    markdown = sbc_markdown(summary)
    Store(run_dir, "sbc").write_summary(summary)
    write_text_atomic(Path(run_dir) / "summary.md", markdown + "\n")
    return markdown if fmt == "markdown" else sbc_table(summary)


def sbc_figures(ds: Any) -> Iterator[tuple[str, str, Figure]]:
    """Every SBC figure of a run as ``(file stem, caption, Figure)``: rank histograms
    and PIT-ECDF differences per engine (and condition of a grid)."""
    a_term = term_alpha(ds, ALPHA)
    conditions = [str(c) for c in ds["condition"].values]
    for engine in map(str, ds["engine"].values):
        for condition in conditions:
            tail = f"-{slug(condition)}" if len(conditions) > 1 else ""
            where = f" ({condition})" if len(conditions) > 1 else ""
            yield (
                f"sbc-ranks-{engine}{tail}",
                f"rank histograms of {engine}{where}: 20 bins, expected count and "
                "a 99% band per bin (Talts et al. 2018)",
                rank_histograms(ds, engine=engine, condition=condition, alpha_term=a_term),
            )
            yield (
                f"sbc-ecdf-{engine}{tail}",
                f"PIT-ECDF minus the uniform CDF of {engine}{where}, with the "
                f"{100 * (1 - a_term):.3g}% simultaneous band (Saeilynoja et al. 2022)",
                ecdf_difference(ds, engine=engine, condition=condition, alpha_term=a_term),
            )


def plot_sbc_run(run_dir: str | Path, out: Path, fmt: str) -> list[Path]:
    """Draw an SBC run's figures into ``out``; the paths written."""
    ds = open_sbc(run_dir)
    written = []
    for stem, _, fig in sbc_figures(ds):
        with atomic_path(out / f"{stem}.{fmt}") as tmp:
            fig.savefig(tmp, format=fmt, dpi=100)
        written.append(out / f"{stem}.{fmt}")
    return written


def report_sbc_run(run_dir: str | Path) -> list[Path]:
    """Write report.html and report.md of an SBC run (figures under plots/)."""
    t0 = time.perf_counter()
    run = Path(run_dir)
    ds = open_sbc(run)
    summary = summarize_sbc(ds, ALPHA)
    a_term = float(summary.attrs["alpha_term"])
    figures = []
    for stem, caption, fig in sbc_figures(ds):
        png = png_bytes(fig)
        with atomic_path(run / "plots" / f"{stem}.png") as tmp:
            tmp.write_bytes(png)
        figures.append(ReportFigure(stem, caption, png))
    done = int(ds["done"].sum())
    requested = int(ds.attrs.get("simulations_requested", done))
    header = (
        f"simulation-based calibration: {done} simulations over {ds.sizes['condition']} "
        f"condition(s) ({requested} per condition requested), engines "
        f"{', '.join(map(str, ds['engine'].values))}; parameters drawn from the priors of "
        f"{ds.attrs.get('prior_from', '?')} (scales x {ds.attrs.get('generator_prior_scale')}); "
        f"config hash {ds.attrs.get('config_hash', '?')}, root seed {ds.attrs.get('root_seed')}"
    )
    frame = sbc_frame(summary)
    report = Report(
        title=f"lmm-study SBC report: {ds.attrs.get('study', run.name)}",
        header=header,
        config=str(ds.attrs["config"]),
        truth=_prior_frame(ds),
        tables=[(f"verdicts: a {100 * (1 - a_term):.3g}% simultaneous band per term", frame)],
        figures=figures,
        failures=reasons_table(ds.rename(simulation="replicate")),
        notes=SBC_NOTES,
        truth_heading="Parameters drawn from the prior (over the simulations run)",
        tables_heading="Uniformity of the ranks, per term",
    )
    write_text_atomic(run / "report.html", report.html())
    write_text_atomic(run / "report.md", report.markdown("plots"))
    print(f"{len(figures)} figures in {time.perf_counter() - t0:.1f} s")
    return [run / "report.html", run / "report.md"]


def _prior_frame(ds: Any) -> pd.DataFrame:
    """Quantiles of the true values over the simulations done, per condition and term."""
    rows = []
    for c in map(str, ds["condition"].values):
        one = ds.sel(condition=c)
        done = one["done"].values.astype(bool)
        for t in map(str, ds["term"].values):
            v = one["true_value"].sel(term=t).values[done]
            q = np.quantile(v, [0.05, 0.5, 0.95]) if v.size else [np.nan] * 3
            rows.append({"condition": c, "term": t, "q05": q[0], "median": q[1], "q95": q[2]})
    return pd.DataFrame(rows)


SBC_NOTES = (
    "Ranks: each true value among its fit's posterior draws thinned by ESS; PIT = "
    "(rank + U(0,1)) / number of ranks, uniform when the posterior is computed right. "
    "A term passes when the ECDF of its PIT values stays inside the simultaneous band "
    "(Saeilynoja et al. 2022; gamma: the smallest two-sided binomial tail probability of "
    "the ECDF, p: its Monte Carlo p-value); the level is 0.05 Bonferroni-adjusted over the "
    "terms.  Non-converged fits are kept in the test and counted."
)
