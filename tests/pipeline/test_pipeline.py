"""End to end on the real engine and the real encoder, over the bundled sample course."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.errors import EmptyQueryError, InputError, QueryTooLongError, UnknownCourseError
from leanrank.pipeline import Pipeline, check_course_id
from tests.conftest import SAMPLE_COURSE, make_pipeline


@pytest.fixture(scope="module")
def pipe(
    tmp_path_factory: pytest.TempPathFactory, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> Iterator[Pipeline]:
    other = tmp_path_factory.mktemp("other")
    (other / "cooking.md").write_text(
        "# Борщ\n\nСвёклу варят отдельно, потом добавляют в бульон.\n\n"
        "# Pasta\n\nBoil water, add salt, cook pasta.\n",
        encoding="utf-8",
    )
    with make_pipeline(tmp_path_factory.mktemp("data"), e5, bm25) as p:
        p.ingest(SAMPLE_COURSE, "demo")
        p.ingest(other, "cooking")
        yield p


def test_sample_questions_find_their_lesson(pipe: Pipeline, sample_questions: list[dict[str, Any]]) -> None:
    assert {q["lang"] for q in sample_questions} == {"ru", "en"}
    for q in sample_questions:
        result = pipe.search(q["query"], "demo", k=3)
        assert result.hits[0].chunk.source == q["expect_source"], q["query"]


async def test_the_sync_search_works_inside_a_running_event_loop(pipe: Pipeline) -> None:
    """Issue 16, item 3: `search` from an `async def` (a notebook cell, a web handler) used to raise
    "asyncio.run() cannot be called from a running event loop"."""
    result = pipe.search("цикл for", "demo", k=3)
    expected = await pipe.asearch("цикл for", "demo", k=3)
    assert [h.chunk_id for h in result.hits] == [h.chunk_id for h in expected.hits]
    assert len(result.hits) == 3


def test_hits_carry_offsets_into_the_source_text(pipe: Pipeline) -> None:
    result = pipe.search("цикл for", "demo", k=5)
    for hit in result.hits:
        c = hit.chunk
        assert c.course == "demo"
        assert "fusion" in hit.stage_scores  # and no "rerank": identity, the default, reranks nothing
        if c.source.endswith((".md", ".txt")):
            text = (SAMPLE_COURSE / c.source).read_text(encoding="utf-8-sig")
            assert text[c.start : c.end] == c.text


def test_a_heading_filter_folds_words_as_bm25_does(
    tmp_path: Path, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> None:
    """Russian is typed with е for ё as often as not, and BM25 already folds them (`normalise`): a heading
    with ё is found by е, one with е by ё, and stress marks are left out, in any case."""
    course = tmp_path / "notes"
    course.mkdir()
    (course / "notes.md").write_text(
        "# Заметки\n\n## Ударения и ё\n\nБукву ё пишут не всегда.\n\n## Ежи\n\nЕжи спят зимой.\n",
        encoding="utf-8",
    )
    with make_pipeline(tmp_path / "data", e5, bm25) as p:
        p.ingest(course, "notes")
        assert p.heading_path("notes", ["заметки", "ударения и е"]) == ("Заметки", "Ударения и ё")
        assert p.heading_path("notes", ["ЗАМЕТКИ", "ЁЖИ"]) == ("Заметки", "Ежи")
        assert p.heading_path("notes", ["заме\u0301тки", "уда\u0301р"]) == ("Заметки", "Ударения и ё")
        hits = p.search("буква", "notes", heading_prefix=["заметки", "ударения и е"], k=5).hits
        assert [h.chunk.text for h in hits] == ["Букву ё пишут не всегда."]
        with pytest.raises(InputError, match="no heading of course notes starts with 'заметки > ужи'"):
            p.heading_path("notes", ["заметки", "ужи"])


def test_course_a_never_returns_course_b(pipe: Pipeline, sample_questions: list[dict[str, Any]]) -> None:
    for q in sample_questions:
        assert {h.chunk.course for h in pipe.search(q["query"], "cooking", k=10).hits} == {"cooking"}
    assert {h.chunk.course for h in pipe.search("как варить борщ", "demo", k=10).hits} == {"demo"}


def test_language_filter(pipe: Pipeline) -> None:
    hits = pipe.search("loops", "demo", langs=["ru"], k=10).hits
    assert hits
    assert {h.chunk.lang for h in hits} == {"ru"}


def test_max_chunks_per_source(pipe: Pipeline) -> None:
    pipe.retriever.settings = pipe.settings.retrieve.model_copy(update={"max_per_source": 2})
    hits = pipe.search("Python", "demo", k=20, depth=20).hits
    per_source: dict[str, int] = {}
    for h in hits:
        per_source[h.chunk.source] = per_source.get(h.chunk.source, 0) + 1
    assert max(per_source.values()) == 2


def test_bad_queries_and_courses(pipe: Pipeline) -> None:
    with pytest.raises(EmptyQueryError):
        pipe.search("   ", "demo")
    with pytest.raises(QueryTooLongError, match="limit is 2000"):
        pipe.search("слово " * 20_000, "demo")
    with pytest.raises(UnknownCourseError, match="indexed courses: cooking, demo"):
        pipe.search("loops", "nope")
    with pytest.raises(InputError, match="invalid course id"):
        pipe.ingest(SAMPLE_COURSE, "../etc")


@pytest.mark.parametrize("course", ["", "../etc", "a/b", "курс", " a", "a b", "py101\n", "a" * 65])
def test_course_ids_outside_the_pattern_are_refused(course: str) -> None:
    """A trailing newline too: it would become part of payload keys and report file names."""
    with pytest.raises(InputError, match="invalid course id"):
        check_course_id(course)


def test_a_plain_course_id_is_kept() -> None:
    assert check_course_id("a..b_1-x") == "a..b_1-x"


def test_reingest_is_idempotent_and_changed_files_are_replaced(
    tmp_path: Path, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> None:
    course = tmp_path / "course"
    shutil.copytree(SAMPLE_COURSE, course)
    with make_pipeline(tmp_path / "data", e5, bm25) as p:
        first = p.ingest(course, "c")
        assert first.count("added") == len(first.files) - first.count("skipped")
        before = p.store.sources("c")
        again = p.ingest(course, "c")
        assert again.chunks == 0
        assert {f.status for f in again.files} <= {"unchanged", "skipped"}
        assert p.store.sources("c") == before

        md = sorted(course.rglob("*.md"))[0]
        source = md.relative_to(course).as_posix()
        md.write_text("# Новый урок\n\nСовершенно новый текст про квантовые компьютеры.\n", encoding="utf-8")
        third = p.ingest(course, "c")
        assert [f.source for f in third.files if f.status == "updated"] == [source]
        after = p.store.sources("c")
        assert after[source] == 1
        assert {k: v for k, v in after.items() if k != source} == {
            k: v for k, v in before.items() if k != source
        }
        top = p.search("квантовые компьютеры", "c", k=1).hits[0]
        assert top.chunk.source == source
        assert "квантовые" in top.chunk.text

        md.unlink()
        kept = p.ingest(course, "c")
        assert source in p.store.sources("c")
        assert kept.count("removed") == 0
        pruned = p.ingest(course, "c", prune=True)
        assert [(f.source, f.chunks) for f in pruned.files if f.status == "removed"] == [(source, 1)]
        assert source not in p.store.sources("c")
        with pytest.raises(InputError, match="needs a folder"):
            p.ingest(sorted(course.rglob("*.md"))[0], "c", prune=True)


def test_bad_files_are_skipped_and_leave_nothing_behind(
    tmp_path: Path, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> None:
    course = tmp_path / "course"
    course.mkdir()
    (course / "good.md").write_text("# Loops\n\nA for loop repeats a block of code.\n", encoding="utf-8")
    (course / "empty.md").write_text("", encoding="utf-8")
    (course / "binary.txt").write_bytes(b"\x00\x01\x02PNG\x00" * 100)
    (course / "slides.key").write_bytes(b"PK\x03\x04")
    (course / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    with (course / "huge.txt").open("wb") as f:
        f.truncate(50 * 1024 * 1024)
    (course / "latin1.txt").write_bytes("Ceci est un café très spécial, naïve façade".encode("latin-1"))
    with make_pipeline(tmp_path / "data", e5, bm25) as p:
        report = p.ingest(course, "c")
        status = {f.source: f for f in report.files}
        assert status["good.md"].status == "added"
        skipped = {s for s, f in status.items() if f.status == "skipped"}
        assert {"empty.md", "binary.txt", "slides.key", "broken.pdf", "huge.txt"} <= skipped
        assert "unsupported file type" in status["slides.key"].reason
        assert all("\n" not in f.reason for f in report.files)
        assert set(p.store.sources("c")) <= {"good.md", "latin1.txt"}
        assert "good.md" in p.store.sources("c")


def test_a_file_turned_invalid_keeps_its_indexed_version_and_the_report_says_so(
    tmp_path: Path, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> None:
    """A notebook saved half-way is skipped; the chunks of its last good version still answer, and its
    report counts them (`kept`), where a file skipped on its first ingest has none."""
    course = tmp_path / "course"
    course.mkdir()
    (course / "loops.md").write_text("# Loops\n\nA for loop walks over a list.\n", encoding="utf-8")
    notebook = course / "files.ipynb"
    cell = {"cell_type": "markdown", "metadata": {}, "source": "# Files\n\nopen() returns a file object."}
    notebook.write_text(
        json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [cell]}), encoding="utf-8"
    )
    with make_pipeline(tmp_path / "data", e5, bm25) as p:
        assert p.ingest(course, "c").stale == []
        indexed = p.store.sources("c")["files.ipynb"]
        notebook.write_text('{"cells": [', encoding="utf-8")
        (course / "new.ipynb").write_text("not a notebook", encoding="utf-8")
        again = p.ingest(course, "c", prune=True)
        status = {f.source: f for f in again.files}
        assert (status["files.ipynb"].status, status["files.ipynb"].kept) == ("skipped", indexed)
        assert status["files.ipynb"].reason.startswith("cannot parse notebook: not JSON")
        assert (status["new.ipynb"].status, status["new.ipynb"].kept) == ("skipped", 0)
        assert [f.source for f in again.stale] == ["files.ipynb"]
        assert p.store.sources("c")["files.ipynb"] == indexed
        assert p.search("what does open() return", "c", k=1).hits[0].chunk.source == "files.ipynb"


def test_an_edited_file_re_embeds_only_the_chunks_that_changed(
    tmp_path: Path, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> None:
    course = tmp_path / "course"
    course.mkdir()
    lesson = course / "lesson.md"
    sections = [
        f"## Тема {i}\n\nАбзац {i} о циклах: цикл for проходит по элементам списка номер {i}. "
        f"Функция range({i}) задаёт последовательность чисел для шага {i}.\n"
        for i in range(40)
    ]
    lesson.write_text("# Урок\n\n" + "\n".join(sections), encoding="utf-8")
    progress: list[tuple[int, int]] = []
    with make_pipeline(tmp_path / "data", e5, bm25) as p:
        [first] = p.ingest(course, "c", on_embed=lambda done, of: progress.append((done, of))).files
        assert first.embedded == first.chunks >= 40
        assert progress[-1] == (first.chunks, first.chunks)
        assert len(progress) > 1  # the bar moves within the file, not only when it is done

        sections[11] = sections[11].replace("номер 11.", "номер 11, и квантовый компьютер тоже.")
        lesson.write_text("# Урок\n\n" + "\n".join(sections), encoding="utf-8")
        [edited] = p.ingest(course, "c").files
        assert (edited.status, edited.chunks, edited.embedded) == ("updated", first.chunks, 1)
        assert "квантовый" in p.search("квантовый компьютер", "c", k=1).hits[0].chunk.text

        # A section inserted at the top moves every other chunk: they keep their vectors.
        moved = "## Введение\n\nНовый вводный абзац про переменные и присваивание.\n"
        lesson.write_text("# Урок\n\n" + moved + "\n" + "\n".join(sections), encoding="utf-8")
        [shifted] = p.ingest(course, "c").files
        assert (shifted.chunks, shifted.embedded) == (first.chunks + 1, 1)
        assert p.store.sources("c") == {"lesson.md": first.chunks + 1}


def test_spaces_added_at_line_ends_of_a_source_file_re_embed_nothing(
    tmp_path: Path, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> None:
    """An editor adding or stripping trailing whitespace changes no chunk: the source loader drops it."""
    course = tmp_path / "course"
    course.mkdir()
    code = course / "examples.py"
    lines = "\n\n".join(
        f"def func_{i}(x):\n"
        f'    """Return x times {i} for exercise {i} of the loops lesson."""\n'
        f"    return x * {i}\n"
        for i in range(8)
    ).split("\n")
    code.write_text("\n".join(lines), encoding="utf-8")
    with make_pipeline(tmp_path / "data", e5, bm25) as p:
        [first] = p.ingest(course, "c").files
        assert (first.chunks, first.embedded) == (8, 8)

        edited = lines.index("def func_1(x):")
        lines[edited] += "   \t"
        code.write_text("\n".join(lines), encoding="utf-8")
        [one] = p.ingest(course, "c").files
        assert (one.status, one.chunks, one.embedded) == ("updated", 8, 0)
        code.write_text("\n".join(line + "  " for line in lines), encoding="utf-8")
        [every] = p.ingest(course, "c").files
        assert (every.status, every.chunks, every.embedded) == ("updated", 8, 0)

        lines[edited] = "def func_1(y):"  # a real edit re-embeds its chunk alone
        code.write_text("\n".join(lines), encoding="utf-8")
        assert p.ingest(course, "c").files[0].embedded == 1


def test_an_ingest_that_changed_the_index_optimises_it(
    tmp_path: Path, e5: E5SmallEncoder, bm25: Bm25Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded engine builds no HNSW graph by itself, so an ingest that wrote chunks asks the store to;
    one that changed nothing does not."""
    course = tmp_path / "course"
    course.mkdir()
    (course / "a.md").write_text("# Loops\n\nA for loop repeats a block of code.\n", encoding="utf-8")
    with make_pipeline(tmp_path / "data", e5, bm25) as p:
        calls: list[int] = []
        real = p.store.optimize
        monkeypatch.setattr(p.store, "optimize", lambda: calls.append(p.store.count("c")) or real())
        p.ingest(course, "c")
        assert calls == [1]  # after the chunk was written
        p.ingest(course, "c")
        assert calls == [1]  # unchanged: nothing to index
        (course / "a.md").write_text(
            "# Loops\n\nA while loop repeats while a condition holds.\n", encoding="utf-8"
        )
        p.ingest(course, "c")
        assert calls == [1, 1]
        assert p.search("while loop condition", "c", k=1).hits[0].chunk.text.startswith("A while loop")
