"""The figures ``study plot`` and ``study report`` draw, by name.

Each entry builds one or more ``(file stem, Figure)`` pairs from a :class:`PlotInput`
(the results, their summary, and a way to read a kept posterior); the stems say what a
file shows (``coverage``, ``zip-bayes``, ``trace-bayes-r0``, and ``--groups=5,...`` per
condition of a grid).  Figures that do not apply to a run (a grid figure for one
condition, an engine comparison with one engine) are skipped, with the reason kept in
:attr:`Plotted.skipped`; asking for a posterior figure of a run that kept none is a
:class:`ValueError` the CLI turns into one line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import xarray as xr
from matplotlib.figure import Figure

from study.analysis.plots import compare, grid, posterior
from study.analysis.plots import diagnostics as dg
from study.analysis.plots import measures as pm

#: reads a kept posterior: (engine, condition id, replicate) -> DataTree or None
PosteriorReader = Callable[[str, str, int], Any]
Built = Iterator[tuple[str, Figure]]


@dataclass
class PlotInput:
    """What the figures are drawn from."""

    ds: xr.Dataset
    summary: xr.Dataset
    posterior: PosteriorReader = field(default=lambda engine, condition, replicate: None)
    replicate: int | None = None
    skipped: list[str] = field(default_factory=list)
    #: file stem -> the figure kind that drew it (filled by :func:`build`)
    kinds: dict[str, str] = field(default_factory=dict)

    @property
    def conditions(self) -> list[str]:
        return [str(c) for c in self.ds["condition"].values]

    @property
    def engines(self) -> list[str]:
        return [str(e) for e in self.ds["engine"].values]


def slug(label: str) -> str:
    """A condition label as a file-name part: ``groups=5, group_size=20`` ->
    ``groups=5_group_size=20``."""
    return re.sub(r"[^A-Za-z0-9=._-]+", "_", label.replace(", ", "_")).strip("_")


def _per_condition(inp: PlotInput, stem: str, make: Callable[[str], Figure]) -> Built:
    """One figure per condition (the stem alone for a one-condition study)."""
    for label in inp.conditions:
        name = stem if len(inp.conditions) == 1 else f"{stem}--{slug(label)}"
        yield name, make(label)


def _coverage(inp: PlotInput) -> Built:
    yield from _per_condition(inp, "coverage", lambda c: pm.coverage(inp.summary, condition=c))


def _zip(inp: PlotInput) -> Built:
    for engine in inp.engines:

        def make(c: str, e: str = engine) -> Figure:
            return pm.zip_plot(inp.ds, engine=e, condition=c)

        yield from _per_condition(inp, f"zip-{engine}", make)


def _calibration(inp: PlotInput) -> Built:
    yield from _per_condition(
        inp, "calibration", lambda c: pm.calibration(inp.summary, condition=c)
    )


def _bias(inp: PlotInput) -> Built:
    yield from _per_condition(inp, "bias", lambda c: pm.bias_relerr(inp.summary, condition=c))


def _engines(inp: PlotInput) -> Built:
    if len(inp.engines) < 2:
        inp.skipped.append("engines: needs two engines in the run")
        return
    first, *others = inp.engines
    for other in others:  # each engine against the run's first

        def make(c: str, b: str = other) -> Figure:
            return compare.engines_compared(inp.ds, a=first, b=b, condition=c)

        yield from _per_condition(inp, f"engines-{first}-vs-{other}", make)


def _estimates(inp: PlotInput) -> Built:
    yield from _per_condition(inp, "estimates", lambda c: compare.estimates(inp.ds, condition=c))


def _grid(inp: PlotInput) -> Built:
    if len(inp.conditions) < 2:
        inp.skipped.append("grid: the run has one condition")
        return
    # rejection: type I error where the effect is 0, power elsewhere (a cluster trial)
    for measure in ("coverage", "modse_truese", "bias", "rejection"):
        yield f"grid-lines-{measure}", grid.grid_lines(inp.summary, measure)
    for measure in ("coverage", "modse_truese"):
        yield f"grid-heatmap-{measure}", grid.grid_heatmap(inp.summary, measure)


def _convergence(inp: PlotInput) -> Built:
    yield from _per_condition(inp, "convergence", lambda c: dg.convergence(inp.ds, condition=c))


def _fit_times(inp: PlotInput) -> Built:
    yield from _per_condition(inp, "fit-times", lambda c: dg.fit_times(inp.ds, condition=c))


def _failures(inp: PlotInput) -> Built:
    yield "failures", dg.failures_figure(inp.ds)


def _kept(inp: PlotInput) -> list[tuple[str, str, int, Any]]:
    """(engine, condition label, replicate, tree) of the kept posteriors to draw."""
    ids = dict(zip(inp.conditions, map(str, inp.ds["condition_id"].values), strict=True))
    replicates = [inp.replicate] if inp.replicate is not None else list(range(3))
    out = []
    for label, cid in ids.items():
        for engine in inp.engines:
            for r in replicates:
                tree = inp.posterior(engine, cid, r)
                if tree is not None:
                    out.append((engine, label, r, tree))
                    break  # the first kept replicate of each engine and condition
    if not out:
        which = f"replicate {inp.replicate}" if inp.replicate is not None else "any replicate"
        raise ValueError(
            f"no kept posterior for {which} in this run; posteriors are kept for the first "
            "keep_draws replicates of engines with draws (bayes): pick one with --replicate"
        )
    return out


def _posterior(kind: str, draw: Callable[..., Figure]) -> Callable[[PlotInput], Built]:
    def build(inp: PlotInput) -> Built:
        many = len(inp.conditions) > 1
        for engine, label, r, tree in _kept(inp):
            where = f"--{slug(label)}" if many else ""
            title = f"{engine}, replicate {r}" + (f", {label}" if many else "")
            yield f"{kind}-{engine}-r{r}{where}", draw(tree, title=title)

    return build


def _intervals(inp: PlotInput) -> Built:
    r = inp.replicate if inp.replicate is not None else int(inp.ds["replicate"].values[0])
    if r not in inp.ds["replicate"].values:
        raise ValueError(
            f"--replicate {r}: not in this run (it has 0..{inp.ds.sizes['replicate'] - 1})"
        )
    yield from _per_condition(
        inp, f"intervals-r{r}", lambda c: dg.intervals(inp.ds, replicate=r, condition=c)
    )


@dataclass(frozen=True)
class FigureKind:
    """A figure ``study plot --what NAME`` draws."""

    name: str
    description: str
    build: Callable[[PlotInput], Built]
    posterior: bool = False


FIGURES: dict[str, FigureKind] = {
    f.name: f
    for f in (
        FigureKind(
            "coverage", "coverage per engine and term, nominal level and MC band", _coverage
        ),
        FigureKind("zip", "zip plot per engine: intervals ranked by |z|, covering or not", _zip),
        FigureKind("calibration", "ModSE/TrueSE and EmpSE/TrueSE with MCSE bars", _calibration),
        FigureKind("bias", "bias and relative error of the model SE (forest)", _bias),
        FigureKind(
            "engines", "each engine against the first, per replicate, and Bland-Altman", _engines
        ),
        FigureKind("estimates", "distribution of estimates with the true value", _estimates),
        FigureKind("grid", "measures across the conditions of a grid, heat maps", _grid),
        FigureKind("convergence", "R-hat, ESS and divergences across replicates", _convergence),
        FigureKind("fit-times", "fit time per engine across replicates", _fit_times),
        FigureKind("failures", "failed fits per engine (and condition)", _failures),
        FigureKind(
            "trace",
            "trace and density of a kept posterior",
            _posterior("trace", posterior.trace),
            True,
        ),
        FigureKind(
            "rank", "rank plots of a kept posterior", _posterior("rank", posterior.rank), True
        ),
        FigureKind(
            "energy", "energy of a kept posterior", _posterior("energy", posterior.energy), True
        ),
        FigureKind("ess", "local ESS of a kept posterior", _posterior("ess", posterior.ess), True),
        FigureKind("intervals", "every engine's intervals for one replicate", _intervals),
    )
}


def build(names: list[str], inp: PlotInput, *, strict: bool) -> Built:
    """The figures ``names`` of ``inp``.  Posterior figures of a run without kept
    posteriors raise (``strict``, the user asked for them) or are skipped."""
    for name in names:
        kind = FIGURES[name]
        try:
            for stem, fig in kind.build(inp):
                inp.kinds[stem] = name
                yield stem, fig
        except ValueError as err:
            if strict or not kind.posterior:
                raise
            inp.skipped.append(f"{name}: {err}")
