"""Data generator: a study's fixed design and its replicates.

Every stream comes from the seed policy (:mod:`study.design.seeds`), keyed by the
design's own values (its condition id): the X design is drawn once per design, fixed
random effects (if any) once, and replicate ``r`` draws its random effects (unless
fixed) and then its residual noise from its own stream, so its data depend only on
``(root seed, design, r)``.  A crossed design (:class:`CrossedDesign`) follows the same
policy with the same streams: X from the design stream, then per replicate each random
term's effects (in the order of the formula) and then the noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from models.base import correlation_factor
from models.crossed import CrossedData, CrossedStructure
from models.data import LMMData
from models.structure import Structure
from study.design.conditions import Condition, design_id, x_id
from study.design.crossed.algebra import factor_of
from study.design.crossed.spec import CrossedDesignConfig
from study.design.gls import gls_cov
from study.design.predictors import draw as draw_predictors
from study.design.seeds import design_rng, fixed_u_rng, replicate_rng
from study.design.sizes import GroupSizes
from study.design.spec import PILOT
from study.design.terms import default_fixed, fixed_columns

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
    data : LMMData or CrossedData
        Long table and per-group sufficient statistics, what engines fit (the observed
        rows only, when the design has missing outcomes); a crossed design's
        :class:`models.crossed.CrossedData`.
    u : ndarray, shape (K, q), or (L,) for a crossed design
        The realised random effects, per fixed effect (0 for the fixed effects
        without a random effect); for a crossed design the vector of every term's
        effects in the order of ``Z``'s columns (level-major per term).
    observed_cov : ndarray, shape (q, q), or None
        ``Var(beta_hat)`` of the GLS estimator with the true V on the rows observed in
        this replicate; None when the design has no missing outcomes.
    """

    replicate: int
    data: LMMData | CrossedData
    u: np.ndarray
    observed_cov: np.ndarray | None = None

    @property
    def table(self) -> pd.DataFrame:
        """Long table: columns ``y``, predictor names, ``group``."""
        return self.data.to_frame()


