"""The data of a model with several grouping factors, and its cross-products.

``Z = [Z_1 ... Z_F]`` has one block per random term (:class:`Bar`): ``K_f r_f`` columns,
level-major (level ``l``, effect ``j`` at column ``l r_f + j``), ``Z_f[i, c_i r_f + j] =
z_ij`` for row ``i`` in level ``c_i`` of the term's factor.  With ``L = sum_f K_f r_f``
random-effect levels, every quantity an engine needs (the REML criterion, its
gradient, the Kenward-Roger blocks, the Bayesian marginal likelihood) is a function of
the cross-products of ``[Z X y]``: ``Z'Z`` (L x L), ``Z'X``, ``Z'y``, ``X'X``, ``X'y``,
``y'y``, computed here once from a sparse ``Z`` (never an N x N matrix).  A new response
on the same design (a study's replicates) reuses the design's products
(:meth:`CrossedData.with_response`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from models.crossed.structure import Bar, CrossedStructure
from models.structure import INTERCEPT

__all__ = ["CrossedData", "crossed_problem"]


@dataclass(frozen=True)
class CrossedData:
    """One dataset for a linear mixed model with one or more random terms.

    Parameters
    ----------
    y : ndarray (N,)
        Response.
    X : ndarray (N, q)
        Fixed-effects design, columns named by ``structure.fixed``.
    structure : CrossedStructure
        Fixed effects and random terms.
    codes : mapping of str to ndarray of int (N,)
        Level codes ``0..K-1`` of each grouping factor of ``structure`` (more are
        allowed: :meth:`with_structure` may use them).
    labels : mapping of str to tuple of str, optional
        Level labels per factor, for display; default ``"0".."K-1"``.
    columns : mapping of str to ndarray (N,), optional
        Random-effect columns that are not fixed effects (a reduced model's dropped
        predictor); a random effect named like a fixed effect is that column of ``X``.
    """

    y: np.ndarray
    X: np.ndarray
    structure: CrossedStructure
    codes: Mapping[str, np.ndarray]
    labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    columns: Mapping[str, np.ndarray] = field(default_factory=dict)
    Z: sp.csc_matrix = field(init=False, repr=False)
    ZtZ: np.ndarray = field(init=False, repr=False)
    ZtX: np.ndarray = field(init=False, repr=False)
    Zty: np.ndarray = field(init=False, repr=False)
    XtX: np.ndarray = field(init=False, repr=False)
    Xty: np.ndarray = field(init=False, repr=False)
    yty: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        y = np.ascontiguousarray(self.y, dtype=float)
        X = np.ascontiguousarray(self.X, dtype=float)
        if y.ndim != 1:
            raise ValueError(f"y must be one-dimensional, got shape {y.shape}")
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise ValueError(f"X must have shape (len(y), q) = ({y.shape[0]}, q), got {X.shape}")
        if X.shape[1] != self.structure.q:
            raise ValueError(
                f"X has {X.shape[1]} columns for the fixed effects {list(self.structure.fixed)}"
            )
        codes = {str(k): np.ascontiguousarray(v, dtype=np.int64) for k, v in self.codes.items()}
        for name, c in codes.items():
            if c.shape != y.shape:
                raise ValueError(f"codes of {name!r} must have the shape of y {y.shape}")
            if c.size and (c.min() < 0 or np.any(np.bincount(c) == 0)):
                raise ValueError(f"codes of {name!r} must be 0..K-1 with no empty level")
        labels = {
            g: tuple(self.labels.get(g, ())) or tuple(str(k) for k in range(_levels(c)))
            for g, c in codes.items()
        }
        for g, c in codes.items():
            if len(labels[g]) != _levels(c):
                raise ValueError(f"{g!r} has {len(labels[g])} labels for {_levels(c)} levels")
        columns = {str(k): np.asarray(v, dtype=float) for k, v in self.columns.items()}
        for name, value in (("y", y), ("X", X), ("codes", codes), ("labels", labels)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "columns", columns)
        object.__setattr__(self, "XtX", X.T @ X)
        object.__setattr__(self, "Xty", X.T @ y)
        object.__setattr__(self, "yty", float(y @ y))
        self._set_z()

    def _set_z(self) -> None:
        missing = [g for g in self.structure.groups if g not in self.codes]
        if missing:
            raise ValueError(f"no level codes for grouping factor(s) {missing}")
        blocks = [self._z_block(b) for b in self.structure.bars]
        Z = sp.hstack(blocks, format="csc") if blocks else sp.csc_matrix((self.n_obs, 0))
        object.__setattr__(self, "Z", Z)
        object.__setattr__(self, "ZtZ", np.asarray((Z.T @ Z).todense()))
        object.__setattr__(self, "ZtX", np.asarray(Z.T @ self.X))
        object.__setattr__(self, "Zty", np.asarray(Z.T @ self.y))

    def column(self, name: str) -> np.ndarray:
        """A random effect's column: the intercept, a fixed effect's column of ``X``, or
        one of ``columns``."""
        if name in self.columns:
            return self.columns[name]
        if name in self.structure.fixed:
            return self.X[:, self.structure.fixed.index(name)]
        if name == INTERCEPT:
            return np.ones(self.n_obs)
        raise ValueError(f"random effect {name!r} is neither a fixed effect nor a given column")

    def _z_block(self, bar: Bar) -> sp.csc_matrix:
        c = self.codes[bar.group]
        K, r, N = _levels(c), bar.r, self.n_obs
        vals = np.column_stack([self.column(e) for e in bar.effects])
        rows = np.repeat(np.arange(N), r)
        cols = (c[:, None] * r + np.arange(r)[None, :]).ravel()
        return sp.csc_matrix((vals.ravel(), (rows, cols)), shape=(N, K * r))

    # -- sizes ------------------------------------------------------------------------
    @property
    def n_obs(self) -> int:
        """Number of rows N."""
        return int(self.y.shape[0])

    @property
    def q(self) -> int:
        """Number of fixed effects."""
        return int(self.X.shape[1])

    @property
    def levels(self) -> tuple[int, ...]:
        """``K_f``: levels of each bar's grouping factor."""
        return tuple(_levels(self.codes[b.group]) for b in self.structure.bars)

    @property
    def n_random(self) -> int:
        """``L``: columns of ``Z`` (random-effect levels times effects, all bars)."""
        return sum(k * b.r for k, b in zip(self.levels, self.structure.bars, strict=True))

    @property
    def offsets(self) -> tuple[int, ...]:
        """First column of each bar's block in ``Z``."""
        sizes = [k * b.r for k, b in zip(self.levels, self.structure.bars, strict=True)]
        return tuple(int(x) for x in np.concatenate(([0], np.cumsum(sizes)[:-1])))

    @property
    def n_groups(self) -> int:
        """The fewest levels of any grouping factor (the df of the ``t`` reference)."""
        return min(_levels(self.codes[g]) for g in self.structure.groups)

    @property
    def group_levels(self) -> dict[str, int]:
        """Levels of each grouping factor of the structure."""
        return {g: _levels(self.codes[g]) for g in self.structure.groups}

    @property
    def fixed_names(self) -> tuple[str, ...]:
        return self.structure.fixed

    @property
    def predictors(self) -> tuple[str, ...]:
        return self.structure.predictors

    # -- variants ---------------------------------------------------------------------
    def with_response(self, y: np.ndarray) -> CrossedData:
        """The same design with response ``y``: ``Z'Z``, ``Z'X``, ``X'X`` are shared."""
        y = np.ascontiguousarray(y, dtype=float)
        if y.shape != self.y.shape:
            raise ValueError(f"y must have shape {self.y.shape}, got {y.shape}")
        out = copy.copy(self)
        object.__setattr__(out, "y", y)
        object.__setattr__(out, "Xty", self.X.T @ y)
        object.__setattr__(out, "yty", float(y @ y))
        object.__setattr__(out, "Zty", np.asarray(self.Z.T @ y))
        return out

    def with_structure(self, structure: CrossedStructure) -> CrossedData:
        """The same rows fitted with other random terms (same fixed effects)."""
        if structure.fixed != self.structure.fixed:
            raise ValueError(
                f"structure fixed effects {list(structure.fixed)} differ from the data's "
                f"{list(self.structure.fixed)}"
            )
        if structure == self.structure:
            return self
        out = copy.copy(self)
        object.__setattr__(out, "structure", structure)
        out._set_z()
        return out

    def without_fixed(self, j: int, offset: float = 0.0) -> CrossedData:
        """The model without fixed effect ``j`` and with ``offset x_j`` subtracted from
        ``y`` (a likelihood-ratio test's null model): a random effect on ``x_j`` is kept."""
        name = self.structure.fixed[j]
        keep = [k for k in range(self.q) if k != j]
        columns = dict(self.columns)
        if name in self.structure.random_columns:
            columns[name] = self.X[:, j]
        return CrossedData(
            self.y - offset * self.X[:, j],
            self.X[:, keep],
            self.structure.with_fixed([self.structure.fixed[k] for k in keep]),
            self.codes,
            self.labels,
            columns,
        )

    def to_frame(self):  # -> pandas.DataFrame
        """Long table: ``y``, the fixed-effect columns (not the intercept), the factors."""
        import pandas as pd

        cols: dict[str, object] = {"y": self.y}
        for j, name in enumerate(self.structure.fixed):
            if name != INTERCEPT:
                cols[name] = self.X[:, j]
        for g in self.structure.groups:
            cols[g] = np.asarray(self.labels[g], dtype=object)[self.codes[g]]
        return pd.DataFrame(cols)


