"""User-facing errors: one line that names the problem and the fix; exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """A problem with what the user asked for (input, files, options).

    The CLI prints ``study: error: <message>`` on one line and exits with code 2.
    """


class ConfigError(UserError, ValueError):
    """A configuration that cannot be used; the message says what to change."""


class StoreError(UserError):
    """A results store that is missing, corrupt, or does not match the request."""


class RunError(Exception):
    """A run that could not go on (a worker or the cluster failed), not bad input.

    The CLI prints one line and exits with code 1; finished replicates are saved.
    """


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal (Ctrl-C: SIGINT, a scheduler's SIGTERM) after saving
    its finished replicates; ``report`` (a ``RunReport``) says how many."""

    def __init__(self, signum: int, report: object = None) -> None:
        super().__init__(signum, report)
        self.signum = int(signum)
        self.report = report


class FitFailed(RunError):
    """``--fail-fast``: the first fit that failed or did not converge.

    ``args`` are (message, traceback text) so the exception crosses process borders.
    """

    def __init__(self, message: str, trace: str = "") -> None:
        super().__init__(message, trace)
        self.trace = trace

    def __str__(self) -> str:
        return str(self.args[0])