class Design:
    """A study's fixed design: the X values of every group (drawn once) and, when the
    study fixes them, the random effects.

    X (the group sizes when they are drawn, then the predictors) comes from the design
    stream keyed by :attr:`x_id`, the hash of the settings that define X only
    (:meth:`DesignConfig.x_table`): a grid over ``beta``, the variances, ``icc``, the
    distributions or missingness keeps the same X.  The per-group residual SD factors
    (``residuals.group_sd``) are drawn from the same stream after X.

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
        #: the condition id of this design: the key of its replicate streams
        self.id = design_id(config)
        #: the id of its X: the key of the design stream
        self.x_id = x_id(config)
        rng = design_rng(self.root_seed, self.x_id)
        pilot = config.pilot
        if pilot is not None:  # the pilot's own groups and rows, or resampled from them
            own_groups = config.groups == pilot.n_groups
            size = None if config.group_size == PILOT else config.group_size
            assert not isinstance(size, GroupSizes)  # refused with predictors_from
            frame, subject_group = pilot.draw(rng, None if own_groups else config.groups, size)
            sizes = np.bincount(subject_group, minlength=config.groups)
        else:
            if isinstance(config.group_size, GroupSizes):
                sizes = config.group_size.draw(rng, config.groups)
            else:
                sizes = config.sizes
            subject_group = np.repeat(np.arange(config.groups), sizes)
            frame = draw_predictors(config.variables, rng, subject_group, config.groups)
        #: subjects per group
        self.sizes = sizes
        if config.tables or config.fixed or pilot is not None:
            names = (
                pilot.predictors if pilot is not None else tuple(v.name for v in config.variables)
            )
            rhs = config.fixed or default_fixed(names)
            _, subjects = fixed_columns(rhs, frame, names)
        else:
            subjects = np.column_stack([np.ones(len(frame)), frame.to_numpy(dtype=float)])
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        # repeats: each group's subjects repeated `repeats` times (subject order kept)
        idx = np.concatenate(
            [
                np.tile(np.arange(s, s + n), config.repeats)
                for s, n in zip(starts, sizes, strict=True)
            ]
        )
        self.X = np.ascontiguousarray(subjects[idx])
        self.group = np.repeat(np.arange(config.groups), sizes * config.repeats)
        self.n = sizes * config.repeats
        self.structure = config.structure
        res = config.residuals
        z = rng.standard_normal(config.groups)[self.group] if res.group_sd else None
        #: each row's residual SD, None when they are all sigma
        self.row_sd = res.row_sd(config.sigma, self.X, config.effects, z)
        # D = S C S with C positive definite: S chol(C) is a square root of D even
        # when an SD is 0 (where Cholesky of D itself fails); r x r
        self._chol_D = np.diag(config.sds) @ np.linalg.cholesky(np.array(config.re_cor))
        self.beta = np.array(config.beta_values)
        self.fixed_u: np.ndarray | None = None
        if config.fixed_random_effects:
            self.fixed_u = self._draw_u(fixed_u_rng(self.root_seed, self.id))

    @classmethod
    def from_study(cls, config: StudyConfig, condition: Condition | None = None) -> Design:
        """The design of ``condition`` of a study (``None``: its only condition) whose
        designs are one-factor (:func:`design_of` takes either kind)."""
        design = design_of(config, condition)
        if not isinstance(design, Design):
            raise TypeError(f"the study {config.name!r} has a crossed design: use design_of")
        return design

    def _draw_u(self, rng: np.random.Generator, chol: np.ndarray | None = None) -> np.ndarray:
        """Random effects (K, q): ``r`` normal draws a group through ``chol`` (r x r),
        placed in the columns of the random effects."""
        chol = self._chol_D if chol is None else chol
        z = self.config.random_effects.draw(rng, (self.config.groups, self.structure.r))
        u = np.zeros((self.config.groups, self.config.q))
        u[:, list(self.structure.index)] = z @ chol.T
        return u

    def _data(self, y: np.ndarray) -> LMMData:
        return LMMData(y, self.X, self.group, self.config.effects, structure=self.structure)

    @cached_property
    def XtX(self) -> np.ndarray:
        """Per-group ``X_i'X_i``, shape (K, q, q) (fixed across replicates)."""
        return per_group_crossprod(self.X, self.n)

    @cached_property
    def H(self) -> np.ndarray:
        """Per-group ``X_i'R_i^-1 X_i``, shape (K, q, q): ``X_i'X_i / sigma^2`` unless
        the residuals are heteroscedastic."""
        if self.row_sd is None:
            return self.XtX / self.config.sigma**2
        return per_group_crossprod(self.X, self.n, 1.0 / self.row_sd**2)

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
        """Generate replicate ``replicate`` (depends only on root seed and index): its
        random effects (unless fixed), then its noise, then which outcomes are missing."""
        cfg = self.config
        rng = replicate_rng(self.root_seed, self.id, replicate)
        u = self.fixed_u if self.fixed_u is not None else self._draw_u(rng)
        scale = cfg.sigma if self.row_sd is None else self.row_sd
        e = scale * cfg.residuals.shape.draw(rng, self.X.shape[0])
        y = self.X @ self.beta + np.einsum("nq,nq->n", self.X, u[self.group]) + e
        if cfg.missing is None:
            return Sample(replicate=replicate, data=self._data(y), u=u)
        seen = cfg.missing.observed(rng, self.X, cfg.effects)
        X, group = self.X[seen], self.group[seen]
        labels, group = np.unique(group, return_inverse=True)  # groups left, 0..K'-1
        n = np.bincount(group, minlength=labels.size)
        weights = None if self.row_sd is None else 1.0 / self.row_sd[seen] ** 2
        H = per_group_crossprod(X, n, weights)
        if weights is None:
            H /= cfg.sigma**2
        data = LMMData(y[seen], X, group, cfg.effects, structure=self.structure)
        return Sample(replicate, data, u, gls_cov(H, cfg.D))


