"""Which files a course path holds, how each is named in the index, and how a change is noticed."""

from __future__ import annotations

import hashlib
import os
import unicodedata
from pathlib import Path

from leanrank.errors import DocumentError, InputError


def discover(root: Path) -> list[Path]:
    """`root` itself if it is a file, else every file under it, recursively, in a stable order.

    Hidden files and folders (`.git`, `.DS_Store`, editor swap files) are left out, and so are folders that
    tools fill rather than authors write (`node_modules`, `__pycache__`, a virtualenv: a folder holding
    `pyvenv.cfg`): a course of code examples would otherwise index its dependencies' thousands of source
    files. Unsupported files are kept so that ingestion can report them as skipped instead of silently
    ignoring them.
    """
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise InputError(f"{root}: no such file or directory")
    found: list[Path] = []

    def unreadable(exc: OSError) -> None:
        # A folder left out would look deleted: its files reported gone, and removed by `--prune`.
        raise InputError(f"{exc.filename}: cannot read this folder ({exc.strerror}); fix it or move it out")

    for folder, dirs, files in os.walk(root, onerror=unreadable):
        dirs[:] = [d for d in dirs if not d.startswith(".") and not _generated(Path(folder, d))]
        found.extend(Path(folder, f) for f in files if not f.startswith("."))
    return sorted(found, key=lambda p: p.relative_to(root).parts)


_GENERATED = frozenset({"node_modules", "__pycache__"})


def _generated(folder: Path) -> bool:
    return folder.name in _GENERATED or (folder / "pyvenv.cfg").is_file()


def file_hash(data: bytes) -> str:
    """sha256 hex of a file's bytes: re-ingesting skips files whose hash the index already holds."""
    return hashlib.sha256(data).hexdigest()


def source_id(path: Path, root: Path) -> str:
    """The file's name in the index: its POSIX path relative to a folder root, or its name for a file root.

    Relative ids keep a course's index independent of where the course folder sits on disk. Bytes of a
    name that are not UTF-8 show as U+FFFD and control characters as `\\xNN`, so the name prints on one line
    (`check_source` skips such a file: a newline in a name could forge a line of the ingest report).
    """
    name = _relative(path, root).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "".join(f"\\x{ord(c):02x}" if unicodedata.category(c) == "Cc" else c for c in name)


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if root.is_dir() else path.name


def check_source(path: Path, root: Path) -> None:
    """Raise a `DocumentError` unless `path` has a UTF-8 name and is, links resolved, in the folder `root`
    (a link loop, and a link to nothing, are refused with their own reasons).

    A name in another encoding (a Latin-1 `été.md` from a Windows archive) cannot be stored or shown as
    its source id; a link out of the course folder would index files nobody put in the course.
    """
    name = _relative(path, root)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise DocumentError(source_id(path, root), "the file name is not valid UTF-8; rename it") from None
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise DocumentError(source_id(path, root), "the file name holds a control character; rename it")
    try:
        target = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: RuntimeError up to Python 3.12, OSError after
        raise DocumentError(str(path), "a symbolic link loop") from None
    if not target.is_relative_to(root.resolve()):
        raise DocumentError(str(path), "a link to a file outside the course folder")
    if path.is_symlink() and not target.exists():
        # Else its name gave the reason: "no file extension" for `sub/loop -> ../c`, meant as a folder loop.
        raise DocumentError(str(path), "a broken symbolic link: nothing is at its target")
