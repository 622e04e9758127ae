"""The ``study`` command line: one module per command, ``main`` dispatches."""

from __future__ import annotations

from study.cli.main import main

__all__ = ["main"]
