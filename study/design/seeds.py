"""The seed policy: every random stream of a study, keyed from its root seed.

All randomness of a study comes from ``numpy.random.SeedSequence(root, spawn_key=KEY)``
with the key of one stream of :data:`STREAMS` (the one table of them), and nothing else
(no global state, no position in a list).  A key is ``(c, [r,] *tag, [name_key(e)])``:
``c = condition_key(id)`` where ``id`` hashes the condition's full design
(:attr:`study.design.conditions.Condition.id`), so a condition's streams depend on its
parameter values, not on its place in a grid (the design stream's ``x`` is
``condition_key(x_id)``, the hash of the keys that define X only:
:func:`study.design.conditions.x_id`); ``r`` the replicate (or SBC simulation)
for the per-replicate streams; ``name_key(e)`` for the streams of one engine:

=====================  ==============================  ===============================
stream                 spawn key                       draws
=====================  ==============================  ===============================
design                 ``(x, 0, 1)``                   X (once a condition): sizes,
                                                       predictors, group SD factors
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
or grid the condition appears in.  An engine derives its own sub-streams (chains,
restarts) from the seed it is given; ``docs/architecture.md`` (seed policy) lists them
beside these.  A crossed design draws from the same design and replicate streams;
its load-time checks look at an X from :func:`check_rng`, fixed and no study's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Stream:
    """One random stream of a study: its spawn key is ``(c, [r,] *tag, [name_key(e)])``.

    Attributes
    ----------
    tag : tuple of int
        The integers after the condition key (and the replicate).
    per_replicate : bool
        Whether the replicate (or SBC simulation) index follows the condition key.
    per_engine : bool
        Whether the key ends with the engine's :func:`name_key`.
    draws : str
        What the stream draws (documentation; ``docs/architecture.md`` shows it).
    """

    tag: tuple[int, ...]
    per_replicate: bool
    per_engine: bool
    draws: str


#: every stream of a study, by name (the one table of spawn keys: never change a tag,
#: or every stored study's data change; add a new stream with a key of a new shape)
STREAMS: dict[str, Stream] = {
    "design": Stream((0, 1), False, False, "a condition's X values (drawn once)"),
    "fixed_u": Stream((0, 2), False, False, "random effects drawn once and reused"),
    "replicate": Stream((), True, False, "replicate r's random effects, then its noise"),
    "engine": Stream((1,), True, True, "engine e's sampler seed at replicate r"),
    "sbc": Stream((2, 0, 0), True, False, "SBC simulation r's parameters, u, noise"),
    "sbc_rank": Stream((2, 1), True, True, "engine e's SBC tie breaks and PIT jitter"),
}
#: the tag of the engine stream (kept for callers of the old name)
ENGINE_TAG = STREAMS["engine"].tag[0]


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


def spawn_key(
    stream: str, condition: str, replicate: int | None = None, engine: str | None = None
) -> tuple[int, ...]:
    """The spawn key of ``stream`` (a name of :data:`STREAMS`) for a condition (its hex
    id), and the replicate and the engine name when the stream has them."""
    if stream not in STREAMS:
        raise ValueError(f"stream = {stream!r}: must be one of {', '.join(STREAMS)}")
    spec = STREAMS[stream]
    if spec.per_replicate != (replicate is not None) or spec.per_engine != (engine is not None):
        raise TypeError(
            f"stream {stream!r} takes "
            + ("a replicate" if spec.per_replicate else "no replicate")
            + (" and an engine" if spec.per_engine else " and no engine")
        )
    key = [condition_key(condition)]
    if replicate is not None:
        key.append(_check_replicate(replicate))
    key += spec.tag
    if engine is not None:
        key.append(name_key(engine))
    return tuple(key)


def _rng(root: int, key: tuple[int, ...]) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(root, spawn_key=key))


def design_rng(root: int, condition: str) -> np.random.Generator:
    """Generator of a condition's X design (drawn once)."""
    return _rng(root, spawn_key("design", condition))


def fixed_u_rng(root: int, condition: str) -> np.random.Generator:
    """Generator of random effects drawn once and reused (``fixed_random_effects``)."""
    return _rng(root, spawn_key("fixed_u", condition))


def replicate_rng(root: int, condition: str, replicate: int) -> np.random.Generator:
    """Generator of replicate ``replicate``'s data in a condition."""
    return _rng(root, spawn_key("replicate", condition, replicate))


def engine_seed(root: int, condition: str, replicate: int, engine: str) -> int:
    """A 32-bit seed for engine ``engine``'s sampler at replicate ``replicate``.

    Keyed by the engine's name, never by its position in the study's engine list.
    """
    key = spawn_key("engine", condition, replicate, engine)
    return int(np.random.SeedSequence(root, spawn_key=key).generate_state(1, np.uint32)[0])


def sbc_rng(root: int, condition: str, simulation: int) -> np.random.Generator:
    """Generator of SBC simulation ``simulation``: its parameters (from the prior),
    then its random effects and noise."""
    return _rng(root, spawn_key("sbc", condition, simulation))


def sbc_rank_rng(root: int, condition: str, simulation: int, engine: str) -> np.random.Generator:
    """Generator of the tie breaks and PIT jitter of engine ``engine``'s ranks."""
    return _rng(root, spawn_key("sbc_rank", condition, simulation, engine))


#: the seed of the check stream (not a study's: no root seed, no condition)
CHECK_SEED = 20240527


def check_rng() -> np.random.Generator:
    """Generator of the X a crossed design's load-time checks look at
    (:meth:`study.design.crossed.spec.CrossedDesignConfig.problem`): fixed, so that a
    configuration is accepted or refused whatever its seed; no study data come from it."""
    return np.random.default_rng(np.random.SeedSequence(CHECK_SEED))
