"""Discovery, hashing and naming of course files, and the bundled sample course they are tried on."""

from __future__ import annotations

import hashlib
import json
import runpy
from importlib import resources
from pathlib import Path

import pytest

from leanrank.errors import InputError
from leanrank.ingest.files import discover, file_hash, source_id
from leanrank.ingest.loaders import SUPPORTED_SUFFIXES
from tests.ingest.conftest import DEJAVU

SAMPLE_COURSE = Path(str(resources.files("leanrank") / "sample_course"))
MAKE_SAMPLE_PDF = Path(__file__).resolve().parents[2] / "tools" / "make_sample_pdf.py"


@pytest.fixture
def course(tmp_path: Path) -> Path:
    root = tmp_path / "course"
    for rel in [
        "b.md",
        "a.txt",
        "slides.pptx",
        "week 2/lesson.pdf",
        "week 2/deep/talk.vtt",
        "week10/x.md",
        ".hidden.md",
        ".git/config",
        "week 2/.cache/notes.md",
    ]:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel, encoding="utf-8")
    return root


def test_discover_walks_sorted_and_skips_hidden(course: Path) -> None:
    assert [source_id(p, course) for p in discover(course)] == [
        "a.txt",
        "b.md",
        "slides.pptx",
        "week 2/deep/talk.vtt",
        "week 2/lesson.pdf",
        "week10/x.md",
    ]


def test_discover_a_single_file(course: Path) -> None:
    assert discover(course / "b.md") == [course / "b.md"]


def test_discover_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or directory"):
        discover(tmp_path / "nope")


def test_source_id_is_relative_posix_or_the_file_name(course: Path) -> None:
    lesson = course / "week 2" / "lesson.pdf"
    assert source_id(lesson, course) == "week 2/lesson.pdf"
    assert source_id(lesson, lesson) == "lesson.pdf"


def test_file_hash_is_sha256_of_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_bytes(b"# One\n")
    first = file_hash(path.read_bytes())
    assert first == hashlib.sha256(b"# One\n").hexdigest()
    path.write_bytes(b"# Two\n")
    assert file_hash(path.read_bytes()) != first


# --- the sample course -----------------------------------------------------------------------------


def test_sample_questions_point_at_sample_lessons() -> None:
    questions = json.loads((SAMPLE_COURSE.parent / "sample_questions.json").read_text(encoding="utf-8"))
    lessons = {source_id(p, SAMPLE_COURSE) for p in discover(SAMPLE_COURSE) if p.suffix in SUPPORTED_SUFFIXES}
    assert len(questions) >= 8
    assert [q["lang"] for q in questions].count("ru") == [q["lang"] for q in questions].count("en")
    for q in questions:
        assert set(q) == {"query", "lang", "expect_source"}
        assert q["expect_source"] in lessons
    assert len({q["expect_source"] for q in questions}) == len(questions), "one question per lesson"


@pytest.mark.skipif(not DEJAVU.exists(), reason="DejaVu Sans is needed to draw the PDF")
def test_sample_pdf_is_what_the_generator_writes(tmp_path: Path) -> None:
    out = tmp_path / "lesson.pdf"
    build = runpy.run_path(str(MAKE_SAMPLE_PDF))["build"]
    build(out)
    assert out.read_bytes() == (SAMPLE_COURSE / "05-files-and-exceptions.ru.pdf").read_bytes()


def test_discover_skips_folders_tools_fill(tmp_path: Path) -> None:
    """Dependencies and caches beside code examples are not course material."""
    for rel in ["ex/a.py", "ex/node_modules/lib/b.js", "ex/__pycache__/a.cpython-311.pyc", "env/lib/c.py"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n", encoding="utf-8")
    (tmp_path / "env" / "pyvenv.cfg").write_text("home = /usr/bin\n", encoding="utf-8")
    assert [source_id(p, tmp_path) for p in discover(tmp_path)] == ["ex/a.py"]
