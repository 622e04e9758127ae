"""Integers and sizes a configuration may hold (issue 24, defect 1b).

TOML integers are unbounded Python ints, but every integer of a study goes through
numpy or netCDF, which hold 64 bits: one check of the whole parsed table refuses the
rest, whatever the key.  A design too large for memory is refused at load (a fixed
row cap) or, below the cap, by the run's memory estimate (``study.run.budget``).
"""

from __future__ import annotations

import pytest

from study.design.config import INT64, check_integers, config_from_dict
from study.design.spec import MAX_ROWS, DesignConfig
from study.errors import ConfigError, UserError
from study.run.budget import FIT_COPIES, check_budget, estimate

BASE = {"name": "t", "replicates": 2, "seed": 3, "design": {"groups": 4, "group_size": 5}}


def _with(**top: object) -> dict[str, object]:
    return {**BASE, **top}


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"seed": 2**64}, "seed"),
        ({"seed": -(2**63) - 1}, "seed"),
        ({"design": {"groups": 4, "group_size": [5, 5, 5, 2**70]}}, r"design\.group_size\[3\]"),
        ({"conditions": {"repeats": [1, 2**64]}}, r"conditions\.repeats\[1\]"),
        ({"engines": {"run": ["reml"], "reml": {"maxiter": 2**64}}}, r"engines\.reml\.maxiter"),
    ],
)
def test_an_integer_past_64_bits_is_refused_by_its_dotted_key(table, key):
    with pytest.raises(ConfigError, match=rf"^{key} = -?\d+: is too large for a 64-bit integer"):
        config_from_dict(_with(**table), default_name="t")


def test_the_64_bit_bounds_themselves_are_accepted():
    low, high = INT64
    assert (low, high) == (-(2**63), 2**63 - 1)  # numpy's int64 range
    check_integers({"a": [low, high], "b": {"c": high}, "flag": True})
    cfg = config_from_dict(_with(seed=high), default_name="t")
    assert cfg.seed == high


def test_the_python_api_refuses_a_seed_past_64_bits_too():
    cfg = config_from_dict(BASE, default_name="t")
    with pytest.raises(ValueError, match=r"seed = 18446744073709551616: must be <="):
        type(cfg)(name="t", design=cfg.design, seed=2**64)


def test_a_design_past_the_row_cap_names_the_largest_factor():
    assert DesignConfig(groups=2, group_size=MAX_ROWS // 2).groups == 2  # at the cap
    with pytest.raises(ValueError, match=r"^design\.group_size = 50000001: makes 100,000,002 rows"):
        DesignConfig(groups=2, group_size=MAX_ROWS // 2 + 1)
    with pytest.raises(ValueError, match=r"^design\.repeats = \d+: makes .* rows"):
        DesignConfig(groups=2, group_size=3, repeats=MAX_ROWS)


def test_the_memory_estimate_refuses_a_fit_whose_data_do_not_fit(tmp_path):
    cfg = config_from_dict(
        _with(design={"groups": 10, "group_size": 1000, "repeats": 10}, engines={"run": ["reml"]}),
        default_name="t",
    )
    need = estimate(cfg)
    # 100,000 rows x (y, intercept, X, group code) x 8 bytes x FIT_COPIES copies
    assert need.fit_memory == 100_000 * 4 * 8 * FIT_COPIES
    check_budget(cfg, tmp_path, available_memory=need.fit_memory, free_disk=10**12)
    with pytest.raises(UserError, match=r"^one fit would need about 25\.6 MB of memory"):
        check_budget(cfg, tmp_path, available_memory=need.fit_memory - 1, free_disk=10**12)
