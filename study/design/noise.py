"""What a design's randomness looks like beyond the normal model: the distribution of
the residuals (and their heteroscedasticity) and missing outcomes.

``[design.residuals]``: ``distribution`` (a :class:`~study.design.distributions.Shape`,
standardised so that ``Var(e_ij) = sigma_ij^2`` exactly), and two kinds of
heteroscedasticity, which may be combined:

* ``group_sd = s``: an SD per group, ``sigma_i = sigma exp(s z_i)`` with ``z_i`` standard
  normal, drawn once per design (the median group SD is ``sigma``);
* ``by = "x"``, ``delta = d``: ``sigma_ij = sigma exp(d x_ij)``, ``x`` the fixed-effect
  column ``by`` names, as it enters X (after centring).

So ``e_ij = sigma_ij eps_ij`` and ``R_i = diag(sigma_ij^2)``: the truth is
``Var(beta_hat) = (sum_i X_i'V_i^-1 X_i)^-1`` with ``V_i = Z_i D Z_i' + R_i``
(:mod:`study.design.truth`).

``[design.missing]``: outcomes deleted after a replicate is generated, and every
engine fits the complete cases (lme4's ``na.omit``): ``mechanism = "mcar"`` deletes
each outcome with probability ``share``; ``mechanism = "mar"`` with probability
``1 / (1 + exp(-(intercept + slope x_ij)))``, ``x`` the fixed-effect column ``by``.
Both depend on X only, so the GLS estimator on the observed rows stays unbiased given
which rows they are; its variance differs per replicate (``Sample.observed_cov``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.validate import check_keys, choice, fail, number
from study.design.distributions import Shape

MECHANISMS = ("mcar", "mar")
#: the keys of a distribution table (:class:`Shape`)
SHAPE_KEYS = ("distribution", "df", "separation")


@dataclass(frozen=True)
class Residuals:
    """The residuals' distribution and heteroscedasticity (module docstring)."""

    shape: Shape = field(default_factory=Shape)
    group_sd: float = 0.0
    by: str = ""
    delta: float = 0.0

    @classmethod
    def from_table(cls, table: object, key: str = "design.residuals") -> Residuals:
        """The residuals of a ``[design.residuals]`` table (``key`` names it in errors)."""
        if isinstance(table, Residuals):
            return table
        table = _mapping(table, key, '{ distribution = "t", df = 5 }')
        extra = {"group_sd", "by", "delta"}
        check_keys(table, {*extra, *SHAPE_KEYS}, key)
        shape = Shape.from_table({k: v for k, v in table.items() if k not in extra}, key)
        group_sd = number(
            f"{key}.group_sd", table.get("group_sd", 0.0), low=0.0, low_inclusive=True
        )
        by = table.get("by", "")
        delta = number(f"{key}.delta", table.get("delta", 0.0))
        if not isinstance(by, str):
            raise fail(f"{key}.by", by, "must name a fixed effect (a column of X)")
        if bool(by) != ("delta" in table):
            missing, given = ("delta", "by") if by else ("by", "delta")
            raise fail(f"{key}.{given}", table.get(given), f"needs {key}.{missing} too")
        return cls(shape, group_sd, by, delta)

    def table(self) -> dict[str, Any]:
        """The TOML table (read back identically by :meth:`from_table`)."""
        out: dict[str, Any] = dict(self.shape.table())
        if self.group_sd:
            out["group_sd"] = self.group_sd
        if self.by:
            out["by"], out["delta"] = self.by, self.delta
        return out

    def describe(self) -> str:
        """The residuals in a few words (``study truth``'s design line)."""
        parts = [self.shape.describe()]
        if self.group_sd:
            parts.append(f"group SDs sigma exp({self.group_sd:g} z_i)")
        if self.by:
            parts.append(f"sigma_ij = sigma exp({self.delta:g} {self.by})")
        return ", ".join(parts)

    @property
    def heteroscedastic(self) -> bool:
        """Whether the residual SD varies by group or by row."""
        return bool(self.group_sd) or bool(self.by and self.delta)

    def check(self, effects: tuple[str, ...], key: str = "design.residuals") -> None:
        """``by`` names a fixed-effect column other than the intercept."""
        _check_by(self.by, effects, key)

    def row_sd(
        self, sigma: float, X: np.ndarray, effects: tuple[str, ...], group_sd_z: np.ndarray | None
    ) -> np.ndarray | None:
        """``sigma_ij`` per row of ``X`` (columns ``(Intercept), *effects``), or None when
        homoscedastic; ``group_sd_z`` the per-row ``z_i`` of its group."""
        if not self.heteroscedastic:
            return None
        log = np.zeros(X.shape[0])
        if self.group_sd and group_sd_z is not None:
            log += self.group_sd * group_sd_z
        if self.by:
            log += self.delta * X[:, 1 + effects.index(self.by)]
        return sigma * np.exp(log)


