"""Models with several grouping factors (crossed ``(1 | subj) + (1 | item)``, nested
``(1 | g/h)``): their structure, data and cross-products (:mod:`models.crossed.data`),
and the level-space algebra both engines fit them with (:mod:`models.crossed.algebra`)."""

from models.crossed.data import CrossedData, crossed_problem
from models.crossed.structure import Bar, CrossedStructure

__all__ = ["Bar", "CrossedData", "CrossedStructure", "crossed_problem"]
