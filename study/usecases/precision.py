"""Replicates from a precision target: how many each condition needs (:func:`plan`),
and a run that extends each condition in rounds until it has them
(:func:`run_to_precision`, what ``run(..., mcse=...)`` does).

A measure's Monte Carlo SE falls as ``1 / sqrt(n)``, so a condition with ``n``
replicates and MCSE ``m`` needs ``ceil(n (m / target)^2)`` for ``target``.  The MCSE is
the kind's (:meth:`study.analysis.kinds.base.Views.mcse`), its worst case over the
engines and terms; nothing here knows a kind.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from study.analysis.kinds import views_of
from study.design.config import MAX_REPLICATES
from study.errors import UserError
from study.run.kinds import kind_of
from study.run.results import open_results
from study.run.runner import RunReport

if TYPE_CHECKING:
    import xarray as xr

    from study.analysis.kinds import Views
    from study.design.config import StudyConfig

#: rounds a run to a precision target makes at most (the first included)
MAX_ROUNDS = 8
#: a default cap: this many times the configuration's replicates
DEFAULT_CAP_FACTOR = 20
#: a round extends a condition by at least this share of its replicates, and at least
#: :data:`MIN_STEP` replicates (no endless tiny rounds)
MIN_GROWTH = 0.10
MIN_STEP = 10


def check_targets(views: Views, targets: Mapping[str, float]) -> dict[str, float]:
    """``targets`` (measure -> MCSE target), checked against the kind's measures."""
    if not views.mcse_measures:
        raise UserError(
            f"mcse=...: {views.title} has no measure with a Monte Carlo SE to target (its "
            "results are tests, not estimates with an MCSE); set its count instead"
        )
    if not targets:
        raise UserError("mcse=...: give at least one MEASURE=TARGET, e.g. coverage=0.005")
    out: dict[str, float] = {}
    for name, target in targets.items():
        if name not in views.mcse_measures:
            raise UserError(
                f"mcse=...: {name!r} is not a measure with a Monte Carlo SE of "
                f"{views.title}; choose from {', '.join(views.mcse_measures)}"
            )
        value = float(target)
        if not (math.isfinite(value) and value > 0):
            raise UserError(f"mcse=...: {name}={target!r}: the target must be a number > 0")
        out[name] = value
    return out


def default_cap(replicates: int) -> int:
    """``max_replicates`` when none is given: 20 x the configuration's replicates."""
    return min(DEFAULT_CAP_FACTOR * replicates, MAX_REPLICATES)


def check_cap(max_replicates: int | None, replicates: int) -> int:
    """``max_replicates`` checked against the configuration's ``replicates``."""
    if max_replicates is None:
        return max(default_cap(replicates), replicates)
    if not isinstance(max_replicates, int) or not 1 <= max_replicates <= MAX_REPLICATES:
        raise UserError(
            f"max_replicates={max_replicates!r}: must be a whole number from 1 to "
            f"{MAX_REPLICATES:,}"
        )
    if max_replicates < replicates:
        raise UserError(
            f"max_replicates={max_replicates}: below the configuration's {replicates} "
            f"replicates; give at least {replicates} (or fewer replicates=...)"
        )
    return max_replicates


@dataclass(frozen=True)
class PlanRow:
    """One condition of a :class:`Plan`: its replicates done, the worst MCSE of each
    targeted measure, the replicates its targets need, and whether they are met."""

    condition: str
    condition_id: str
    replicates: int
    mcse: dict[str, float]
    needed: int
    met: bool
    capped: bool

    def status(self, cap: int) -> str:
        """``met``, ``capped at N`` (its targets need more than the cap) or ``short``."""
        if self.met:
            return "met"
        return f"capped at {cap:,}" if self.capped else "short"

    def next_count(self, cap: int) -> int:
        """The replicates a round extends it to: what it needs, at least +10% or +10,
        at most the cap (its replicates when it is met or at the cap)."""
        if self.met or self.replicates >= cap:
            return self.replicates
        step = max(math.ceil(MIN_GROWTH * self.replicates), MIN_STEP)
        return min(cap, max(self.needed, self.replicates + step))


@dataclass
class Plan:
    """Per condition, the replicates a run has and those its MCSE targets need."""

    targets: dict[str, float]
    max_replicates: int
    #: the run's replicates per condition (a condition whose MCSE is 0 or NaN is met
    #: once it has this many)
    pilot: int
    rows: list[PlanRow] = field(default_factory=list)
    #: what a condition's units are called (replicates, simulations)
    unit: str = "replicates"

    @property
    def finished(self) -> bool:
        """Every condition met or at the cap."""
        return all(r.met or r.replicates >= self.max_replicates for r in self.rows)

    @property
    def short(self) -> list[PlanRow]:
        """The conditions a round would extend."""
        return [r for r in self.rows if not (r.met or r.replicates >= self.max_replicates)]

    def counts(self) -> dict[str, int]:
        """Every condition's count for the next round (condition id -> replicates)."""
        return {r.condition_id: max(1, r.next_count(self.max_replicates)) for r in self.rows}

    def frame(self) -> pd.DataFrame:
        """The table: condition, replicates, MCSE per targeted measure, needed, status."""
        rows = []
        for r in self.rows:
            row: dict[str, object] = {"condition": r.condition, self.unit: r.replicates}
            for m, target in self.targets.items():
                row[f"{m} MCSE (<= {target:g})"] = r.mcse[m]
            row["needed"] = r.needed
            row["status"] = r.status(self.max_replicates)
            rows.append(row)
        return pd.DataFrame(rows)


