"""The seed policy: every random stream of a study, keyed from its root seed.

All randomness of a study comes from ``numpy.random.SeedSequence(root, spawn_key=KEY)``
with one of these keys, and nothing else (no global state, no position in a list).
``c = condition_key(id)`` where ``id`` hashes the condition's full design
(:attr:`study.design.conditions.Condition.id`), so a condition's streams depend on
its parameter values, not on its place in a grid:

=====================  ==============================  ===============================
stream                 spawn key                       draws
=====================  ==============================  ===============================
design                 ``(c, 0, 1)``                   the X values (once a condition)
fixed random effects   ``(c, 0, 2)``                   u, when the design fixes it
replicate ``r``        ``(c, r)``                      u (unless fixed), then the noise
engine ``e`` at ``r``  ``(c, r, 1, name_key(e))``      the engine's sampler seed
SBC simulation ``r``   ``(c, r, 2, 0, 0)``             parameters from the prior, then
                                                       u and the noise
SBC ranks of ``e``     ``(c, r, 2, 1, name_key(e))``   tie breaks and PIT jitter
=====================  ==============================  ===============================

The key lengths (3, 2, 4, 5) keep the streams apart.  An engine's stream is keyed by its
**name** (:func:`name_key`), so the engines chosen and their order never change
another engine's draws; replicate ``r`` of a condition depends only on
``(root, condition design, r)``: the same in any process, order, split of the study,
or grid the condition appears in.
"""

from __future__ import annotations

import hashlib

import numpy as np

ENGINE_TAG = 1


def name_key(name: str) -> int:
    """A stable 32-bit integer for a name (first 4 bytes of its SHA-256)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def condition_key(condition_id: str) -> int:
    """The 32-bit stream key of a condition, from its hex id."""
    return int(condition_id[:8], 16)


def _check_replicate(replicate: int) -> int:
    if isinstance(replicate, bool) or not isinstance(replicate, int | np.integer):
        raise TypeError(f"replicate = {replicate!r}: must be an int")
    if replicate < 0:
        raise ValueError(f"replicate = {replicate}: must be >= 0")
    return int(replicate)


def _rng(root: int, key: tuple[int, ...]) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(root, spawn_key=key))


def design_rng(root: int, condition: str) -> np.random.Generator:
    """Generator of a condition's X design (drawn once)."""
    return _rng(root, (condition_key(condition), 0, 1))


def fixed_u_rng(root: int, condition: str) -> np.random.Generator:
    """Generator of random effects drawn once and reused (``fixed_random_effects``)."""
    return _rng(root, (condition_key(condition), 0, 2))


def replicate_rng(root: int, condition: str, replicate: int) -> np.random.Generator:
    """Generator of replicate ``replicate``'s data in a condition."""
    return _rng(root, (condition_key(condition), _check_replicate(replicate)))


def engine_seed(root: int, condition: str, replicate: int, engine: str) -> int:
    """A 32-bit seed for engine ``engine``'s sampler at replicate ``replicate``.

    Keyed by the engine's name, never by its position in the study's engine list.
    """
    key = (condition_key(condition), _check_replicate(replicate), ENGINE_TAG, name_key(engine))
    return int(np.random.SeedSequence(root, spawn_key=key).generate_state(1, np.uint32)[0])


def sbc_rng(root: int, condition: str, simulation: int) -> np.random.Generator:
    """Generator of SBC simulation ``simulation``: its parameters (from the prior),
    then its random effects and noise."""
    return _rng(root, (condition_key(condition), _check_replicate(simulation), 2, 0, 0))


def sbc_rank_rng(root: int, condition: str, simulation: int, engine: str) -> np.random.Generator:
    """Generator of the tie breaks and PIT jitter of engine ``engine``'s ranks."""
    key = (condition_key(condition), _check_replicate(simulation), 2, 1, name_key(engine))
    return _rng(root, key)
