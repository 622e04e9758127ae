"""The truth of a crossed design: GLS with the true ``V``, on the random-effect levels.

With ``D_f = T_f T_f'`` (``T_f = diag(sd_f) chol(C_f)``, which exists when an SD is 0)
and ``Lambda`` block diagonal with ``I_{K_f} (x) T_f / sigma`` (the level-major order of
``Z``'s columns, :mod:`models.crossed.data`), ``V = sum_f Z_f (I (x) D_f) Z_f' + sigma^2 I =
sigma^2 (I + Z Lambda Lambda' Z')`` and Woodbury gives, on the L levels only (never an
N x N matrix, and no ``D^-1``)::

    X'V^-1 X = (X'X - X'Z Lambda (I_L + Lambda'Z'Z Lambda)^-1 Lambda'Z'X) / sigma^2

so ``Var(beta_hat) = (X'V^-1 X)^-1``.  The cross-products come from the design's
:class:`models.crossed.CrossedData` (built once).  The true values of the variance
parameters of any structure on the design's factors: the SD of a random effect the
generator does not draw is 0, a correlation with it undefined (NaN), the correlation of
two effects drawn independently (different terms, or ``||``) 0.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp

from models.crossed import CrossedData, CrossedStructure
from models.structure import OBSERVATION

__all__ = ["factor_of", "fixed_cov", "lambda_matrix", "merged_terms", "ran_pars_values"]


def factor_of(sds: np.ndarray, corr: np.ndarray) -> np.ndarray:
    """``T = diag(sd) chol(C)``: ``D = T T'`` even when an SD is 0."""
    return np.asarray(sds, dtype=float)[:, None] * np.linalg.cholesky(np.asarray(corr, dtype=float))


def lambda_matrix(data: CrossedData, factors: Sequence[np.ndarray], sigma: float) -> sp.csr_matrix:
    """``Lambda`` (L x L, sparse): ``I_{K_f} (x) T_f / sigma`` per bar."""
    blocks = [
        sp.kron(sp.identity(K, format="csr"), sp.csr_matrix(T / sigma))
        for K, T in zip(data.levels, factors, strict=True)
    ]
    return sp.block_diag(blocks, format="csr")


def information(data: CrossedData, factors: Sequence[np.ndarray], sigma: float) -> np.ndarray:
    """``X'V^-1 X`` (q x q) through Woodbury on the levels (module docstring)."""
    Lam = lambda_matrix(data, factors, sigma)
    A = np.asarray(Lam.T @ data.ZtZ)  # Lambda' Z'Z
    M = np.eye(A.shape[0]) + np.asarray(Lam.T @ A.T)  # I + Lambda' Z'Z Lambda (Z'Z symmetric)
    B = np.asarray(Lam.T @ data.ZtX)  # Lambda' Z'X (L x q)
    chol = la.cho_factor(M, lower=True)
    return np.asarray((data.XtX - B.T @ la.cho_solve(chol, B)) / sigma**2)


def fixed_cov(data: CrossedData, factors: Sequence[np.ndarray], sigma: float) -> np.ndarray:
    """``Var(beta_hat) = (X'V^-1 X)^-1`` of the GLS estimator with the true V."""
    return np.asarray(np.linalg.inv(information(data, factors, sigma)))


def merged_terms(
    fixed: Sequence[str], factors: Sequence[str], structures: Iterable[CrossedStructure]
) -> list[str]:
    """The union of the structures' terms in one order: the fixed effects, then per
    factor (in the design's order) its SDs and then its correlations (each in the order
    of the fixed effects), then ``sd__Observation``."""
    pos = {n: i for i, n in enumerate(fixed)}
    at = {f: i for i, f in enumerate(factors)}
    keys: dict[str, tuple] = {n: (0, pos[n]) for n in fixed}
    keys[OBSERVATION] = (2,)
    for s in structures:
        for b in s.bars:
            g = at.get(b.group, len(at))
            for e, name in zip(b.effects, b.names()[: b.r], strict=True):
                keys[name] = (1, g, b.group, 0, pos.get(e, len(pos)), e)
            for (a, c), name in zip(b.pairs, b.names()[b.r :], strict=True):
                ea, ec = b.effects[a], b.effects[c]
                keys[name] = (1, g, b.group, 1, pos.get(ea, len(pos)), pos.get(ec, len(pos)), name)
    return sorted(keys, key=lambda t: keys[t])


def ran_pars_values(
    structure: CrossedStructure,
    factors: Sequence[tuple[np.ndarray, np.ndarray]],
    sigma: float,
    terms: Sequence[str],
    fixed: Sequence[str],
    groups: Sequence[str],
) -> dict[str, float]:
    """The true value of every variance-parameter term in ``terms`` (names of any
    structure on the fixed effects ``fixed`` and the factors ``groups``), from the
    generating ``structure`` and each of its bars' (SDs, correlation matrix)."""
    sd: dict[tuple[str, str], float] = {}
    cor: dict[tuple[str, str, str], float] = {}
    for b, (sds, C) in zip(structure.bars, factors, strict=True):
        for j, e in enumerate(b.effects):
            sd[(b.group, e)] = float(sds[j])
        for j, k in itertools.combinations(range(b.r), 2):
            value = float(C[j, k]) if b.correlated else 0.0
            cor[(b.group, b.effects[j], b.effects[k])] = cor[
                (b.group, b.effects[k], b.effects[j])
            ] = value
    out: dict[str, float] = {}
    for term in terms:
        if term in fixed:
            continue
        if term == OBSERVATION:
            out[term] = float(sigma)
            continue
        head, _, group = term.rpartition("|")
        if group not in groups or not head.startswith(("sd__", "cor__")):
            raise ValueError(
                f"term {term!r} is not a term of a model on the factors {list(groups)}"
            )
        if head.startswith("sd__"):
            effect = head[4:]
            if effect not in fixed:
                raise ValueError(f"term {term!r}: {effect!r} is not a fixed effect {list(fixed)}")
            out[term] = sd.get((group, effect), 0.0)
            continue
        pair = next(
            ((a, b) for a, b in itertools.permutations(fixed, 2) if head == f"cor__{a}.{b}"), None
        )
        if pair is None:
            raise ValueError(f"term {term!r} does not name two fixed effects {list(fixed)}")
        ea, eb = pair
        if sd.get((group, ea), 0.0) > 0 and sd.get((group, eb), 0.0) > 0:
            out[term] = cor.get((group, ea, eb), 0.0)
        else:
            out[term] = float("nan")
    return out