@dataclass(frozen=True)
class Missing:
    """Missing outcomes (module docstring)."""

    mechanism: str
    share: float = 0.0
    by: str = ""
    intercept: float = 0.0
    slope: float = 0.0

    @classmethod
    def from_table(cls, table: object, key: str = "design.missing") -> Missing:
        """The mechanism of a ``[design.missing]`` table (``key`` names it in errors)."""
        if isinstance(table, Missing):
            return table
        table = _mapping(table, key, '{ mechanism = "mcar", share = 0.2 }')
        mechanism = choice(f"{key}.mechanism", table.get("mechanism"), MECHANISMS)
        if mechanism == "mcar":
            check_keys(table, {"mechanism", "share"}, key)
            share = number(f"{key}.share", table.get("share"), low=0.0, high=1.0)
            if share in (0.0, 1.0):
                raise fail(
                    f"{key}.share", share, "must be in (0, 1): the share of outcomes deleted"
                )
            return cls(mechanism, share=share)
        check_keys(table, {"mechanism", "by", "intercept", "slope"}, key)
        by = table.get("by")
        if not isinstance(by, str) or not by:
            raise fail(f"{key}.by", by, "must name the fixed effect the missingness depends on")
        return cls(
            mechanism,
            by=by,
            intercept=number(f"{key}.intercept", table.get("intercept", 0.0)),
            slope=number(f"{key}.slope", table.get("slope", 0.0)),
        )

    def table(self) -> dict[str, Any]:
        """The TOML table (read back identically by :meth:`from_table`)."""
        if self.mechanism == "mcar":
            return {"mechanism": self.mechanism, "share": self.share}
        return {
            "mechanism": self.mechanism,
            "by": self.by,
            "intercept": self.intercept,
            "slope": self.slope,
        }

    def describe(self) -> str:
        """The mechanism in a few words (``study truth``'s design line)."""
        if self.mechanism == "mcar":
            return f"MCAR, share {self.share:g}"
        return f"MAR, logit P = {self.intercept:g} + {self.slope:g} {self.by}"

    def check(self, effects: tuple[str, ...], key: str = "design.missing") -> None:
        """``by`` names a fixed-effect column other than the intercept."""
        _check_by(self.by, effects, key)

    def probability(self, X: np.ndarray, effects: tuple[str, ...]) -> np.ndarray:
        """Each row's probability of a missing outcome."""
        if self.mechanism == "mcar":
            return np.full(X.shape[0], self.share)
        x = X[:, 1 + effects.index(self.by)]
        return 1.0 / (1.0 + np.exp(-(self.intercept + self.slope * x)))

    def observed(
        self, rng: np.random.Generator, X: np.ndarray, effects: tuple[str, ...]
    ) -> np.ndarray:
        """A boolean mask of the rows whose outcome is observed (drawn from ``rng``)."""
        return rng.random(X.shape[0]) >= self.probability(X, effects)


def _mapping(table: object, key: str, example: str) -> Mapping[str, Any]:
    """``table`` if it is a TOML table; a one-line error naming ``key`` otherwise."""
    if not isinstance(table, Mapping):
        raise fail(key, table, f"must be a table, e.g. {example}")
    return table


def _check_by(by: str, effects: tuple[str, ...], key: str) -> None:
    if by and by not in effects:
        raise fail(f"{key}.by", by, f"must name a fixed effect, one of {list(effects)}")
