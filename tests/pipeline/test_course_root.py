"""Source ids are relative to the course's folder, whichever part of it is ingested, on the real engine."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.errors import ConfigError, InputError
from leanrank.ingest.roots import COURSES_FILE, CourseRoots
from leanrank.pipeline import Pipeline
from tests.conftest import make_pipeline

LOOPS = "# Loops\n\nA for loop walks over a list one item at a time.\n"
FILES = "# Files\n\nopen() returns a file object that reads the file.\n"
EDITED = "# Loops\n\nA while loop repeats until its condition turns false.\n"


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """`lesson1/a.md` and `b.md`: a course with a sub-folder."""
    folder = tmp_path / "course"
    (folder / "lesson1").mkdir(parents=True)
    (folder / "lesson1" / "a.md").write_text(LOOPS, encoding="utf-8")
    (folder / "b.md").write_text(FILES, encoding="utf-8")
    return folder


@pytest.fixture
def pipe(tmp_path: Path, e5: E5SmallEncoder, bm25: Bm25Encoder) -> Iterator[Pipeline]:
    with make_pipeline(tmp_path / "data", e5, bm25) as p:
        yield p


def recorded(pipe: Pipeline) -> dict[str, object]:
    return dict(json.loads((pipe.settings.data_dir / COURSES_FILE).read_text(encoding="utf-8")))


def test_the_first_folder_ingest_records_the_course_folder(pipe: Pipeline, course: Path) -> None:
    report = pipe.ingest(course, "c")
    assert (report.root, report.previous_root) == (course.resolve(), None)
    assert recorded(pipe) == {"c": {"root": str(course.resolve())}}
    assert pipe.store.sources("c") == {"b.md": 1, "lesson1/a.md": 1}


def test_a_sub_folder_ingested_after_an_edit_replaces_its_files_under_their_course_ids(
    pipe: Pipeline, course: Path
) -> None:
    pipe.ingest(course, "c")
    (course / "lesson1" / "a.md").write_text(EDITED, encoding="utf-8")
    report = pipe.ingest(course / "lesson1", "c")
    assert [(f.source, f.status) for f in report.files] == [("lesson1/a.md", "updated")]
    assert report.missing == []  # b.md is not under lesson1: not missing from it
    assert pipe.store.sources("c") == {"b.md": 1, "lesson1/a.md": 1}
    hits = pipe.search("while loop condition", "c", k=5).hits
    assert [h.chunk.source for h in hits if "while loop" in h.chunk.text] == ["lesson1/a.md"]
    assert not any("for loop" in h.chunk.text for h in hits)


def test_prune_on_a_sub_folder_prunes_only_under_it(pipe: Pipeline, course: Path) -> None:
    """Before, the sub-folder's files were named afresh and `--prune` deleted the rest of the course."""
    (course / "lesson1" / "gone.md").write_text(FILES.replace("Files", "Paths"), encoding="utf-8")
    pipe.ingest(course, "c")
    (course / "lesson1" / "gone.md").unlink()
    report = pipe.ingest(course / "lesson1", "c", prune=True)
    assert [(f.source, f.status) for f in report.files] == [
        ("lesson1/a.md", "unchanged"),
        ("lesson1/gone.md", "removed"),
    ]
    assert pipe.store.sources("c") == {"b.md": 1, "lesson1/a.md": 1}


def test_a_single_file_inside_the_folder_keeps_its_course_id(pipe: Pipeline, course: Path) -> None:
    pipe.ingest(course, "c")
    (course / "lesson1" / "a.md").write_text(EDITED, encoding="utf-8")
    report = pipe.ingest(course / "lesson1" / "a.md", "c")
    assert [(f.source, f.status) for f in report.files] == [("lesson1/a.md", "updated")]
    assert pipe.store.sources("c") == {"b.md": 1, "lesson1/a.md": 1}
    assert recorded(pipe) == {"c": {"root": str(course.resolve())}}


