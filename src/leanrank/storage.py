"""Refuse a write before it fills the disk.

The embedded engine writes through memory-mapped files: on a full disk a write does not fail, the process
dies of SIGBUS. So every write under `data_dir` first checks that the file system keeps `MIN_FREE_BYTES`
free after it; a refused write changes nothing, and reads carry on.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from leanrank.errors import StorageFullError

# Room for the engine's write-ahead log to open a new segment (it preallocates them) and for SQLite.
MIN_FREE_BYTES = 64 * 2**20


def ensure_free(path: Path, need: int, what: str) -> None:
    """Raise `StorageFullError` unless the file system of `path` has `need` bytes and the reserve free."""
    free = shutil.disk_usage(path).free
    if free < need + MIN_FREE_BYTES:
        raise StorageFullError(
            f"{what}: the disk under {path} has {free // 2**20} MiB free, {need // 2**20} MiB needed plus "
            f"{MIN_FREE_BYTES // 2**20} MiB kept free; writes are refused until space is freed"
        )
