"""The use cases: what a user does with a study, as functions that return data.

``run`` / ``calibrate`` (run a study, an SBC), ``merge``, ``summarize``, ``plot``,
``report``, ``info``, ``truth``, ``fit_csv`` and ``design_from_pilot``.  The command
line (:mod:`study.cli`) parses its arguments, calls one of these and prints what it
returns; Python users call them through :mod:`study.api`.  Errors name the Python
keyword (``overwrite=True``); the CLI maps keywords to its flags
(:data:`study.cli.main.FLAGS`).
"""
