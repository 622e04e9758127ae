"""The data an engine fits: a long table plus per-group sufficient statistics.

The model is ``y_i = X_i beta + Z_i u_i + e_i`` with ``Z_i`` a subset of the columns of
``X_i`` (:class:`models.structure.Structure`; by default ``Z_i = X_i``: a random
intercept and a random slope on every predictor).  With Gaussian random effects the
marginal likelihood of group ``i`` depends on the data only through ``X_i'X_i``,
``X_i'y_i``, ``y_i'y_i`` and ``n_i`` (``X'Z``, ``Z'Z`` and ``Z'y`` are sub-blocks of
them), which are computed here once, vectorised over rows.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from models.structure import INTERCEPT, Structure

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["INTERCEPT", "LMMData", "Structure", "fit_problem"]


@dataclass(frozen=True)
class LMMData:
    """One dataset for a linear mixed model with one grouping factor.

    Parameters
    ----------
    y : ndarray, shape (N,)
        Response.
    X : ndarray, shape (N, q)
        Fixed-effects design.  Without ``structure``: the first column is the
        intercept (all ones) and the random-effects design is the same matrix
        (``Z = X``).
    group : ndarray of int, shape (N,)
        Group codes ``0..K-1``; rows must be sorted by group.
    predictors : tuple of str
        Names of the columns of ``X`` other than the intercept.
    group_labels : tuple of str, optional
        Original group labels, for display; defaults to ``"0".."K-1"``.
    structure : Structure, optional
        Names of ``X``'s columns and which of them have random effects, correlated or
        not; default :meth:`Structure.full` of ``predictors``.

    Attributes
    ----------
    n, XtX, Xty, yty
        Per-group sufficient statistics, shapes (K,), (K, q, q), (K, q), (K,).
    """

    y: np.ndarray
    X: np.ndarray
    group: np.ndarray
    predictors: tuple[str, ...]
    group_labels: tuple[str, ...] = ()
    structure: Structure = None  # type: ignore[assignment]  # None: Structure.full
    n: np.ndarray = field(init=False, repr=False)
    XtX: np.ndarray = field(init=False, repr=False)
    Xty: np.ndarray = field(init=False, repr=False)
    yty: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        y = np.ascontiguousarray(self.y, dtype=float)
        X = np.ascontiguousarray(self.X, dtype=float)
        group = np.ascontiguousarray(self.group, dtype=np.int64)
        if y.ndim != 1:
            raise ValueError(f"y must be one-dimensional, got shape {y.shape}")
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise ValueError(f"X must have shape (len(y), q) = ({y.shape[0]}, q), got {X.shape}")
        if group.shape != y.shape:
            raise ValueError(f"group must have the shape of y {y.shape}, got {group.shape}")
        structure = self.structure
        if structure is None:
            if X.shape[1] != len(self.predictors) + 1:
                raise ValueError(
                    f"X has {X.shape[1]} columns but {len(self.predictors)} predictor names "
                    "were given; X must be [intercept, predictors...]"
                )
            structure = Structure.full(self.predictors)
        elif X.shape[1] != structure.q or tuple(self.predictors) != structure.predictors:
            raise ValueError(
                f"X has {X.shape[1]} columns and predictors {list(self.predictors)}, but the "
                f"structure's fixed effects are {list(structure.fixed)}"
            )
        object.__setattr__(self, "structure", structure)
        if y.size and np.any(np.diff(group) < 0):
            raise ValueError("rows must be sorted by group; sort the table by its group column")
        K = int(group[-1]) + 1 if group.size else 0
        n = np.bincount(group, minlength=K)
        if np.any(n == 0):
            raise ValueError("group codes must be 0..K-1 with no empty group")
        starts = np.concatenate(([0], np.cumsum(n)[:-1]))
        XtX = np.add.reduceat(X[:, :, None] * X[:, None, :], starts, axis=0)
        Xty = np.add.reduceat(X * y[:, None], starts, axis=0)
        yty = np.add.reduceat(y * y, starts)
        labels = self.group_labels or tuple(str(k) for k in range(K))
        if len(labels) != K:
            raise ValueError(f"group_labels has {len(labels)} labels for {K} groups")
        for name, value in (("y", y), ("X", X), ("group", group), ("group_labels", labels)):
            object.__setattr__(self, name, value)
        for name, value in (("n", n), ("XtX", XtX), ("Xty", Xty), ("yty", yty)):
            object.__setattr__(self, name, value)

    @property
    def n_groups(self) -> int:
        """Number of groups K."""
        return int(self.n.shape[0])

    @property
    def q(self) -> int:
        """Number of fixed effects (columns of ``X``), intercept included."""
        return int(self.X.shape[1])

    @property
    def r(self) -> int:
        """Number of random effects per group (columns of ``Z``)."""
        return self.structure.r

    @property
    def z_index(self) -> np.ndarray:
        """Positions in ``X`` of ``Z``'s columns."""
        return np.asarray(self.structure.index, dtype=np.int64)

    @property
    def Z(self) -> np.ndarray:
        """Random-effects design (N, r): the columns of ``X`` in :attr:`z_index`."""
        return self.X[:, self.z_index]

    @property
    def ZtX(self) -> np.ndarray:
        """Per-group ``Z_i'X_i`` (K, r, q)."""
        return self.XtX[:, self.z_index, :]

    @property
    def ZtZ(self) -> np.ndarray:
        """Per-group ``Z_i'Z_i`` (K, r, r)."""
        idx = self.z_index
        return self.XtX[:, idx[:, None], idx[None, :]]

    @property
    def Zty(self) -> np.ndarray:
        """Per-group ``Z_i'y_i`` (K, r)."""
        return self.Xty[:, self.z_index]

    def with_structure(self, structure: Structure) -> LMMData:
        """The same data fitted with another random-effects structure (same ``X``; the
        sufficient statistics are shared, not recomputed)."""
        if structure.fixed != self.structure.fixed:
            raise ValueError(
                f"structure fixed effects {list(structure.fixed)} differ from the data's "
                f"{list(self.structure.fixed)}"
            )
        out = copy.copy(self)
        object.__setattr__(out, "structure", structure)
        return out

    @property
    def n_obs(self) -> int:
        """Number of rows N."""
        return int(self.y.shape[0])

    @property
    def fixed_names(self) -> tuple[str, ...]:
        """Fixed-effect term names, broom.mixed style, e.g. ``("(Intercept)", *predictors)``."""
        return self.structure.fixed

    def to_frame(self) -> pd.DataFrame:
        """Long table with columns ``y``, the predictors and ``group``."""
        import pandas as pd

        cols: dict[str, np.ndarray] = {"y": self.y}
        for j, name in enumerate(self.structure.fixed):
            if name != INTERCEPT:
                cols[name] = self.X[:, j]
        cols["group"] = np.asarray(self.group_labels, dtype=object)[self.group]
        return pd.DataFrame(cols)

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, y: str, x: list[str] | tuple[str, ...], group: str
    ) -> LMMData:
        """Build from a user's table: response ``y``, predictor columns ``x``, ``group``.

        Rows are sorted by group (stable), groups coded in order of first appearance
        after sorting by label.
        """
        import pandas as pd

        missing = [c for c in (y, *x, group) if c not in frame.columns]
        if missing:
            raise ValueError(
                f"column(s) {missing} not in the data; available: {list(frame.columns)}"
            )
        sub = frame[[y, *x, group]]
        for col in (y, *x, group):
            gaps = np.flatnonzero(sub[col].isna().to_numpy())
            if gaps.size:
                raise ValueError(
                    f"column {col!r} has {gaps.size} missing value(s) (first in data row "
                    f"{gaps[0] + 1}); drop those rows or fill them in"
                )
        for col in (y, *x):
            values = pd.to_numeric(sub[col], errors="coerce")
            bad = np.flatnonzero(values.isna().to_numpy())
            if bad.size:
                raise ValueError(
                    f"column {col!r} must be numeric, but data row {bad[0] + 1} holds "
                    f"{sub[col].iloc[bad[0]]!r}; fix or drop the non-numeric values"
                )
            arr = values.to_numpy(dtype=float)
            if not np.isfinite(arr).all():
                n_bad = int((~np.isfinite(arr)).sum())
                raise ValueError(
                    f"column {col!r} has {n_bad} infinite value(s) (inf); drop those rows"
                )
            if np.abs(arr).max(initial=0.0) > MAX_ABS_VALUE:
                raise ValueError(
                    f"column {col!r} has values too large to fit (max |value| "
                    f"{np.abs(arr).max():.3g} > {MAX_ABS_VALUE:.0e}: squares overflow); "
                    "rescale it, e.g. to other units"
                )
        labels = sub[group].astype(str).to_numpy()
        uniq, codes = np.unique(labels, return_inverse=True)
        order = np.argsort(codes, kind="stable")
        xs = sub[list(x)].apply(pd.to_numeric).to_numpy(dtype=float)[order]
        yv = pd.to_numeric(sub[y]).to_numpy(dtype=float)[order]
        X = np.column_stack([np.ones(len(yv)), xs])
        return cls(yv, X, codes[order], tuple(x), tuple(str(u) for u in uniq))


