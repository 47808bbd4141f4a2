"""Schemathesis fuzzes every operation of the OpenAPI spec on a live server: no input gives a 5xx, and
every answer matches the documented statuses and schemas. Bounded (a few examples per operation), on an
empty index of its own so that generated uploads and deletions touch nothing else.

Besides the spec's own strategies: text fields holding a lone UTF-16 surrogate (valid JSON, not text)
and usage periods anywhere in the calendar, up to its last day.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.serve import create_app
from tests.conftest import make_pipeline
from tests.serve.conftest import ADMIN_KEY, auth, settings_for
from tests.serve.live import LiveServer

EXAMPLES = 6
Path = tuple[str | int, ...]

# Some ordinary text around one lone surrogate (category Cs). One, because JSON reads a high surrogate
# followed by a low one as the pair it encodes: a valid character, not hostile at all.
HOSTILE_TEXT = st.builds(
    lambda head, bad, tail: head + bad + tail,
    st.text(max_size=4),
    st.characters(categories=["Cs"]),
    st.text(max_size=4).filter(lambda t: not ("\udc00" <= t[:1] <= "\udfff")),
)
DAYS = st.sampled_from([date.max, date.min]) | st.dates()
PERIODS = (
    DAYS.map(date.isoformat)
    | DAYS.map(lambda d: f"{d:%Y-%m}")
    | st.tuples(DAYS, DAYS).map(lambda ab: f"{min(ab)}..{max(ab)}")
)


def _string_paths(value: Any, path: Path = ()) -> Iterator[Path]:
    """Where `value` (a JSON body) holds strings."""
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _string_paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _string_paths(item, (*path, i))


def _replaced(value: Any, path: Path, new: str) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _replaced(value[head], rest, new)  # type: ignore[index]
    return copy


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> Iterator[LiveServer]:
    pipe = make_pipeline(tmp_path_factory.mktemp("fuzz-index"), e5, bm25)
    server = LiveServer(create_app(settings_for(tmp_path_factory.mktemp("fuzz")), pipeline=pipe))
    yield server
    server.close()
    pipe.close()


def test_no_input_makes_a_server_error(live: LiveServer) -> None:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 13
    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]

    @settings(
        max_examples=EXAMPLES * len(operations),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        operation = data.draw(st.sampled_from(operations))
        case = data.draw(operation.as_strategy())
        strings = list(_string_paths(case.body)) if case.media_type == "application/json" else []
        hostile: bool = bool(strings) and data.draw(st.booleans())
        if hostile:
            # Sent by hand: schemathesis cannot validate a body that is not text, the service must refuse it.
            body = _replaced(case.body, data.draw(st.sampled_from(strings)), data.draw(HOSTILE_TEXT))
            reply = http.request(
                case.method, case.formatted_path, params=case.query, content=json.dumps(body).encode()
            )
            assert reply.status_code == 422, reply.text
            assert "holds a lone UTF-16 surrogate" in reply.json()["error"]
            return
        if case.path == "/v1/usage" and data.draw(st.booleans()):
            case.query = {**(case.query or {}), "period": data.draw(PERIODS)}
        response = case.call(headers=auth(ADMIN_KEY), timeout=30)
        case.validate_response(response, checks=checks)

    with live.client(ADMIN_KEY, {"content-type": "application/json"}) as http:
        fuzz()
