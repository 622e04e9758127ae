"""Data generator: a study's fixed design and its replicates.

Streams (all from the root seed, never from global state):

* the X design: ``SeedSequence(root, spawn_key=DESIGN_KEY)``, drawn once per study;
* random effects reused in every replicate (``fixed_random_effects``):
  ``SeedSequence(root, spawn_key=FIXED_U_KEY)``;
* replicate ``r``: ``SeedSequence(root, spawn_key=(r,))``, which draws the random
  effects (unless fixed) and then the residual noise.

So replicate ``r``'s data depend only on ``(root, r)``: the same in any process,
order or split of the study.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from models.data import LMMData

if TYPE_CHECKING:
    import pandas as pd

    from study.design.config import DesignConfig, StudyConfig

#: spawn keys of the study-level streams; replicate keys are 1-tuples ``(r,)``, so
#: these 2-tuples can never coincide with one.
DESIGN_KEY = (0, 1)
FIXED_U_KEY = (0, 2)


def replicate_seed_sequence(root: int, replicate: int) -> np.random.SeedSequence:
    """The seed sequence of replicate ``replicate`` (its data and any sampler seed)."""
    if replicate < 0:
        raise ValueError(f"replicate = {replicate}: must be >= 0")
    return np.random.SeedSequence(root, spawn_key=(replicate,))


def replicate_rng(root: int, replicate: int) -> np.random.Generator:
    """Generator of replicate ``replicate``'s data."""
    return np.random.default_rng(replicate_seed_sequence(root, replicate))


def engine_seed(root: int, replicate: int, engine_index: int = 0) -> int:
    """A 32-bit integer seed for an engine's sampler, derived from the replicate's key."""
    ss = np.random.SeedSequence(root, spawn_key=(replicate, 1, engine_index))
    return int(ss.generate_state(1, np.uint32)[0])


@dataclass(frozen=True)
class Sample:
    """One replicate's data.

    Attributes
    ----------
    replicate : int
        Replicate index r (its seed key is ``(root, r)``).
    data : LMMData
        Long table and per-group sufficient statistics, what engines fit.
    u : ndarray, shape (K, q)
        The realised random effects.
    """

    replicate: int
    data: LMMData
    u: np.ndarray

    @property
    def table(self) -> pd.DataFrame:
        """Long table: columns ``y``, predictor names, ``group``."""
        return self.data.to_frame()


class Design:
    """A study's fixed design: the X values of every group (drawn once) and, when the
    study fixes them, the random effects.

    Parameters
    ----------
    config : DesignConfig
        The data-generating model.
    root_seed : int
        The study's root seed.
    """

    def __init__(self, config: DesignConfig, root_seed: int) -> None:
        self.config = config
        self.root_seed = int(root_seed)
        sizes = config.sizes
        p = len(config.predictors)
        rng = np.random.default_rng(np.random.SeedSequence(self.root_seed, spawn_key=DESIGN_KEY))
        # one row of predictor values per subject, drawn group by group
        subjects = config.predictor.draw(rng, int(sizes.sum()) * p).reshape(-1, p)
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        # repeats: each group's subjects repeated `repeats` times (subject order kept)
        idx = np.concatenate(
            [
                np.tile(np.arange(s, s + n), config.repeats)
                for s, n in zip(starts, sizes, strict=True)
            ]
        )
        self.X = np.column_stack([np.ones(idx.size), subjects[idx]])
        self.group = np.repeat(np.arange(config.groups), sizes * config.repeats)
        self.n = sizes * config.repeats
        self._chol_D = np.linalg.cholesky(config.D)
        self.beta = np.array(config.beta)
        self.fixed_u: np.ndarray | None = None
        if config.fixed_random_effects:
            rng_u = np.random.default_rng(
                np.random.SeedSequence(self.root_seed, spawn_key=FIXED_U_KEY)
            )
            self.fixed_u = self._draw_u(rng_u)

    @classmethod
    def from_study(cls, config: StudyConfig) -> Design:
        """The design of a study configuration."""
        return cls(config.design, config.seed)

    def _draw_u(self, rng: np.random.Generator) -> np.ndarray:
        z = rng.standard_normal((self.config.groups, self.config.q))
        return z @ self._chol_D.T

    @cached_property
    def XtX(self) -> np.ndarray:
        """Per-group ``X_i'X_i``, shape (K, q, q) (fixed across replicates)."""
        starts = np.concatenate(([0], np.cumsum(self.n)[:-1]))
        return np.add.reduceat(self.X[:, :, None] * self.X[:, None, :], starts, axis=0)

    def sample(self, replicate: int) -> Sample:
        """Generate replicate ``replicate`` (depends only on root seed and index)."""
        rng = replicate_rng(self.root_seed, replicate)
        u = self.fixed_u if self.fixed_u is not None else self._draw_u(rng)
        e = rng.normal(0.0, self.config.sigma, self.X.shape[0])
        y = self.X @ self.beta + np.einsum("nq,nq->n", self.X, u[self.group]) + e
        data = LMMData(y, self.X, self.group, self.config.predictors)
        return Sample(replicate=replicate, data=data, u=u)
