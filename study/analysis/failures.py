"""Why fits failed: their messages grouped into reasons, with counts.

Engines write a free-text ``message`` per fit (an exception, a warning, a
convergence check).  The same reason reads differently from fit to fit only in its
numbers (``1 divergent transition(s)``, ``2 divergent transition(s)``), so a reason
is the message with every number replaced by ``#``; each reason keeps one real
message as its example.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

_NUMBER = re.compile(r"(?<![A-Za-z_])[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
#: a parenthesised aside after a space: a term name, a source line (``(at x.py:3)``)
_ASIDE = re.compile(r" \((?:[^()]|\([^()]*\))*\)")


def reason_of(message: str) -> str:
    """The reason of a failure message: numbers as ``#``, asides in brackets (which
    term, which source line) dropped."""
    text = _ASIDE.sub("", message.strip()) or "no reason given"
    return _NUMBER.sub("#", text)


@dataclass(frozen=True)
class Reason:
    """A failure reason, how many fits gave it, and one message as an example."""

    reason: str
    count: int
    example: str


def reasons(messages: Iterable[str]) -> list[Reason]:
    """Group failure messages into reasons, most frequent first."""
    counts: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for message in messages:
        key = reason_of(str(message))
        counts[key] += 1
        examples.setdefault(key, str(message).strip() or "no reason given")
    return [Reason(k, n, examples[k]) for k, n in counts.most_common()]


def failure_reasons(ds: xr.Dataset, engine: str) -> list[Reason]:
    """The reasons of the fits of ``engine`` that did not converge (fitted pairs only)."""
    sel = ds.sel(engine=engine)
    failed = (~sel["converged"].values.astype(bool)) & ds["done"].values.astype(bool)
    return reasons(np.asarray(sel["message"].values)[failed].tolist())


def shorten(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` characters, with ``...`` where it was cut."""
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def reasons_text(found: list[Reason], limit: int = 6, indent: str = "    ") -> list[str]:
    """Lines ``count  reason (e.g. example)`` for the first ``limit`` reasons."""
    lines = []
    for r in found[:limit]:
        example = "" if r.example == r.reason else f"  (e.g. {shorten(r.example, 100)})"
        lines.append(f"{indent}{r.count:>6}  {shorten(r.reason, 120)}{example}")
    if len(found) > limit:
        rest = sum(r.count for r in found[limit:])
        lines.append(f"{indent}{rest:>6}  ({len(found) - limit} other reasons)")
    return lines


def reasons_table(ds: xr.Dataset) -> pd.DataFrame:
    """Failed or non-converged fits grouped by reason, per engine and condition.

    Columns ``engine``, ``condition``, ``fits`` (fitted pairs of that condition),
    ``failed`` (of them, not converged), ``count``, ``reason``, ``example``; one row
    per (engine, condition, reason), most frequent first within each.
    """
    rows = []
    for engine in [str(e) for e in ds["engine"].values]:
        for label in [str(c) for c in ds["condition"].values]:
            one = ds.sel(condition=label)
            done = one["done"].values.astype(bool)
            failed = done & ~one["converged"].sel(engine=engine).values.astype(bool)
            found = reasons(np.asarray(one["message"].sel(engine=engine).values)[failed].tolist())
            n_done, n_failed = int(done.sum()), int(failed.sum())
            rows += [(engine, label, n_done, n_failed, r.count, r.reason, r.example) for r in found]
    columns = ["engine", "condition", "fits", "failed", "count", "reason", "example"]
    return pd.DataFrame(rows, columns=columns)
