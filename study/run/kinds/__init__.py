"""The kinds of study the runner runs: one registry, looked up by name or by config.

A kind (:class:`~study.run.kinds.base.Kind`) supplies how one (condition, replicate)
pair is generated and analysed, its per-pair schema, terms, coordinates and default
directory; the runner, store, executors, shards, merge, lock and integrity code know
none of them.  A new kind (power analysis, say) is a module here, one entry in
:data:`KINDS`, and its summary, figures and report in :mod:`study.analysis.kinds`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from study.run.kinds.base import Kind, PairOutput, piece_of
from study.run.kinds.coverage import COVERAGE
from study.run.kinds.power import POWER
from study.run.kinds.sbc import SBC

if TYPE_CHECKING:
    from study.design.config import StudyConfig

#: every kind by name; the first, the coverage study, is what a configuration is
#: unless another kind claims it
KINDS: dict[str, Kind] = {k.name: k for k in (COVERAGE, SBC, POWER)}
#: manifests written before kinds had names: no ``kind``, or ``"study"``
_LEGACY = {"study": COVERAGE.name}

__all__ = ["KINDS", "Kind", "PairOutput", "kind_named", "kind_of", "kind_of_files", "piece_of"]


def kind_of(config: StudyConfig) -> Kind:
    """The kind of study ``config`` is: the first specific kind that claims it, else
    the coverage study."""
    default, *others = KINDS.values()
    return next((k for k in others if k.claims(config)), default)


def kind_named(name: object) -> Kind:
    """The kind a manifest names (``None``: a coverage study written before kinds)."""
    key = _LEGACY.get(str(name), str(name)) if name is not None else COVERAGE.name
    if key not in KINDS:
        raise KeyError(f"kind {name!r}: not one of {', '.join(KINDS)}")
    return KINDS[key]


def kind_of_files(path: Path) -> Kind:
    """The kind the files of run directory ``path`` mark, for a run whose manifest is
    missing or damaged (default: a coverage study)."""
    default, *others = KINDS.values()
    return next((k for k in others if k.recognises(path)), default)
