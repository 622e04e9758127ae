"""One validation style for every setting: study configuration and engine options.

Every check names the key, echoes the value and states the rule, as
``"design.sigma = -1.0: must be > 0"``.  A wrong value raises :class:`OptionError` (a
``ValueError``); a wrong type raises :class:`OptionTypeError` (an ``OptionError`` and a
``TypeError``), so callers may catch either the precise builtin or the one family.
Errors raised deep inside a nested table are re-keyed on the way out with
:meth:`OptionError.within` (``chains = 0`` becomes ``engines.bayes.chains = 0``).

This module depends on nothing but the standard library: both ``models`` and the study
configuration (``study.design.config``) use it.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection, Iterable, Mapping
from numbers import Integral, Real
from typing import Any

__all__ = [
    "OMIT_DEFAULT",
    "OptionError",
    "OptionTypeError",
    "UnknownKeyError",
    "boolean",
    "check_keys",
    "choice",
    "fail",
    "integer",
    "number",
    "numbers",
]


#: dataclass field metadata: leave the setting out of option tables (and hashes) while
#: it holds its default (for options added after runs were made with the old tables)
OMIT_DEFAULT = {"omit_default": True}


class OptionError(ValueError):
    """A setting that cannot be used: ``key = value: rule``."""

    def __init__(self, key: str, value: object, rule: str) -> None:
        self.key, self.value, self.rule = key, value, rule
        super().__init__(f"{key} = {value!r}: {rule}" if key else rule)

    def within(self, where: str) -> OptionError:
        """The same error with its key prefixed by ``where`` (``where.key``)."""
        if not self.key:  # a message that carries its own full path
            return self
        return type(self)(f"{where}.{self.key}", self.value, self.rule)


class OptionTypeError(OptionError, TypeError):
    """A setting of the wrong type."""


def fail(key: str, value: object, rule: str) -> OptionError:
    """An :class:`OptionError` for ``key = value`` breaking ``rule`` (to ``raise``)."""
    return OptionError(key, value, rule)


def number(
    key: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = False,
) -> float:
    """``value`` as a finite float, optionally ``> low`` (``>=`` if inclusive) and ``< high``."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise OptionTypeError(key, value, "must be a number")
    v = float(value)
    if not math.isfinite(v):
        raise OptionError(key, value, "must be finite")
    too_low = low is not None and (v < low if low_inclusive else v <= low)
    too_high = high is not None and v >= high
    if too_low or too_high:
        parts = []
        if low is not None:
            parts.append(f">= {low:g}" if low_inclusive else f"> {low:g}")
        if high is not None:
            parts.append(f"< {high:g}")
        raise OptionError(key, value, "must be " + " and ".join(parts))
    return v


#: the largest integer a setting may hold (a 64-bit signed integer: NumPy's and
#: netCDF's; larger values overflow somewhere downstream)
INT64_MAX = 2**63 - 1


def integer(key: str, value: object, *, low: int, high: int | None = None) -> int:
    """``value`` as an int ``>= low`` and ``<= high`` (default: the largest 64-bit
    integer); floats such as 1.5 are refused."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise OptionTypeError(key, value, f"must be an integer >= {low}")
    v = int(value)
    if v < low:
        raise OptionError(key, value, f"must be >= {low}")
    limit = INT64_MAX if high is None else high
    if v > limit:
        raise OptionError(key, value, f"must be <= {limit:,}")
    return v


def choice(key: str, value: object, choices: Collection[str]) -> str:
    """``value`` if it is one of ``choices``."""
    if not isinstance(value, str):
        raise OptionTypeError(key, value, f"must be one of {', '.join(choices)}")
    if value not in choices:
        raise OptionError(key, value, f"must be one of {', '.join(choices)}")
    return value


def boolean(key: str, value: object) -> bool:
    """``value`` if it is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise OptionTypeError(key, value, "must be true or false")
    return value


def numbers(
    key: str, value: object, *, low: float | None = None, low_inclusive: bool = False
) -> tuple[float, ...]:
    """A list of numbers as a tuple of floats (each checked as by :func:`number`)."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise OptionTypeError(key, value, "must be a list of numbers")
    return tuple(
        number(f"{key}[{i}]", v, low=low, low_inclusive=low_inclusive) for i, v in enumerate(value)
    )


def check_keys(table: Mapping[str, Any], allowed: Collection[str], where: str) -> None:
    """Refuse keys of ``table`` outside ``allowed``, listing the allowed ones."""
    for key in table:
        if key not in allowed:
            raise UnknownKeyError(str(key), allowed, where)


class UnknownKeyError(OptionError):
    """A key no setting has; names it in full (``engines.bayes.chain``) with the
    allowed keys, however deep the table it was found in."""

    def __init__(self, key: str, allowed: Collection[str], where: str = "") -> None:
        self.unknown, self.allowed, self.where = key, tuple(sorted(allowed)), where
        full = f"{where}.{key}" if where else key
        scope = f" in [{where}]" if where else ""
        hint = difflib.get_close_matches(key, self.allowed, n=1)
        guess = f" (did you mean {hint[0]}?)" if hint else ""
        super().__init__(
            "", key, f"unknown key {full}{guess}; allowed keys{scope}: {', '.join(self.allowed)}"
        )

    def within(self, where: str) -> OptionError:
        inner = f"{where}.{self.where}" if self.where else where
        return UnknownKeyError(self.unknown, self.allowed, inner)
