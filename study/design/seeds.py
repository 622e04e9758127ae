"""The seed policy: every random stream of a study, keyed from its root seed.

All randomness of a study comes from ``numpy.random.SeedSequence(root, spawn_key=KEY)``
with one of these keys, and nothing else (no global state, no position in a list):

=====================  ===========================  ==================================
stream                 spawn key                    draws
=====================  ===========================  ==================================
design                 ``(0, 1)``                   the X values (once per study)
fixed random effects   ``(0, 2)``                   u, when the design fixes it
replicate ``r``        ``(r,)``                     u (unless fixed), then the noise
engine ``e`` at ``r``  ``(r, 1, name_key(e))``      the engine's sampler seed
=====================  ===========================  ==================================

Replicate keys are 1-tuples and study-level keys 2-tuples starting with 0, engine
keys 3-tuples, so no two streams share a key.  An engine's stream is keyed by its
**name** (:func:`name_key`), so the engines chosen and their order never change
another engine's draws; replicate ``r``'s data depend only on ``(root, r)``, the same
in any process, order or split of the study.
"""

from __future__ import annotations

import hashlib

import numpy as np

DESIGN_KEY = (0, 1)
FIXED_U_KEY = (0, 2)
ENGINE_TAG = 1


def name_key(name: str) -> int:
    """A stable 32-bit integer for a name (first 4 bytes of its SHA-256)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def _check_replicate(replicate: int) -> int:
    if isinstance(replicate, bool) or not isinstance(replicate, int | np.integer):
        raise TypeError(f"replicate = {replicate!r}: must be an int")
    if replicate < 0:
        raise ValueError(f"replicate = {replicate}: must be >= 0")
    return int(replicate)


def design_rng(root: int) -> np.random.Generator:
    """Generator of the study's X design (drawn once)."""
    return np.random.default_rng(np.random.SeedSequence(root, spawn_key=DESIGN_KEY))


def fixed_u_rng(root: int) -> np.random.Generator:
    """Generator of random effects drawn once and reused (``fixed_random_effects``)."""
    return np.random.default_rng(np.random.SeedSequence(root, spawn_key=FIXED_U_KEY))


def replicate_seed_sequence(root: int, replicate: int) -> np.random.SeedSequence:
    """The seed sequence of replicate ``replicate``'s data."""
    return np.random.SeedSequence(root, spawn_key=(_check_replicate(replicate),))


def replicate_rng(root: int, replicate: int) -> np.random.Generator:
    """Generator of replicate ``replicate``'s data."""
    return np.random.default_rng(replicate_seed_sequence(root, replicate))


def engine_seed(root: int, replicate: int, engine: str) -> int:
    """A 32-bit seed for engine ``engine``'s sampler at replicate ``replicate``.

    Keyed by the engine's name, never by its position in the study's engine list.
    """
    key = (_check_replicate(replicate), ENGINE_TAG, name_key(engine))
    return int(np.random.SeedSequence(root, spawn_key=key).generate_state(1, np.uint32)[0])
