"""What a kind of study supplies to the runner (:class:`Kind`), and the pieces it makes.

The runner, store, executors, shards, merge, lock and integrity code know no kind:
they ask the run's kind (:func:`study.run.kinds.kind_of`) how a (condition, replicate)
pair is generated and analysed (:meth:`Kind.run_pair`), what its pieces hold
(:attr:`Kind.layout`'s schema), which terms and coordinates its Dataset has, and
where a run of it goes by default.  Summaries, figures and report sections of a kind
live beside it in the analysis stage (:mod:`study.analysis.kinds`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from study.design.conditions import factor_names, factor_values
from study.run.store import Layout, Piece

if TYPE_CHECKING:
    from models.base import Engine
    from study.design.config import StudyConfig
    from study.design.generate import AnyDesign


@dataclass
class PairOutput:
    """What one (condition, replicate) pair gives: its values (one array per schema
    variable, without the pair axis) and the posteriors to keep as
    ``(engine, DataTree)``."""

    values: dict[str, np.ndarray]
    posteriors: list[tuple[str, Any]] = field(default_factory=list)


class Kind(Protocol):
    """A kind of study: how its pairs are made and what its results hold.

    Attributes
    ----------
    name : str
        The kind's name (``coverage``, ``sbc``): the manifest's ``kind``.
    layout : Layout
        Its results file, per-pair schema and the command that runs it.
    """

    name: str
    layout: Layout
    #: what a configuration of this kind is, for messages ("a coverage study")
    what: str

    def claims(self, config: StudyConfig) -> bool:
        """Whether ``config`` is a study of this kind."""
        ...

    def recognises(self, path: Path) -> bool:
        """Whether the files of run directory ``path`` mark a run of this kind (used
        when its manifest is missing or damaged)."""
        ...

    def default_out(self, config: StudyConfig) -> Path:
        """Where a run of ``config`` goes without ``out``."""
        ...

    def terms(self, config: StudyConfig) -> tuple[list[str], list[str]]:
        """The terms of the results and their effect kinds."""
        ...

    def context(self, config: StudyConfig, design_of: Any) -> Any:
        """What the whole run needs, computed once before anything is written (the
        analytic truth of every condition for a coverage study); ``design_of(id)``
        gives a condition's design (:func:`~study.design.generate.design_of`)."""
        ...

    def run_pair(
        self,
        config: StudyConfig,
        design: AnyDesign,
        engines: Sequence[Engine],
        replicate: int,
        fail_fast: bool,
    ) -> PairOutput:
        """Generate and analyse replicate ``replicate`` of ``design``."""
        ...

    def coords(self, config: StudyConfig, context: Any) -> dict[str, Any]:
        """Coordinates of the Dataset beyond condition, replicate, engine and term."""
        ...

    def axes(self, config: StudyConfig) -> dict[str, int]:
        """The sizes of the schema's axes beyond engine and term (none: ``{}``)."""
        ...

    def attrs(self, config: StudyConfig, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Attributes of the Dataset beyond those every kind has."""
        ...


def piece_of(
    layout: Layout, pairs: Sequence[tuple[str, int]], outputs: Sequence[PairOutput]
) -> Piece:
    """Stack the values of ``pairs`` (condition id, replicate) into a checkpoint piece."""
    assert layout.schema is not None
    values: dict[str, np.ndarray] = {
        name: np.stack([o.values[name] for o in outputs]).astype(var.dtype)
        for name, var in layout.schema.vars.items()
    }
    condition = np.array([c for c, _ in pairs], dtype=np.str_)
    replicate = np.array([r for _, r in pairs], dtype=np.int64)
    return Piece(condition, replicate, values)


def factor_coords(conditions: Sequence[Any]) -> dict[str, Any]:
    """Each factor of a grid as a coordinate on ``condition`` (text factors as objects)."""
    coords: dict[str, Any] = {}
    for name in factor_names(conditions):
        values = factor_values(conditions, name)
        kind = object if any(isinstance(v, str) for v in values) else None
        coords[name] = ("condition", np.array(values, dtype=kind), {"description": "factor"})
    return coords
