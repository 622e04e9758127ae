"""One engine on one dataset, with the runner's error policy: what every kind calls.

An engine must not raise for a failing fit; if one does anyway, the exception is
recorded as a failed fit (errors are data, never a crashed study).  With
``fail_fast`` the first fit that failed or did not converge stops the run instead
(:class:`~study.errors.FitFailed`, with the engine's traceback).
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from models.base import FitResult
from study.errors import FitFailed

if TYPE_CHECKING:
    from models.base import Engine, Structure
    from models.crossed import CrossedData, CrossedStructure
    from models.data import LMMData
    from study.design.config import StudyConfig


def fit_recorded(
    engine: Engine,
    data: LMMData | CrossedData,
    structure: Structure | CrossedStructure,
    *,
    seed: int | None,
    keep_posterior: bool = False,
) -> FitResult:
    """``engine.fit(data)``; an exception it raises becomes a failed fit, with the
    exception, where it was raised, and the traceback."""
    t0 = time.perf_counter()
    try:
        return engine.fit(data, seed=seed, keep_posterior=keep_posterior)
    except Exception as err:  # errors are data, never a crashed study
        last = traceback.extract_tb(err.__traceback__)[-1]
        return FitResult.failed(
            structure,
            f"{type(err).__name__}: {err} (at {Path(last.filename).name}:{last.lineno})",
            time.perf_counter() - t0,
            traceback.format_exc(),
        )


def where(config: StudyConfig, condition_id: str, unit: str, replicate: int) -> str:
    """``replicate 3`` or ``replicate 3 of condition groups=10`` (for messages)."""
    label = next((c.label for c in config.conditions if c.id == condition_id), condition_id)
    return f"{unit} {replicate}" + (f" of condition {label}" if config.multi else "")


def stop_if_failed(fit: FitResult, engine: str, at: str) -> None:
    """Raise :class:`FitFailed` (``--fail-fast``) when ``fit`` failed or did not converge."""
    if fit.converged:
        return
    trace = fit.traceback
    what = "failed" if trace else "did not converge"
    raise FitFailed(
        f"fail_fast=True: {engine} {what} at {at}: {fit.message or 'no reason given'}", trace
    )
