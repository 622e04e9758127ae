"""The analysis of a simulation-based calibration: verdicts per term, rank histograms and
PIT-ECDF differences, the report."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from study.analysis.failures import reasons_table
from study.analysis.kinds.base import Drawn, PosteriorReader, Summary
from study.analysis.plots.catalog import slug
from study.analysis.plots.sbc import ecdf_difference, rank_histograms
from study.analysis.report import Report, ReportFigure
from study.analysis.sbc import sbc_frame, sbc_markdown, sbc_table, summarize_sbc, term_alpha

#: family-wise level of the uniformity tests of a run (Bonferroni over all its tests)
ALPHA = 0.05

SBC_NOTES = (
    "Ranks: each true value among its fit's posterior draws thinned by ESS; PIT = "
    "(rank + U(0,1)) / number of ranks, uniform when the posterior is computed right. "
    "A term passes when the ECDF of its PIT values stays inside the simultaneous band "
    "(Saeilynoja et al. 2022; gamma: the smallest two-sided binomial tail probability of "
    "the ECDF, p: its Monte Carlo p-value); the level is 0.05 Bonferroni-adjusted over the "
    "terms.  Non-converged fits are kept in the test and counted."
)


def sbc_figures(ds: xr.Dataset) -> Iterator[tuple[str, str, Figure]]:
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


def _prior_frame(ds: xr.Dataset) -> pd.DataFrame:
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


class SbcViews:
    """Verdicts, figures and report of an SBC run (every term is tested: no options)."""

    name = "sbc"
    title = "a simulation-based calibration"
    formats: tuple[str, ...] = ("table", "markdown")
    summary_options: tuple[str, ...] = ()
    figure_options: tuple[str, ...] = ()
    figure_names: tuple[str, ...] = ("sbc-ranks", "sbc-ecdf")
    #: a rank test has no per-measure Monte Carlo SE: an SBC sets its simulations
    mcse_measures: tuple[str, ...] = ()

    def mcse(self, ds: xr.Dataset, measure: str) -> xr.DataArray:
        raise KeyError(f"{measure!r}: an SBC has no measure with a Monte Carlo SE")

    def summarize(self, ds: xr.Dataset, *, fmt: str, options: Mapping[str, Any]) -> Summary:
        summary = summarize_sbc(ds, ALPHA)
        markdown = sbc_markdown(summary)
        return Summary(summary, markdown if fmt == "markdown" else sbc_table(summary), markdown)

    def figures(
        self,
        ds: xr.Dataset,
        *,
        what: Sequence[str] | None,
        options: Mapping[str, Any],
        posterior: PosteriorReader,
        strict: bool,
    ) -> Drawn:
        wanted = self.figure_names if what is None else tuple(what)
        return Drawn([f for f in sbc_figures(ds) if any(f[0].startswith(f"{n}-") for n in wanted)])

    def report(
        self, ds: xr.Dataset, figures: list[ReportFigure], run_name: str, drawn: Drawn
    ) -> Report:
        summary = summarize_sbc(ds, ALPHA)
        a_term = float(summary.attrs["alpha_term"])
        done = int(ds["done"].sum())
        requested = int(ds.attrs.get("simulations_requested", done))
        header = (
            f"simulation-based calibration: {done} simulations over {ds.sizes['condition']} "
            f"condition(s) ({requested} per condition requested), engines "
            f"{', '.join(map(str, ds['engine'].values))}; parameters drawn from the priors "
            f"of {ds.attrs.get('prior_from', '?')} (scales x "
            f"{ds.attrs.get('generator_prior_scale')}); config hash "
            f"{ds.attrs.get('config_hash', '?')}, root seed {ds.attrs.get('root_seed')}"
        )
        return Report(
            title=f"lmm-study SBC report: {ds.attrs.get('study', run_name)}",
            header=header,
            config=str(ds.attrs["config"]),
            truth=_prior_frame(ds),
            tables=[
                (
                    f"verdicts: a {100 * (1 - a_term):.3g}% simultaneous band per term",
                    sbc_frame(summary),
                )
            ],
            figures=figures,
            failures=reasons_table(ds.rename(simulation="replicate")),
            notes=SBC_NOTES,
            truth_heading="Parameters drawn from the prior (over the simulations run)",
            tables_heading="Uniformity of the ranks, per term",
        )


SBC_VIEWS = SbcViews()