def _worst(values: np.ndarray) -> np.ndarray:
    """The largest finite value of each row of ``values`` (NaN where none is)."""
    flat = values.reshape(values.shape[0], -1).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN row: NaN
        out: np.ndarray = np.nanmax(flat, axis=1) if flat.shape[1] else np.full(len(flat), np.nan)
    return out


def plan(
    source: xr.Dataset | str | Path,
    targets: Mapping[str, float],
    max_replicates: int | None = None,
) -> Plan:
    """The replicates each condition of a run (``source``: its Dataset or directory)
    needs for the MCSE ``targets`` (measure -> target).

    ``needed = ceil(n (mcse / target)^2)`` for each measure (its worst MCSE over the
    engines and terms), the largest over the measures; a condition is met when every
    MCSE is at or under its target, or is 0 or NaN with ``n`` at least the run's
    replicates.  ``capped``: it needs more than ``max_replicates`` (default: 20 x the
    run's replicates).

    Raises
    ------
    StoreError
        The run directory is missing or damaged (as ``open_results``).
    UserError
        A measure the run's kind cannot target, or a target that is not > 0.
    """
    ds = source if not isinstance(source, str | Path) else open_results(source)
    views = views_of(str(ds.attrs.get("kind")))
    checked = check_targets(views, targets)
    pair = str(ds["done"].dims[1])
    pilot = int(ds.attrs.get(f"{pair}s_requested", ds.sizes[pair]))
    cap = check_cap(max_replicates, pilot)
    n = ds["done"].sum(pair).values.astype(int)
    worst = {m: _worst(views.mcse(ds, m).values) for m in checked}
    rows = []
    for i, (label, cid) in enumerate(
        zip(ds["condition"].values, ds["condition_id"].values, strict=True)
    ):
        needs, met = [], True
        for m, target in checked.items():
            value = float(worst[m][i])
            if not math.isfinite(value) or value == 0 or n[i] == 0:
                needs.append(pilot if n[i] < pilot else int(n[i]))
                met = met and n[i] >= pilot
            else:
                needs.append(math.ceil(n[i] * (value / target) ** 2))
                met = met and value <= target
        needed = max(needs)
        rows.append(
            PlanRow(
                str(label),
                str(cid),
                int(n[i]),
                {m: float(worst[m][i]) for m in checked},
                needed,
                met,
                not met and needed > cap,
            )
        )
    return Plan(checked, cap, pilot, rows, f"{pair}s")


@dataclass
class PrecisionReport(RunReport):
    """A run to MCSE targets: the last round's report, with ``new`` over every round,
    the final :class:`Plan` and the number of rounds run."""

    plan: Plan | None = None
    rounds: int = 0


def _round_line(k: int, p: Plan, last: bool) -> str:
    short = p.short
    if not short:
        capped = sum(1 for r in p.rows if not r.met)
        tail = f", {capped} capped at {p.max_replicates:,}" if capped else ""
        return f"round {k}: done, {len(p.rows) - capped} condition(s) met{tail}"
    if last:
        return f"round {k}: {len(short)} of {len(p.rows)} condition(s) still short"
    counts = [r.next_count(p.max_replicates) for r in short]
    span = f"{min(counts):,}" if min(counts) == max(counts) else f"{min(counts):,}-{max(counts):,}"
    return (
        f"round {k}: {len(short)} of {len(p.rows)} condition(s) short of "
        f"{', '.join(f'{m} <= {t:g}' for m, t in p.targets.items())}; extending them "
        f"to {span} {p.unit}"
    )


def run_to_precision(
    config: StudyConfig,
    targets: Mapping[str, float],
    run_round: Callable[[StudyConfig], RunReport],
    *,
    max_replicates: int | None = None,
    notify: Callable[[str], None] | None = None,
) -> PrecisionReport:
    """Run ``config`` (``run_round`` runs or resumes one configuration), then extend the
    conditions short of their MCSE ``targets`` round by round until every one is met
    or at ``max_replicates`` (at most :data:`MAX_ROUNDS` rounds).

    The first round is the configuration's replicates (what the run directory already
    holds stays: a second identical call fits nothing).  ``notify`` gets a line per
    round.
    """
    views = views_of(kind_of(config).name)
    checked = check_targets(views, targets)
    cap = check_cap(max_replicates, config.replicates)
    say = notify or (lambda line: None)
    report = run_round(config)
    new = report.new
    rounds = 1
    current = plan(open_results(report.path), checked, cap)
    while True:
        say(_round_line(rounds, current, rounds >= MAX_ROUNDS))
        if current.finished or rounds >= MAX_ROUNDS:
            break
        counts = {cid: max(n, config.count(cid)) for cid, n in current.counts().items()}
        report = run_round(config.with_counts(counts))
        new += report.new
        rounds += 1
        current = plan(open_results(report.path), checked, cap)
    if not current.finished:
        say(
            f"stopped after {rounds} rounds with {len(current.short)} condition(s) short; "
            "run the same command again to go on"
        )
    return PrecisionReport(
        report.path,
        report.total,
        report.done,
        new,
        report.failures,
        report.complete,
        report.results,
        plan=current,
        rounds=rounds,
    )
