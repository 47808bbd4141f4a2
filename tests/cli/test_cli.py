"""The `leanrank` command as a user runs it: a real subprocess, a real data directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SAMPLE_COURSE

HIT_FIELDS = {
    "chunk_id",
    "score",
    "text",
    "course",
    "source",
    "lang",
    "heading",
    "start",
    "end",
    "stage_scores",
}


def leanrank(data_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
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
