"""The analysis of a power study: power beside type I error, its figure, the report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import xarray as xr

from study.analysis.failures import reasons_table
from study.analysis.kinds.base import Drawn, PosteriorReader, Summary
from study.analysis.power import POWER_NOTE, factors, power_frame, power_summary, power_text
from study.analysis.report import Report, ReportFigure
from study.errors import UserError

#: the measures a power run can target with ``--mcse``
MCSE_MEASURES = ("rejection",)


def _failures(ds: xr.Dataset) -> pd.DataFrame:
    """Failed fits grouped by reason, on the data and on the null twins."""
    frames = []
    for hyp in map(str, ds["hypothesis"].values):
        table = reasons_table(ds.sel(hypothesis=hyp))
        table.insert(1, "hypothesis", hyp)
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


class PowerViews:
    """Summary, figures and report of a power study."""

    name = "power"
    title = "a power study"
    formats: tuple[str, ...] = ("table", "markdown", "csv")
    summary_options: tuple[str, ...] = ("exclude_nonconverged",)
    figure_options: tuple[str, ...] = ("factor", "term")
    figure_names: tuple[str, ...] = ("power",)
    mcse_measures: tuple[str, ...] = MCSE_MEASURES

    def summarize(self, ds: xr.Dataset, *, fmt: str, options: Mapping[str, Any]) -> Summary:
        summary = power_summary(ds, bool(options.get("exclude_nonconverged", False)))
        markdown = power_text(summary, "markdown")
        text = markdown if fmt == "markdown" else power_text(summary, fmt)
        return Summary(summary, text, markdown)

    def mcse(self, ds: xr.Dataset, measure: str) -> xr.DataArray:
        """The MCSE of the rejection rates (power and type I error of every test and
        term), condition first."""
        if measure not in MCSE_MEASURES:
            raise UserError(
                f"--mcse {measure}: a power study's measure is {', '.join(MCSE_MEASURES)}"
            )
        return power_summary(ds)["mcse"]

    def figures(
        self,
        ds: xr.Dataset,
        *,
        what: Sequence[str] | None,
        options: Mapping[str, Any],
        posterior: PosteriorReader,
        strict: bool,
    ) -> Drawn:
        from study.analysis.plots.power import power_caption, power_figure

        summary = power_summary(ds)
        factor = options.get("factor")
        if factor is not None and factor not in factors(summary):
            raise UserError(
                f"factor={factor!r}: not a factor of this run; choose one of "
                f"{', '.join(factors(summary)) or '(none: the run has one condition)'}"
            )
        terms = [str(t) for t in summary["term"].values]
        term = options.get("term")
        if term is not None and term not in terms:
            raise UserError(f"term={term!r}: not a tested term; choose one of {', '.join(terms)}")
        drawn = Drawn(summary=summary)
        if what is not None and "power" not in what:
            return drawn
        for t in [term] if term else terms:
            stem = "power" if len(terms) == 1 else f"power-{t}"
            drawn.figures.append(
                (
                    stem,
                    power_caption(summary, factor, t),
                    power_figure(summary, factor=factor, term=t),
                )
            )
        return drawn

    def report(
        self, ds: xr.Dataset, figures: list[ReportFigure], run_name: str, drawn: Drawn
    ) -> Report:
        summary = drawn.summary if drawn.summary is not None else power_summary(ds)
        done = int(ds["done"].sum())
        tests = ", ".join(map(str, ds["test"].values))
        header = (
            f"power study: {done} replicates over {ds.sizes['condition']} condition(s), each "
            f"with its null twin; tests {tests}; alpha {ds.attrs.get('alpha')}, target power "
            f"{ds.attrs.get('target')}; config hash {ds.attrs.get('config_hash', '?')}, root "
            f"seed {ds.attrs.get('root_seed')}"
        )
        truth = summary[["z_power"]].to_dataframe().reset_index()
        truth = truth.drop_duplicates(["condition", "term"])
        keep = ["condition", *factors(summary), "term"]
        truth = truth[[c for c in keep if c in truth.columns] + ["z_power"]]
        truth["true value"] = [
            float(ds["true_value"].sel(condition=c, term=t))
            for c, t in zip(truth["condition"], truth["term"], strict=True)
        ]
        truth["true SE"] = [
            float(ds["true_se"].sel(condition=c, term=t))
            for c, t in zip(truth["condition"], truth["term"], strict=True)
        ]
        truth["null"] = [float(ds["null_value"].sel(term=t)) for t in truth["term"]]
        return Report(
            title=f"lmm-study power report: {ds.attrs.get('study', run_name)}",
            header=header,
            config=str(ds.attrs["config"]),
            truth=truth,
            tables=[("power and type I error per test", power_frame(summary))],
            figures=figures,
            failures=_failures(ds),
            notes=POWER_NOTE.format(alpha=float(ds.attrs["alpha"])),
            truth_heading="Truth of the tested terms (and a z test's power with the true SE)",
            tables_heading="Power beside type I error",
        )


POWER_VIEWS = PowerViews()
