"""Output paths of commands (`eval --out`, `calibrate --out`, `--data-dir`, `costs --png`): checked before
any work, so a long run never ends in a path it cannot write; written or not at all.

The check writes into the place for real (a temporary folder, removed at once): permission bits say nothing
to root, nor of a read-only or virtual file system.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from leanrank.errors import InputError


def check_folder(path: Path, option: str) -> None:
    """Refuse an output folder this process cannot write into: `path` must be a folder, or one it can make
    under its nearest existing parent. Leaves nothing behind; InputError naming `option` otherwise."""
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        where = "is not a folder" if existing == path else f"is under {existing}, which is not a folder"
        raise InputError(f"{option} {path} {where}")
    _probe(existing, option, path)


def check_file(path: Path, option: str) -> None:
    """Refuse an output file this process cannot write: `path` must not be a folder, and must be in an
    existing folder it can write into. Leaves nothing behind; InputError naming `option` otherwise."""
    if path.is_dir():
        raise InputError(f"{option} {path} is a folder, not a file")
    if not path.parent.is_dir():
        raise InputError(f"{option} {path}: there is no folder {path.parent}")
    _probe(path.parent, option, path)


def _probe(folder: Path, option: str, path: Path) -> None:
    try:
        Path(tempfile.mkdtemp(prefix=".leanrank-check-", dir=folder)).rmdir()
    except OSError as exc:
        raise InputError(f"{option} {path}: cannot write into {folder} ({exc.strerror or exc})") from None


@contextmanager
def writing(what: str, path: Path) -> Iterator[None]:
    """Turn an OSError of writing `what` to `path`, once the work is done, into one line (InputError)."""
    try:
        yield
    except OSError as exc:
        named = f" ({exc.filename})" if exc.filename else ""
        raise InputError(f"cannot write {what} to {path}: {exc.strerror or exc}{named}") from None
