"""Inputs that used to give a 500: each is a 4xx whose message names the field at fault."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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


def _multipart(*filenames: str) -> bytes:
    """A `files` part named exactly each of `filenames` (clients escape a NUL; a hostile one sends it raw)."""
    parts = b"".join(
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="files"; filename="' + name.encode() + b'"\r\n'
        b"Content-Type: text/markdown\r\n\r\n# T\n\ntext\n\r\n"
        for name in filenames
    )
    return parts + b"--b0undary--\r\n"


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


RELATIVE = (
    "give a relative path of at most 512 characters, without a leading '/' or drive, empty parts, '..' or "
    "parts starting with '.'"
)
BIDI = "holds the bidirectional control character"


@pytest.mark.parametrize(
    ("filename", "error"),
    [
        ("/abs/path.md", f"files: file name '/abs/path.md': {RELATIVE}"),
        ("//server/share/a.md", f"files: file name '//server/share/a.md': {RELATIVE}"),
        ("week1/", f"files: file name 'week1/': {RELATIVE}"),
        ("C:/notes/a.md", f"files: file name 'C:/notes/a.md': {RELATIVE}"),
        ("c:a.md", f"files: file name 'c:a.md': {RELATIVE}"),
        # Windows paths, sent raw as browsers do and escaped as httpx does: the parser cut these to 'a.md'.
        (r"C:\notes\a.md", rf"files: file name 'C:\\notes\\a.md': {RELATIVE}"),
        (r"C:\\notes\\a.md", rf"files: file name 'C:\\notes\\a.md': {RELATIVE}"),
        (r"\\\\srv\\a.md", rf"files: file name '\\\\srv\\a.md': {RELATIVE}"),
        (r"\srv\a.md", rf"files: file name '\\srv\\a.md': {RELATIVE}"),  # the root of the current drive
        (
            "report\u202edm.txt",
            f"files: file name 'report\\u202edm.txt' {BIDI} U+202E, which makes a name display as another",
        ),
        # A newline would forge a line of the ingest report; ESC starts a terminal sequence.
        ("lf\nx.md", "files: file name 'lf\\nx.md' holds the control character U+000A"),
        ("esc\x1b[31m.md", "files: file name 'esc\\x1b[31m.md' holds the control character U+001B"),
        (
            "a\u2066b\u2069.md",
            f"files: file name 'a\\u2066b\\u2069.md' {BIDI} U+2066, which makes a name display as another",
        ),
    ],
)
def test_an_absolute_or_misleading_file_name_is_refused_and_nothing_is_written(
    live: LiveServer, filename: str, error: str
) -> None:
    """`/abs/path.md` was stored as `abs/path.md`, and python-multipart cut `C:\\notes\\a.md` to `a.md`: a
    source the client never named, so deleting the name it sent found nothing."""
    with live.client(ADMIN_KEY, {"content-type": "multipart/form-data; boundary=b0undary"}) as http:
        reply = http.post("/v1/courses/names/documents", content=_multipart("ok.md", filename))
        assert reply.status_code == 422, reply.text
        assert (reply.json()["error"], reply.json()["error_type"]) == (error, "invalid_input")
        assert http.get("/v1/courses/names/documents").status_code == 404  # ok.md was not ingested either
    assert not [p for p in live.app.state.service.jobs.folder.rglob("*") if p.suffix in (".md", ".txt")]


@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        # The parser stops at the CR inside the file name: after it comes `h`, byte 104, not LF.
        (
            "multipart/form-data; boundary=b0undary",
            _multipart("cr\rhere.md"),
            "Did not find LF character at end of header (found 104)",
        ),
        ("multipart/form-data", _multipart("a.md"), "Missing boundary in multipart."),
    ],
)
def test_a_multipart_body_the_parser_refuses_is_422_in_the_services_shape(
    live: LiveServer, content_type: str, body: bytes, reason: str
) -> None:
    """Starlette answered 400 `http_error` ("Invalid multipart data."), where a bad JSON body gets a 422."""
    with live.client(ADMIN_KEY, {"content-type": content_type}) as http:
        reply = http.post("/v1/courses/hostile/documents", content=body)
    assert reply.status_code == 422, reply.text
    error = f"body: not readable as multipart/form-data: {reason}"
    assert reply.json() == invalid_request(error, reply.headers["x-request-id"])


@pytest.mark.parametrize("path", ["/v2/rerank", "/v1/rerank", "/rerank", "/v1/rerank/batch", "/v1/search"])
def test_json_nested_past_the_parsers_limit_is_422(live: LiveServer, path: str) -> None:
    """`json.loads` raises RecursionError on deep nesting, which FastAPI answered as 400 `http_error`."""
    deep = b'{"query": "q", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with live.client(ADMIN_KEY, {"content-type": "application/json"}) as http:
        reply = http.post(path, content=deep)
    assert reply.status_code == 422, reply.text
    error = "body: JSON nested too deeply to parse"
    assert reply.json() == invalid_request(error, reply.headers["x-request-id"])


RERANK = {"model": "m", "query": "q", "documents": ["a", "b", "c"]}
SEARCH = {"query": "цикл for", "course": "demo"}
INTEGER = "Input should be a valid integer"


def invalid_request(error: str, request_id: str) -> dict[str, Any]:
    """The whole 422 body of an invalid request: the text under each of the names clients read."""
    return {
        "error": error,
        "message": error,
        "detail": error,
        "error_type": "invalid_request",
        "limit": None,
        "request_id": request_id,
    }


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("/v2/rerank", {**RERANK, "top_n": True}, f"body.top_n: {INTEGER}"),
        ("/v2/rerank", {**RERANK, "top_n": 2.0}, f"body.top_n: {INTEGER}"),
        ("/v2/rerank", {**RERANK, "top_n": 2.5}, f"body.top_n: {INTEGER}"),
        ("/v2/rerank", {**RERANK, "max_tokens_per_doc": True}, f"body.max_tokens_per_doc: {INTEGER}"),
        ("/v2/rerank", {**RERANK, "priority": False}, f"body.priority: {INTEGER}"),
        ("/v1/rerank", {**RERANK, "top_n": "2"}, f"body.top_n: {INTEGER}"),
        ("/v1/rerank", {**RERANK, "max_chunks_per_doc": True}, f"body.max_chunks_per_doc: {INTEGER}"),
        (
            "/v1/rerank/batch",
            {"requests": [{"query": "q", "documents": ["a"], "top_n": True}]},
            f"body.requests.0.top_n: {INTEGER}",
        ),
        ("/v1/search", {**SEARCH, "k": True}, f"body.k: {INTEGER}"),
        ("/v1/search", {**SEARCH, "depth": "50"}, f"body.depth: {INTEGER}"),
        (
            "/v1/search",
            {**SEARCH, "min_relevance": True},
            "body.min_relevance: Input should be a valid number",
        ),
    ],
)
def test_a_boolean_string_or_float_for_an_integer_is_422(
    live: LiveServer, path: str, body: dict[str, Any], error: str
) -> None:
    """pydantic's lax mode read `true` as 1 and `"2"` or `2.0` as 2: the request ran with a number the client
    never sent."""
    with live.client(ADMIN_KEY) as http:
        reply = http.post(path, json=body)
    assert reply.status_code == 422, reply.text
    assert reply.json() == invalid_request(error, reply.headers["x-request-id"])


BOOLEAN = "Input should be a valid boolean"
JINA = {**RERANK, "model": "jina-reranker-v2-base-multilingual"}
TEI = {"query": "q", "texts": ["a", "b"]}


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("/v1/rerank", {**RERANK, "return_documents": "yes"}, f"body.return_documents: {BOOLEAN}"),
        ("/v1/rerank", {**JINA, "return_documents": "false"}, f"body.return_documents: {BOOLEAN}"),
        ("/v1/rerank", {**JINA, "return_documents": 0}, f"body.return_documents: {BOOLEAN}"),
        ("/rerank", {**TEI, "raw_scores": 1}, f"body.raw_scores: {BOOLEAN}"),
        ("/rerank", {**TEI, "return_text": "yes"}, f"body.return_text: {BOOLEAN}"),
        ("/rerank", {**TEI, "truncate": "true"}, f"body.truncate: {BOOLEAN}"),
        ("/v1/search", {**SEARCH, "judge": "false"}, f"body.judge: {BOOLEAN}"),
        ("/v1/search", {**SEARCH, "judge": 1}, f"body.judge: {BOOLEAN}"),
    ],
)
def test_a_number_or_string_for_a_boolean_is_422(
    live: LiveServer, path: str, body: dict[str, Any], error: str
) -> None:
    """Lax mode read `"yes"` or `1` as true and `"false"` or `0` as false: a Jina client's `"false"` echoed
    nothing and a TEI client's `1` got logits, flags the client never sent as such (TEI itself refuses)."""
    with live.client(ADMIN_KEY) as http:
        reply = http.post(path, json=body)
    assert reply.status_code == 422, reply.text
    assert (reply.json()["error"], reply.json()["error_type"]) == (error, "invalid_request")


