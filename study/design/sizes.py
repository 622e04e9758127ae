"""Group sizes drawn at random, once per design: ``group_size = { distribution = ... }``.

* ``{ distribution = "uniform", low = 5, high = 50 }``: each group's size a whole number
  uniform on ``low..high`` (both included);
* ``{ distribution = "poisson", mean = 20, min = 2 }``: ``min + Poisson(mean - min)``,
  so the sizes are at least ``min`` and their mean is ``mean`` exactly (in expectation).

The sizes are drawn from the design's stream before the predictors (the seed policy):
they are part of X, the same for every replicate and every value of ``beta``, the
variances or ``icc``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from models.validate import check_keys, choice, fail, integer, number

SIZE_DISTRIBUTIONS = ("uniform", "poisson")


@dataclass(frozen=True)
class GroupSizes:
    """A distribution of group sizes (see the module docstring)."""

    distribution: str
    low: int = 0
    high: int = 0
    mean: float = 0.0
    min: int = 1

    @classmethod
    def from_table(cls, table: Mapping, key: str = "design.group_size") -> GroupSizes:
        """The distribution of a ``group_size`` table (``key`` names it in errors)."""
        dist = choice(f"{key}.distribution", table.get("distribution"), SIZE_DISTRIBUTIONS)
        if dist == "uniform":
            check_keys(table, {"distribution", "low", "high"}, key)
            low = integer(f"{key}.low", table.get("low"), low=1)
            high = integer(f"{key}.high", table.get("high"), low=1)
            if high < low:
                raise fail(f"{key}.high", high, f"must be >= low ({low})")
            return cls(dist, low=low, high=high)
        check_keys(table, {"distribution", "mean", "min"}, key)
        minimum = integer(f"{key}.min", table.get("min", 1), low=1)
        mean = number(f"{key}.mean", table.get("mean"), low=float(minimum), low_inclusive=True)
        return cls(dist, mean=mean, min=minimum)

    def table(self) -> dict[str, object]:
        """The TOML table (read back identically by :meth:`from_table`)."""
        if self.distribution == "uniform":
            return {"distribution": self.distribution, "low": self.low, "high": self.high}
        return {"distribution": self.distribution, "mean": self.mean, "min": self.min}

    def draw(self, rng: np.random.Generator, groups: int) -> np.ndarray:
        """``groups`` sizes (int64)."""
        if self.distribution == "uniform":
            return rng.integers(self.low, self.high, size=groups, endpoint=True)
        return self.min + rng.poisson(self.mean - self.min, size=groups)

    def describe(self) -> str:
        """The distribution in a few words (``study truth``'s design line)."""
        if self.distribution == "uniform":
            return f"uniform on {self.low}..{self.high} (drawn once)"
        return f"{self.min} + Poisson({self.mean - self.min:g}) (drawn once)"

    @property
    def bound(self) -> int:
        """A size no group exceeds (uniform) or very rarely does (Poisson: mean plus 12
        SDs): what the memory checks count with."""
        if self.distribution == "uniform":
            return self.high
        lam = self.mean - self.min
        return int(np.ceil(self.min + lam + 12 * np.sqrt(lam) + 1))

    @property
    def expected(self) -> float:
        """The mean size."""
        if self.distribution == "uniform":
            return (self.low + self.high) / 2
        return self.mean
