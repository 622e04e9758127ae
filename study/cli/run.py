"""``study run PRESET_OR_TOML``: run, resume or extend a study."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from models.registry import ENGINE_NAMES
from study.cli.progress import make_progress
from study.design.config import MAX_REPLICATES, load_config
from study.run.runner import run_study


def engines_arg(text: str) -> tuple[str, ...]:
    """``--engines a,b``: distinct known engine names."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in ENGINE_NAMES]
    if not names or bad or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"--engines {text!r}: give distinct names from {', '.join(ENGINE_NAMES)}, "
            "comma-separated (e.g. reml,bayes)"
        )
    return names


def replicates_arg(text: str) -> int:
    """``--replicates N``: a whole number in 1..MAX_REPLICATES."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_REPLICATES:
        raise argparse.ArgumentTypeError(
            f"{text!r}: must be a whole number from 1 to {MAX_REPLICATES:,}"
        )
    return value


def register(sub: Any) -> None:
    """Add the ``run`` command to the ``study`` parser."""
    p = sub.add_parser("run", help="run (or resume, or extend) a study")
    p.add_argument("config", help="preset name (default, seed) or path to a TOML file")
    p.add_argument("--replicates", type=replicates_arg, help="number of replicates")
    p.add_argument("--engines", type=engines_arg, help="comma-separated engines: reml,bayes")
    p.add_argument("--out", help="run directory (default outputs/<study name>)")
    p.add_argument(
        "--overwrite", action="store_true", help="discard a previous run in the directory"
    )
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Run the study; exit 130 on Ctrl-C after saving what is finished."""
    cfg = load_config(args.config)
    if args.replicates is not None:
        cfg = cfg.with_replicates(args.replicates)
    if args.engines is not None:
        cfg = cfg.with_engines(args.engines)
    out = args.out if args.out is not None else f"outputs/{cfg.name}"
    try:
        report = run_study(cfg, out, overwrite=args.overwrite, progress=make_progress())
    except KeyboardInterrupt:
        print(
            f"study: interrupted; finished replicates are saved in {out}; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    print(f"{report.path / 'results.nc'}")
    return 0
