"""The predictors of a design: one table each, drawn once per design (its X).

``[design.predictors.NAME]`` gives a predictor's ``distribution`` and its parameters,
its ``level`` (``row``: a value per subject, the default; ``group``: one value per
group, a cluster-level covariate or a cluster-randomised treatment) and its centring
(``center``: ``none``, ``grand`` (minus the mean over the design's rows) or ``group``
(minus its group's mean: within-group centring)).

===================  ==========================  =====================================
distribution         parameters                  a value is
===================  ==========================  =====================================
``normal``           ``mean`` (0), ``sd`` (1),   ``Normal(mean, sd)``; correlated with
                     ``cor`` (a table)           the normal predictors ``cor`` names
``uniform``          ``low`` (1), ``high`` (20)  ``Uniform(low, high)``
``rounded_uniform``  ``low`` (1), ``high`` (20)  ``round(Uniform(low, high))``
``bernoulli``        ``p`` (0.5)                 1 with probability ``p``, else 0
``balanced``         ``share`` (0.5)             1 for exactly ``round(share * K)`` groups
                                                 (group level) or ``round(share * n_i)``
                                                 rows of each group (row level), at
                                                 random, else 0
``categorical``      ``levels``, ``probs``       one of ``levels`` (probability
                     (equal)                     ``probs``); treatment-coded in X with
                                                 the first level the reference
===================  ==========================  =====================================

``cor = { income = 0.3 }`` on a normal predictor correlates it with another normal
predictor of the same level: the normal predictors of a level that ``cor`` links are
drawn jointly (their correlation matrix must be positive definite).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.validate import check_keys, choice, fail, number, numbers

DISTRIBUTIONS = ("normal", "uniform", "rounded_uniform", "bernoulli", "balanced", "categorical")
LEVELS = ("row", "group")
CENTERS = ("none", "grand", "group")
#: each distribution's parameters and their defaults (None: required)
PARAMETERS: dict[str, dict[str, Any]] = {
    "normal": {"mean": 0.0, "sd": 1.0, "cor": {}},
    "uniform": {"low": 1.0, "high": 20.0},
    "rounded_uniform": {"low": 1.0, "high": 20.0},
    "bernoulli": {"p": 0.5},
    "balanced": {"share": 0.5},
    "categorical": {"levels": None, "probs": None},
}
_COMMON = ("distribution", "level", "center")


@dataclass(frozen=True)
class Predictor:
    """One predictor: its name, distribution, parameters, level and centring."""

    name: str
    distribution: str = "normal"
    level: str = "row"
    center: str = "none"
    #: the distribution's parameters, defaults filled in (:data:`PARAMETERS`)
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_table(cls, name: str, table: object, key: str) -> Predictor:
        """The predictor of ``[design.predictors.NAME]`` (``key`` names it in errors)."""
        if not isinstance(table, Mapping):
            raise fail(key, table, 'must be a table, e.g. distribution = "normal"')
        if not isinstance(name, str) or not name.isidentifier():
            raise fail(key, name, "must be named by an identifier (letters, digits, _)")
        dist = choice(f"{key}.distribution", table.get("distribution", "normal"), DISTRIBUTIONS)
        defaults = PARAMETERS[dist]
        check_keys(table, {*_COMMON, *defaults}, key)
        level = choice(f"{key}.level", table.get("level", "row"), LEVELS)
        center = choice(f"{key}.center", table.get("center", "none"), CENTERS)
        raw = {k: table.get(k, v) for k, v in defaults.items()}
        params = _checked(dist, raw, key)
        if center != "none" and dist == "categorical":
            raise fail(f"{key}.center", center, "must be none for a categorical predictor")
        if center == "group" and level == "group":
            raise fail(
                f"{key}.center",
                center,
                "cannot be group for a group-level predictor (it would be 0 everywhere); "
                "use grand or none",
            )
        return cls(name, dist, level, center, tuple(params.items()))

    @classmethod
    def legacy(cls, name: str, spec: Any) -> Predictor:
        """A predictor of the shared ``[design.predictor]`` table (``predictors = [...]``)."""
        if spec.distribution == "normal":
            params: dict[str, Any] = {"mean": spec.mean, "sd": spec.sd, "cor": ()}
        else:
            params = {"low": spec.low, "high": spec.high}
        return cls(name, spec.distribution, params=tuple(params.items()))

    @property
    def p(self) -> dict[str, Any]:
        """The parameters as a dict."""
        return dict(self.params)

    @property
    def categorical(self) -> bool:
        """Whether the predictor is categorical (treatment-coded in X)."""
        return self.distribution == "categorical"

    @property
    def levels(self) -> tuple[str, ...]:
        """The categories, the first the reference (empty unless categorical)."""
        return tuple(self.p["levels"]) if self.categorical else ()

    def table(self) -> dict[str, Any]:
        """The TOML table (read back identically by :meth:`from_table`)."""
        out: dict[str, Any] = {"distribution": self.distribution}
        if self.level != "row":
            out["level"] = self.level
        if self.center != "none":
            out["center"] = self.center
        for k, v in self.params:
            if k == "cor":
                if v:
                    out[k] = dict(v)
            else:
                out[k] = list(v) if isinstance(v, tuple) else v
        return out


def _checked(dist: str, raw: dict[str, Any], key: str) -> dict[str, Any]:
    """The parameters of ``dist`` validated (values normalised: floats, tuples)."""
    out: dict[str, Any] = {}
    if dist == "normal":
        out["mean"] = number(f"{key}.mean", raw["mean"])
        out["sd"] = number(f"{key}.sd", raw["sd"], low=0.0)
        cor = raw["cor"]
        if not isinstance(cor, Mapping):
            raise fail(f"{key}.cor", cor, "must be a table of correlations, e.g. { age = 0.3 }")
        out["cor"] = tuple(
            (str(k), number(f"{key}.cor.{k}", v, low=-1.0, high=1.0)) for k, v in cor.items()
        )
    elif dist in ("uniform", "rounded_uniform"):
        out["low"] = number(f"{key}.low", raw["low"])
        out["high"] = number(f"{key}.high", raw["high"])
        if not out["low"] < out["high"]:
            raise fail(f"{key}.high", out["high"], f"must be > low ({out['low']:g})")
    elif dist == "bernoulli":
        out["p"] = number(f"{key}.p", raw["p"], low=0.0, high=1.0)
        if out["p"] in (0.0, 1.0):
            raise fail(f"{key}.p", out["p"], "must be in (0, 1): a constant is not a predictor")
    elif dist == "balanced":
        share = number(f"{key}.share", raw["share"], low=0.0, high=1.0)
        if share in (0.0, 1.0):
            raise fail(f"{key}.share", share, "must be in (0, 1): both arms need members")
        out["share"] = share
    else:  # categorical
        levels = raw["levels"]
        if (
            not isinstance(levels, list | tuple)
            or len(levels) < 2
            or not all(isinstance(v, str) and v for v in levels)
        ):
            raise fail(f"{key}.levels", levels, 'must be a list of >= 2 names, e.g. ["a", "b"]')
        if len(set(levels)) != len(levels):
            raise fail(f"{key}.levels", list(levels), "names must be distinct")
        probs = raw["probs"]
        if probs is None:
            probs = [1.0 / len(levels)] * len(levels)
        values = numbers(f"{key}.probs", probs, low=0.0)
        if len(values) != len(levels):
            raise fail(
                f"{key}.probs",
                list(values),
                f"must have {len(levels)} values, one per level ({', '.join(levels)})",
            )
        if abs(sum(values) - 1.0) > 1e-9:
            raise fail(f"{key}.probs", list(values), f"must sum to 1 (they sum to {sum(values):g})")
        out["levels"] = tuple(levels)
        out["probs"] = tuple(values)
    return out


def check_set(predictors: Sequence[Predictor], groups_min: int, key: str) -> None:
    """Checks across predictors: ``cor`` names normal predictors of the same level, the
    correlation matrices are positive definite, and a group-level ``balanced`` share
    leaves neither arm empty with ``groups_min`` groups."""
    by_name = {p.name: p for p in predictors}
    for p in predictors:
        for other, _ in p.p.get("cor", ()):
            q = by_name.get(other)
            if q is None or q.distribution != "normal" or q.level != p.level or q is p:
                raise fail(
                    f"{key}.{p.name}.cor.{other}",
                    dict(p.p["cor"])[other],
                    f"must name another normal predictor of level {p.level!r}",
                )
        if p.distribution == "balanced" and p.level == "group":
            treated = round(p.p["share"] * groups_min)
            if treated in (0, groups_min):
                raise fail(
                    f"{key}.{p.name}.share",
                    p.p["share"],
                    f"leaves an arm empty with {groups_min} groups (round(share * K) = "
                    f"{treated}); give a share between {1 / groups_min:.3g} and "
                    f"{1 - 1 / groups_min:.3g}, or more groups",
                )
    for block in _blocks(predictors):
        _ = _correlation(block, predictors, key)


def _blocks(predictors: Sequence[Predictor]) -> list[list[str]]:
    """The normal predictors linked by ``cor``, in groups drawn jointly (table order)."""
    links: dict[str, set[str]] = {p.name: set() for p in predictors if p.distribution == "normal"}
    for p in predictors:
        for other, _ in p.p.get("cor", ()):
            if other in links and p.name in links:
                links[p.name].add(other)
                links[other].add(p.name)
    seen: set[str] = set()
    out = []
    for name in links:
        if name in seen or not links[name]:
            continue
        block, todo = [], [name]
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                block.append(n)
                todo += sorted(links[n] - seen)
        out.append([p.name for p in predictors if p.name in block])
    return out


def _correlation(block: list[str], predictors: Sequence[Predictor], key: str) -> np.ndarray:
    by_name = {p.name: p for p in predictors}
    R = np.eye(len(block))
    for i, a in enumerate(block):
        for j, b in enumerate(block):
            for other, r in by_name[a].p["cor"]:
                if other == b:
                    if R[i, j] not in (0.0, r) and i != j:
                        raise fail(
                            f"{key}.{a}.cor.{b}", r, f"contradicts {key}.{b}.cor.{a} = {R[i, j]}"
                        )
                    R[i, j] = R[j, i] = r
    if np.linalg.eigvalsh(R).min() <= 1e-10:
        raise fail(
            f"{key}.{block[0]}.cor",
            dict(by_name[block[0]].p["cor"]),
            f"the correlations of {', '.join(block)} are not positive definite; give smaller ones",
        )
    return R


def draw(
    predictors: Sequence[Predictor],
    rng: np.random.Generator,
    subject_group: np.ndarray,
    groups: int,
) -> pd.DataFrame:
    """Every predictor's value per subject (rows of ``subject_group``, the group of each
    subject, sorted), drawn in table order from ``rng``; centred as each asks.
    Categorical predictors are pandas categoricals with their levels in order."""
    sizes = np.bincount(subject_group, minlength=groups)
    blocks = {b[0]: b for b in _blocks(predictors)}
    in_block = {n for b in blocks.values() for n in b}
    by_name = {p.name: p for p in predictors}
    values: dict[str, np.ndarray] = {}
    for p in predictors:
        if p.name in in_block and p.name not in blocks:
            continue  # drawn with the first of its block
        n = groups if p.level == "group" else subject_group.size
        if p.name in blocks:
            block = blocks[p.name]
            R = _correlation(block, predictors, "design.predictors")
            z = rng.standard_normal((n, len(block))) @ np.linalg.cholesky(R).T
            for j, name in enumerate(block):
                q = by_name[name].p
                values[name] = q["mean"] + q["sd"] * z[:, j]
            continue
        values[p.name] = _one(p, rng, n, sizes if p.level == "row" else None, groups)
    frame: dict[str, Any] = {}
    for p in predictors:
        x = values[p.name]
        if p.level == "group":
            x = x[subject_group]
        if p.center == "grand":
            x = x - x.mean()
        elif p.center == "group":
            x = x - (np.bincount(subject_group, weights=x, minlength=groups) / sizes)[subject_group]
        if p.categorical:
            frame[p.name] = pd.Categorical.from_codes(
                x.astype(np.int64), categories=pd.Index(p.levels)
            )
        else:
            frame[p.name] = np.asarray(x, dtype=float)
    return pd.DataFrame(frame)


def _one(
    p: Predictor, rng: np.random.Generator, n: int, sizes: np.ndarray | None, groups: int
) -> np.ndarray:
    """``n`` values of one predictor (row level: ``sizes`` the subjects per group)."""
    q = p.p
    if p.distribution == "normal":
        return rng.normal(q["mean"], q["sd"], n)
    if p.distribution in ("uniform", "rounded_uniform"):
        x = rng.uniform(q["low"], q["high"], n)
        return np.round(x) if p.distribution == "rounded_uniform" else x
    if p.distribution == "bernoulli":
        return (rng.random(n) < q["p"]).astype(float)
    if p.distribution == "categorical":
        return rng.choice(len(q["levels"]), size=n, p=np.array(q["probs"])).astype(float)
    # balanced: exactly round(share * m) ones among m units, at random positions
    if sizes is None:
        return _balanced(rng, groups, q["share"])
    return np.concatenate([_balanced(rng, int(m), q["share"]) for m in sizes])


def _balanced(rng: np.random.Generator, m: int, share: float) -> np.ndarray:
    out = np.zeros(m)
    out[rng.permutation(m)[: round(share * m)]] = 1.0
    return out


def example_frame(predictors: Sequence[Predictor]) -> pd.DataFrame:
    """A small frame with every predictor (every level of the categorical ones): what
    the fixed part's column names are read from before anything is drawn."""
    rows = max([2, *(len(p.levels) for p in predictors)])
    frame: dict[str, Any] = {}
    for p in predictors:
        if p.categorical:
            codes = np.arange(rows) % len(p.levels)
            frame[p.name] = pd.Categorical.from_codes(codes, categories=pd.Index(p.levels))
        else:
            frame[p.name] = np.arange(rows, dtype=float)
    return pd.DataFrame(frame)
