"""The library names Python keywords in its messages; the command line shows its flags."""

from __future__ import annotations

import argparse
import re


def flags_of(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Python keyword -> the command line's flag, from every subcommand's options
    (``fmt`` -> ``--format``, ``exclude_nonconverged`` -> ``--exclude-nonconverged``)."""
    flags: dict[str, str] = {"fmt": "--format"}
    for action in parser._actions:
        for sub in getattr(action, "choices", None) or {}:
            if isinstance(action.choices, dict):
                for opt in action.choices[sub]._actions:
                    longs = [o for o in opt.option_strings if o.startswith("--")]
                    if longs and opt.dest not in flags:
                        flags[opt.dest] = longs[0]
    return flags


#: a Python keyword in a library message: ``overwrite=True``, ``out=...``, ``level=1.5``
_KEYWORD = re.compile(r"(?<![\w.\-])([a-z_]+)=(True\b|\.\.\.|(?=\S))")


def as_flags(message: str, flags: dict[str, str]) -> str:
    """``message`` with the Python keywords the library names turned into the CLI's flags:
    ``overwrite=True`` -> ``--overwrite``, ``out=...`` -> ``--out``, ``level=2`` ->
    ``--level 2`` (keywords without a flag are left as they are)."""

    def flag(m: re.Match[str]) -> str:
        name, value = m.group(1), m.group(2)
        if name not in flags:
            return m.group(0)
        return flags[name] if value in ("True", "...") else f"{flags[name]} "

    return _KEYWORD.sub(flag, message)
