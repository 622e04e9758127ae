"""The seed policy's one table of streams (issue 24, item 6): every spawn key, distinct
and unchanged.  A changed key would silently change every stored study's data, so the
keys and a few draws are pinned to the values the code gave before the table existed
(computed at commit cd03e34 with root 20181101 and condition id 0123456789abcdef)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from study.design import seeds
from study.design.seeds import STREAMS, name_key, spawn_key

ROOT, CID = 20181101, "0123456789abcdef"
C = 0x01234567  # condition_key(CID): its first 8 hex digits
BAYES = 1519652625  # name_key("bayes")


def test_every_stream_has_its_documented_key() -> None:
    assert name_key("bayes") == BAYES and seeds.condition_key(CID) == C
    assert spawn_key("design", CID) == (C, 0, 1)
    assert spawn_key("fixed_u", CID) == (C, 0, 2)
    assert spawn_key("replicate", CID, 7) == (C, 7)
    assert spawn_key("engine", CID, 7, "bayes") == (C, 7, 1, BAYES)
    assert spawn_key("sbc", CID, 7) == (C, 7, 2, 0, 0)
    assert spawn_key("sbc_rank", CID, 7, "bayes") == (C, 7, 2, 1, BAYES)
    assert set(STREAMS) == {"design", "fixed_u", "replicate", "engine", "sbc", "sbc_rank"}


def test_the_draws_are_those_of_the_old_literal_keys() -> None:
    def two(rng: np.random.Generator) -> list[int]:
        return rng.integers(0, 2**32, 2).tolist()

    assert two(seeds.design_rng(ROOT, CID)) == [192220385, 4258020945]
    assert two(seeds.fixed_u_rng(ROOT, CID)) == [2421034071, 4105422239]
    assert two(seeds.replicate_rng(ROOT, CID, 7)) == [4266357873, 3295264287]
    assert seeds.engine_seed(ROOT, CID, 7, "bayes") == 700037102
    assert seeds.engine_seed(ROOT, CID, 7, "reml") == 3472643681
    assert two(seeds.sbc_rng(ROOT, CID, 7)) == [202235554, 2090097923]
    assert two(seeds.sbc_rank_rng(ROOT, CID, 7, "bayes")) == [731819855, 2976078357]


def test_no_two_streams_share_a_key() -> None:
    keys = []
    for cid, r, e in itertools.product((CID, "fedcba9876543210"), (0, 1, 2), ("bayes", "reml")):
        for name, stream in STREAMS.items():
            args = (r if stream.per_replicate else None, e if stream.per_engine else None)
            keys.append(spawn_key(name, cid, *args))
    unique = set(keys)
    # per (condition): design and fixed_u once; per replicate: replicate and sbc; per
    # (replicate, engine): engine and sbc_rank
    assert len(unique) == 2 * (2 + 3 * 2 + 3 * 2 * 2)
    # and distinct keys give distinct generator states (SeedSequence hashes every word)
    states = {tuple(np.random.SeedSequence(ROOT, spawn_key=k).generate_state(4)) for k in unique}
    assert len(states) == len(unique)


def test_a_stream_is_asked_for_with_exactly_its_indices() -> None:
    with pytest.raises(TypeError, match="takes a replicate and no engine"):
        spawn_key("replicate", CID)
    with pytest.raises(TypeError, match="takes a replicate and an engine"):
        spawn_key("engine", CID, 3)
    with pytest.raises(ValueError, match="stream = 'noise': must be one of design"):
        spawn_key("noise", CID, 3)


def test_the_bayesian_engines_own_keys_are_unchanged() -> None:
    # derived from the fit's seed (not the root): restarts (2, attempt, chain), PyMC start
    # points (3, chain), random effects drawn after the fit (1,); docs/architecture.md
    from models.bayes.engine import restart_seed
    from models.bayes.sample import start_seed

    def ss(seed: int, key: tuple[int, ...]) -> int:
        return int(np.random.SeedSequence(seed, spawn_key=key).generate_state(1, np.uint64)[0])

    assert restart_seed(12345, 1, 0) == ss(12345, (2, 1, 0)) == 6638294261652061436
    assert start_seed(12345, 2) == ss(12345, (3, 2)) == 1843188972814719290
    u = np.random.default_rng(np.random.SeedSequence(12345, spawn_key=(1,)))
    assert u.integers(0, 2**32, 2).tolist() == [3306082668, 1619526548]
