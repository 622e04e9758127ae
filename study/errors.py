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
