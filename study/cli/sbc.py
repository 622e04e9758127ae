"""``study sbc PRESET_OR_TOML``: simulation-based calibration of the Bayesian engine.

Runs the configuration as an SBC (its ``[sbc]`` table, or the defaults) on the study
runner (workers, Dask, shards, checkpoints, resume as ``study run``) into
``outputs/sbc/<name>`` and prints a verdict per term; ``study summarize``, ``study
plot`` and ``study report`` work on its directory as on any run's.
"""

from __future__ import annotations

import argparse
from typing import Any

from study.cli.run import add_run_options, execute, whole_number
from study.usecases.analysing import summarize
from study.usecases.running import as_calibration
from study.usecases.vocabulary import MAX_SIMULATIONS, PRESETS, default_out

#: ``--simulations N``
simulations_arg = whole_number(MAX_SIMULATIONS)


def register(sub: Any) -> None:
    """Add the ``sbc`` command to the ``study`` parser."""
    p = sub.add_parser(
        "sbc", help="simulation-based calibration of the Bayesian engine (ranks, PIT, verdicts)"
    )
    p.add_argument("config", help=f"preset name ({', '.join(PRESETS)}) or path to a TOML file")
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
    cfg = as_calibration(args.config, args.simulations)
    out = args.out if args.out is not None else str(default_out(cfg))
    report = execute(cfg, out, args, "simulations")
    if isinstance(report, int):
        return report
    print(summarize(out).text)
    print(report.results)
    return 0