def _levels(codes: np.ndarray) -> int:
    return int(codes.max()) + 1 if codes.size else 0


def crossed_problem(data: CrossedData) -> str:
    """Why no engine can fit ``data``, or ``""``: :func:`models.data.fit_problem`'s checks
    and lme4's ``checkNlevels`` / ``checkNobs`` (with lme4's default ``"stop"``):

    - each grouping factor has at least 2 levels ("grouping factors must have > 1
      sampled level");
    - fewer levels than observations (``check.nobs.vs.nlev``);
    - more observations than random effects in each term (``check.nobs.vs.nRE``: the
      random-effect variances and the residual variance are otherwise not identified).
    """
    n = data.n_obs
    if n == 0:
        return "no data: the dataset has no rows"
    if not np.all(np.isfinite(data.y)):
        return f"y has {int(np.sum(~np.isfinite(data.y)))} non-finite value(s); drop those rows"
    if not np.all(np.isfinite(data.X)):
        return "X has non-finite value(s) (NaN or inf); drop those rows"
    if np.ptp(data.y) == 0:
        return "y is constant: the residual variance is not estimable"
    rank = int(np.linalg.matrix_rank(data.XtX))
    if rank < data.q:
        return (
            f"X is rank deficient (rank {rank} < {data.q} columns): the fixed effects are "
            "not identified; drop constant or collinear predictors"
        )
    for g, k in data.group_levels.items():
        if k < 2:
            return (
                f"grouping factor {g!r} has {k} level: a random term needs at least 2 "
                "(lme4: grouping factors must have > 1 sampled level); drop its term"
            )
        if k >= n:
            return (
                f"grouping factor {g!r} has {k} levels for {n} observations (one row per "
                "level): its variance and the residual variance are not identified "
                "(lme4 checkNlevels); drop its term or group by a coarser column"
            )
    for b, k in zip(data.structure.bars, data.levels, strict=True):
        if k * b.r >= n:
            return (
                f"term {b.text()} has {k * b.r} random effects for {n} observations: "
                "they and the residual variance are not identified (lme4 checkNobs); "
                "drop random slopes or the term"
            )
    return ""