def test_integers_sent_as_integers_still_count(live: LiveServer) -> None:
    with live.client(ADMIN_KEY) as http:
        reranked = http.post(
            "/v2/rerank", json={**RERANK, "top_n": 2, "max_tokens_per_doc": 64, "priority": 0}
        )
        chunked = http.post("/v1/rerank", json={**RERANK, "top_n": 1, "max_chunks_per_doc": 2})
        found = http.post("/v1/search", json={**SEARCH, "k": 1, "depth": 5})
        # `k` is bounded as the library and the CLI bound it (`checks.MAX_HITS`, as `rerank.top_k` may be).
        many = http.post("/v1/search", json={**SEARCH, "k": 101})
        too_many = http.post("/v1/search", json={**SEARCH, "k": 1001})
    assert [len(r.json()["results"]) for r in (reranked, chunked)] == [2, 1]
    assert len(found.json()["hits"]) == 1
    assert many.status_code == 200, many.text
    assert too_many.status_code == 422
    assert too_many.json()["error"] == "body.k: Input should be less than or equal to 1000"


@pytest.mark.parametrize("path", ["/v2/rerank", "/v1/rerank", "/rerank", "/v1/rerank/batch", "/v1/search"])
def test_a_body_that_is_not_utf8_is_422_in_the_services_shape(live: LiveServer, path: str) -> None:
    """FastAPI answered 400 "There was an error parsing the body" (`http_error`), where malformed JSON gets a
    422 `invalid_request`: now the same 422, saying where the bytes stop being UTF-8."""
    with live.client(ADMIN_KEY, {"content-type": "application/json"}) as http:
        reply = http.post(path, content=b'{"query": "\xff"}')
    assert reply.status_code == 422, reply.text
    error = "body: not UTF-8 at byte 11 (invalid start byte); send JSON encoded as UTF-8"
    assert reply.json() == invalid_request(error, reply.headers["x-request-id"])