def test_a_relative_path_or_a_linked_folder_names_files_as_the_course_folder_does(
    pipe: Pipeline, course: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = course.parent / "link"
    link.symlink_to(course)
    pipe.ingest(link, "c")
    monkeypatch.chdir(course / "lesson1")
    assert [f.source for f in pipe.ingest(Path("a.md"), "c").files] == ["lesson1/a.md"]
    assert [f.source for f in pipe.ingest(Path("."), "c").files] == ["lesson1/a.md"]
    assert pipe.store.sources("c") == {"b.md": 1, "lesson1/a.md": 1}


def test_a_folder_outside_the_recorded_one_becomes_the_course_folder(
    pipe: Pipeline, course: Path, tmp_path: Path
) -> None:
    """The course moved: its files keep their ids, and the new place is recorded."""
    pipe.ingest(course, "c")
    moved = tmp_path / "moved"
    shutil.move(course, moved)
    report = pipe.ingest(moved, "c")
    assert {f.status for f in report.files} == {"unchanged"}
    assert (report.root, report.previous_root) == (moved.resolve(), course.resolve())
    assert recorded(pipe) == {"c": {"root": str(moved.resolve())}}
    assert [f.source for f in pipe.ingest(moved / "lesson1" / "a.md", "c").files] == ["lesson1/a.md"]


def test_a_file_outside_the_recorded_folder_needs_root(pipe: Pipeline, course: Path, tmp_path: Path) -> None:
    pipe.ingest(course, "c")
    copy = tmp_path / "copy"
    shutil.copytree(course, copy)
    (copy / "lesson1" / "a.md").write_text(EDITED, encoding="utf-8")
    with pytest.raises(InputError, match=r"a\.md is outside .*course, the folder of course c: pass --root"):
        pipe.ingest(copy / "lesson1" / "a.md", "c")
    assert pipe.store.sources("c") == {"b.md": 1, "lesson1/a.md": 1}
    report = pipe.ingest(copy / "lesson1" / "a.md", "c", root=copy)
    assert [(f.source, f.status) for f in report.files] == [("lesson1/a.md", "updated")]
    assert (report.root, report.previous_root) == (copy.resolve(), course.resolve())
    assert pipe.store.sources("c") == {"b.md": 1, "lesson1/a.md": 1}


def test_a_folder_holding_none_of_the_course_is_not_taken_for_its_new_folder(
    pipe: Pipeline, course: Path, tmp_path: Path
) -> None:
    """A lesson copied out of the course would name `a.md` beside `lesson1/a.md`: refused, unless `--root`
    says that folder is the course's now."""
    pipe.ingest(course, "c")
    lesson = tmp_path / "lesson1"
    shutil.copytree(course / "lesson1", lesson)
    with pytest.raises(InputError, match=r"own folder \(.*course\), or this one with --root COURSE_FOLDER"):
        pipe.ingest(lesson, "c", prune=True)
    assert pipe.store.sources("c") == {"b.md": 1, "lesson1/a.md": 1}
    assert [f.source for f in pipe.ingest(lesson, "c", root=lesson).files] == ["a.md"]
    assert recorded(pipe) == {"c": {"root": str(lesson.resolve())}}


def test_a_folder_holding_the_recorded_one_widens_the_course(pipe: Pipeline, course: Path) -> None:
    """A course begun from one lesson's folder grows to the whole folder: its files get the whole folder's
    names, and the lesson's old names are reported missing until `--prune` drops them."""
    pipe.ingest(course / "lesson1", "c")
    report = pipe.ingest(course, "c")
    assert (report.root, report.previous_root) == (course.resolve(), (course / "lesson1").resolve())
    assert report.missing == ["a.md"]
    pruned = pipe.ingest(course, "c", prune=True)
    assert [(f.source, f.status) for f in pruned.files if f.status == "removed"] == [("a.md", "removed")]
    assert pipe.store.sources("c") == {"b.md": 1, "lesson1/a.md": 1}


def test_root_must_be_a_folder_holding_the_path(pipe: Pipeline, course: Path, tmp_path: Path) -> None:
    """No id can climb out of its root (`../b.md`)."""
    with pytest.raises(InputError, match=r"b\.md is not inside --root .*lesson1$"):
        pipe.ingest(course / "b.md", "c", root=course / "lesson1")
    with pytest.raises(InputError, match=r"--root .*nope: no such folder"):
        pipe.ingest(course, "c", root=tmp_path / "nope")
    with pytest.raises(InputError, match="is not inside --root"):
        pipe.ingest(course / "lesson1" / ".." / "b.md", "c", root=course / "lesson1")
    assert pipe.store.sources("c") == {}
    assert not (pipe.settings.data_dir / COURSES_FILE).exists()


def test_a_course_indexed_before_roots_were_recorded(pipe: Pipeline, course: Path) -> None:
    """An index without `courses.json` names a lone file by its name as before, and records the course's
    folder at its next folder ingest; from then on a sub-folder keeps the folder's ids. A sub-folder
    ingested before that is refused rather than recorded as the course's folder (and pruned by it)."""
    pipe.ingest(course, "c")
    (pipe.settings.data_dir / COURSES_FILE).unlink()
    with pytest.raises(
        InputError,
        match=r"lesson1 holds none of the 2 indexed files of course c under the names it would give them "
        r"\(such as b\.md\), so its files would be indexed twice: ingest the course's own folder, or this "
        r"one with --root COURSE_FOLDER; --root .*lesson1 makes it the course's folder$",
    ):
        pipe.ingest(course / "lesson1", "c", prune=True)
    assert pipe.store.sources("c") == {"b.md": 1, "lesson1/a.md": 1}
    assert not (pipe.settings.data_dir / COURSES_FILE).exists()
    assert [f.source for f in pipe.ingest(course / "lesson1" / "a.md", "c").files] == ["a.md"]
    assert not (pipe.settings.data_dir / COURSES_FILE).exists()
    report = pipe.ingest(course, "c", prune=True)
    assert [(f.source, f.status) for f in report.files if f.status == "removed"] == [("a.md", "removed")]
    assert recorded(pipe) == {"c": {"root": str(course.resolve())}}
    assert [f.source for f in pipe.ingest(course / "lesson1", "c").files] == ["lesson1/a.md"]
    assert pipe.store.sources("c") == {"b.md": 1, "lesson1/a.md": 1}


def test_an_upload_keeps_its_names_and_leaves_the_course_folder(
    pipe: Pipeline, course: Path, tmp_path: Path
) -> None:
    """The service ingests an upload's folder as its own root without recording it (`IngestJobs.run`)."""
    pipe.ingest(course, "c")
    upload = tmp_path / "jobs" / "j1"
    (upload / "week2").mkdir(parents=True)
    (upload / "week2" / "c.md").write_text(EDITED, encoding="utf-8")
    report = pipe.ingest(upload, "c", root=upload, remember_root=False)
    assert [f.source for f in report.files] == ["week2/c.md"]
    assert recorded(pipe) == {"c": {"root": str(course.resolve())}}


def test_deleting_a_course_forgets_its_folder(pipe: Pipeline, course: Path) -> None:
    pipe.ingest(course, "c")
    pipe.ingest(course / "lesson1", "other")
    pipe.delete_course("c")
    assert recorded(pipe) == {"other": {"root": str((course / "lesson1").resolve())}}


def test_a_damaged_record_is_a_clear_error_that_changes_nothing(pipe: Pipeline, course: Path) -> None:
    (pipe.settings.data_dir / COURSES_FILE).write_text('{"c": ', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"courses\.json: cannot read it .*fix it or delete it"):
        pipe.ingest(course, "c")
    (pipe.settings.data_dir / COURSES_FILE).write_text('{"c": "/x"}', encoding="utf-8")
    with pytest.raises(ConfigError, match=r'expected \{course: \{"root": folder\}\}'):
        CourseRoots(pipe.settings.data_dir / COURSES_FILE).get("c")
    assert pipe.store.sources("c") == {}
