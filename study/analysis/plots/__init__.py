"""Figures of a study: functions that take the results Dataset (or its summary, or a
kept posterior) and return a matplotlib Figure.  The CLI (``study plot``) and the
report are thin layers over them.

``style`` holds what every figure shares (one colour per engine, sizes) and
``common`` the helpers of the study figures: ``measures`` (coverage, zip, calibration,
bias), ``compare`` (engine against engine, estimate distributions), ``grid`` (across
the conditions of a grid); ``diagnostics`` has the convergence figures across
replicates and one replicate's intervals, ``posterior`` the ArviZ diagnostics of a kept
posterior; ``catalog`` names them for ``study plot`` and ``study report``.
"""
