"""What sending every received document would have cost (`full_cost_usd`), over a real loopback server with
stand-in providers: one rule whatever the cascade or the score cache did, with the request's own truncation
and windows, blank documents left out, never below the cost; `/v1/usage` and `/metrics` agree on savings.

Token-billed calls go to the Jina stand-in, priced here at $1 per million tokens, so $0.000001 is one token.
Its model (`test-model`) has no bundled tokenizer: the estimate is the character estimate, round(characters /
4.35) tokens for Latin text (`leanrank.cost.tokens`), while the stand-in reports whitespace words. The Cohere
stand-in bills ceil(documents / 100) search units at $0.002 each (`priced`).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from leanrank.pipeline import Pipeline
from leanrank.rerank.base import Reranker
from leanrank.rerank.cache import with_cache
from leanrank.serve import create_app
from leanrank.settings import CostSettings, Settings
from tests.rerank.servers import MODEL, FakeProvider, adapter
from tests.serve.conftest import ADMIN_KEY, DEMO_KEY, priced, settings_for
from tests.serve.live import LiveServer

JINA = "jina-reranker-v2-base-multilingual"  # a model starting with `jina`: the Jina wire on /v1/rerank
OFF = {"X-Leanrank-Cascade": "off"}
QUERY = "how is memory managed"  # 21 characters: 5 tokens by the estimate, 4 words by the stand-in
TEXTS = [f"text number {i} about memory management" for i in range(10)]  # 37 characters: 9 tokens, 6 words


@pytest.fixture
def jina_fake() -> Iterator[FakeProvider]:
    fake = FakeProvider("jina")
    yield fake
    fake.close()


@pytest.fixture
def cohere_fake() -> Iterator[FakeProvider]:
    fake = FakeProvider("cohere")
    yield fake
    fake.close()


def jina_priced(tmp_path: Path) -> Settings:
    """Settings where the Jina stand-in's model costs $1 per million tokens."""
    prices = tmp_path / "jina.toml"
    prices.write_text(
        f'provider = "jina"\n\n[[price]]\nmodel = "{MODEL}"\nunit = "per_million_tokens"\nprice = 1.0\n'
        'currency = "USD"\nas_of = 2026-11-22\nsource = "https://example.test/pricing"\nverified = true\n',
        encoding="utf-8",
    )
    settings = settings_for(tmp_path / "data")
    return settings.model_copy(update={"cost": CostSettings(pricing_files=[prices])})


def serve(settings: Settings, reranker: Reranker, index: Pipeline) -> LiveServer:
    return LiveServer(create_app(settings, reranker=reranker, pipeline=index))


def costs(reply: httpx.Response) -> tuple[str, str]:
    """`x-leanrank-cost-usd` and `x-leanrank-full-cost-usd` of a reply."""
    return reply.headers["x-leanrank-cost-usd"], reply.headers["x-leanrank-full-cost-usd"]


def test_full_cost_truncates_as_the_request_asked(
    tmp_path: Path, jina_fake: FakeProvider, index: Pipeline
) -> None:
    """30 documents of 800 words, `max_tokens_per_doc` 20: each is sent as its first 20 words ("memory" is
    one XLM-R token), 139 characters, 32 tokens by the estimate. Full cost: 5 × 30 + 32 × 30 = 1,110 tokens,
    with the cascade or without (before: every document priced whole, 38,000+ tokens)."""
    docs = [" ".join(["memory"] * 800) + f" end{i:02d}" for i in range(30)]
    body = {"model": JINA, "query": QUERY, "documents": docs, "max_tokens_per_doc": 20}
    server = serve(jina_priced(tmp_path), adapter(jina_fake), index)
    try:
        with server.client(DEMO_KEY) as http:
            cut = http.post("/v1/rerank", json=body)
            cut_sent = jina_fake.requests[-1].body["documents"]
            whole = http.post("/v1/rerank", json=body, headers=OFF)
            whole_sent = jina_fake.requests[-1].body["documents"]
    finally:
        server.close()
    assert cut.status_code == whole.status_code == 200, (cut.text, whole.text)
    assert whole_sent == [" ".join(["memory"] * 20)] * 30
    # The stand-in bills 4 + 20 words a document sent: 24 × 30 = 720 tokens for all, 24 a forwarded one.
    assert costs(whole) == ("0.00072000", "0.00111000")
    assert costs(cut) == (f"{24 * len(cut_sent) / 1e6:.8f}", "0.00111000")
    assert len(cut_sent) < 30


