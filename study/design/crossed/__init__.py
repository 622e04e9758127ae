"""Crossed designs: every subject meets every item (or a counterbalanced subset).

``[design]`` with a ``crossed`` table is a design of several crossed grouping factors
(:class:`~study.design.crossed.spec.CrossedDesignConfig`): its rows are the
combinations of their levels (``seen = "all"``) or the combinations within one list
of a Latin square (``seen = "list"``), the random part is lme4 bars over those factors
(:mod:`~study.design.crossed.bars`, a :class:`models.crossed.CrossedStructure`), and
the truth is the GLS algebra on the random-effect levels
(:mod:`~study.design.crossed.algebra`).  The generator is
:class:`study.design.generate.CrossedDesign` (it needs the seed policy and the
condition ids, which live beside the one-factor :class:`~study.design.generate.Design`).
"""
