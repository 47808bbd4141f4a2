"""The `leanrank` command as a user runs it: a real subprocess, a real data directory."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from leanrank import __version__
from leanrank.index.edge import EdgeStore, stored_meta
from tests.conftest import SAMPLE_COURSE

HIT_FIELDS = {
    "chunk_id",
    "score",
    "text",
    "course",
    "source",
    "lang",
    "heading",
    "heading_path",
    "start",
    "end",
    "stage_scores",
}


def leanrank(
    data_dir: Path, *args: str | bytes, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`args` as the shell passes them: bytes for one that is not UTF-8."""
    env = {**os.environ, "LEANRANK_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "leanrank.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    r = leanrank(d, "ingest", str(SAMPLE_COURSE), "--course", "py101")
    assert r.returncode == 0, r.stderr
    assert "added" in r.stderr
    # stderr is a pipe here, not a terminal: progress comes as plain lines, the last one when it ends.
    assert re.search(r"^ingest py101: (\d+)/\1 files \(\d+ s\)$", r.stderr, re.MULTILINE), r.stderr
    return d


def test_search_json_lines(data_dir: Path) -> None:
    r = leanrank(data_dir, "search", "Что такое цикл while?", "--course", "py101", "-k", "3", "--json")
    assert r.returncode == 0, r.stderr
    hits = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(hits) == 3
    for hit in hits:
        assert set(hit) >= HIT_FIELDS
        assert hit["course"] == "py101"
        assert hit["end"] - hit["start"] == len(hit["text"])


def test_search_many_queries_from_a_file(data_dir: Path, tmp_path: Path) -> None:
    qfile = tmp_path / "q.jsonl"
    qfile.write_text(
        '{"id": "q1", "query": "how do functions return values"}\n\n{"id": 2, "query": "исключения"}\n',
        encoding="utf-8",
    )
    r = leanrank(data_dir, "search", "--queries", str(qfile), "--course", "py101", "--json", "-k", "2")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["id"] for row in rows] == ["q1", "2"]
    assert all(len(row["hits"]) == 2 for row in rows)
    # A bad query anywhere in the file stops the run before any answer is written, naming its line.
    qfile.write_text(
        '{"id": "q1", "query": "how do functions return values"}\n\n{"id": "q2", "query": "  "}\n',
        encoding="utf-8",
    )
    r = leanrank(data_dir, "search", "--queries", str(qfile), "--course", "py101", "--json")
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == f"error: {qfile}:3: the query is empty\n"


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        (
            [
                '{"id": "q1", "query": "циклы"}',
                '{"id": "q2", "query": "loops"}',
                '{"id": "q1", "query": "def"}',
            ],
            ':3: id "q1" is already line 1\'s; each query needs its own',
        ),
        (
            ['{"id": 2, "query": "циклы"}', "", '{"id": "2", "query": "loops"}'],
            ':3: id "2" is already line 1\'s; each query needs its own',
        ),
    ],
)
def test_search_refuses_a_queries_file_with_a_repeated_id(
    data_dir: Path, tmp_path: Path, lines: list[str], error: str
) -> None:
    """Two results with one id: a caller joining results by id cannot tell them apart (`2` and `"2"` are
    both written as `"2"`). The file is refused before any search."""
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("\n".join(lines) + "\n", encoding="utf-8")
    r = leanrank(data_dir, "search", "--queries", str(qfile), "--course", "py101", "--json")
    assert (r.returncode, r.stdout, r.stderr) == (2, "", f"error: {qfile}{error}\n")


def test_user_errors_are_one_line_with_status_2(data_dir: Path, tmp_path: Path) -> None:
    cases = [
        ("search", "loops", "--course", "nope"),
        ("search", "  ", "--course", "py101"),
        ("search", "x" * 100_000, "--course", "py101"),
        ("ingest", str(tmp_path / "missing"), "--course", "py101"),
    ]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "query": "ok"}\nnot json\n', encoding="utf-8")
    cases.append(("search", "--queries", str(bad), "--course", "py101", "--json"))
    for args in cases:
        r = leanrank(data_dir, *args)
        assert r.returncode == 2, (args[:2], r.stderr)
        assert r.stderr.strip().startswith("error:"), r.stderr
        assert "Traceback" not in r.stderr
    r = leanrank(data_dir, "search", "--queries", str(bad), "--course", "py101", "--json")
    assert f"{bad}:2:" in r.stderr