def _long_documents() -> list[str]:
    """60 documents of 1,000 distinct-enough words: each is over 1,000 XLM-R tokens, 10 windows of 100."""
    words = ["heap", "stack", "pointer", "object", "cycle", "thread", "page", "buffer", "garbage", "frame"]
    rng = random.Random(7)
    return [f"Document {i}: " + " ".join(rng.choice(words) for _ in range(1000)) for i in range(60)]


def _metric_saved(text: str, course: str) -> float:
    found = re.findall(
        rf'^leanrank_gateway_saved_usd_total\{{[^}}]*course="{course}"[^}}]*\}} (\S+)$', text, re.M
    )
    return sum(float(v) for v in found)


def test_full_cost_counts_windows_and_usage_and_metrics_agree_on_the_savings(
    tmp_path: Path, cohere_fake: FakeProvider, index: Pipeline
) -> None:
    """Cohere v1's `max_chunks_per_doc` 10 over 60 long documents: all sent would be 600 windows, 6 search
    units, $0.012 (before: 60 documents, 1 unit, $0.002, below the cascade's own cost when it forwarded more
    than 10 documents: a negative saving in `/v1/usage` that `/metrics` clamped to 0)."""
    docs = _long_documents()
    windows = {"max_chunks_per_doc": 10, "max_tokens_per_doc": 100}
    body = {"query": "how does garbage collection free memory", "documents": docs, **windows}
    server = serve(priced(tmp_path), adapter(cohere_fake), index)
    try:
        with server.client(DEMO_KEY) as http:
            cut = http.post("/v1/rerank", json=body)
            sent = len(cohere_fake.requests[-1].body["documents"])
            whole = http.post("/v1/rerank", json=body, headers=OFF)
            assert len(cohere_fake.requests[-1].body["documents"]) == 600
            [usage] = http.get("/v1/usage").json()["rows"]
        with server.client(ADMIN_KEY) as http:
            metrics = http.get("/metrics").text
    finally:
        server.close()
    assert cut.status_code == whole.status_code == 200, (cut.text, whole.text)
    cut_cost = 0.002 * math.ceil(sent / 100)
    assert costs(cut) == (f"{cut_cost:.8f}", "0.01200000")
    assert costs(whole) == ("0.01200000", "0.01200000")
    saved = 0.012 - cut_cost  # the opt-out call saved nothing
    assert (usage["key"], usage["documents_received"]) == ("demo", 120)
    assert (usage["full_cost_usd"], usage["saved_usd"]) == (pytest.approx(0.024), pytest.approx(saved))
    assert _metric_saved(metrics, "demo") == pytest.approx(saved)


def test_full_cost_is_the_same_whatever_the_score_cache_answered(
    tmp_path: Path, jina_fake: FakeProvider, index: Pipeline
) -> None:
    """The same 10 documents three times (cascade off): full cost 5 × 10 + 9 × 10 = 140 tokens each time,
    not the 100 the stand-in reported (first call), nor the 13 of the one new document (third). The new
    document has 57 characters, 13 tokens, 9 words: 5 × 10 + 9 × 9 + 13 = 144 tokens in all."""
    settings = jina_priced(tmp_path)
    cached = with_cache(adapter(jina_fake), "sqlite", tmp_path, 3600)
    new = "a new text about memory management and garbage collection"
    server = serve(settings, cached, index)
    try:
        with server.client(DEMO_KEY, headers=OFF) as http:
            replies = [
                http.post("/v1/rerank", json={"model": JINA, "query": QUERY, "documents": docs})
                for docs in (TEXTS, TEXTS, [*TEXTS[:9], new])
            ]
    finally:
        server.close()
    assert [r.headers["x-leanrank-documents-cached"] for r in replies] == ["0", "10", "9"]
    assert [costs(r) for r in replies] == [
        ("0.00010000", "0.00014000"),  # the stand-in: 4 × 10 + 6 × 10 = 100 words
        ("0.00000000", "0.00014000"),
        ("0.00001300", "0.00014400"),  # the new document alone: 4 + 9 words
    ]