class CrossedDesign:
    """A crossed design's rows and X (drawn once) and its replicates.

    X comes from the design stream keyed by :attr:`x_id` (the factors, ``seen`` and
    the predictors: :meth:`CrossedDesignConfig.x_table`); replicate ``r`` draws, from
    its own stream, ``u_f = z_f T_f'`` for each random term in the order of the formula
    (``z_f`` standard normal, ``K_f x r_f``; ``T_f`` the factor of ``D_f``), then the
    noise ``e ~ N(0, sigma^2 I)``: ``y = X beta + Z u + e``.  Its data share the
    design's cross-products (:meth:`models.crossed.CrossedData.with_response`).
    """

    def __init__(self, config: CrossedDesignConfig, root_seed: int) -> None:
        self.config = config
        self.root_seed = int(root_seed)
        self.id = design_id(config)
        self.x_id = x_id(config)
        codes = config.codes()
        #: the predictors' values on every row
        self.frame, X = config.draw_x(design_rng(self.root_seed, self.x_id), codes)
        self.X = np.ascontiguousarray(X)
        self.codes = codes
        self.structure = config.structure
        self.beta = np.array(config.beta_values)
        #: the design's data (y = X beta): the template every replicate's data share
        self.data = CrossedData(self.X @ self.beta, self.X, self.structure, codes)
        #: per term, the factor T_f of D_f (r_f x r_f)
        self.factors = [factor_of(sds, corr) for sds, corr in config.bar_factors()]
        self.fixed_u: np.ndarray | None = None
        self._mean = self.X @ self.beta

    def draw_u(self, rng: np.random.Generator) -> np.ndarray:
        """Every term's random effects, (L,) in the order of ``Z``'s columns."""
        parts = [
            (rng.standard_normal((K, T.shape[0])) @ T.T).ravel()
            for K, T in zip(self.data.levels, self.factors, strict=True)
        ]
        return np.concatenate(parts)

    def sample(self, replicate: int) -> Sample:
        """Generate replicate ``replicate``: its random effects, then its noise."""
        rng = replicate_rng(self.root_seed, self.id, replicate)
        u = self.draw_u(rng)
        e = rng.normal(0.0, self.config.sigma, self.X.shape[0])
        y = self._mean + self.data.Z @ u + e
        return Sample(replicate=replicate, data=self.data.with_response(y), u=u)


#: a design of either kind
AnyDesign = Design | CrossedDesign


def data_for(
    data: LMMData | CrossedData, structure: Structure | CrossedStructure
) -> LMMData | CrossedData:
    """``data`` fitted with ``structure`` (the same rows, another ``Z``: a misspecified
    fit), of the data's kind."""
    if structure == data.structure:
        return data
    if isinstance(data, CrossedData) and isinstance(structure, CrossedStructure):
        return data.with_structure(structure)
    if isinstance(data, LMMData) and isinstance(structure, Structure):
        return data.with_structure(structure)
    raise TypeError(
        f"a {type(structure).__name__} cannot be fitted to {type(data).__name__} "
        "(one grouping factor and several do not mix)"
    )


def design_of(config: StudyConfig, condition: Condition | None = None) -> AnyDesign:
    """The design of ``condition`` of a study (``None``: its only condition): a
    :class:`Design`, or a :class:`CrossedDesign` for a crossed design."""
    if condition is None:
        if len(config.conditions) != 1:
            raise ValueError(
                f"condition = None: the study has {len(config.conditions)} conditions; "
                "name one of config.conditions"
            )
        condition = config.conditions[0]
    return make_design(condition.design, config.seed)


def make_design(config: DesignConfig | CrossedDesignConfig, root_seed: int) -> AnyDesign:
    """The design of ``config`` with root seed ``root_seed``, of its kind."""
    if isinstance(config, CrossedDesignConfig):
        return CrossedDesign(config, root_seed)
    return Design(config, root_seed)


def per_group_crossprod(
    X: np.ndarray, n: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """``X_i' W_i X_i`` per group (rows sorted by group, ``n`` rows each), (K, q, q)."""
    starts = np.concatenate(([0], np.cumsum(n)[:-1])).astype(np.int64)
    Xw = X if weights is None else X * weights[:, None]
    return np.add.reduceat(Xw[:, :, None] * X[:, None, :], starts, axis=0)