def test_a_bad_cascade_setting_is_one_line_and_the_index_is_untouched(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = leanrank(data_dir, "courses").stdout
    monkeypatch.setenv("LEANRANK_CASCADE__PRESET", "fastest")
    r = leanrank(data_dir, "search", "loops", "--course", "py101")
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: invalid setting cascade: Value error, unknown cascade preset")
    monkeypatch.setenv("LEANRANK_CASCADE__PRESET", "cheap")
    monkeypatch.setenv("LEANRANK_CASCADE__RESULT_CACHE", "memcached://h")
    r = leanrank(data_dir, "search", "loops", "--course", "py101")
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: invalid setting cascade.result_cache")
    monkeypatch.delenv("LEANRANK_CASCADE__PRESET")
    monkeypatch.delenv("LEANRANK_CASCADE__RESULT_CACHE")
    assert leanrank(data_dir, "courses").stdout == before


def test_a_malformed_settings_file_or_variable_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the command reads ./leanrank.toml
    (tmp_path / "leanrank.toml").write_text("[rerank\n")
    r = leanrank(tmp_path / "data", "courses")
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == (
        "error: leanrank.toml: not valid TOML (Expected ']' at the end of a table declaration "
        "(at line 1, column 8))\n"
    )
    (tmp_path / "leanrank.toml").unlink()
    monkeypatch.setenv("LEANRANK_COST__BUDGETS", "[{scope: course}]")
    r = leanrank(tmp_path / "data", "courses")
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr.startswith("error: invalid setting cost: a LEANRANK_COST* variable holds a list or table")
    assert "\n" not in r.stderr.rstrip("\n")
    assert [p.name for p in tmp_path.iterdir()] == []  # nothing created


def test_courses_and_delete(data_dir: Path) -> None:
    r = leanrank(data_dir, "ingest", str(SAMPLE_COURSE), "--course", "tmp")
    assert r.returncode == 0
    assert "0 chunks written" not in r.stderr
    assert "tmp" in leanrank(data_dir, "courses").stdout
    r = leanrank(data_dir, "delete", "--course", "tmp")
    assert r.returncode == 0, r.stderr
    listing = leanrank(data_dir, "courses").stdout
    assert "tmp" not in listing
    assert "py101" in listing


def search_json(data_dir: Path, *args: str) -> list[dict[str, Any]]:
    r = leanrank(data_dir, "search", *args, "--course", "py101", "--json")
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_k_above_the_depth_retrieves_k_candidates(data_dir: Path) -> None:
    hits = search_json(data_dir, "loops", "-k", "30")  # retrieve.depth is 20
    assert len(hits) == 30
    assert len({h["chunk_id"] for h in hits}) == 30
    assert "[default: the rerank.top_k setting, 5]" in " ".join(
        leanrank(data_dir, "search", "--help").stdout.split()
    )


def test_identity_hits_keep_the_fusion_score_and_headings_are_lists(data_dir: Path) -> None:
    for hit in search_json(data_dir, "for loop range", "-k", "5"):
        assert hit["score"] == hit["stage_scores"]["fusion"]
        assert "rerank" not in hit["stage_scores"]
        assert " > ".join(hit["heading"]) == hit["heading_path"]
    table = leanrank(data_dir, "search", "for loop range", "--course", "py101")
    assert "20 candidates in first-stage order, not reranked" in table.stdout


def test_language_filter_takes_any_case(data_dir: Path) -> None:
    hits = search_json(data_dir, "loops", "--lang", "RU", "-k", "5")
    assert hits
    assert {h["lang"] for h in hits} == {"ru"}


def test_language_filter_mixed_keeps_the_chunks_containing_both(data_dir: Path) -> None:
    """`--lang mixed` matched nothing. k = 100 is above the course's chunk count: every chunk that passes."""
    ids = {
        code: {h["chunk_id"] for h in search_json(data_dir, "loops", "--lang", code, "-k", "100")}
        for code in ("ru", "en", "mixed")
    }
    assert ids["mixed"]
    assert ids["mixed"] == ids["ru"] & ids["en"]
    r = leanrank(data_dir, "search", "loops", "--course", "py101", "--lang", "de")
    assert (r.returncode, r.stderr) == (2, "error: unknown language 'de'; use ru, en or mixed\n")


def test_text_that_is_not_utf8_is_one_line_with_status_2(data_dir: Path, tmp_path: Path) -> None:
    """A byte that is not UTF-8 on the command line (Python reads it as a lone surrogate) or a JSON `\\ud800`
    in a queries file gave the encoder's stack trace (status 1)."""
    queries = tmp_path / "q.jsonl"
    queries.write_text(
        '{"id": "a", "query": "ok"}\n{"id": "b", "query": "loops \\ud800"}\n', encoding="utf-8"
    )
    cases = [
        (
            ("search", b"loops \xff", "--course", "py101"),
            "the query holds a lone UTF-16 surrogate (U+DCFF at character 6), which is not text",
        ),
        (
            ("search", "loops", "--course", "py101", "--heading", b"lesson \xff"),
            "heading_prefix[0] holds a lone UTF-16 surrogate (U+DCFF at character 7), which is not text",
        ),
        (
            ("search", "--queries", str(queries), "--course", "py101"),
            f"{queries}:2: query holds a lone UTF-16 surrogate (U+D800 at character 6), which is not text",
        ),
    ]
    for args, message in cases:
        r = leanrank(data_dir, *args)
        assert (r.returncode, r.stdout, r.stderr) == (2, "", f"error: {message}\n"), args


def test_heading_filter_is_a_case_insensitive_prefix(data_dir: Path) -> None:
    hits = search_json(data_dir, "arguments", "--heading", "lesson 3. functions > param", "-k", "5")
    assert hits
    assert {tuple(h["heading"][:2]) for h in hits} == {("Lesson 3. Functions", "Parameters and arguments")}
    cyrillic = search_json(data_dir, "цикл", "--heading", "урок 2 > цикл f", "-k", "3")
    assert {h["heading_path"] for h in cyrillic} == {"Урок 2. Условия и циклы > Цикл for и функция range"}
    several = leanrank(data_dir, "search", "x", "--course", "py101", "--heading", "lesson")
    assert several.returncode == 2
    assert several.stderr.startswith("error: heading 'lesson' matches several headings of course py101: ")
    none = leanrank(data_dir, "search", "x", "--course", "py101", "--heading", "Lesson 99")
    assert none.returncode == 2
    assert none.stderr.startswith(
        "error: no heading of course py101 starts with 'Lesson 99'; its top headings: "
    )
    assert "Lesson 3. Functions; Lesson 4. Lists, Tuples and Dictionaries" in none.stderr


def test_version(data_dir: Path) -> None:
    r = leanrank(data_dir, "--version")
    assert (r.returncode, r.stdout) == (0, f"leanrank {__version__}\n")


def test_an_index_open_in_another_process_is_status_2(data_dir: Path) -> None:
    meta = stored_meta(data_dir / "index")
    assert meta is not None
    holder = EdgeStore(data_dir / "index", dim=int(meta["dim"]), encoder=str(meta["encoder"]))
    try:
        r = leanrank(data_dir, "courses")
    finally:
        holder.close()
    assert r.returncode == 2
    assert r.stderr.startswith("error: opening the index at ")
    assert "open in another process" in r.stderr


def test_reading_a_data_directory_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    """Listing courses and reporting spend opened the index and the ledger, and opening creates both, data
    directory included: a typo in LEANRANK_DATA_DIR left an empty one behind."""
    data = tmp_path / "not-yet"
    listing = leanrank(data, "courses")
    report = leanrank(data, "costs", "report", "--period", "2026-11")
    as_json = leanrank(data, "costs", "report", "--period", "2026-11", "--json")
    projected = leanrank(data, "costs", "project", "--from-ledger", "--period", "2026-11")
    assert not data.exists()
    assert (listing.returncode, listing.stdout, listing.stderr) == (0, "no courses indexed yet\n", "")
    assert (report.returncode, report.stdout, report.stderr) == (
        0,
        "no rerank calls recorded in 2026-11\n",
        "",
    )
    assert (as_json.returncode, json.loads(as_json.stdout)["rows"]) == (0, [])
    assert (projected.returncode, projected.stderr) == (2, "error: no rerank calls recorded in 2026-11\n")


def test_search_or_delete_on_a_data_directory_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    """A search only reads: it opened the index, which creates it (data directory included), before finding
    the course unknown. With no index yet the answer is the same error, and nothing is written."""
    data = tmp_path / "not-yet"
    qfile = tmp_path / "q.jsonl"
    qfile.write_text('{"id": "q1", "query": "циклы"}\n', encoding="utf-8")
    unknown = (2, "", "error: unknown course 'py101'; indexed courses: none yet\n")
    r = leanrank(data, "search", "циклы", "--course", "py101")
    assert (r.returncode, r.stdout, r.stderr) == unknown
    r = leanrank(data, "search", "--queries", str(qfile), "--course", "py101", "--json")
    assert (r.returncode, r.stdout, r.stderr) == unknown
    r = leanrank(data, "delete", "--course", "py101", "--yes")  # nothing to delete: the same answer
    assert (r.returncode, r.stdout, r.stderr) == unknown
    assert [p.name for p in tmp_path.iterdir()] == ["q.jsonl"]  # no data directory


def test_install_hints_keep_the_extra_in_brackets(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None; "
        "sys.argv = ['leanrank', 'costs', 'report', '--png', 'x.png']; "
        "from leanrank.cli.app import main; main()"
    )
    env = {**os.environ, "LEANRANK_DATA_DIR": str(tmp_path)}
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert r.returncode == 1
    assert r.stderr == "error: matplotlib is not installed; install it with: pip install 'leanrank[plots]'\n"


def test_ingest_names_files_gone_from_the_folder(tmp_path: Path) -> None:
    course = tmp_path / "course"
    course.mkdir()
    (course / "a.md").write_text("# Loops\n\nA for loop walks over a list.\n", encoding="utf-8")
    (course / "b.md").write_text("# Files\n\nopen() returns a file object.\n", encoding="utf-8")
    data = tmp_path / "data"
    assert leanrank(data, "ingest", str(course), "--course", "small").returncode == 0
    (course / "b.md").unlink()
    r = leanrank(data, "ingest", str(course), "--course", "small")
    assert r.returncode == 0, r.stderr
    assert (
        "course small: 1 file — 0 added, 0 updated, 1 unchanged, 0 skipped, 0 removed; "
        "0 chunks written, 0 embedded" in r.stderr
    )
    assert r.stderr.endswith(
        f"note: 1 indexed file of course small is no longer in {course} (b.md); it still answers searches "
        "until ingested with --prune\n"
    )
    r = leanrank(data, "ingest", str(course), "--course", "small", "--prune")
    assert "1 removed" in r.stderr
    assert "note:" not in r.stderr


def test_ingest_names_a_sub_folder_or_a_file_as_the_course_folder_does(tmp_path: Path) -> None:
    course = tmp_path / "course"
    (course / "lesson1").mkdir(parents=True)
    (course / "lesson1" / "a.md").write_text("# Loops\n\nA for loop walks over a list.\n", encoding="utf-8")
    (course / "b.md").write_text("# Files\n\nopen() returns a file object.\n", encoding="utf-8")
    data = tmp_path / "data"
    assert leanrank(data, "ingest", str(course), "--course", "small").returncode == 0
    (course / "lesson1" / "a.md").write_text("# Loops\n\nA while loop repeats.\n", encoding="utf-8")
    r = leanrank(data, "ingest", str(course / "lesson1"), "--course", "small", "--prune")
    assert r.returncode == 0, r.stderr
    assert "1 file — 0 added, 1 updated, 0 unchanged, 0 skipped, 0 removed" in r.stderr

    moved = tmp_path / "moved"
    course.rename(moved)
    was, now = course.resolve(), moved.resolve()
    r = leanrank(data, "ingest", str(moved / "b.md"), "--course", "small")
    assert (r.returncode, r.stderr) == (
        2,
        f"error: {moved / 'b.md'} is outside {was}, the folder of course small: pass --root with the course "
        "folder it is in (files are named relative to it), or ingest that whole folder\n",
    )
    r = leanrank(data, "ingest", str(moved / "b.md"), "--course", "small", "--root", str(moved))
    assert r.returncode == 0, r.stderr
    assert r.stderr.endswith(
        "1 file — 0 added, 0 updated, 1 unchanged, 0 skipped, 0 removed; 0 chunks written, 0 embedded\n"
        f"note: course small's folder is now {now} (was {was}): its files are named relative to it; pass "
        "--root to name them relative to another\n"
    ), r.stderr


def test_ingest_notes_a_file_turned_invalid_whose_indexed_version_still_answers(tmp_path: Path) -> None:
    course = tmp_path / "course"
    course.mkdir()
    (course / "a.md").write_text("# Loops\n\nA for loop walks over a list.\n", encoding="utf-8")
    cell = {"cell_type": "markdown", "metadata": {}, "source": "# Files\n\nopen() returns a file object."}
    notebook = course / "b.ipynb"
    notebook.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "cells": [cell]}), encoding="utf-8")
    data = tmp_path / "data"
    assert leanrank(data, "ingest", str(course), "--course", "small").returncode == 0
    notebook.write_text("{", encoding="utf-8")  # saved half-way
    r = leanrank(data, "ingest", str(course), "--course", "small")
    assert r.returncode == 0, r.stderr
    assert r.stderr.endswith(
        "skipped b.ipynb: cannot parse notebook: not JSON: Expecting property name enclosed in double "
        "quotes: line 1 column 2 (char 1)\n"
        "course small: 2 files — 0 added, 0 updated, 1 unchanged, 1 skipped, 0 removed; 0 chunks written, "
        "0 embedded\n"
        "note: b.ipynb was skipped (see above); the 1 chunk of its version indexed before still answers "
        "searches until it is fixed and ingested again, or removed from the folder and ingested with "
        "--prune\n"
    ), r.stderr


