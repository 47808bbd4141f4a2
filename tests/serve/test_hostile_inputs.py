"""Inputs that used to give a 500: each is a 4xx whose message names the field at fault."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from leanrank.pipeline import Pipeline
from leanrank.serve import create_app
from tests.serve.conftest import ADMIN_KEY, settings_for
from tests.serve.live import LiveServer

# A JSON escape of a lone high surrogate: valid JSON, not text (no UTF-8 encoding exists for it).
LONE = "\\ud800"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, index: Pipeline) -> Iterator[LiveServer]:
    server = LiveServer(create_app(settings_for(tmp_path_factory.mktemp("hostile")), pipeline=index))
    yield server
    server.close()


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v2/rerank", f'{{"model": "m", "query": "q{LONE}", "documents": ["a"]}}', "query"),
        ("/v2/rerank", f'{{"model": "m", "query": "q", "documents": ["a", "b{LONE}"]}}', "documents.1"),
        ("/v2/rerank", f'{{"model": "m{LONE}", "query": "q", "documents": ["a"]}}', "model"),
        ("/v1/rerank", f'{{"query": "q", "documents": [{{"text": "{LONE}"}}]}}', "documents.0.text"),
        ("/rerank", f'{{"query": "q", "texts": ["{LONE}x"]}}', "texts.0"),
        ("/v1/search", f'{{"query": "{LONE}", "course": "demo"}}', "query"),
        ("/v1/search", f'{{"query": "q", "course": "demo{LONE}"}}', "course"),
        ("/v1/search", f'{{"query": "q", "course": "d", "heading_prefix": ["{LONE}"]}}', "heading_prefix.0"),
        ("/v1/search", f'{{"query": "q", "course": "demo", "{LONE}": 1}}', "?"),
    ],
)
def test_a_lone_surrogate_is_422_naming_the_field(live: LiveServer, path: str, body: str, field: str) -> None:
    with live.client(ADMIN_KEY, {"content-type": "application/json"}) as http:
        reply = http.post(path, content=body.encode())
    assert reply.status_code == 422, reply.text
    assert f"{field} holds a lone UTF-16 surrogate" in reply.json()["error"]


@pytest.mark.parametrize("period", ["9999-12-31", "2026-01-01..9999-12-31", "9999-12"])
def test_a_period_past_the_calendar_is_422(live: LiveServer, period: str) -> None:
    with live.client(ADMIN_KEY) as http:
        reply = http.get("/v1/usage", params={"period": period})
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"].startswith(f"period {period!r}")


def _multipart(filename: str) -> bytes:
    """One `files` part named exactly `filename` (clients escape a NUL; a hostile one sends it raw)."""
    return (
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="files"; filename="' + filename.encode() + b'"\r\n'
        b"Content-Type: text/markdown\r\n\r\n# T\n\ntext\n\r\n--b0undary--\r\n"
    )


@pytest.mark.parametrize(
    ("filename", "reason"),
    [
        ("a" * 253 + ".md", "at most 255 bytes"),  # 256 bytes
        ("week1/" + "я" * 130 + ".md", "at most 255 bytes"),  # 263 bytes in 133 characters
        ("a\x00b.md", "without NUL"),
    ],
)
def test_a_file_name_no_file_system_takes_is_422(live: LiveServer, filename: str, reason: str) -> None:
    with live.client(ADMIN_KEY, {"content-type": "multipart/form-data; boundary=b0undary"}) as http:
        reply = http.post("/v1/courses/hostile/documents", content=_multipart(filename))
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error.startswith("files: file name")
    assert reason in error
