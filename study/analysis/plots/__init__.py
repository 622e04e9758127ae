"""Figures of a study: functions that take the results Dataset (or its summary, or a
kept posterior) and return a matplotlib Figure.  The CLI (``study plot``) and the
report are thin layers over them.

``style`` holds what every figure shares (one colour per engine, sizes, titles);
``measures`` the study figures (coverage, zip, calibration, bias, engine comparison,
estimate distributions, grids of conditions); ``diagnostics`` the convergence figures
across replicates and the ArviZ diagnostics of a kept posterior.
"""
