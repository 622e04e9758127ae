"""Progress display for ``study run``: a live bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def _fmt_seconds(s: float) -> str:
    if s != s or s == float("inf"):  # NaN or inf
        return "?"
    s = round(s)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


class _Counter:
    """Shared bookkeeping: done/total, rate and ETA over this session's replicates.

    The rate is measured from the first fit that comes back, so the engines' one-time
    compile (before any result) does not make the ETA of a short run look long.
    """

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.start_done = 0
        self.failures = 0
        self.conditions = 1
        self.condition = ""
        self.t0: float | None = None
        #: what one condition's units are called: replicates, or simulations (SBC)
        self.noun = "replicates"

    def start(self, total: int, done: int, conditions: int = 1) -> None:
        self.total, self.done, self.start_done = total, done, done
        self.conditions = conditions
        self.t0 = None

    def advance(self, failures: int, condition: str = "") -> None:
        if self.t0 is None:  # the first result: the clock starts after it
            self.t0 = time.monotonic()
            self.start_done = self.done + 1
        self.done += 1
        self.failures = failures
        self.condition = condition

    @property
    def unit(self) -> str:
        """What is counted: replicates, or (condition, replicate) fits of a grid."""
        return self.noun if self.conditions == 1 else f"fits ({self.conditions} conditions)"

    @property
    def rate(self) -> float:
        if self.t0 is None:
            return float("nan")
        elapsed = time.monotonic() - self.t0
        new = self.done - self.start_done
        return new / elapsed if elapsed > 0 and new else float("nan")

    def line(self) -> str:
        rate = self.rate
        eta = (self.total - self.done) / rate if rate == rate and rate > 0 else float("nan")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        rate_text = f"{rate:.2f}/s" if rate == rate else "-/s"
        where = f", last {self.condition}" if self.conditions > 1 and self.condition else ""
        return (
            f"{self.done}/{self.total} {self.unit} ({pct:.0f}%), {rate_text}, "
            f"ETA {_fmt_seconds(eta)}, failures {self.failures}{where}"
        )


class PlainProgress(_Counter):
    """One line at start, then every ``every`` seconds and at the end."""

    def __init__(self, stream: TextIO | None = None, every: float = 10.0) -> None:
        super().__init__()
        self.stream = stream or sys.stderr
        self.every = every
        self._last = 0.0

    def start(self, total: int, done: int, conditions: int = 1) -> None:
        super().start(total, done, conditions)
        print(f"study: {done}/{total} {self.unit} already done", file=self.stream, flush=True)
        self._last = time.monotonic()

    def advance(self, failures: int, condition: str = "") -> None:
        super().advance(failures, condition)
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            print(f"study: {self.line()}", file=self.stream, flush=True)

    def close(self) -> None:
        print(f"study: {self.line()}", file=self.stream, flush=True)


class RichProgress(_Counter):
    """A live rich progress bar (terminal only)."""

    def __init__(self) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]fits"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("failures {task.fields[failures]}"),
            TextColumn("{task.fields[condition]}"),
            console=Console(stderr=True),
            transient=False,
        )
        self._task: Any = None

    def start(self, total: int, done: int, conditions: int = 1) -> None:
        super().start(total, done, conditions)
        self._bar.start()
        self._task = self._bar.add_task(
            "run", total=total, completed=done, rate="", failures=0, condition=""
        )

    def advance(self, failures: int, condition: str = "") -> None:
        super().advance(failures, condition)
        rate = self.rate
        self._bar.update(
            self._task,
            completed=self.done,
            failures=failures,
            rate=f"{rate:.2f}/s" if rate == rate else "",
            condition=condition if self.conditions > 1 else "",
        )

    def close(self) -> None:
        self._bar.stop()


def make_progress(
    stream: TextIO | None = None, noun: str = "replicates"
) -> PlainProgress | RichProgress:
    """A rich bar when stderr is a terminal, plain lines otherwise; ``noun`` names
    what is counted (replicates, simulations)."""
    stream = stream or sys.stderr
    progress = RichProgress() if stream.isatty() else PlainProgress(stream)
    progress.noun = noun
    return progress
