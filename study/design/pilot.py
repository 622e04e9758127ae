"""Pilot data: a design's predictor values taken from a CSV, as simr's ``makeLmer`` /
``extend`` take them from a pilot study.

:meth:`Pilot.load` reads the file and refuses it exactly when ``study fit`` would
refuse it with the same formula (:mod:`study.design.datafile`: the same functions, the
same one-line messages); :attr:`Pilot.sha256` is the hash of the file's bytes (for the
configuration hash); :meth:`Pilot.draw` gives the predictor values of a design:

- ``groups=None``: the pilot's own groups, in order; ``groups=K``: K groups drawn with
  replacement from the pilot's (each a copy of one pilot group, its rows included);
- ``group_size=None``: each group's own rows; ``group_size=m``: m rows per group, made
  of whole copies of the group's rows and, for the rest, a random subsample of its rows
  without replacement (``m = 2 n`` repeats every row twice; ``m < n`` keeps m distinct
  rows; ``m = n`` keeps the group as it is).  So a within-group design (sleepstudy's
  days 0 to 9) stays balanced, as simr's ``extend(within = ...)`` recycles rows, rather
  than a bootstrap that repeats some days and drops others.

The rows of a draw are sorted by group and, within a group, in the pilot's order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.formula import Formula, model_frame, parse
from models.validate import fail
from study.design.datafile import formula_data, read_csv
from study.errors import UserError

__all__ = ["Pilot"]

#: the response column of a formula given without one (see :meth:`Pilot.load`)
_RESPONSE = "pilot_response_"


@dataclass(frozen=True, eq=False)
class Pilot:
    """The predictor values and groups of a pilot dataset.

    Attributes
    ----------
    path : Path
        The CSV file, as given.
    sha256 : str
        SHA-256 of the file's bytes (hex): what a configuration hash holds of it.
    formula : Formula
        The parsed model formula the file was checked against (its ``response`` is
        ``""`` when it was given without one).
    frame : DataFrame
        The predictor columns (the variables of the formula's terms; not the response
        or the grouping column), one row per row the fit uses (rows with a missing
        value in a model column dropped, as lme4's ``na.omit``), sorted by group,
        index ``0..N-1``.  Numeric columns as read; text columns (and ``C(x)``
        columns) as pandas categoricals whose categories are the pilot's levels, so
        that a draw missing a level still codes the same fixed-effect columns.  Do
        not modify it: :meth:`draw` returns copies.
    group : ndarray of int
        Group code (``0..K-1``, sorted) of each row of ``frame``.
    labels : tuple of str
        The pilot's group labels (the grouping column's values as text, sorted).
    dropped : int
        Rows of the file left out for missing values.
    """

    path: Path
    sha256: str
    formula: Formula
    frame: pd.DataFrame
    group: np.ndarray
    labels: tuple[str, ...]
    dropped: int = 0

    @classmethod
    def load(cls, path: str | Path, formula: str | Formula) -> Pilot:
        """Read and check the pilot CSV at ``path`` for the model of ``formula``.

        ``formula`` is an lme4-style formula, ``"Reaction ~ Days + (Days | Subject)"``,
        checked exactly as ``study fit DATA.csv "FORMULA"`` checks it; or its right-hand
        side without the response, ``"Days + (Days | Subject)"`` (a design's ``fixed``
        and ``random``), checked the same way except for the response's own checks (a
        missing, non-numeric or constant response), and then no row is dropped for a
        missing response.  The bars name the grouping column.

        Raises
        ------
        UserError
            One line naming the file (or the formula) and the fix: a missing or
            unreadable file, a formula ``study fit`` refuses, a missing column, a
            constant predictor, one group, one row per group, ...
        """
        p = Path(path)
        text = " ".join(formula.text.split()) if isinstance(formula, Formula) else formula
        text = " ".join(str(text).split())
        frame = read_csv(p)
        given = "~" in text
        if given:
            full = text
        else:
            name = _RESPONSE
            while name in frame.columns:
                name += "_"
            full = f"{name} ~ {text}"
            frame = frame.assign(**{name: np.arange(len(frame), dtype=float)})
        try:
            parsed = parse(full)
        except ValueError as err:
            raise UserError(_own_words(str(err), full, text, given)) from err
        if parsed.crossed:
            raise UserError(
                f"{text!r} has {len(parsed.groups)} grouping factors "
                f"({', '.join(parsed.groups)}); a design from pilot data has one: fit the "
                "model with `study fit` and write a crossed design's keys by hand (README: "
                "crossed designs)"
            )
        try:
            formula_data(p, frame, parsed)  # what `study fit` checks, in its words
        except UserError as err:
            raise UserError(_own_words(str(err), full, text, given)) from err
        used = model_frame(frame, parsed)  # passed those checks: the rows they fitted
        try:
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
        except OSError as err:
            raise UserError(f"data file {str(path)!r} cannot be read ({err.strerror})") from err
        predictors = [v for v in parsed.variables if v not in (parsed.response, parsed.group)]
        values = used.frame[predictors].copy()
        for col in predictors:
            if _categorical(values[col], col, parsed):
                seen = set(values[col].unique())
                if isinstance(values[col].dtype, pd.CategoricalDtype):
                    levels = [c for c in values[col].cat.categories if c in seen]
                else:
                    levels = sorted(seen)
                values[col] = pd.Categorical(values[col], categories=levels)
        if not given:
            parsed = dataclasses.replace(parsed, text=text, response="")
        group = np.asarray(used.group, dtype=np.int64)
        return cls(p, digest, parsed, values, group, used.labels, used.dropped)

    @property
    def predictors(self) -> tuple[str, ...]:
        """The predictor columns of :attr:`frame`."""
        return tuple(str(c) for c in self.frame.columns)

    @property
    def group_column(self) -> str:
        """The grouping column of the file (the formula's bars name it)."""
        return self.formula.group

    @property
    def n_obs(self) -> int:
        """Rows of the pilot (those the fit uses)."""
        return int(self.group.shape[0])

    @property
    def n_groups(self) -> int:
        """Groups of the pilot."""
        return len(self.labels)

    @property
    def sizes(self) -> np.ndarray:
        """Rows of each pilot group (K,)."""
        return np.bincount(self.group, minlength=self.n_groups)

    def draw(
        self,
        rng: np.random.Generator,
        groups: int | None = None,
        group_size: int | np.ndarray | list[int] | tuple[int, ...] | None = None,
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """The predictor values of a design drawn from the pilot (module docstring).

        Parameters
        ----------
        rng : numpy.random.Generator
            Used only for what is resampled: not at all with ``groups=None`` and a
            ``group_size`` that is None or equal to each group's own size.  First the
            groups (one ``rng.integers`` call), then the rows (one ``rng.random`` call,
            only when some group needs a subsample).
        groups : int, optional
            None: the pilot's K groups in order.  A number: that many groups drawn
            with replacement from the pilot's (also when it equals K).
        group_size : int or sequence of int, optional
            None: each group's own rows.  A number (or one per drawn group): the rows
            per group, whole copies of the group's rows and, for the rest, a random
            subsample of them without replacement.

        Returns
        -------
        frame : DataFrame
            The predictor columns (a copy), rows sorted by group, index ``0..N-1``.
        group : ndarray of int64
            Group codes ``0..G-1`` of the rows (sorted): the drawn groups in draw order.
        """
        K = self.n_groups
        if groups is None:
            chosen = np.arange(K)
        else:
            count = _whole("groups", groups)
            chosen = rng.integers(0, K, size=count)
        own = self.sizes[chosen]
        first = np.concatenate(([0], np.cumsum(self.sizes)[:-1]))[chosen]
        G = chosen.shape[0]
        if group_size is None:
            sizes = own
            local = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        else:
            sizes = _sizes(group_size, G)
            local = _local_rows(rng, own, sizes)
        which = np.repeat(np.arange(G), sizes)
        order = np.lexsort((local, which))
        rows = first[which] + local
        frame = self.frame.iloc[rows[order]].reset_index(drop=True)
        return frame, which[order].astype(np.int64)


def _local_rows(rng: np.random.Generator, own: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Positions within each group (``0..own_j - 1``) of its ``sizes_j`` rows: whole
    copies of the group's rows, then a subsample without replacement of the rest,
    concatenated over groups in order (not sorted)."""
    copies, extra = np.divmod(sizes, own)
    total = int(sizes.sum())
    start = np.repeat(np.cumsum(sizes) - sizes, sizes)
    pos = np.arange(total) - start  # position of each output row within its group
    g = np.repeat(np.arange(own.shape[0]), sizes)
    local = pos % own[g]
    tail = pos >= (copies * own)[g]
    if tail.any():
        need = np.flatnonzero(extra)
        width = int(own[need].max())
        keys = rng.random((need.shape[0], width))
        keys[np.arange(width)[None, :] >= own[need][:, None]] = np.inf
        pick = np.argsort(keys, axis=1, kind="stable")
        keep = np.arange(width)[None, :] < extra[need][:, None]
        chosen = np.sort(np.where(keep, pick, width), axis=1)
        slot = np.full(own.shape[0], -1)
        slot[need] = np.arange(need.shape[0])
        offset = pos[tail] - (copies * own)[g[tail]]
        local[tail] = chosen[slot[g[tail]], offset]
    return local


def _whole(name: str, value: object, low: int = 1) -> int:
    """``value`` as a whole number >= ``low``; :class:`ValueError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name}={value!r}: must be a whole number >= {low}")
    return int(value)


def _sizes(group_size: object, G: int) -> np.ndarray:
    """Rows per drawn group: one number for all, or one per group."""
    if isinstance(group_size, list | tuple | np.ndarray):
        values = [_whole("group_size", v) for v in np.asarray(group_size).ravel().tolist()]
        if len(values) != G:
            raise ValueError(
                f"group_size has {len(values)} sizes for {G} groups; give one per group"
            )
        return np.asarray(values, dtype=np.int64)
    return np.full(G, _whole("group_size", group_size), dtype=np.int64)


def _categorical(values: pd.Series, col: str, f: Formula) -> bool:
    """Whether a predictor column is a factor of the model (text, a categorical, or
    ``C(col)`` and nowhere used as a number), kept as a categorical of the pilot's
    levels."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return True
    if pd.api.types.is_bool_dtype(values):
        return False
    if not pd.api.types.is_numeric_dtype(values):
        return True
    if col not in f.categorical:
        return False
    bare = re.sub(r"C\([^()]*\)", " ", f.fixed)
    return not re.search(rf"(?<![\w.`]){re.escape(col)}(?![\w.`])", bare)


def _own_words(message: str, full: str, text: str, given: bool) -> str:
    """A message about the formula with a response added (``given`` False) in the
    words of the formula as given."""
    if given:
        return message
    response = full.split(" ~ ", 1)[0]
    return (
        message.replace(f"formula {full!r}", f"formula {text!r}")
        .replace(f"{response} ~ ", "")
        .replace(f"'{response}', ", "")
        .replace(f", '{response}'", "")
    )


def load_checked(path: str, rhs: str, design: Any) -> Pilot:
    """The pilot of a design's ``predictors_from`` (``rhs``: its fixed part and bars),
    checked against what the design says of it: the file's ``predictors_sha256`` when
    given (a file changed since the configuration was written is refused) and its
    ``group_column``.  :class:`OptionError` (one line, naming the key) otherwise."""
    key = "design.predictors_from"
    try:
        pilot = Pilot.load(Path(path), rhs)
    except UserError as err:
        raise fail(key, path, str(err)) from None
    sha = design.predictors_sha256
    if sha and sha != pilot.sha256:
        raise fail(
            key,
            path,
            f"has changed since the configuration was written (sha256 {pilot.sha256[:12]}..., "
            f"not {sha[:12]}...); restore the file or drop predictors_sha256 to use it as "
            "it is now",
        )
    if design.group_column and design.group_column != pilot.group_column:
        raise fail(
            "design.group_column",
            design.group_column,
            f"must be the grouping column of random ({pilot.group_column})",
        )
    return pilot
