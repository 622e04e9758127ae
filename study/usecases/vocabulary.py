"""The names, limits and renderers the interfaces share: presets, engines, figures,
the largest counts, how a shard is written, how a table is rendered.

The command line builds its arguments' choices and help from these (and prints with
the renderers), so it needs nothing below the use cases.
"""

from __future__ import annotations

from models.registry import default_registry
from models.validate import OptionError
from study.analysis.failures import reasons_text
from study.analysis.kinds import VIEWS
from study.analysis.tables import render
from study.design.config import MAX_REPLICATES, PRESETS, StudyConfig
from study.design.sbc import MAX_SIMULATIONS
from study.run.results import default_out
from study.run.shards import Shard, describe_missing, parse_shard

#: every figure name of every kind (``study plot --what``)
FIGURE_NAMES: tuple[str, ...] = tuple(
    dict.fromkeys(n for views in VIEWS.values() for n in views.figure_names)
)


def engine_names() -> tuple[str, ...]:
    """The registered engines (built-in and installed packages')."""
    return default_registry().names


def is_engine_label(name: object) -> bool:
    """Whether ``name`` names a registered engine (or a variant: ``reml-kr``)."""
    return default_registry().is_label(name)


__all__ = [
    "FIGURE_NAMES",
    "MAX_REPLICATES",
    "MAX_SIMULATIONS",
    "PRESETS",
    "OptionError",
    "Shard",
    "StudyConfig",
    "default_out",
    "describe_missing",
    "engine_names",
    "is_engine_label",
    "parse_shard",
    "reasons_text",
    "render",
]
