"""What a kind of study supplies to the analysis use cases: its summary, figures and
report, computed from its results Dataset (never from files: the use cases read and
write those)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.figure import Figure

    from study.analysis.report import Report, ReportFigure


def is_partial(ds: xr.Dataset) -> bool:
    """Whether some (condition, replicate) pair the run asked for is not done yet (of a
    Dataset of any kind: the pair dim is ``done``'s second).  With per-condition counts
    (the variable ``<pair>s_requested`` over condition), each condition's pairs done
    are compared with its own count; else every condition's with the attribute."""
    pair = str(ds["done"].dims[1])
    per_condition = f"{pair}s_requested"
    if per_condition in ds.data_vars:
        done = ds["done"].sum(pair).values
        return bool((done < ds[per_condition].values).any())
    requested = int(ds.attrs.get(f"{pair}s_requested", 0))
    return int(ds.sizes[pair]) < requested or not bool(ds["done"].all())


@dataclass
class Summary:
    """A run's summary: the Dataset (``summary.nc``), the text in the format asked
    for, and the Markdown a kind keeps beside its results (``summary.md``; ``None``:
    none)."""

    dataset: xr.Dataset
    text: str
    markdown: str | None = None


@dataclass
class Drawn:
    """Figures drawn for a run: ``(file stem, caption, Figure)`` each, and the reasons
    figures that do not apply were skipped."""

    figures: list[tuple[str, str, Figure]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: the summary the figures were drawn from (``None``: none), for the report
    summary: xr.Dataset | None = None


#: reads a kept posterior: (engine, condition id, replicate) -> DataTree or None
PosteriorReader = Any


class Views(Protocol):
    """A kind's analysis: see the module docstring.

    ``summary_options`` and ``figure_options`` are the keywords of :meth:`summarize`
    and :meth:`figures` the kind accepts beyond ``fmt`` (others are refused by the
    use case with the keyword's name).
    """

    name: str
    #: what such a run is, for messages ("a coverage study")
    title: str
    formats: tuple[str, ...]
    summary_options: tuple[str, ...]
    figure_options: tuple[str, ...]
    figure_names: tuple[str, ...]
    #: the measures with a Monte Carlo SE a precision target may name (``study run
    #: --mcse MEASURE=TARGET``); empty: the kind has none, its runs set their count
    mcse_measures: tuple[str, ...]

    def mcse(self, ds: xr.Dataset, measure: str) -> xr.DataArray:
        """The Monte Carlo SE of ``measure`` (one of :attr:`mcse_measures`) over the
        pairs done, with ``condition`` as its first dim; over any other dims (engine,
        term) a study's worst case is their largest, NaN ignored."""
        ...

    def summarize(self, ds: xr.Dataset, *, fmt: str, options: Mapping[str, Any]) -> Summary:
        """The run's summary (``options``: keywords of :attr:`summary_options`)."""
        ...

    def figures(
        self,
        ds: xr.Dataset,
        *,
        what: Sequence[str] | None,
        options: Mapping[str, Any],
        posterior: PosteriorReader,
        strict: bool,
    ) -> Drawn:
        """The figures ``what`` (``None``: all that apply)."""
        ...

    def report(
        self, ds: xr.Dataset, figures: list[ReportFigure], run_name: str, drawn: Drawn
    ) -> Report:
        """The report of the run, with its figures already drawn (``drawn``: what
        :meth:`figures` gave, its skipped reasons and summary)."""
        ...
