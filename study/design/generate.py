"""Data generator: a study's fixed design and its replicates.

Every stream comes from the seed policy (:mod:`study.design.seeds`), keyed by the
design's own values (its condition id): the X design is drawn once per design, fixed
random effects (if any) once, and replicate ``r`` draws its random effects (unless
fixed) and then its residual noise from its own stream, so its data depend only on
``(root seed, design, r)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from models.base import correlation_factor
from models.data import LMMData
from study.design.conditions import Condition, design_id
from study.design.seeds import design_rng, fixed_u_rng, replicate_rng

if TYPE_CHECKING:
    import pandas as pd

    from study.design.config import DesignConfig, StudyConfig


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
        The realised random effects, per fixed effect (0 for the fixed effects
        without a random effect).
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
        #: the condition id of this design: the key of its streams
        self.id = design_id(config)
        sizes = config.sizes
        p = len(config.predictors)
        rng = design_rng(self.root_seed, self.id)
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
        self.structure = config.structure
        # D = S C S with C positive definite: S chol(C) is a square root of D even
        # when an SD is 0 (where Cholesky of D itself fails); r x r
        self._chol_D = np.diag(config.re_sd) @ np.linalg.cholesky(np.array(config.re_cor))
        self.beta = np.array(config.beta)
        self.fixed_u: np.ndarray | None = None
        if config.fixed_random_effects:
            self.fixed_u = self._draw_u(fixed_u_rng(self.root_seed, self.id))

    @classmethod
    def from_study(cls, config: StudyConfig, condition: Condition | None = None) -> Design:
        """The design of ``condition`` of a study (``None``: its only condition)."""
        if condition is None:
            if len(config.conditions) != 1:
                raise ValueError(
                    f"condition = None: the study has {len(config.conditions)} conditions; "
                    "name one of config.conditions"
                )
            condition = config.conditions[0]
        return cls(condition.design, config.seed)

    def _draw_u(self, rng: np.random.Generator, chol: np.ndarray | None = None) -> np.ndarray:
        """Random effects (K, q): ``r`` normal draws a group through ``chol`` (r x r),
        placed in the columns of the random effects."""
        chol = self._chol_D if chol is None else chol
        z = rng.standard_normal((self.config.groups, self.structure.r))
        u = np.zeros((self.config.groups, self.config.q))
        u[:, list(self.structure.index)] = z @ chol.T
        return u

    def _data(self, y: np.ndarray) -> LMMData:
        return LMMData(y, self.X, self.group, self.config.predictors, structure=self.structure)

    @cached_property
    def XtX(self) -> np.ndarray:
        """Per-group ``X_i'X_i``, shape (K, q, q) (fixed across replicates)."""
        starts = np.concatenate(([0], np.cumsum(self.n)[:-1]))
        return np.add.reduceat(self.X[:, :, None] * self.X[:, None, :], starts, axis=0)

    def sample_from(self, terms: np.ndarray, rng: np.random.Generator, replicate: int) -> Sample:
        """Data from this design's X with the parameters ``terms`` (the design
        structure's ``terms`` order: beta, SDs, correlations, sigma) instead of the
        design's own, random effects always redrawn: what simulation-based calibration
        generates from parameters drawn from a prior."""
        beta, sds, corr, sigma = self.structure.split(np.asarray(terms, dtype=float))
        try:
            chol = sds[:, None] * np.linalg.cholesky(corr)
        except np.linalg.LinAlgError:  # a correlation of +-1: C is only semi-definite
            chol = sds[:, None] * correlation_factor(corr)
        u = self._draw_u(rng, chol)
        e = rng.normal(0.0, float(sigma), self.X.shape[0])
        y = self.X @ beta + np.einsum("nq,nq->n", self.X, u[self.group]) + e
        return Sample(replicate=replicate, data=self._data(y), u=u)

    def sample(self, replicate: int) -> Sample:
        """Generate replicate ``replicate`` (depends only on root seed and index)."""
        rng = replicate_rng(self.root_seed, self.id, replicate)
        u = self.fixed_u if self.fixed_u is not None else self._draw_u(rng)
        e = rng.normal(0.0, self.config.sigma, self.X.shape[0])
        y = self.X @ self.beta + np.einsum("nq,nq->n", self.X, u[self.group]) + e
        return Sample(replicate=replicate, data=self._data(y), u=u)
