"""`leanrank rerank` and `leanrank backends` as a user runs them, against loopback provider servers.

The worked example of the README: the same 120 documents through a Cohere-format server bill 2 search
units (one request: 100 + 20 documents), through a Jina-format server the tokens that server reported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rerank.servers import API_KEY, MODEL, FakeProvider, score_of, tokens_of

QUERY = "Как вычисляется градиент функции потерь?"
TEXTS = [f"Фрагмент {i}: градиентный спуск, шаг {i}, функция потерь и её производная." for i in range(120)]


def leanrank(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leanrank.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=120,
        check=False,
    )


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    path = tmp_path / "docs.jsonl"
    lines = [json.dumps({"id": f"d{i}", "text": t}, ensure_ascii=False) for i, t in enumerate(TEXTS)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(params=["cohere", "jina"])
def fake(request: pytest.FixtureRequest) -> Iterator[FakeProvider]:
    server = FakeProvider(request.param)
    yield server
    server.close()


def provider_env(fake: FakeProvider) -> dict[str, str]:
    prefix = f"LEANRANK_{fake.provider.upper()}"
    return {f"{prefix}_BASE_URL": fake.url, f"{prefix}_API_KEY": API_KEY}


def test_worked_example_120_documents(fake: FakeProvider, docs: Path) -> None:
    run = leanrank(
        "rerank", "--backend", f"{fake.provider}:{MODEL}", "--query", QUERY, "--docs", str(docs), "--json",
        env=provider_env(fake),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["scores"] == pytest.approx([score_of(t) for t in TEXTS])
    usage = result["usage"]
    assert set(usage) >= {"search_units", "total_tokens", "query_tokens", "document_tokens", "cost_usd"}
    assert usage["source"] == "reported"
    assert usage["documents"] == 120
    if fake.provider == "cohere":
        assert usage["search_units"] == 2
        assert fake.batch_sizes() == [120]
    else:
        # The Jina-format server bills the query once per document plus every document's tokens.
        expected = tokens_of(QUERY) * 120 + sum(tokens_of(t) for t in TEXTS)
        assert usage["search_units"] is None
        assert usage["total_tokens"] == expected
        assert usage["billed_units"] == expected


def test_table_shows_top_n_and_usage(docs: Path) -> None:
    fake = FakeProvider("cohere")
    try:
        run = leanrank(
            "rerank", "-b", f"cohere:{MODEL}", "-q", QUERY, "--docs", str(docs), "--top-n", "3",
            env=provider_env(fake),
        )  # fmt: skip
    finally:
        fake.close()
    assert run.returncode == 0, run.stderr
    best = max(range(120), key=lambda i: score_of(TEXTS[i]))
    assert f"d{best}" in run.stdout
    assert "search_units=2" in run.stdout
    assert run.stdout.count("Фрагмент") == 3


def test_fallback_is_reported(docs: Path) -> None:
    run = leanrank(
        "rerank", "-b", "tei:http://127.0.0.1:9?max_attempts=1&timeout_s=1 | identity",
        "-q", QUERY, "--docs", str(docs), "--json",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["backend"] == "identity"
    assert result["failed"][0].startswith("tei:http://127.0.0.1:9: ")
    assert result["usage"]["cost_usd"] == 0.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "ok"}\nnot json\n', "docs.jsonl:2: not valid JSON"),
        ('{"id": 1}\n', 'docs.jsonl:1: expected a JSON object with a string "text"'),
        (  # JSON may escape a lone surrogate: identity scored it, a tokenizer or an HTTP client raised
            '{"text": "ok \\ud800"}\n',
            "docs.jsonl:1: text holds a lone UTF-16 surrogate (U+D800 at character 3), which is not text",
        ),
        ("\n\n", "docs.jsonl: no documents"),
        # Results are joined by id: a repeated one, or an explicit id equal to a later line's default.
        ('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', 'docs.jsonl:2: id "a" is already line 1\'s'),
        ('{"id": 2, "text": "x"}\n{"text": "y"}\n', 'docs.jsonl:2: id "2" is already line 1\'s'),
    ],
)
def test_bad_documents_file_names_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text(content, encoding="utf-8")
    run = leanrank("rerank", "-b", "identity", "-q", "q", "--docs", str(path))
    assert run.returncode == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr


def test_unknown_backend_is_one_line(docs: Path) -> None:
    run = leanrank("rerank", "-b", "nope:x", "-q", "q", "--docs", str(docs))
    assert run.returncode == 2  # a setting to fix, not a failure to retry
    assert "leanrank backends" in run.stderr
    assert "Traceback" not in run.stderr


def test_backends_lists_the_catalog() -> None:
    run = leanrank("backends", "--json")
    assert run.returncode == 0
    rows = {row["kind"]: row for row in json.loads(run.stdout)}
    assert rows["cohere"]["billed_unit"] == "search_units"
    assert rows["tei"]["max_docs_per_request"] == 32
    assert rows["local"]["extras"] == ["onnx", "torch"]
