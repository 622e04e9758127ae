"""``study run PRESET_OR_TOML``: run, resume or extend a study."""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from study.cli.flags import as_flags
from study.cli.progress import make_progress
from study.errors import FitFailed, RunError
from study.usecases.running import (
    PrecisionReport,
    RunReport,
    StopRequest,
    check_command,
    configured,
    make_executor,
    run,
)
from study.usecases.vocabulary import (
    MAX_REPLICATES,
    PRESETS,
    Shard,
    default_out,
    engine_names,
    is_engine_label,
    parse_shard,
    render,
)

if TYPE_CHECKING:
    from study.usecases.vocabulary import StudyConfig


def engines_arg(text: str) -> tuple[str, ...]:
    """``--engines a,b``: distinct known engine names."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if not is_engine_label(n)]
    if not names or bad or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"--engines {text!r}: give distinct names from {', '.join(engine_names())} "
            "(or variants configured as [engines.NAME-SUFFIX]), comma-separated "
            "(e.g. reml,bayes)"
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


#: most local worker processes (each one holds its compiled engines)
MAX_WORKERS = 256


def whole_number(high: int, note: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number from 1 to ``high`` (``note`` says more)."""

    def parse(text: str) -> int:
        value = int(text) if text.strip().isdigit() else 0
        if not 1 <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{text!r}: must be a whole number from 1 to {high:,}{note}"
            )
        return value

    return parse


#: ``--workers N``
workers_arg = whole_number(MAX_WORKERS, " (1 = in this process)")
#: ``--batch-size N``
batch_size_arg = whole_number(10_000)


def shard_arg(text: str) -> Shard:
    """``--shard I/N`` or ``--shard slurm/N``."""
    try:
        return parse_shard(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix(f"--shard {text!r}: ")) from err


def scheduler_arg(text: str) -> str:
    """``--scheduler ADDRESS``: a Dask scheduler address (tcp://host:port, host:port)."""
    if not text.strip() or " " in text.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: give an address like tcp://host:8786")
    return text.strip()


