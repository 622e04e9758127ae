"""The random-effects structure of a model: which fixed-effect columns also vary by group.

The model is ``y_i = X_i beta + Z_i u_i + e_i`` with ``Z_i`` a subset of the columns of
``X_i`` (lme4's ``(x1 + x2 | g)`` with ``x1, x2`` in the fixed part), ``u_i ~ N(0, D)``
with ``D`` unstructured (``|``) or diagonal (``||``).  Because ``Z`` is made of ``X``'s
columns, every sufficient statistic an engine needs (``X'Z``, ``Z'Z``, ``Z'y``) is a
sub-block of ``X'X`` and ``X'y``: the data carry nothing beyond them.

Term names follow broom.mixed (as ``lme4`` prints them): the fixed effects, ``sd__`` of
each random effect, ``cor__A.B`` for each correlated pair (row-major lower triangle of
``D``, in the order of the random terms), ``sd__Observation``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

INTERCEPT = "(Intercept)"
FIXED = "fixed"
RAN_PARS = "ran_pars"
OBSERVATION = "sd__Observation"


@dataclass(frozen=True)
class Structure:
    """Fixed effects (the columns of ``X``) and the random effects (a subset of them).

    Parameters
    ----------
    fixed : sequence of str
        Names of ``X``'s columns, in order (``"(Intercept)"`` for the intercept).
    random : sequence of str, optional
        The fixed-effect names that also have a random effect, in the order of the
        random-effects covariance ``D``; default every fixed effect (``Z = X``).
    correlated : bool
        Unstructured ``D`` (lme4 ``|``) or diagonal ``D`` (lme4 ``||``).
    """

    fixed: tuple[str, ...]
    random: tuple[str, ...] = ()
    correlated: bool = True
    index: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fixed = tuple(str(n) for n in self.fixed)
        random = tuple(str(n) for n in self.random) or fixed
        if not fixed:
            raise ValueError("a model needs at least one fixed effect")
        for kind, names in (("fixed", fixed), ("random", random)):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{kind} effects {dup} appear more than once")
        outside = [n for n in random if n not in fixed]
        if outside:
            raise ValueError(
                f"random effect(s) {outside} are not fixed effects; every random term must "
                f"also be in the fixed part (fixed: {list(fixed)})"
            )
        object.__setattr__(self, "fixed", fixed)
        object.__setattr__(self, "random", random)
        # one random effect has no correlation: (1 | g) and (1 || g) are one model
        object.__setattr__(self, "correlated", bool(self.correlated) or len(random) == 1)
        object.__setattr__(self, "index", tuple(fixed.index(n) for n in random))

    @classmethod
    def full(cls, predictors: Iterable[str]) -> Structure:
        """An intercept and ``predictors``, every one with a correlated random effect."""
        return cls((INTERCEPT, *predictors))

    @property
    def q(self) -> int:
        """Number of fixed effects (columns of ``X``)."""
        return len(self.fixed)

    @property
    def r(self) -> int:
        """Number of random effects per group (columns of ``Z``)."""
        return len(self.random)

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """Positions ``(a, b)``, ``a < b``, within ``random`` of the correlated pairs."""
        return list(itertools.combinations(range(self.r), 2)) if self.correlated else []

    @property
    def n_cov(self) -> int:
        """Number of covariance parameters of ``D``: the SDs and the correlations."""
        return self.r + len(self.pairs)

    @property
    def is_full(self) -> bool:
        """``Z = X`` with a correlated ``D`` (the all-slopes model)."""
        return self.random == self.fixed and self.correlated

    @property
    def predictors(self) -> tuple[str, ...]:
        """The fixed effects other than the intercept."""
        return tuple(n for n in self.fixed if n != INTERCEPT)

    @property
    def terms(self) -> list[str]:
        """Every term name, broom.mixed style (module docstring)."""
        sds = [f"sd__{n}" for n in self.random]
        cors = [f"cor__{self.random[a]}.{self.random[b]}" for a, b in self.pairs]
        return [*self.fixed, *sds, *cors, OBSERVATION]

    @property
    def effects(self) -> list[str]:
        """``"fixed"`` or ``"ran_pars"`` per term."""
        return [FIXED] * self.q + [RAN_PARS] * (self.n_cov + 1)

    def bar(self, group: str = "group") -> str:
        """The random part as lme4 writes it, e.g. ``(1 + Days | Subject)``."""
        names = ["1" if n == INTERCEPT else n for n in self.random]
        if INTERCEPT not in self.random:
            names.insert(0, "0")
        return f"({' + '.join(names)} {'|' if self.correlated else '||'} {group})"

    def split(self, values: np.ndarray):
        """Split values of every term (..., T), :attr:`terms` order, into beta (..., q),
        SDs (..., r), correlation matrices (..., r, r) (identity off the pairs) and sigma."""
        values = np.asarray(values, dtype=float)
        q, r = self.q, self.r
        if values.shape[-1] != len(self.terms):
            raise ValueError(
                f"expected {len(self.terms)} values ({', '.join(self.terms)}), "
                f"got {values.shape[-1]}"
            )
        corr = np.broadcast_to(np.eye(r), (*values.shape[:-1], r, r)).copy()
        for j, (a, b) in enumerate(self.pairs):
            corr[..., a, b] = corr[..., b, a] = values[..., q + r + j]
        return values[..., :q], values[..., q : q + r], corr, values[..., -1]

    def covariance(self, sds: ArrayLike, corr: ArrayLike | None = None) -> np.ndarray:
        """``D = diag(sd) C diag(sd)`` (``C`` the identity if not given)."""
        sds = np.asarray(sds, dtype=float)
        C = np.eye(self.r) if corr is None else np.asarray(corr, dtype=float)
        return sds[..., :, None] * C * sds[..., None, :]


def merged_terms(fixed: Sequence[str], structures: Iterable[Structure]) -> list[str]:
    """The union of the structures' terms in one canonical order: the fixed effects,
    then ``sd__`` in the order of ``fixed``, ``cor__`` pairs likewise, ``sd__Observation``."""
    pos = {n: i for i, n in enumerate(fixed)}
    names: set[str] = set()
    for s in structures:
        names.update(s.terms)

    def key(term: str) -> tuple:
        if term in pos:
            return (0, pos[term])
        if term == OBSERVATION:
            return (3,)
        if term.startswith("sd__"):
            return (1, pos.get(term[4:], len(pos)), term)
        for a, b in itertools.permutations(fixed, 2):
            if term == f"cor__{a}.{b}":
                return (2, pos[a], pos[b])
        return (2, len(pos), len(pos), term)

    missing = [n for n in fixed if n not in names]
    if missing:
        raise ValueError(f"fixed effects {missing} are missing from the structures")
    return sorted(names, key=key)


def term_effects(terms: Sequence[str], fixed: Sequence[str]) -> list[str]:
    """``"fixed"`` or ``"ran_pars"`` per term name."""
    return [FIXED if t in fixed else RAN_PARS for t in terms]
