"""The ``study`` command: one argument parser, one module per command, one error policy.

Every command module has ``register(subparsers)``, which adds its parser and sets
``func``.  Errors a user can fix (:class:`study.errors.UserError`, a bad path) are
printed as one line ``study: error: ...`` with exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from study.cli import (
    design,
    fit,
    info,
    merge,
    plan,
    plot,
    power,
    report,
    run,
    sbc,
    summarize,
    truth,
)
from study.cli.flags import as_flags, flags_of
from study.errors import UserError
from study.usecases.vocabulary import OptionError

COMMANDS = (truth, run, sbc, power, merge, info, fit, design, summarize, plot, report, plan)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2) instead of usage dumps."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``study`` command."""
    parser = _Parser(prog="study", description="Monte Carlo studies of linear mixed models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.flags = flags_of(parser)  # for commands that print library messages themselves
    try:
        return int(args.func(args))
    except BrokenPipeError:  # e.g. `study truth seed | head`: the reader left, say nothing
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (UserError, OptionError) as err:
        print(f"study: error: {as_flags(str(err), args.flags)}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. an output directory that cannot be written
        print(f"study: error: {err}; check the path and its permissions", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("study: interrupted", file=sys.stderr)
        return 130