def test_a_provider_billing_more_than_the_estimate_of_all_makes_the_cost_the_full_cost(
    tmp_path: Path, jina_fake: FakeProvider, index: Pipeline
) -> None:
    """Three documents of ten one-letter words: 19 characters, 4 tokens by the estimate, 10 by the stand-in.
    The estimate of all is 5 × 3 + 4 × 3 = 27 tokens; the stand-in billed 4 × 3 + 10 × 3 = 42 for them:
    sending them cannot have cost less than it did, so the full cost is 42 and nothing was saved."""
    server = serve(jina_priced(tmp_path), adapter(jina_fake), index)
    body = {"model": JINA, "query": QUERY, "documents": ["a b c d e f g h i j"] * 3}
    try:
        with server.client(DEMO_KEY, headers=OFF) as http:
            reply = http.post("/v1/rerank", json=body)
            [usage] = http.get("/v1/usage").json()["rows"]
    finally:
        server.close()
    assert costs(reply) == ("0.00004200", "0.00004200")
    assert usage["saved_usd"] == 0.0


def test_an_all_blank_request_calls_nothing_would_have_cost_nothing_and_names_every_blank(
    tmp_path: Path, cohere_fake: FakeProvider, index: Pipeline
) -> None:
    """The guard never sends a blank document, cascade or not: 100 blank ones cost nothing and would have
    cost nothing (before: 1 search unit, and the cascade collapsed 99 of them into one, "1 blank")."""
    server = serve(priced(tmp_path), adapter(cohere_fake), index)
    try:
        with server.client(DEMO_KEY) as http:
            blank = http.post("/v2/rerank", json={"model": MODEL, "query": QUERY, "documents": [" "] * 100})
    finally:
        server.close()
    assert blank.status_code == 200, blank.text
    assert cohere_fake.requests == []
    counts = {k: v for k, v in blank.headers.items() if k.startswith("x-leanrank-documents-")}
    assert counts == {
        "x-leanrank-documents-received": "100",
        "x-leanrank-documents-forwarded": "0",
        "x-leanrank-documents-collapsed": "0",
        "x-leanrank-documents-cached": "0",
    }
    assert blank.headers["x-leanrank-warning"] == "100 blank documents ranked last, not sent"
    assert costs(blank) == ("0.00000000", "0.00000000")


def test_blank_documents_beside_others_add_nothing_to_the_full_cost(
    tmp_path: Path, jina_fake: FakeProvider, index: Pipeline
) -> None:
    """50 zero-width documents beside `TEXTS` add nothing to their 5 × 10 + 9 × 10 = 140 tokens, cascade or
    not (before: 5 more each, the query's tokens, as if the 50 had been sent)."""
    docs = [*TEXTS, *["\u200b"] * 50]
    server = serve(jina_priced(tmp_path), adapter(jina_fake), index)
    try:
        with server.client(DEMO_KEY) as http:
            replies = [
                http.post("/v1/rerank", json={"model": JINA, "query": QUERY, "documents": docs}, headers=h)
                for h in (OFF, {})
            ]
    finally:
        server.close()
    assert [r.headers["x-leanrank-documents-received"] for r in replies] == ["60", "60"]
    assert [costs(r)[1] for r in replies] == ["0.00014000", "0.00014000"]
    assert all(d.strip("\u200b") for r in jina_fake.requests for d in r.body["documents"])
