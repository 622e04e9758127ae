"""One writer per run directory: an advisory lock held while a run writes.

``study run`` (and ``study merge``) hold ``<run>/.lock`` exclusively; the shards of an
array job each hold it shared, plus an exclusive lock of their own shard, so they can
write into one directory side by side while a whole run or a merge cannot start
beside them.  The locks are ``flock(2)`` locks: the kernel drops them when the process
ends, however it ends (kill -9, a crashed node), so a lock left by a crashed run never
blocks the next one.  Who holds it (pid, host, start time, command) is written into
the file for the message a refused run prints.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from study.errors import StoreError, UserError

LOCK = ".lock"


def _holder(path: Path) -> str:
    """Who holds the lock at ``path``, as written by the holder (best effort)."""
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    if not isinstance(info, dict) or "pid" not in info:
        return "another process"
    return (
        f"{info.get('command', 'study')} (pid {info['pid']} on {info.get('host', '?')}, "
        f"since {info.get('since', '?')})"
    )


def _acquire(path: Path, exclusive: bool) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
    try:
        fcntl.flock(fh, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError as err:
        fh.close()
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise BlockingIOError(str(path)) from err
        raise
    return fh


def _record(fh: IO[str], what: str) -> str:
    """Write who holds the lock into its file; return what the file said before."""
    fh.seek(0)
    before = fh.read()
    fh.seek(0)
    fh.truncate()
    fh.write(
        json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": datetime.now(UTC).isoformat(timespec="seconds"),
                "command": what,
            }
        )
    )
    fh.flush()
    return before


def _restore(fh: IO[str], text: str) -> None:
    fh.seek(0)
    fh.truncate()
    fh.write(text)
    fh.flush()


@contextlib.contextmanager
def run_lock(run_dir: str | Path, *, shard: str | None = None) -> Iterator[None]:
    """Hold the run directory's lock for the duration of the block.

    If the block is refused (it raises a :class:`~study.errors.UserError`), the lock
    files and the directory this call created are removed again: a refused run
    leaves nothing behind.

    Parameters
    ----------
    run_dir : path
        The run directory (created if missing).
    shard : str, optional
        ``"I/N"`` for a shard: the directory lock is taken shared (other shards may
        write beside it) and the shard's own lock exclusively.

    Raises
    ------
    StoreError
        The directory is in use by another run (named, with its pid and host).
    """
    directory = Path(run_dir)
    missing = [d for d in (directory, *directory.parents) if not d.exists()]
    what = " ".join(["study", *sys.argv[1:2]]) if sys.argv[1:2] else "study"
    if shard is not None:
        what += f" --shard {shard}"
    paths = [directory / LOCK]
    if shard is not None:
        paths.append(directory / f"{LOCK}-shard-{shard.replace('/', '-of-')}")
    created = [p for p in paths if not p.exists()]
    held: list[IO[str]] = []
    before: list[str] = []
    try:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(
                f"out={directory} cannot be created ({err.strerror or err}); give a "
                "directory you can write to"
            ) from None
        for i, path in enumerate(paths):
            try:
                held.append(_acquire(path, exclusive=shard is None or i == 1))
            except BlockingIOError:
                whose = (
                    f"shard {shard} of {directory} is already running"
                    if i
                    else (f"{directory} is in use")
                )
                raise StoreError(
                    f"{whose} by {_holder(path)}; wait for it to finish, stop it, or give "
                    "another out=..."
                ) from None
            before.append(_record(held[-1], what))
        yield
    except UserError:  # refused (bad input): leave everything as it was
        for fh, text, path in zip(held, before, paths, strict=False):
            if path not in created:
                _restore(fh, text)
        for path in created:
            path.unlink(missing_ok=True)
        for d in missing:  # deepest first; only directories left empty
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    finally:
        for fh in reversed(held):
            with contextlib.suppress(OSError):
                fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
