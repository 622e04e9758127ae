"""Which rows a crossed design has, and the Latin square's condition on each row.

``seen = "all"``: every combination of the factors' levels is a row (the first factor
varies slowest: subject 0 meets items 0..I-1, then subject 1, ...).  ``seen = "list"``:
a Latin square of ``n`` conditions splits every factor's levels into ``n`` lists
(level ``l`` in list ``l mod n``) and a row is a combination within one list: subject
``s`` meets only the items of its list, ``I / n`` of them (Westfall, Kenny & Judd 2014
call it the both-within-condition design).

The Latin square's condition of a row (the index into its ``levels``): ``(s + i) mod n``
for subject ``s`` and item ``i`` with ``seen = "all"`` (the sum of every factor's code,
with more factors), so that each subject meets each condition ``I / n`` times and each
item ``S / n`` times, every subject seeing every item once (Barr et al. 2013's design);
with ``seen = "list"`` the list itself, so that a list's subjects and items all have
one condition (the condition varies between subjects and between items).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

SEEN = ("all", "list")


def rows(levels: Mapping[str, int], seen: str, lists: int) -> dict[str, np.ndarray]:
    """The level codes (``0..K_f-1``) of every row, per factor (in ``levels``' order)."""
    grid = np.indices(tuple(levels.values())).reshape(len(levels), -1).astype(np.int64)
    if seen == "list":
        keep = np.all(grid % lists == grid[:1] % lists, axis=0)
        grid = grid[:, keep]
    return {f: np.ascontiguousarray(grid[k]) for k, f in enumerate(levels)}


def square(codes: Mapping[str, np.ndarray], seen: str, n: int) -> np.ndarray:
    """The Latin square's condition (``0..n-1``) of every row (module docstring)."""
    stacked = np.stack(list(codes.values()))
    if seen == "list":
        return stacked[0] % n
    return stacked.sum(axis=0) % n


def n_rows(levels: Mapping[str, int], seen: str, lists: int) -> int:
    """The rows :func:`rows` makes (without making them)."""
    total = 1
    for k in levels.values():
        total *= int(k)
    if seen == "list":
        total //= lists ** (len(levels) - 1)
    return total
