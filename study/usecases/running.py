"""Running a study of any kind, an SBC, and merging shards."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from models.registry import default_registry
from study.analysis.kinds import views_of
from study.design.config import StudyConfig, load_config, with_registry
from study.design.sbc import as_sbc
from study.errors import UserError
from study.run.executors import make_executor
from study.run.kinds import kind_of
from study.run.runner import RunReport, StopRequest, run_study
from study.run.shards import MergeReport
from study.run.shards import merge as merge_pieces
from study.usecases.precision import (
    PrecisionReport,
    check_cap,
    check_targets,
    plan,
    run_to_precision,
)

if TYPE_CHECKING:
    from models.spec import EngineSpec
    from study.run.executors import Executor
    from study.run.runner import Progress
    from study.run.shards import Shard


def configured(
    config: StudyConfig | str | Path,
    *,
    replicates: int | None = None,
    engines: Sequence[str] | None = None,
    register: Sequence[EngineSpec] = (),
) -> StudyConfig:
    """A configuration from a preset name, a TOML path or a :class:`StudyConfig`, with
    the replicate count and the engine list overridden where given, and the engines of
    ``register`` (:class:`~models.spec.EngineSpec`) registered beside the installed
    ones, so that it may name them."""
    registry = default_registry().with_engines(*register) if register else None
    if isinstance(config, StudyConfig):
        cfg = config if registry is None else with_registry(config, registry)
    else:
        cfg = load_config(config, registry)
    if replicates is not None:
        cfg = cfg.with_replicates(replicates)
    if engines is not None:
        cfg = cfg.with_engines(tuple(engines))
    return cfg


def check_command(config: StudyConfig, command: str, spec: object) -> None:
    """Refuse to run ``config`` with ``command`` when its kind is run by another one
    (``study run`` of an SBC configuration: ``study sbc`` makes it one)."""
    kind = kind_of(config)
    if kind.layout.command != command:
        raise UserError(
            f"config {str(spec)!r} is {kind.what}; run it with `{kind.layout.command} {spec}`"
        )


def run(
    config: StudyConfig | str | Path,
    out: str | Path | None = None,
    *,
    replicates: int | None = None,
    engines: Sequence[str] | None = None,
    overwrite: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    batch_size: int | None = None,
    executor: Executor | None = None,
    shard: Shard | None = None,
    fail_fast: bool = False,
    progress: Progress | None = None,
    stop: StopRequest | None = None,
    register: Sequence[EngineSpec] = (),
    mcse: Mapping[str, float] | None = None,
    max_replicates: int | None = None,
    notify: Callable[[str], None] | None = None,
) -> RunReport:
    """Run (or resume, or extend) the study ``config`` of whatever kind it is.

    ``workers`` local processes or the Dask cluster at ``scheduler`` (default: this
    process first, worker processes only when the work left is worth starting them);
    ``engines`` the engine labels to run instead of the configuration's; ``register``
    engines of one's own (:class:`~models.spec.EngineSpec`) the configuration may
    name; see :func:`study.run.runner.run_study` for the rest.

    ``mcse`` (measure -> target, e.g. ``{"coverage": 0.005}``): after the
    configuration's replicates, extend each condition in rounds until the worst MCSE of
    every measure is at or under its target, or it has ``max_replicates`` (default 20 x
    ``replicates``); ``notify`` gets a line per round, and the report is a
    :class:`~study.usecases.precision.PrecisionReport` with the final plan
    (:mod:`study.usecases.precision`).  A given ``executor`` runs every round, so it
    must start again after ``close`` (the local ones do; give ``scheduler`` for Dask).
    """
    cfg = configured(config, replicates=replicates, engines=engines, register=register)
    if mcse is None and max_replicates is not None:
        raise UserError(
            f"max_replicates={max_replicates} applies only with mcse=... (a precision target)"
        )
    if mcse is not None:
        if shard is not None:
            raise UserError(
                "mcse=... with shard=...: a sharded run cannot decide its rounds (no shard "
                "sees the others' results); run it unsharded, or run a pilot, `study plan` "
                "it and set the counts in [replicates_by_condition]"
            )
        check_targets(views_of(kind_of(cfg).name), mcse)
        check_cap(max_replicates, cfg.replicates)

    def run_round(round_config: StudyConfig) -> RunReport:
        # a fresh executor per round unless one is given (a Dask client is closed at
        # the end of each round; local workers are started again as a round needs)
        return run_study(
            round_config,
            out,
            overwrite=overwrite and round_config is cfg,
            progress=progress,
            executor=executor or make_executor(workers, scheduler, batch_size),
            shard=shard,
            fail_fast=fail_fast,
            stop=stop,
        )

    if mcse is None:
        return run_round(cfg)
    return run_to_precision(cfg, mcse, run_round, max_replicates=max_replicates, notify=notify)


def as_calibration(config: StudyConfig | str | Path, simulations: int | None = None) -> StudyConfig:
    """``config`` as a simulation-based calibration (its ``[sbc]`` table, or the
    defaults), with ``simulations`` per condition."""
    cfg = config if isinstance(config, StudyConfig) else load_config(config)
    return as_sbc(cfg, simulations)


def merge(
    dirs: Sequence[str | Path], out: str | Path | None = None, *, partial: bool = False
) -> MergeReport:
    """Join the checkpoints of run directories of one configuration (shards)."""
    return merge_pieces(dirs, out, partial=partial)


__all__ = [
    "PrecisionReport",
    "RunReport",
    "StopRequest",
    "as_calibration",
    "check_command",
    "configured",
    "make_executor",
    "merge",
    "plan",
    "run",
]
