"""`leanrank rerank-batch`, `leanrank calibrate`, and `leanrank eval` with a calibrated threshold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from leanrank.cli.app import app
from leanrank.rerank.calibration import load_calibrations
from tests.eval.conftest import write_beir
from tests.rerank.servers import API_KEY, MODEL, FakeProvider, score_of


@pytest.fixture(autouse=True)
def no_project_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no leanrank.toml from the working directory


def test_rerank_batch_prints_one_line_per_request_with_its_own_usage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeProvider("jina")
    monkeypatch.setenv("LEANRANK_JINA_BASE_URL", fake.url)
    monkeypatch.setenv("LEANRANK_JINA_API_KEY", API_KEY)
    docs = [["цикл for", "функция", "цикл while перебирает"], ["open() returns a file"]]
    lines = [
        {"id": "a", "query": "цикл", "documents": docs[0]},
        {"query": "files", "documents": [{"text": docs[1][0]}]},
    ]
    requests = tmp_path / "requests.jsonl"
    requests.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines), encoding="utf-8")
    try:
        result = CliRunner().invoke(
            app, ["rerank-batch", "-b", f"jina:{MODEL}", "--requests", str(requests), "--top-n", "2"]
        )
    finally:
        fake.close()
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["id"] for o in out] == ["a", "2"]  # the line number when no id is given
    best = sorted(range(3), key=lambda i: -score_of(docs[0][i]))[:2]
    assert [r["index"] for r in out[0]["ranking"]] == best
    assert [o["usage"]["documents"] for o in out] == [3, 1]
    assert len(fake.requests) == 2  # Jina has no multi-query endpoint: one call per query


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"query": "q"}', 'a string "query" and a "documents" list'),
        ('{"query": " ", "documents": ["x"]}', "the query is empty"),
        ('{"query": "q", "documents": [1]}', 'each document is a string or an object with a string "text"'),
        ("", "no requests"),
        (  # JSON may escape a lone surrogate; identity scored it, a model's tokenizer raised
            '{"query": "q", "documents": ["x", {"text": "\\udfff"}]}',
            ":1: documents.1.text holds a lone UTF-16 surrogate (U+DFFF at character 0), which is not text",
        ),
    ],
)
def test_rerank_batch_bad_input_is_one_line_and_exit_2(tmp_path: Path, body: str, message: str) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_text(body, encoding="utf-8")
    result = CliRunner().invoke(app, ["rerank-batch", "-b", "identity", "--requests", str(requests)])
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_rerank_batch_refuses_an_unknown_field_naming_its_line(tmp_path: Path) -> None:
    """A typo (`top_n` per request, which is the command's `--top-n`) was dropped without a word."""
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        '{"id": "a", "query": "q", "documents": ["x"]}\n'
        '{"id": "b", "query": "q", "documents": ["y"], "top_n": 1}\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["rerank-batch", "-b", "identity", "--requests", str(requests)])
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        f'error: {requests}:2: unknown field "top_n"; a request has "id", "query" and "documents"\n'
    )


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        (
            [
                '{"id": "a", "query": "циклы", "documents": ["x"]}',
                '{"id": "b", "query": "loops", "documents": ["y"]}',
                '{"id": "a", "query": "def", "documents": ["z"]}',
            ],
            ':3: id "a" is already line 1\'s; each request needs its own',
        ),
        (  # an explicit id 3 and line 3's default id are one id
            [
                '{"id": 3, "query": "циклы", "documents": ["x"]}',
                "",
                '{"query": "loops", "documents": ["y"]}',
            ],
            ':3: id "3" is already line 1\'s; each request needs its own',
        ),
        (
            [
                '{"id": 2, "query": "циклы", "documents": ["x"]}',
                '{"id": "2", "query": "loops", "documents": ["y"]}',
            ],
            ':2: id "2" is already line 1\'s; each request needs its own',
        ),
    ],
)
def test_rerank_batch_refuses_a_repeated_id_before_any_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: list[str], error: str
) -> None:
    """Two results with one id (as written) cannot be told apart: the file is refused, no provider call."""
    fake = FakeProvider("jina")
    monkeypatch.setenv("LEANRANK_JINA_BASE_URL", fake.url)
    monkeypatch.setenv("LEANRANK_JINA_API_KEY", API_KEY)
    requests = tmp_path / "requests.jsonl"
    requests.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        result = CliRunner().invoke(app, ["rerank-batch", "-b", f"jina:{MODEL}", "--requests", str(requests)])
    finally:
        fake.close()
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", f"error: {requests}{error}\n")
    assert fake.requests == []


def test_calibrate_writes_a_dated_file_that_eval_applies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    beir = write_beir(tmp_path / "tiny")
    folder = tmp_path / "cal"
    pool = ["--data-dir", str(tmp_path / "pool")]
    fitted = CliRunner().invoke(app, ["calibrate", "-d", f"beir:{beir}", "-o", str(folder), *pool])
    assert fitted.exit_code == 0, fitted.output
    [cal] = load_calibrations(folder).values()
    assert (cal.backend, cal.method) == ("identity", "platt")
    assert cal.a > 0  # a higher fused score is more likely relevant
    assert "min_relevance" in fitted.stdout
    monkeypatch.setenv("LEANRANK_RERANK__CALIBRATION_DIR", str(folder))
    args = ["eval", "-d", f"beir:{beir}", "-c", "default", "-o", str(tmp_path / "out"), *pool]
    plain = CliRunner().invoke(app, args)
    strict = CliRunner().invoke(app, [*args, "--min-relevance", "0.5"])
    assert plain.exit_code == strict.exit_code == 0, strict.output
    [row] = json.loads((tmp_path / "out" / "report.json").read_text())["configs"]  # the strict run's
    assert "## What came back" in strict.stdout
    assert row["hits_per_query"] < 20  # the threshold dropped hits (20 come back without it)


def test_calibrate_checks_its_folder_before_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--out`, or the configured folder, that cannot be written is one line before anything is encoded."""
    beir = write_beir(tmp_path / "tiny")
    (tmp_path / "afile").write_text("not a folder", encoding="utf-8")
    args = ["calibrate", "-d", f"beir:{beir}", "--data-dir", str(tmp_path / "pool")]
    given = CliRunner().invoke(app, [*args, "-o", "afile"])
    monkeypatch.setenv("LEANRANK_RERANK__CALIBRATION_DIR", "afile/cal")
    configured = CliRunner().invoke(app, args)
    assert (given.exit_code, given.stderr) == (2, "error: --out afile is not a folder\n")
    assert (configured.exit_code, configured.stderr) == (
        2,
        "error: the calibration folder afile/cal is under afile, which is not a folder\n",
    )
    assert not (tmp_path / "pool").exists()
