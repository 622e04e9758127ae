"""Standardised distributions for the random effects and the residuals.

Every shape is drawn standardised, mean 0 and variance 1, so that the generator's
scaling gives ``Cov(u) = D`` and ``Var(e) = sigma^2`` exactly, whatever the shape.  The
truth of a study, ``Var(beta_hat) = (X' V^-1 X)^-1`` for the GLS estimator, depends on
the data only through ``V = Z D Z' + sigma^2 I``, the covariance: it holds unchanged for
every shape, and a study of non-normal data measures what the shape does to the
estimators, not a shift in the variances (Maas & Hox 2005; Schielzeth et al. 2020).

``normal``
    ``N(0, 1)``, drawn as ``rng.standard_normal(size)`` and nothing else, so the streams
    of existing studies stay bit for bit the same.
``t`` (``df > 2``)
    Student t scaled by ``sqrt((df - 2) / df)`` (a t has variance ``df / (df - 2)``, none
    for ``df <= 2``).  Symmetric; excess kurtosis ``6 / (df - 4)``, infinite for ``df <= 4``.
``skewed`` (``df > 0``)
    Standardised chi-square, ``(X - df) / sqrt(2 df)`` with ``X ~ chi^2(df)``: right
    skewed, skewness ``sqrt(8 / df)``, excess kurtosis ``12 / df``; normal as df grows.
``bimodal`` (``separation > 2``, default 3)
    A symmetric two-component normal mixture ``1/2 N(-a, b^2) + 1/2 N(a, b^2)`` with
    ``a^2 + b^2 = 1``; ``separation = 2a / b`` is the distance between the component
    means in component SDs, which must exceed 2 for two modes.  Excess kurtosis ``-2 a^4``.
``laplace``
    Laplace (double exponential) with scale ``1 / sqrt(2)``: excess kurtosis 3.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.validate import OptionError, check_keys, choice, fail, number

DISTRIBUTIONS = ("normal", "t", "skewed", "bimodal", "laplace")
#: the parameter each distribution takes (``df`` or ``separation``), if any
PARAMETER = {"t": "df", "skewed": "df", "bimodal": "separation"}
DEFAULT_SEPARATION = 3.0
KEYS = ("distribution", "df", "separation")


@dataclass(frozen=True)
class Shape:
    """The standardised distribution of the random effects or the residuals.

    Built from a config table with :meth:`from_table`, which names errors by the
    table's key (``design.residuals.df``); constructed directly, errors name the bare
    field (``df``).  A bimodal shape without ``separation`` gets the default (3), so two
    ways of writing one shape compare (and hash) equal.
    """

    distribution: str = "normal"
    df: float | None = None
    separation: float | None = None

    def __post_init__(self) -> None:
        kind = choice("distribution", self.distribution, DISTRIBUTIONS)
        takes = PARAMETER.get(kind)
        for name in ("df", "separation"):
            value = getattr(self, name)
            if value is None:
                continue
            v = number(name, value)  # a finite number, else a type error
            if name != takes:
                users = [d for d, p in PARAMETER.items() if p == name]
                verb = "takes" if len(users) == 1 else "take"
                rule = f"only {' and '.join(users)} {verb} {name} (not {kind})"
                raise fail(name, value, rule)
            if kind == "t" and v <= 2:
                raise fail(
                    name, value, "must be > 2 (a t distribution with df <= 2 has no variance)"
                )
            if kind == "skewed" and v <= 0:
                raise fail(name, value, "must be > 0 (the chi-square's degrees of freedom)")
            if kind == "bimodal" and v <= 2:
                raise fail(
                    name,
                    value,
                    "must be > 2 (the mixture has one mode unless its component means are "
                    "more than 2 component SDs apart)",
                )
            object.__setattr__(self, name, v)
        if kind == "bimodal" and self.separation is None:
            object.__setattr__(self, "separation", DEFAULT_SEPARATION)
        if takes == "df" and self.df is None:
            need = "> 2" if kind == "t" else "> 0"
            raise fail("distribution", kind, f"needs df (its degrees of freedom, {need})")

    @classmethod
    def from_table(cls, table: Mapping[str, Any] | str | None, key: str) -> Shape:
        """The shape at ``key`` of a config: a table, a distribution name, or ``None``
        (normal); errors name ``f"{key}.df"`` and so on."""
        if table is None:
            return cls()
        if isinstance(table, str):
            try:
                return cls(distribution=table)
            except OptionError as err:
                if err.key == "distribution" and err.value == table:
                    raise fail(key, table, err.rule) from None
                raise err.within(key) from None
        if not isinstance(table, Mapping):
            raise fail(key, table, "must be a distribution name or a table")
        check_keys(table, KEYS, key)
        try:
            return cls(**table)
        except OptionError as err:
            raise err.within(key) from None

    def table(self) -> dict[str, Any]:
        """The TOML table of this shape (the keys that are set):
        ``Shape.from_table(s.table(), key) == s``."""
        out: dict[str, Any] = {"distribution": self.distribution}
        for name in ("df", "separation"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    def describe(self) -> str:
        """``t(df = 5)``, ``normal``: the shape in a few words."""
        if self.df is not None:
            return f"{self.distribution}(df = {self.df:g})"
        if self.separation is not None:
            return f"{self.distribution}(separation = {self.separation:g})"
        return self.distribution

    @property
    def is_normal(self) -> bool:
        """Whether draws are standard normal (the generator's historical streams)."""
        return self.distribution == "normal"

    @property
    def _df(self) -> float:
        """The degrees of freedom of a t or skewed shape."""
        assert self.df is not None, self.distribution
        return self.df

    @property
    def _mixture(self) -> tuple[float, float]:
        """The bimodal mixture's component mean ``a`` and SD ``b`` (``a^2 + b^2 = 1``)."""
        s = self.separation or DEFAULT_SEPARATION
        b = 1.0 / math.sqrt(1.0 + s * s / 4.0)
        return s * b / 2.0, b

    def draw(self, rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
        """``size`` standardised draws (mean 0, variance 1)."""
        kind = self.distribution
        if kind == "normal":
            return rng.standard_normal(size)
        if kind == "t":
            df = self._df
            return rng.standard_t(df, size) * math.sqrt((df - 2.0) / df)
        if kind == "skewed":
            df = self._df
            return (rng.chisquare(df, size) - df) / math.sqrt(2.0 * df)
        if kind == "bimodal":
            a, b = self._mixture
            sign = np.where(rng.random(size) < 0.5, -1.0, 1.0)
            return a * sign + b * rng.standard_normal(size)
        return rng.laplace(0.0, 1.0 / math.sqrt(2.0), size)

    @property
    def skewness(self) -> float:
        """Theoretical skewness (0 for the symmetric shapes, t with df <= 3 included)."""
        if self.distribution == "skewed":
            return math.sqrt(8.0 / self._df)
        return 0.0

    @property
    def excess_kurtosis(self) -> float:
        """Theoretical excess kurtosis (``inf`` for a t with df <= 4)."""
        kind = self.distribution
        if kind == "t":
            df = self._df
            return 6.0 / (df - 4.0) if df > 4 else math.inf
        if kind == "skewed":
            return 12.0 / self._df
        if kind == "bimodal":
            return -2.0 * self._mixture[0] ** 4
        return 3.0 if kind == "laplace" else 0.0
