"""The analysis side of each kind of study (:mod:`study.run.kinds` is the run side):
summaries, figures and reports, by kind name."""

from __future__ import annotations

from study.analysis.kinds.base import Drawn, Summary, Views
from study.analysis.kinds.coverage import COVERAGE_VIEWS
from study.analysis.kinds.power import POWER_VIEWS
from study.analysis.kinds.sbc import SBC_VIEWS

#: every kind's analysis, by the kind's name (the results' ``kind`` attribute)
VIEWS: dict[str, Views] = {v.name: v for v in (COVERAGE_VIEWS, SBC_VIEWS, POWER_VIEWS)}

__all__ = ["VIEWS", "Drawn", "Summary", "Views", "views_of"]


def views_of(kind: str) -> Views:
    """The analysis of kind ``kind`` (a name of :data:`VIEWS`)."""
    try:
        return VIEWS[kind]
    except KeyError:
        raise KeyError(f"kind {kind!r}: not one of {', '.join(VIEWS)}") from None
