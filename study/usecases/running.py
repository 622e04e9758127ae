"""Running a study of any kind, an SBC, and merging shards."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from study.design.config import StudyConfig, load_config
from study.errors import ConfigError, UserError
from study.run.executors import make_executor
from study.run.kinds import kind_of
from study.run.runner import RunReport, StopRequest, run_study
from study.run.shards import MergeReport
from study.run.shards import merge as merge_pieces

if TYPE_CHECKING:
    from study.run.executors import Executor
    from study.run.runner import Progress
    from study.run.shards import Shard


def configured(
    config: StudyConfig | str | Path,
    *,
    replicates: int | None = None,
    engines: Sequence[str] | None = None,
) -> StudyConfig:
    """A configuration from a preset name, a TOML path or a :class:`StudyConfig`, with
    the replicate count and the engine list overridden where given."""
    cfg = config if isinstance(config, StudyConfig) else load_config(config)
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
) -> RunReport:
    """Run (or resume, or extend) the study ``config`` of whatever kind it is.

    ``workers`` local processes or the Dask cluster at ``scheduler`` (default: this
    process first, worker processes only when the work left is worth starting them);
    see :func:`study.run.runner.run_study` for the rest.
    """
    cfg = configured(config, replicates=replicates, engines=engines)
    if executor is None:
        executor = make_executor(workers, scheduler, batch_size)
    return run_study(
        cfg,
        out,
        overwrite=overwrite,
        progress=progress,
        executor=executor,
        shard=shard,
        fail_fast=fail_fast,
        stop=stop,
    )


def as_calibration(config: StudyConfig | str | Path, simulations: int | None = None) -> StudyConfig:
    """``config`` as a simulation-based calibration (its ``[sbc]`` table, or the
    defaults), with ``simulations`` per condition."""
    cfg = config if isinstance(config, StudyConfig) else load_config(config)
    try:
        return cfg.as_sbc(simulations)
    except ConfigError as err:
        raise ConfigError(str(err).replace("--simulations", "simulations")) from err


def merge(
    dirs: Sequence[str | Path], out: str | Path | None = None, *, partial: bool = False
) -> MergeReport:
    """Join the checkpoints of run directories of one configuration (shards)."""
    return merge_pieces(dirs, out, partial=partial)


__all__ = [
    "RunReport",
    "StopRequest",
    "as_calibration",
    "check_command",
    "configured",
    "make_executor",
    "merge",
    "run",
]
