"""Schemathesis fuzzes every operation of the OpenAPI spec on a live server: no input gives a 5xx, and
every answer matches the documented statuses and schemas. Bounded (a few examples per operation), on an
empty index of its own so that generated uploads and deletions touch nothing else."""

from __future__ import annotations

from collections.abc import Iterator

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
        response = case.call(headers=auth(ADMIN_KEY), timeout=30)
        case.validate_response(response, checks=checks)

    fuzz()
