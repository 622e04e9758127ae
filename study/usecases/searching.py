"""The sample-size search of a power study: the smallest N that reaches the target power.

``search(config, "groups", target=0.8, low=4, high=200)`` simulates the power of one
test (``engine/method``) of one tested term at values of an integer design key, in
rounds: first at ``low``, the middle (geometric) and ``high`` (where the target must be
bracketed), then at the answer of a probit fit of power against sqrt(N) and at the
ends of its interval (:mod:`study.analysis.search`), with twice the replicates each
round, until the interval is narrower than ``tolerance`` or ``rounds`` are done; then a
confirmation run at the answer.  Each value is an ordinary single-condition power run
in ``<out>/<factor>=<value>`` that the rounds extend, so a search runs on workers or
Dask like any run, resumes where it stopped (running the same command again refits
nothing already done: the rounds are a function of the results) and its replicates
are never counted twice (each value is a condition with its own streams).  Only the
searched test's engine is fitted.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from study.analysis.mcse import wilson_interval
from study.analysis.search import Curve, admissible, fit_curve, local, next_points, snap
from study.design.power import SEARCH_KEYS, power_settings, search_step, test_label, tests_of
from study.errors import UserError
from study.run.kinds import kind_of
from study.run.results import open_results
from study.run.runner import run_study
from study.usecases.running import configured

if TYPE_CHECKING:
    from study.design.config import StudyConfig
    from study.run.executors import Executor
    from study.run.runner import Progress, StopRequest

#: file names of a search's summary in its directory
SEARCH_JSON, SEARCH_MD, SEARCH_PNG = "search.json", "search.md", "search.png"


@dataclass
class Point:
    """The simulated power at one value: rejections ``hits`` of ``n`` replicates (and
    on the null twins ``null_hits`` of ``null_n``)."""

    value: int
    n: int
    hits: int
    null_n: int
    null_hits: int
    fit_seconds: float

    @property
    def power(self) -> float:
        return self.hits / self.n if self.n else float("nan")

    @property
    def mcse(self) -> float:
        p = self.power
        return math.sqrt(p * (1 - p) / self.n) if self.n else float("nan")

    @property
    def wilson(self) -> tuple[float, float]:
        lo, hi = wilson_interval(np.array(self.power), np.array(self.n))
        return float(lo), float(hi)

    @property
    def type1(self) -> float:
        return self.null_hits / self.null_n if self.null_n else float("nan")


@dataclass
class SearchResult:
    """What a search found (``answer`` with its ``interval``), what it cost, and where
    its runs and summary are."""

    factor: str
    test: str
    term: str
    target: float
    alpha: float
    step: int
    answer: int
    interval: tuple[int, int]
    curve: Curve
    points: dict[int, Point]
    rounds: list[list[int]]
    confirmation: Point
    seconds: float
    out: Path
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> int:
        """Fits made over the search: one per replicate of the rounds (no null twins),
        two per replicate of the confirmation (its data and its null twin)."""
        return sum(p.n for p in self.points.values()) + 2 * self.confirmation.n

    @property
    def fit_seconds(self) -> float:
        """Seconds the fits themselves took (the rest is generation and overhead)."""
        rounds = sum(p.fit_seconds for p in self.points.values())
        return rounds + self.confirmation.fit_seconds

    def table(self) -> dict[str, Any]:
        """The result as plain data (``search.json``)."""
        lo, hi = self.confirmation.wilson
        return {
            "factor": self.factor,
            "test": self.test,
            "term": self.term,
            "target": self.target,
            "alpha": self.alpha,
            "step": self.step,
            "answer": self.answer,
            "interval": list(self.interval),
            "curve": {
                "a": self.curve.a,
                "b": self.curve.b,
                "n_star": self.curve.n_star,
                "lower": self.curve.lower,
                "upper": self.curve.upper,
            },
            "confirmation": {
                "value": self.confirmation.value,
                "replicates": self.confirmation.n,
                "power": self.confirmation.power,
                "mcse": self.confirmation.mcse,
                "wilson": [lo, hi],
                "type1": self.confirmation.type1,
            },
            "rounds": self.rounds,
            "points": [
                {
                    "value": p.value,
                    "replicates": p.n,
                    "power": p.power,
                    "mcse": p.mcse,
                    "type1": p.type1,
                }
                for p in sorted(self.points.values(), key=lambda p: p.value)
            ],
            "fits": self.fits,
            "fit_seconds": self.fit_seconds,
            "seconds": self.seconds,
            "notes": self.notes,
        }

    def text(self) -> str:
        """What ``study power --search`` prints."""
        c = self.confirmation
        lo, hi = c.wilson
        rows = [
            f"{self.factor:>10}  replicates  power (MCSE)",
            *(
                f"{p.value:>10}  {p.n:>10}  {p.power:.3f} ({p.mcse:.3f})"
                for p in sorted(self.points.values(), key=lambda p: p.value)
            ),
        ]
        return "\n".join(
            [
                f"search: {self.factor} for power {self.target:g} of {self.test} on "
                f"{self.term} (alpha {self.alpha:g}, {self.factor} in steps of {self.step})",
                *rows,
                f"answer: {self.factor} = {self.answer} (95% interval {self.interval[0]} .. "
                f"{self.interval[1]}; fitted curve reaches {self.target:g} at "
                f"{self.curve.n_star:.1f})",
                f"confirmation at {self.factor} = {c.value} (fresh replicates): power "
                f"{c.power:.3f} (MCSE "
                f"{c.mcse:.3f}, Wilson {lo:.3f} .. {hi:.3f}) over {c.n} replicates; type I "
                f"{c.type1:.3f}",
                f"cost: {self.fits} fits ({len(self.rounds)} rounds), {self.seconds:.1f} s "
                f"wall here, {self.fit_seconds:.1f} s inside the fits",
                *self.notes,
            ]
        )


def _checked(
    cfg: StudyConfig, factor: str, test: str | None, term: str | None
) -> tuple[str, str, str]:
    """The searched factor, test label and term, checked against ``cfg``."""
    settings = power_settings(cfg)
    if settings is None:
        raise UserError(
            f"config {cfg.name!r} has no [power] table; a sample-size search needs one "
            '(e.g. [power] terms = ["treat"])'
        )
    value = getattr(cfg.design, factor, None) if factor in SEARCH_KEYS else None
    if factor not in SEARCH_KEYS or isinstance(value, bool) or not isinstance(value, int):
        whole = [k for k in SEARCH_KEYS if isinstance(getattr(cfg.design, k, None), int)]
        raise UserError(
            f"--search {factor}: not an integer design key; choose from {', '.join(whole)}"
        )
    if cfg.condition_spec:
        raise UserError(
            f"--search: config {cfg.name!r} has [conditions] ({', '.join(cfg.condition_spec)}); "
            "a search varies one design: remove them (or search each design in its own config)"
        )
    labels = [test_label(e, m) for e, m in tests_of(cfg)]
    chosen = test or labels[0]
    if chosen not in labels:
        raise UserError(
            f"--test {chosen}: not a test of this study; choose from {', '.join(labels)}"
        )
    terms = list(settings.terms)
    term = term or terms[0]
    if term not in terms:
        raise UserError(f"--term {term}: not a tested term; choose from {', '.join(terms)}")
    return factor, chosen, term


def confirmation_seed(seed: int) -> int:
    """The root seed of a search's confirmation run: derived from the study's, so its
    replicates are independent of those the rounds simulated."""
    return int(np.random.SeedSequence([seed, 1]).generate_state(1, np.uint64)[0] >> 1)


def _for_value(cfg: StudyConfig, factor: str, value: int, replicates: int) -> StudyConfig:
    return dataclasses.replace(cfg, condition_spec={factor: [value]}, replicates=replicates)


def search(
    config: StudyConfig | str | Path,
    factor: str,
    *,
    target: float | None = None,
    low: int = 4,
    high: int = 200,
    step: int | None = None,
    test: str | None = None,
    term: str | None = None,
    replicates: int = 100,
    rounds: int = 5,
    tolerance: int | None = None,
    confirm: int = 1000,
    out: str | Path | None = None,
    executor: Executor | None = None,
    progress: Callable[[], Progress] | None = None,
    stop: StopRequest | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> SearchResult:
    """Search ``factor`` for the smallest value whose power reaches ``target`` (see the
    module docstring); ``say`` hears a line per round.

    Raises
    ------
    UserError
        A config without ``[power]``, a factor that is not an integer design key, a
        test or term not in the study, ``target`` outside (0, 1), bounds that do not
        bracket the target (nothing is left written then).
    """
    cfg = configured(config)
    factor, label, term = _checked(cfg, factor, test, term)
    settings = power_settings(cfg)
    assert settings is not None
    target = settings.target if target is None else float(target)
    if not 0 < target < 1:
        raise UserError(f"--target {target:g}: must be in (0, 1), e.g. 0.8")
    engine, method = label.split("/", 1)
    power = dataclasses.replace(settings, tests=(method,), twins=False)
    cfg = dataclasses.replace(
        cfg.with_engines((engine,)), kind_settings={**cfg.kind_settings, "power": power}
    )
    step = step or search_step(cfg.design, factor)
    grid = admissible(low, high, step)
    if low < 1 or high <= low or len(grid) < 2:
        raise UserError(
            f"--low {low} --high {high}: give 1 <= low < high with at least two values in "
            f"steps of {step} between them"
        )
    tolerance = tolerance or 2 * step
    root = Path(out) if out is not None else kind_of(cfg).default_out(cfg) / f"search-{factor}"
    # the first folder of root's path that a refused search would leave behind
    created = next((p for p in [*reversed(root.parents), root] if not p.exists()), None)
    points: dict[int, Point] = {}
    t0 = time.perf_counter()

    def simulate(value: int, n: int, confirming: bool = False) -> Point:
        run_dir = root / (f"confirm-{factor}={value}" if confirming else f"{factor}={value}")
        cfg_v = _for_value(cfg, factor, value, n)
        if confirming:  # fresh replicates, independent of those the answer came from;
            # with the null twins, so the answer's type I error is read beside its power
            twins = dataclasses.replace(power, twins=True)
            cfg_v = dataclasses.replace(
                cfg_v,
                seed=confirmation_seed(cfg.seed),
                kind_settings={**cfg_v.kind_settings, "power": twins},
            )
        run_study(
            cfg_v,
            run_dir,
            executor=executor,
            progress=progress() if progress else None,
            stop=stop,
        )
        ds = open_results(run_dir)
        one = ds.sel(test=label, term=term).isel(condition=0)
        done = one["done"].values.astype(bool)
        rej = one["reject"].values[done]  # (replicate, hypothesis)
        alt, null = rej[:, 0], rej[:, 1]
        point = Point(
            value,
            int(np.isfinite(alt).sum()),
            int(np.nansum(alt)),
            int(np.isfinite(null).sum()),
            int(np.nansum(null)),
            float(np.nansum(ds["fit_seconds"].values)),
        )
        if not confirming:
            points[value] = point
        return point

    history: list[list[int]] = []
    try:
        first = sorted({grid[0], snap(math.sqrt(grid[0] * grid[-1]), grid), grid[-1]})
        for v in first:
            simulate(v, replicates)
        history.append(first)
        lo_p, hi_p = points[grid[0]], points[grid[-1]]
        if lo_p.wilson[0] > target:
            raise UserError(
                f"--low {grid[0]}: the power there is already {lo_p.power:.3f} (Wilson "
                f"{lo_p.wilson[0]:.3f} .. {lo_p.wilson[1]:.3f}), above the target {target:g}; "
                "give a smaller --low"
            )
        if hi_p.wilson[1] < target:
            raise UserError(
                f"--high {grid[-1]}: the power there is only {hi_p.power:.3f} (Wilson "
                f"{hi_p.wilson[0]:.3f} .. {hi_p.wilson[1]:.3f}), below the target {target:g}; "
                "give a larger --high (or a larger effect)"
            )
    except UserError:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)  # a refused search leaves nothing
        raise
    say(_round_line(0, first, points, None, factor))

    def curve_now() -> Curve:
        values = sorted(points)
        rough = fit_curve(
            values,
            [points[v].hits for v in values],
            [points[v].n for v in values],
            target,
        )
        near = local(values, rough.n_star)
        chosen = [v for v, keep in zip(values, near, strict=True) if keep]
        return fit_curve(
            chosen, [points[v].hits for v in chosen], [points[v].n for v in chosen], target
        )

    curve = curve_now()
    for r in range(1, rounds + 1):
        width = snap(curve.upper, grid) - snap(curve.lower, grid, up=False)
        if r > 1 and width <= tolerance:
            break
        wanted = next_points(curve, grid)
        n = replicates * 2**r
        for v in wanted:
            simulate(v, max(n, points[v].n if v in points else 0))
        history.append(wanted)
        curve = curve_now()
        say(_round_line(r, wanted, points, curve, factor))
    answer = snap(curve.n_star, grid)
    interval = (snap(curve.lower, grid), snap(curve.upper, grid))
    confirmation = simulate(answer, confirm, confirming=True)
    notes = []
    if not curve.lower <= answer <= curve.upper + step:
        notes.append("note: the answer lies outside the fitted interval; widen --low/--high")
    if interval[1] - interval[0] > tolerance:
        notes.append(
            f"note: the interval is wider than {tolerance} after {rounds} rounds; "
            "give more --rounds or --replicates"
        )
    result = SearchResult(
        factor,
        label,
        term,
        target,
        power.level_alpha,
        step,
        answer,
        interval,
        curve,
        points,
        history,
        confirmation,
        time.perf_counter() - t0,
        root,
        notes,
    )
    _write(result)
    return result


def _round_line(
    r: int, values: list[int], points: dict[int, Point], curve: Curve | None, factor: str
) -> str:
    sims = ", ".join(f"{v}: {points[v].power:.3f} ({points[v].n})" for v in values)
    fit = (
        f"; fitted {curve.n_star:.1f} (95% {curve.lower:.1f} .. {curve.upper:.1f})"
        if curve is not None
        else ""
    )
    return f"round {r}: power at {factor} = {sims}{fit}"


def _write(result: SearchResult) -> None:
    """search.json, search.md and search.png in the search's directory."""
    from study.analysis.plots.search import search_figure
    from study.run.store import write_text_atomic

    root = result.out
    write_text_atomic(root / SEARCH_JSON, json.dumps(result.table(), indent=2) + "\n")
    write_text_atomic(root / SEARCH_MD, "```\n" + result.text() + "\n```\n")
    fig = search_figure(result.table())
    fig.savefig(root / SEARCH_PNG, dpi=110)
