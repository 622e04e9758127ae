"""The analysis of a coverage study: measures with MCSEs, the figure catalog, the report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import xarray as xr

from study.analysis.design_tables import model_lines, truth_frame
from study.analysis.failures import reasons_table
from study.analysis.kinds.base import Drawn, PosteriorReader, Summary, is_partial
from study.analysis.measures import MEASURES, WITH_MCSE, compute_measures
from study.analysis.plots.catalog import FIGURES, PlotInput, build
from study.analysis.report import Report, ReportFigure
from study.analysis.tables import (
    COUNTS,
    DEFAULT_MEASURES,
    grid_table,
    measure_table,
    report_table,
    summary_text,
)
from study.design.config import config_from_text
from study.errors import UserError

#: measures the report's table shows beside the chosen ones
REPORT_MEASURES = ("mean_estimate", "mean_se")


def reference_engine(ds: xr.Dataset, reference: str | None) -> str:
    """The engine relative precision is measured against: ``reference``, checked, or
    the run's first engine."""
    engines = [str(e) for e in ds["engine"].values]
    if reference is None:
        return engines[0]
    if reference not in engines:
        raise UserError(
            f"reference={reference!r}: not an engine of this run; "
            f"choose one of {', '.join(engines)}"
        )
    return reference


def chosen_measures(measures: Sequence[str] | None) -> list[str]:
    """``measures``, checked (default: the standard set)."""
    chosen = list(measures) if measures else list(DEFAULT_MEASURES)
    unknown = [m for m in chosen if m not in MEASURES]
    if unknown:
        raise UserError(
            f"measures=...: unknown {', '.join(unknown)}; choose from {', '.join(MEASURES)}"
        )
    return chosen


class CoverageViews:
    """Summary, figures and report of a coverage study."""

    name = "coverage"
    title = "a coverage study"
    formats: tuple[str, ...] = ("table", "markdown", "csv")
    summary_options: tuple[str, ...] = (
        "measures",
        "exclude_nonconverged",
        "exclude_singular",
        "reference",
    )
    figure_options: tuple[str, ...] = ("replicate",)
    figure_names: tuple[str, ...] = tuple(FIGURES)
    mcse_measures: tuple[str, ...] = WITH_MCSE

    def mcse(self, ds: xr.Dataset, measure: str) -> xr.DataArray:
        """The MCSE of ``measure`` per (condition, engine, term), every fit kept (the
        summary's defaults: the first engine the reference)."""
        summary = compute_measures(ds, reference=reference_engine(ds, None), measures=[measure])
        out: xr.DataArray = summary["mcse"].sel(measure=measure, drop=True)
        return out.transpose("condition", ...)

    def summarize(self, ds: xr.Dataset, *, fmt: str, options: Mapping[str, Any]) -> Summary:
        """The chosen measures (``options``: measures, exclude_nonconverged,
        exclude_singular, reference), as summary.nc and text."""
        chosen = chosen_measures(options.get("measures"))
        reference = reference_engine(ds, options.get("reference"))
        exclude_nonconverged = bool(options.get("exclude_nonconverged", False))
        exclude_singular = bool(options.get("exclude_singular", False))
        wanted = list(dict.fromkeys([*REPORT_MEASURES, *COUNTS.values(), *chosen]))
        summary = compute_measures(
            ds,
            reference=reference,
            exclude_nonconverged=exclude_nonconverged,
            measures=wanted,
            exclude_singular=exclude_singular,
        )
        text = summary_text(
            ds,
            summary,
            fmt=fmt,
            measures=chosen,
            exclude_nonconverged=exclude_nonconverged,
            partial=is_partial(ds),
            exclude_singular=exclude_singular,
        )
        return Summary(summary, text)

    def plot_input(
        self, ds: xr.Dataset, posterior: PosteriorReader, replicate: int | None = None
    ) -> PlotInput:
        """What the catalog's figures are drawn from."""
        summary = compute_measures(ds, reference=reference_engine(ds, None))
        return PlotInput(ds, summary, posterior, replicate)

    def figures(
        self,
        ds: xr.Dataset,
        *,
        what: Sequence[str] | None,
        options: Mapping[str, Any],
        posterior: PosteriorReader,
        strict: bool,
    ) -> Drawn:
        inp = self.plot_input(ds, posterior, options.get("replicate"))
        names = list(FIGURES) if what is None else list(what)
        try:
            built = [
                (stem, FIGURES[inp.kinds[stem]].description, fig)
                for stem, fig in build(names, inp, strict=strict)
            ]
        except ValueError as err:
            raise UserError(str(err)) from err
        return Drawn(built, list(inp.skipped), inp.summary)

    def report(
        self, ds: xr.Dataset, figures: list[ReportFigure], run_name: str, drawn: Drawn
    ) -> Report:
        config = config_from_text(ds.attrs["config"], default_name=run_name, label=run_name)
        summary = drawn.summary
        if summary is None:
            summary = compute_measures(ds, reference=reference_engine(ds, None))
        engines = [str(e) for e in ds["engine"].values]
        n_cond = ds.sizes["condition"]
        per = ds["done"].sum("replicate").values
        reps = (
            f"{ds.sizes['replicate']} replicates of each of {n_cond} condition(s)"
            if per.min() == per.max()
            else f"{per.min()} to {per.max()} replicates in each of {n_cond} conditions"
        )
        header = (
            f"{reps}, engines "
            f"{', '.join(engines)}; config hash {ds.attrs.get('config_hash', '?')}, root seed "
            f"{ds.attrs.get('root_seed', '?')}"
            + ("; PARTIAL run" if is_partial(ds) else "")
            + "".join(f"; skipped {s}" for s in _grouped(drawn.skipped))
            + "".join(f"; {line}" for line in model_lines(config))
        )
        return Report(
            title=f"lmm-study report: {ds.attrs.get('study', run_name)}",
            header=header,
            config=ds.attrs["config"],
            truth=truth_frame(config),
            tables=_tables(ds, summary, engines),
            figures=figures,
            failures=reasons_table(ds),
        )


def _grouped(skipped: list[str]) -> list[str]:
    """``name: reason`` lines with one reason joined: ``trace, rank: no kept posterior``."""
    by_reason: dict[str, list[str]] = {}
    for line in skipped:
        name, _, reason = line.partition(": ")
        by_reason.setdefault(reason, []).append(name)
    return [f"{', '.join(names)}: {reason}" for reason, names in by_reason.items()]


def _tables(
    ds: xr.Dataset, summary: xr.Dataset, engines: list[str]
) -> list[tuple[str, pd.DataFrame]]:
    measures = list(DEFAULT_MEASURES)
    out = []
    for engine in engines:
        nc = int(summary["nonconverged"].sel(engine=engine).sum())
        fits = int(summary["replicates"].sel(engine=engine).sum())
        title = f"engine {engine}: {nc} of {fits} fits not converged (kept)"
        if "singular" in summary:
            title += f", {int(summary['singular'].sel(engine=engine).sum())} singular (kept)"
        if ds.sizes["condition"] > 1:
            out.append((title, grid_table(ds, summary, engine, measures)))
            continue
        one, sm = ds.isel(condition=0), summary.isel(condition=0)
        out.append((title, report_table(one, sm, engine)))
        out.append((f"engine {engine}: measures", measure_table(sm, engine, measures)))
    return out


COVERAGE_VIEWS = CoverageViews()