def mcse_arg(text: str) -> dict[str, float]:
    """``--mcse MEASURE=TARGET[,MEASURE=TARGET...]``: MCSE targets, each a number > 0
    (the measures are checked against the study's kind when it is known)."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        name, eq, value = part.partition("=")
        if not eq or not name.strip():
            raise argparse.ArgumentTypeError(
                f"{part!r}: give MEASURE=TARGET, e.g. coverage=0.005 (comma-separated)"
            )
        try:
            target = float(value)
        except ValueError:
            target = float("nan")
        if not (math.isfinite(target) and target > 0):
            raise argparse.ArgumentTypeError(
                f"{part!r}: the target must be a number > 0, e.g. {name.strip()}=0.005"
            )
        out[name.strip()] = target
    return out


def register(sub: Any) -> None:
    """Add the ``run`` command to the ``study`` parser."""
    p = sub.add_parser("run", help="run (or resume, or extend) a study")
    p.add_argument("config", help=f"preset name ({', '.join(PRESETS)}) or path to a TOML file")
    p.add_argument("--replicates", type=replicates_arg, help="number of replicates")
    p.add_argument(
        "--engines",
        type=engines_arg,
        help=f"comma-separated engines ({', '.join(engine_names())}, or variants), e.g. reml,gee",
    )
    p.add_argument("--out", help="run directory (default outputs/<study name>)")
    add_run_options(p, "replicate")
    p.set_defaults(func=command)


def add_run_options(p: argparse.ArgumentParser, unit: str) -> None:
    """The options every runner command shares: where it runs, how it stops."""
    p.add_argument(
        "--overwrite", action="store_true", help="discard a previous run in the directory"
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=workers_arg,
        help="local worker processes (default: one per core; 1 = in this process)",
    )
    where.add_argument(
        "--scheduler",
        type=scheduler_arg,
        metavar="ADDRESS",
        help="run on the Dask distributed cluster at ADDRESS (e.g. tcp://host:8786)",
    )
    p.add_argument(
        "--shard",
        type=shard_arg,
        metavar="I/N",
        help="run shard I of N (or slurm/N: I from SLURM_ARRAY_TASK_ID); then `study merge`",
    )
    p.add_argument(
        "--batch-size",
        type=batch_size_arg,
        metavar="N",
        help=f"(condition, {unit}) pairs per task (default 2 for workers, 10 for Dask)",
    )
    p.add_argument(
        "--mcse",
        type=mcse_arg,
        action="append",
        metavar="MEASURE=TARGET",
        help="extend each condition in rounds until the Monte Carlo SE of MEASURE (its "
        "worst over engines and terms) is at most TARGET, e.g. coverage=0.005; "
        "repeat or comma-separate for several",
    )
    p.add_argument(
        "--max-replicates",
        type=whole_number(MAX_REPLICATES),
        metavar="N",
        help=f"with --mcse: at most N {unit}s per condition (default 20 x the configuration's)",
    )
    p.add_argument(
        "--fail-fast",
        action="store_true",
        help="stop at the first fit that fails or does not converge and print its "
        "traceback (for debugging; by default failures are recorded and the run goes on)",
    )


#: seconds a stopped run with worker processes may take to shut down before it leaves
EXIT_GRACE = 10.0


def _stopped(code: int, executor: Any, workers: int | None = None) -> int:
    """The exit code of a run stopped early; with worker processes, a watchdog too.

    By then every finished replicate is saved (pieces fsynced, results written, the
    lock released) and the workers are killed.  But a ProcessPoolExecutor whose
    workers were killed can hang interpreter shutdown (its exit hook joins a manager
    thread that may wait on a queue nobody reads: seen in about 1 of 30 SIGTERMs to a
    process group under load), and a scheduler's SIGTERM must not end in a SIGKILL at
    the end of its grace period.  So a daemon timer ends the process with ``code`` if
    the normal shutdown (which lets multiprocessing clean up its semaphores) has not
    finished within :data:`EXIT_GRACE` seconds.
    """
    if (workers if executor is None else executor.workers) != 1:
        timer = threading.Timer(EXIT_GRACE, _leave, args=(code,))
        timer.daemon = True
        timer.start()
    return code


def _leave(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _unraisable(info: Any) -> None:
    """Python's hook for exceptions it cannot raise (in a finalizer, a weakref
    callback): a stop request that landed there is not an error (the runner sees the
    request after its next batch), so it is not printed as a traceback."""
    if isinstance(info.exc_value, KeyboardInterrupt):
        return
    sys.__unraisablehook__(info)


def command(args: argparse.Namespace) -> int:
    """Run the study.  Ctrl-C (exit 130) and SIGTERM (exit 143, a
    scheduler at walltime) stop it after saving what is finished; ``--fail-fast`` stops
    at the first failing fit and prints its traceback (exit 1)."""
    cfg = configured(args.config, replicates=args.replicates, engines=args.engines)
    check_command(cfg, "study run", args.config)
    out = args.out if args.out is not None else str(default_out(cfg))
    report = execute(cfg, out, args, "replicates")
    if isinstance(report, int):
        return report
    if isinstance(report, PrecisionReport) and report.plan is not None:
        print(render(report.plan.frame(), digits=5))
    print(report.results)
    return 0


def targets_of(args: argparse.Namespace) -> dict[str, float] | None:
    """The ``--mcse`` targets of ``args``, every occurrence merged (``None``: none)."""
    given = getattr(args, "mcse", None)
    if not given:
        return None
    return {k: v for part in given for k, v in part.items()}


def _note(line: str) -> None:
    print(f"study: {line}", file=sys.stderr, flush=True)


def execute(cfg: StudyConfig, out: str, args: argparse.Namespace, unit: str) -> RunReport | int:
    """Run ``cfg`` into ``out`` with the runner options of ``args``: the report, or the
    exit code when the run stopped (a signal, ``--fail-fast``, a shard's part done)."""
    targets = targets_of(args)
    # rounds start their own executors (a Dask client is closed after each)
    executor = None if targets else make_executor(args.workers, args.scheduler, args.batch_size)
    stop = StopRequest()

    def on_signal(signum: int, frame: object) -> None:
        stop(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    sys.unraisablehook, hook = _unraisable, sys.unraisablehook
    try:
        report = run(
            cfg,
            out,
            overwrite=args.overwrite,
            progress=make_progress(noun=unit),
            executor=executor,
            workers=args.workers,
            scheduler=args.scheduler,
            batch_size=args.batch_size,
            shard=args.shard,
            fail_fast=args.fail_fast,
            stop=stop,
            mcse=targets,
            max_replicates=getattr(args, "max_replicates", None),
            notify=_note,
        )
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", signal.SIGINT)
        name = signal.Signals(signum).name
        how = "interrupted" if signum == signal.SIGINT else f"stopped by {name}"
        done = getattr(err, "report", None)
        count = f" ({done.done} of {done.total} pairs)" if done is not None else ""
        print(
            f"study: {how}; finished {unit} are saved in {out}{count}; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return _stopped(128 + signum, executor, args.workers)
    except FitFailed as err:
        if err.trace:
            print(err.trace.rstrip(), file=sys.stderr)
        message = as_flags(str(err), getattr(args, "flags", {}))
        print(f"study: {message}; finished {unit} are saved in {out}", file=sys.stderr)
        return _stopped(1, executor, args.workers)
    except RunError as err:
        print(f"study: {as_flags(str(err), getattr(args, 'flags', {}))}", file=sys.stderr)
        return _stopped(1, executor, args.workers)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = hook
    if args.shard is not None:
        print(
            f"study: shard {args.shard}: {report.done} of {report.total} pairs done in {out}; "
            f"when every shard is done: study merge {out}",
            file=sys.stderr,
        )
        return 0
    return report