@pytest.mark.parametrize("path", ["/v2/rerank", "/v1/rerank", "/rerank", "/v1/rerank/batch", "/v1/search"])
def test_malformed_json_says_where_and_why(live: LiveServer, path: str) -> None:
    """pydantic's `body.1: JSON decode error` read as a fault in a field named `1`."""
    with live.client(ADMIN_KEY, {"content-type": "application/json"}) as http:
        reply = http.post(path, content=b'{"query": "q",}')
    assert reply.status_code == 422, reply.text
    error = "body: not valid JSON at character 14 (Expecting property name enclosed in double quotes)"
    assert reply.json()["error"] == error
    assert reply.json()["error_type"] == "invalid_request"


DOCUMENT = 'a document must be a string or an object with a "text" field'
STRING = "Input should be a valid string"


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        (
            "/v1/rerank",
            {"model": "jina-reranker-v2", "query": "q", "documents": [1]},
            f"body.documents.0: {DOCUMENT}",
        ),
        (
            "/v1/rerank",
            {"query": "q", "documents": ["a", None, [1]]},
            f"body.documents.1: {DOCUMENT}; body.documents.2: {DOCUMENT}",
        ),
        ("/v2/rerank", {"query": "q", "documents": [{"text": "a"}]}, f"body.documents.0: {STRING}"),
        ("/rerank", {"query": "q", "texts": ["a", 1]}, f"body.texts.1: {STRING}"),
        (
            "/v1/rerank/batch",
            {"requests": [{"query": "q", "documents": [True]}]},
            f"body.requests.0.documents.0: {STRING}",
        ),
    ],
)
def test_a_document_of_the_wrong_type_is_one_plain_fault(
    live: LiveServer, path: str, body: dict[str, Any], error: str
) -> None:
    """A string-or-object document was two faults naming pydantic's schemas (`body.documents.0.str: ...;
    body.documents.0.dict[str,json-or-python[json=any,python=tagged-union[...]]]: ...`)."""
    with live.client(ADMIN_KEY) as http:
        reply = http.post(path, json=body)
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"] == reply.json()["message"] == error
    assert reply.json()["error_type"] == "invalid_request"
