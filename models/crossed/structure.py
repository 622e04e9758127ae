"""Random-effects structures with several grouping factors: crossed or nested.

The model is ``y = X beta + sum_f Z_f u_f + e`` with one random term ``f`` per bar of an
lme4 formula: ``(1 + cond | subj) + (1 + cond | item)`` (crossed), ``(1 | g/h)`` =
``(1 | g) + (1 | g:h)`` (nested).  Term ``f`` groups the rows by its factor (``K_f``
levels) and has ``r_f`` effects per level, ``u_f = (u_f1, ..., u_fK) ~ N(0, I_K (x) D_f)``
with ``D_f`` unstructured (``|``) or diagonal (``||``); the terms are independent.

Term names (one choice, documented in the README): broom.mixed's, with the group after a
bar, as ``broom.mixed::tidy`` prints them in its ``group`` column:
``sd__(Intercept)|subj``, ``cor__(Intercept).cond|subj``, ..., ``sd__Observation``.
The fixed effects come first, then each random term's SDs and correlations (row-major
lower triangle of ``D_f``) in the order of the formula, then the residual SD.  A
one-factor model keeps the names of :class:`models.structure.Structure` (no ``|group``):
its stores, presets and reference tests are unchanged.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from models.structure import FIXED, INTERCEPT, OBSERVATION, RAN_PARS

__all__ = ["Bar", "CrossedStructure"]


@dataclass(frozen=True)
class Bar:
    """One random term: ``(effects | group)``.

    Parameters
    ----------
    group : str
        The grouping factor's name, as the formula writes it (``"subj"``, ``"g:h"``).
    effects : sequence of str
        Names of its random effects: columns of the model's random-effect columns
        (``"(Intercept)"`` for the intercept), in the order of ``D``.
    correlated : bool
        Unstructured ``D`` (``|``) or diagonal (``||``); one effect is always "correlated".
    """

    group: str
    effects: tuple[str, ...]
    correlated: bool = True

    def __post_init__(self) -> None:
        effects = tuple(str(e) for e in self.effects)
        if not effects:
            raise ValueError(f"random term of {self.group!r} has no effects")
        dup = sorted({e for e in effects if effects.count(e) > 1})
        if dup:
            raise ValueError(f"random effects {dup} of {self.group!r} appear more than once")
        object.__setattr__(self, "effects", effects)
        object.__setattr__(self, "correlated", bool(self.correlated) or len(effects) == 1)

    @property
    def r(self) -> int:
        """Random effects per level."""
        return len(self.effects)

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """Positions ``(a, b)``, ``a < b``, of the correlated pairs."""
        return list(itertools.combinations(range(self.r), 2)) if self.correlated else []

    @property
    def n_cov(self) -> int:
        """SDs and correlations of ``D``."""
        return self.r + len(self.pairs)

    def names(self, suffix: bool = True) -> list[str]:
        """``sd__`` of each effect, then ``cor__A.B`` of each pair, ``|group`` appended."""
        tail = f"|{self.group}" if suffix else ""
        sds = [f"sd__{e}{tail}" for e in self.effects]
        cors = [f"cor__{self.effects[a]}.{self.effects[b]}{tail}" for a, b in self.pairs]
        return sds + cors

    def text(self) -> str:
        """The bar as lme4 writes it, e.g. ``(1 + cond | subj)``."""
        names = ["1" if e == INTERCEPT else e for e in self.effects]
        if INTERCEPT not in self.effects:
            names.insert(0, "0")
        return f"({' + '.join(names)} {'|' if self.correlated else '||'} {self.group})"


@dataclass(frozen=True)
class CrossedStructure:
    """Fixed effects and several random terms (:class:`Bar`), crossed or nested.

    Bars that share a grouping factor are allowed when each holds uncorrelated effects
    (``(1 | g) + (0 + x | g)``); their effects must differ.
    """

    fixed: tuple[str, ...]
    bars: tuple[Bar, ...]
    _groups: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fixed = tuple(str(n) for n in self.fixed)
        bars = tuple(self.bars)
        if not fixed:
            raise ValueError("a model needs at least one fixed effect")
        if not bars:
            raise ValueError("a mixed model needs at least one random term")
        dup = sorted({n for n in fixed if fixed.count(n) > 1})
        if dup:
            raise ValueError(f"fixed effects {dup} appear more than once")
        names = [n for b in bars for n in b.names()]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"random terms {twice} appear more than once")
        object.__setattr__(self, "fixed", fixed)
        object.__setattr__(self, "bars", bars)
        object.__setattr__(self, "_groups", tuple(dict.fromkeys(b.group for b in bars)))

    @property
    def q(self) -> int:
        """Number of fixed effects."""
        return len(self.fixed)

    @property
    def groups(self) -> tuple[str, ...]:
        """The grouping factors, in order of first appearance."""
        return self._groups

    @property
    def random_columns(self) -> tuple[str, ...]:
        """Every column a random term uses, in order of first appearance."""
        return tuple(dict.fromkeys(e for b in self.bars for e in b.effects))

    @property
    def predictors(self) -> tuple[str, ...]:
        """The fixed effects other than the intercept."""
        return tuple(n for n in self.fixed if n != INTERCEPT)

    @property
    def n_cov(self) -> int:
        """Number of covariance parameters (SDs and correlations) of all terms."""
        return sum(b.n_cov for b in self.bars)

    @property
    def terms(self) -> list[str]:
        """Every term name (module docstring)."""
        return [*self.fixed, *(n for b in self.bars for n in b.names()), OBSERVATION]

    @property
    def effects(self) -> list[str]:
        """``"fixed"`` or ``"ran_pars"`` per term."""
        return [FIXED] * self.q + [RAN_PARS] * (self.n_cov + 1)

    def text(self) -> str:
        """The random part as lme4 writes it."""
        return " + ".join(b.text() for b in self.bars)

    def with_fixed(self, fixed: Sequence[str]) -> CrossedStructure:
        """The same random terms with other fixed effects (a reduced model)."""
        return CrossedStructure(tuple(fixed), self.bars)

    def split(
        self, values: np.ndarray
    ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
        """Values of every term (..., T) -> beta (..., q), ``[(sds (..., r_f), corr
        (..., r_f, r_f)) per bar]`` and sigma (...)."""
        values = np.asarray(values, dtype=float)
        if values.shape[-1] != len(self.terms):
            raise ValueError(
                f"expected {len(self.terms)} values ({', '.join(self.terms)}), "
                f"got {values.shape[-1]}"
            )
        at = self.q
        out = []
        for b in self.bars:
            sds = values[..., at : at + b.r]
            corr = np.broadcast_to(np.eye(b.r), (*values.shape[:-1], b.r, b.r)).copy()
            for j, (i, k) in enumerate(b.pairs):
                corr[..., i, k] = corr[..., k, i] = values[..., at + b.r + j]
            out.append((sds, corr))
            at += b.n_cov
        return values[..., : self.q], out, values[..., -1]

    def values_of(
        self, beta: ArrayLike, covariances: Sequence[np.ndarray], sigma: float
    ) -> np.ndarray:
        """The term values (:attr:`terms` order) of ``beta``, each bar's covariance
        ``D_f`` and ``sigma``: the inverse of :meth:`split` for one model."""
        out = list(np.asarray(beta, dtype=float))
        for b, D in zip(self.bars, covariances, strict=True):
            D = np.atleast_2d(np.asarray(D, dtype=float))
            sd = np.sqrt(np.maximum(np.diag(D), 0.0))
            out += list(sd)
            for i, k in b.pairs:
                den = sd[i] * sd[k]
                out.append(float(D[i, k] / den) if den > 0 else float("nan"))
        return np.asarray([*out, float(sigma)])
