"""Summaries, figures and reports of a run directory of any kind.

Each function opens the run (:func:`study.run.results.open_results`), asks the kind's
analysis (:mod:`study.analysis.kinds`) for what it wants, writes the files that belong
beside the run (``summary.nc``, ``plots/``, ``report.html``) atomically, and returns
what it made.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xarray as xr

from study.analysis.kinds import Drawn, Summary, Views, views_of
from study.analysis.report import ReportFigure, png_bytes
from study.errors import UserError
from study.run.results import kind_of_store, open_results, store_of
from study.run.store import Store, atomic_path, write_text_atomic

if TYPE_CHECKING:
    from models.spec import EngineSpec


def _views(ds: xr.Dataset, run_dir: str | Path) -> Views:
    """The analysis of the run's kind (the Dataset's ``kind``; for a results file
    written before kinds had names, the store's)."""
    kind = ds.attrs.get("kind") or kind_of_store(Path(run_dir)).name
    return views_of(str(kind))


def _options(views: Views, allowed: Sequence[str], given: Mapping[str, Any], what: str) -> dict:
    """The options ``given`` (None: not given), refused when the kind has no such."""
    given = {k: v for k, v in given.items() if v is not None and v is not False}
    extra = [k for k in given if k not in allowed]
    if extra:
        named = ", ".join(f"{k}=..." for k in extra)
        raise UserError(
            f"{named}: {'not options' if len(extra) > 1 else 'not an option'} of "
            f"{views.title}'s {what}; omit {'them' if len(extra) > 1 else 'it'}"
        )
    return given


def summarize(
    run_dir: str | Path,
    *,
    fmt: str = "table",
    measures: Sequence[str] | None = None,
    exclude_nonconverged: bool = False,
    exclude_singular: bool = False,
    reference: str | None = None,
    register: Sequence[EngineSpec] = (),
) -> Summary:
    """Summarise a run (measures with MCSEs; SBC verdicts); ``summary.nc`` (and the
    kind's ``summary.md``) written beside it.  ``fmt``: table, markdown or csv (for
    the kinds that have it).

    Raises
    ------
    UserError
        An unknown measure, a reference engine that is not in the run, an option the
        run's kind does not have; nothing is written then.
    """
    ds = open_results(run_dir, register=register)
    views = _views(ds, run_dir)
    if fmt not in views.formats:
        raise UserError(
            f"fmt={fmt!r}: the summary of {views.title} is one of {', '.join(views.formats)}"
        )
    options = _options(
        views,
        views.summary_options,
        {
            "measures": list(measures) if measures else None,
            "exclude_nonconverged": exclude_nonconverged,
            "exclude_singular": exclude_singular,
            "reference": reference,
        },
        "summary",
    )
    summary = views.summarize(ds, fmt=fmt, options=options)
    store = store_of(run_dir)
    store.write_summary(summary.dataset)
    if summary.markdown is not None:
        write_text_atomic(store.path / "summary.md", summary.markdown + "\n")
    return summary


def _posterior_reader(store: Store, ds: xr.Dataset) -> Any:
    """(engine, condition id, replicate) -> the kept posterior, or None."""
    ids = [str(c) for c in ds["condition_id"].values]
    labels = dict(zip(ids, map(str, ds["condition"].values), strict=True))
    multi = len(ids) > 1

    def read(engine: str, condition: str, replicate: int) -> Any:
        path = store.posterior_path(engine, condition, replicate, labels.get(condition, ""))
        if not multi or not path.is_file():  # one condition, or a run before labels
            path = store.posterior_path(engine, condition, replicate)
        if not path.is_file():
            return None
        try:
            return xr.open_datatree(path).load()
        except (OSError, ValueError) as err:
            raise UserError(f"{path} cannot be read ({err}); delete it") from err

    return read


def figures(
    run_dir: str | Path,
    *,
    what: Sequence[str] | None = None,
    replicate: int | None = None,
    strict: bool | None = None,
    register: Sequence[EngineSpec] = (),
) -> Drawn:
    """The figures of a run (``what``: names of the kind's figures; default all that
    apply), as matplotlib Figures, nothing written.  ``strict`` (default: when
    ``what`` is given) refuses a figure that cannot be drawn instead of skipping it.
    ``register``: the engines of one's own the run was made with."""
    ds = open_results(run_dir, register=register)
    views = _views(ds, run_dir)
    if what is not None:
        what = list(dict.fromkeys(what))
        unknown = [n for n in what if n not in views.figure_names]
        if unknown or not what:
            raise UserError(
                f"what=...: unknown figure {', '.join(unknown) or '(none given)'}; "
                f"choose from {', '.join(views.figure_names)}"
            )
    options = _options(views, views.figure_options, {"replicate": replicate}, "figures")
    return views.figures(
        ds,
        what=what,
        options=options,
        posterior=_posterior_reader(store_of(run_dir), ds),
        strict=what is not None if strict is None else strict,
    )


@dataclass
class Plotted:
    """Files ``plot`` wrote, the reasons figures were skipped, the seconds it took."""

    paths: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def plot(
    run_dir: str | Path,
    *,
    what: Sequence[str] | None = None,
    replicate: int | None = None,
    fmt: str = "png",
    out: str | Path | None = None,
    register: Sequence[EngineSpec] = (),
) -> Plotted:
    """Draw a run's figures into ``out`` (default ``RUN_DIR/plots``), one file each."""
    t0 = time.perf_counter()
    drawn = figures(run_dir, what=what, replicate=replicate, register=register)
    where = Path(out) if out is not None else Path(run_dir) / "plots"
    paths = []
    for stem, _, fig in drawn.figures:
        path = where / f"{stem}.{fmt}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=100)
        paths.append(path)
    return Plotted(paths, drawn.skipped, time.perf_counter() - t0)


@dataclass
class Reported:
    """The report's files (report.html, report.md), its figure files, the seconds."""

    paths: list[Path]
    figures: list[Path]
    skipped: list[str]
    seconds: float


def report(run_dir: str | Path, *, register: Sequence[EngineSpec] = ()) -> Reported:
    """Write ``RUN_DIR/report.html`` (self-contained) and ``report.md`` beside its
    figures (``plots/*.png``)."""
    t0 = time.perf_counter()
    run = Path(run_dir)
    ds = open_results(run, register=register)
    views = _views(ds, run)
    drawn = views.figures(
        ds, what=None, options={}, posterior=_posterior_reader(store_of(run), ds), strict=False
    )
    embedded, files = [], []
    for stem, caption, fig in drawn.figures:
        png = png_bytes(fig)
        with atomic_path(run / "plots" / f"{stem}.png") as tmp:
            tmp.write_bytes(png)
        embedded.append(ReportFigure(stem, caption, png))
        files.append(run / "plots" / f"{stem}.png")
    doc = views.report(ds, embedded, run.name, drawn)
    write_text_atomic(run / "report.html", doc.html())
    write_text_atomic(run / "report.md", doc.markdown("plots"))
    paths = [run / "report.html", run / "report.md"]
    return Reported(paths, files, drawn.skipped, time.perf_counter() - t0)