#: the largest |value| a column may hold: its square (in X'X, y'y) must not overflow
MAX_ABS_VALUE = 1e100


def fit_problem(data: LMMData) -> str:
    """Why no engine can fit ``data``, or ``""``: the checks every engine applies.

    No rows, non-finite values, a constant response (the residual variance is not
    estimable), a rank-deficient fixed-effects design (e.g. a constant predictor: the
    coefficients are not identified, and a Bayesian fit would only echo its prior),
    fewer than two groups.
    """
    if data.n_obs == 0:
        return "no data: the dataset has no rows"
    bad_y = int(np.sum(~np.isfinite(data.y)))
    if bad_y:
        return f"y has {bad_y} non-finite value(s) (NaN or inf); drop those rows"
    if not np.all(np.isfinite(data.X)):
        return "X has non-finite value(s) (NaN or inf); drop those rows"
    if np.ptp(data.y) == 0:
        return "y is constant: the residual variance is not estimable"
    rank = int(np.linalg.matrix_rank(data.XtX.sum(axis=0)))
    if rank < data.q:
        return (
            f"X is rank deficient (rank {rank} < {data.q} columns): the fixed effects are "
            "not identified; drop constant or collinear predictors"
        )
    if data.n_groups < 2:
        return f"need at least 2 groups, got {data.n_groups}"
    return ""