def test_delete_asks_on_a_terminal_and_yes_skips_it(tmp_path: Path) -> None:
    course = tmp_path / "course"
    course.mkdir()
    (course / "a.md").write_text("# Loops\n\nA for loop walks over a list.\n", encoding="utf-8")
    data = tmp_path / "data"
    assert leanrank(data, "ingest", str(course), "--course", "ask").returncode == 0
    controller, terminal = pty.openpty()
    env = {**os.environ, "LEANRANK_DATA_DIR": str(data), "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "leanrank.cli", "delete", "--course", "ask"],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    os.close(terminal)
    os.write(controller, b"n\n")
    _, errors = proc.communicate(timeout=300)
    os.close(controller)
    assert proc.returncode == 1
    assert errors.startswith("Delete course ask (1 chunk)? [y/N]:")
    assert "ask" in leanrank(data, "courses").stdout
    r = leanrank(data, "delete", "--course", "ask", "--yes")
    assert (r.returncode, r.stderr) == (0, "deleted course ask: 1 chunk\n")


def test_search_steered_by_the_students_context(data_dir: Path) -> None:
    query = ("search", "how do I stop a loop early", "--course", "py101", "-k", "5", "--json")

    def sources(*extra: str) -> list[str]:
        r = leanrank(data_dir, *query, *extra)
        assert r.returncode == 0, r.stderr
        return [json.loads(line)["source"] for line in r.stdout.splitlines()]

    plain = sources()
    toward = sources("--toward", "03-functions.en.md")
    assert plain.count("03-functions.en.md") < toward.count("03-functions.en.md")
    r = leanrank(data_dir, *query, "--away-from", "no-such-lesson.md")
    assert r.returncode == 2
    assert "source 'no-such-lesson.md' is not in course py101" in r.stderr
    r = leanrank(data_dir, *query, "--judge")
    assert r.returncode == 2
    assert "no LLM judge is configured" in r.stderr


def test_python_dash_m_leanrank_runs_the_command(tmp_path: Path) -> None:
    """`python -m leanrank` said "'leanrank' is a package and cannot be directly executed"."""
    r = subprocess.run(
        [sys.executable, "-m", "leanrank", "--version"],
        capture_output=True,
        text=True,
        env={**os.environ, "LEANRANK_DATA_DIR": str(tmp_path)},
        timeout=120,
        check=False,
    )
    assert (r.returncode, r.stdout, r.stderr) == (0, f"leanrank {__version__}\n", "")
