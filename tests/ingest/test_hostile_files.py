"""Only regular files inside the course folder are read, bounded while reading; anything else is skipped with
a one-line reason and the files after it are still ingested."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.errors import DocumentError, FileTooLargeError, InputError
from leanrank.ingest.files import discover
from leanrank.ingest.loaders import read_file
from tests.conftest import make_pipeline

LATIN1_NAME = "été.md".encode("latin-1")  # b"\xe9t\xe9.md": not UTF-8


def test_hostile_entries_are_skipped_and_the_rest_ingested(
    tmp_path: Path, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> None:
    course = tmp_path / "course"
    course.mkdir()
    (course / "a.md").write_text("# A\n\nCycles repeat a block of code.\n", encoding="utf-8")
    (course / "z.md").write_text("# Z\n\nFunctions return values.\n", encoding="utf-8")
    with open(os.path.join(os.fsencode(course), LATIN1_NAME), "wb") as f:
        f.write("# E\n\nÉté.\n".encode())
    os.mkfifo(course / "b.md")
    (course / "b.txt").symlink_to("/dev/zero")
    outside = tmp_path / "secret.md"
    outside.write_text("# Secret\n\nThe exam answers.\n", encoding="utf-8")
    (course / "out.md").symlink_to(outside)
    (course / "inside.md").symlink_to(course / "a.md")
    (course / "loop1.md").symlink_to("loop2.md")
    (course / "loop2.md").symlink_to("loop1.md")
    (course / "sub").mkdir()
    (course / "sub/loop").symlink_to("../course")  # meant as a loop, but names sub/../course: nothing
    (course / "sub/up").symlink_to("..")  # a link to a folder is not followed, so no loop and no report
    (course / "evil\nforged.md").write_text("# E\n\nA forged report line.\n", encoding="utf-8")
    pipe = make_pipeline(tmp_path / "data", e5, bm25)
    try:
        report = pipe.ingest(course, "c")
        got = {f.source: (f.status, f.reason) for f in report.files}
        assert got == {
            "a.md": ("added", ""),
            "b.md": ("skipped", "not a regular file (a FIFO, device or socket)"),
            "b.txt": ("skipped", "a link to a file outside the course folder"),
            "inside.md": ("added", ""),
            "loop1.md": ("skipped", "a symbolic link loop"),
            "loop2.md": ("skipped", "a symbolic link loop"),
            "out.md": ("skipped", "a link to a file outside the course folder"),
            "sub/loop": ("skipped", "a broken symbolic link: nothing is at its target"),
            "z.md": ("added", ""),
            "\ufffdt\ufffd.md": ("skipped", "the file name is not valid UTF-8; rename it"),
            "evil\\x0aforged.md": (
                "skipped",
                "the file name holds a control character; rename it",
            ),
        }
        assert pipe.store.sources("c") == {"a.md": 1, "inside.md": 1, "z.md": 1}
    finally:
        pipe.close()


def test_a_fifo_is_not_opened_for_a_writer(tmp_path: Path) -> None:
    """Reading a FIFO would wait for a writer forever; it is refused at once."""
    os.mkfifo(tmp_path / "pipe.md")
    with pytest.raises(DocumentError, match="not a regular file"):
        read_file(tmp_path / "pipe.md", max_bytes=1000)


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom"])
def test_a_device_is_not_read(tmp_path: Path, target: str) -> None:
    (tmp_path / "dev.txt").symlink_to(target)
    with pytest.raises(DocumentError, match="not a regular file"):
        read_file(tmp_path / "dev.txt", max_bytes=1000)


def test_the_size_limit_holds_while_reading(tmp_path: Path) -> None:
    """`/proc` files report a size of 0 and hold more: the limit is on the bytes read, not on `st_size`."""
    maps = Path("/proc/self/maps")
    if not maps.exists() or maps.stat().st_size:
        pytest.skip("needs Linux /proc, whose files report a size of 0")
    (tmp_path / "maps.txt").symlink_to(maps)
    with pytest.raises(FileTooLargeError, match="more than the limit of 10 bytes"):
        read_file(tmp_path / "maps.txt", max_bytes=10)


def test_an_unreadable_folder_stops_the_ingest_rather_than_look_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder os.walk cannot list would drop out of the file list: its indexed files would be reported
    gone and deleted by `--prune`. (Run as root, permissions cannot make one, so listing it fails here.)"""
    (tmp_path / "lesson1").mkdir()
    (tmp_path / "lesson1" / "a.md").write_text("# A\n\nText.\n", encoding="utf-8")
    real = os.scandir

    def scandir(path: Any) -> Any:
        if os.fspath(path).endswith("lesson1"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(InputError, match=r"lesson1: cannot read this folder \(Permission denied\)"):
        discover(tmp_path)
