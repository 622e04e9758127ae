"""``study plot RUN_DIR``: the figures of a run, one file each."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from study.analysis.measures import compute_measures
from study.analysis.plots.catalog import FIGURES, PlotInput, build, parse_what
from study.cli.sbc import plot_sbc_run
from study.errors import UserError
from study.run.results import open_results, store_of
from study.run.store import Store, atomic_path


def register(sub: Any) -> None:
    """Add the ``plot`` command to the ``study`` parser."""
    p = sub.add_parser("plot", help="draw the figures of a run (one file each)")
    p.add_argument("run_dir", help="a run directory written by `study run` or `study sbc`")
    p.add_argument("--what", help=f"comma-separated figures (default all): {', '.join(FIGURES)}")
    p.add_argument("--replicate", type=int, help="replicate for posterior figures")
    p.add_argument("--format", choices=("png", "svg"), default="png")
    p.add_argument("--out", help="directory for the files (default RUN_DIR/plots)")
    p.set_defaults(func=command)


def plot_input(run_dir: str | Path, replicate: int | None = None) -> PlotInput:
    """The results of a run, their summary and its kept posteriors, ready to draw."""
    ds = open_results(run_dir)
    store = Store(run_dir)
    engines = [str(e) for e in ds["engine"].values]
    reference = "reml" if "reml" in engines else engines[0]

    def posterior(engine: str, condition: str, r: int) -> Any:
        path = store.posterior_path(engine, condition, r)
        if not path.is_file():
            return None
        import xarray as xr

        try:
            return xr.open_datatree(path).load()
        except (OSError, ValueError) as err:
            raise UserError(f"{path} cannot be read ({err}); delete it") from err

    return PlotInput(ds, compute_measures(ds, reference=reference), posterior, replicate)


def command(args: argparse.Namespace) -> int:
    """Draw the figures asked for; print where each file went."""
    try:
        names = parse_what(args.what)
    except ValueError as err:
        raise UserError(str(err)) from err
    t0 = time.perf_counter()
    out = Path(args.out) if args.out else Path(args.run_dir) / "plots"
    if store_of(args.run_dir).kind == "sbc":  # rank histograms and PIT-ECDF differences
        if args.what is not None or args.replicate is not None:
            option = "--what" if args.what is not None else "--replicate"
            raise UserError(f"{option}: an SBC run draws its rank and PIT-ECDF figures; omit it")
        paths = plot_sbc_run(args.run_dir, out, args.format)
        print("\n".join(map(str, paths)))
        print(f"{len(paths)} figures in {time.perf_counter() - t0:.1f} s")
        return 0
    inp = plot_input(args.run_dir, args.replicate)
    try:
        figures = list(build(names, inp, strict=args.what is not None))
    except ValueError as err:
        raise UserError(str(err)) from err
    for stem, fig in figures:
        with atomic_path(out / f"{stem}.{args.format}") as tmp:
            fig.savefig(tmp, format=args.format, dpi=100)
        print(out / f"{stem}.{args.format}")
    for reason in inp.skipped:
        print(f"skipped {reason}")
    print(f"{len(figures)} figures in {time.perf_counter() - t0:.1f} s")
    return 0
