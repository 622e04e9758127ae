"""Helpers shared by the runner, scale-out and reliability tests (imported as `helpers`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import xarray as xr


def comparable(ds: xr.Dataset) -> xr.Dataset:
    """A results Dataset without what legitimately differs between runs (timings, attrs)."""
    return ds.drop_vars("fit_seconds").drop_attrs()


def file_tree(root: Path) -> dict[str, str]:
    """Every path under `root` with the SHA-256 of its content ("" for directories)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        for p in sorted(root.rglob("*"))
    }
