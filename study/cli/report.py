"""``study report RUN_DIR``: a self-contained HTML report and its Markdown twin."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import pandas as pd

from study.analysis.failures import reasons_table
from study.analysis.plots.catalog import FIGURES, build
from study.analysis.report import Report, ReportFigure, png_bytes
from study.analysis.tables import DEFAULT_MEASURES, grid_table, measure_table, report_table
from study.cli.plot import plot_input
from study.cli.sbc import report_sbc_run
from study.cli.truth import model_lines, truth_frame
from study.design.config import config_from_text
from study.run.results import is_partial, store_of
from study.run.store import atomic_path, write_text_atomic


def register(sub: Any) -> None:
    """Add the ``report`` command to the ``study`` parser."""
    p = sub.add_parser("report", help="write RUN_DIR/report.html (self-contained) and report.md")
    p.add_argument("run_dir", help="a run directory written by `study run` or `study sbc`")
    p.set_defaults(func=command)


def _tables(inp: Any) -> list[tuple[str, pd.DataFrame]]:
    ds, summary = inp.ds, inp.summary
    measures = list(DEFAULT_MEASURES)
    out = []
    for engine in inp.engines:
        nc = int(summary["nonconverged"].sel(engine=engine).sum())
        fits = int(summary["replicates"].sel(engine=engine).sum())
        title = f"engine {engine}: {nc} of {fits} fits not converged (kept)"
        if "singular" in summary:
            title += f", {int(summary['singular'].sel(engine=engine).sum())} singular (kept)"
        if len(inp.conditions) > 1:
            out.append((title, grid_table(ds, summary, engine, measures)))
            continue
        one, sm = ds.isel(condition=0), summary.isel(condition=0)
        out.append((title, report_table(one, sm, engine)))
        out.append((f"engine {engine}: measures", measure_table(sm, engine, measures)))
    return out


def command(args: argparse.Namespace) -> int:
    """Write the report; print the paths."""
    t0 = time.perf_counter()
    run = Path(args.run_dir)
    if store_of(run).kind == "sbc":  # a simulation-based calibration run
        for path in report_sbc_run(run):
            print(path)
        return 0
    inp = plot_input(run)
    figures = []
    for stem, fig in build(list(FIGURES), inp, strict=False):
        png = png_bytes(fig)
        with atomic_path(run / "plots" / f"{stem}.png") as tmp:
            tmp.write_bytes(png)
        figures.append(ReportFigure(stem, FIGURES[inp.kinds[stem]].description, png))
    ds = inp.ds
    config = config_from_text(ds.attrs["config"], default_name=run.name, label=str(run))
    n = ds.sizes["replicate"]
    header = (
        f"{n} replicates of each of {len(inp.conditions)} condition(s), engines "
        f"{', '.join(inp.engines)}; config hash {ds.attrs.get('config_hash', '?')}, root seed "
        f"{ds.attrs.get('root_seed', '?')}"
        + ("; PARTIAL run" if is_partial(ds) else "")
        + "".join(f"; skipped {s}" for s in inp.skipped)
        + "".join(f"; {line}" for line in model_lines(config))
    )
    report = Report(
        title=f"lmm-study report: {ds.attrs.get('study', run.name)}",
        header=header,
        config=ds.attrs["config"],
        truth=truth_frame(config),
        tables=_tables(inp),
        figures=figures,
        failures=reasons_table(ds),
    )
    write_text_atomic(run / "report.html", report.html())
    write_text_atomic(run / "report.md", report.markdown("plots"))
    print(run / "report.html")
    print(run / "report.md")
    print(f"{len(figures)} figures in {time.perf_counter() - t0:.1f} s")
    return 0
