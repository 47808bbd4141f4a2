"""The gateway's cascade over a real loopback server: a client posts its top-100, fewer documents reach the
paid provider (a loopback fake that records every request), and every document still gets a score in the
client's wire format. The official Cohere SDK is the client where the wire is Cohere's. A token-billed
backend (Jina's) shows the cut; one billed per search unit (Cohere's) is sent whole units' worth.
"""

from __future__ import annotations

import math
import random
import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cohere
import pytest
import sqlalchemy as sa

from leanrank.cost.billing import SEARCH_UNIT_CONTEXT_TOKENS, pair_tokens, search_unit_documents
from leanrank.cost.ledger import DEFAULT_TABLE
from leanrank.cost.tokens import counter_for
from leanrank.pipeline import Pipeline
from leanrank.rerank.base import Reranker
from leanrank.rerank.fallback import FallbackReranker
from leanrank.rerank.windows import WindowedReranker, WindowPolicy
from leanrank.serve import create_app
from leanrank.settings import ClientCascadeSettings, CostSettings, GatewaySettings, Settings
from tests.rerank.servers import MODEL, FakeProvider, adapter, score_of
from tests.serve.conftest import ADMIN_KEY, DEMO_KEY, priced, settings_for
from tests.serve.live import LiveServer

QUERY = "Как работает цикл for в Python?"
_WORDS = [
    "алгоритм",
    "граф",
    "дерево",
    "очередь",
    "стек",
    "хеш",
    "таблица",
    "строка",
    "память",
    "процесс",
    "поток",
    "файл",
    "сеть",
    "сокет",
    "протокол",
    "запрос",
    "ответ",
    "сервер",
    "клиент",
    "модуль",
    "пакет",
    "класс",
    "объект",
    "метод",
    "атрибут",
    "исключение",
    "тест",
    "отладка",
    "профиль",
    "индекс",
    "массив",
    "матрица",
    "вектор",
    "градиент",
    "модель",
    "обучение",
    "выборка",
    "признак",
    "метрика",
    "ошибка",
]
_ABOUT_FOR = [
    "Цикл for в Python перебирает элементы любой последовательности по одному.",
    "В Python цикл for работает с итератором: на каждом шаге вызывается next.",
    "Цикл for и функция range: for i in range(10) повторяет тело десять раз.",
    "Как прервать цикл for в Python: break выходит из цикла, continue переходит к следующему шагу.",
    "Цикл for по словарю в Python перебирает ключи; items() даёт пары ключ и значение.",
]


def client_top100(seed: int = 0) -> list[str]:
    """A client's top-100: five passages about the question among 95 about other things, all distinct."""
    rng = random.Random(seed)
    others = [" ".join(rng.sample(_WORDS, 12)).capitalize() + "." for _ in range(95)]
    docs = others[:]
    for at, text in zip((0, 3, 9, 30, 70), _ABOUT_FOR, strict=True):
        docs.insert(at, text)
    return docs


def sent_documents(fake: FakeProvider) -> list[str]:
    documents: list[str] = fake.requests[-1].body[fake.wire.documents_key]
    return documents


@pytest.fixture(scope="module")
def cohere_fake() -> Iterator[FakeProvider]:
    fake = FakeProvider("cohere")
    yield fake
    fake.close()


def serve(settings: Settings, fake: FakeProvider, index: Pipeline) -> LiveServer:
    return LiveServer(create_app(settings, reranker=adapter(fake), pipeline=index))


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, cohere_fake: FakeProvider, index: Pipeline
) -> Iterator[LiveServer]:
    """The default settings: the `balanced` gateway cascade for every key; Cohere's search units."""
    server = serve(settings_for(tmp_path_factory.mktemp("gw")), cohere_fake, index)
    yield server
    server.close()


@pytest.fixture(scope="module")
def jina_fake() -> Iterator[FakeProvider]:
    fake = FakeProvider("jina")
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def token_gateway(
    tmp_path_factory: pytest.TempPathFactory, jina_fake: FakeProvider, index: Pipeline
) -> Iterator[LiveServer]:
    """The default settings before a token-billed backend (Jina's): every document cut is a saving."""
    server = serve(settings_for(tmp_path_factory.mktemp("jina-gw")), jina_fake, index)
    yield server
    server.close()


def test_the_cohere_sdk_gets_100_results_for_100_documents_of_which_fewer_were_sent(
    token_gateway: LiveServer, jina_fake: FakeProvider
) -> None:
    docs = client_top100()
    client = cohere.ClientV2(api_key=ADMIN_KEY, base_url=token_gateway.url)
    response = client.rerank(model="rerank-v3.5", query=QUERY, documents=docs)
    sent = sent_documents(jina_fake)
    assert len(sent) == 10  # recorded: the balanced cut (min_depth 10), as before search units counted
    assert set(_ABOUT_FOR) <= set(sent)  # the passages the request's own evidence ranks high go on
    assert sorted(r.index for r in response.results) == list(range(100))
    first = response.results[: len(sent)]
    assert [docs[r.index] for r in first] == sorted(sent, key=lambda d: -score_of(d))
    assert [r.relevance_score for r in first] == pytest.approx([score_of(docs[r.index]) for r in first])
    held_back = [r.relevance_score for r in response.results[len(sent) :]]
    assert max(held_back) < min(r.relevance_score for r in first)
    assert held_back == sorted(held_back, reverse=True)
    assert len(set(held_back)) == len(held_back)
    meta = response.meta.model_dump() if response.meta is not None else {}
    assert meta["leanrank"] == {
        "documents_received": 100,
        "documents_forwarded": len(sent),
        "documents_collapsed": 0,
        "documents_cached": 0,
    }


def test_a_search_unit_backend_is_sent_all_100_documents_for_the_one_unit_a_cut_would_cost(
    gateway: LiveServer, cohere_fake: FakeProvider
) -> None:
    docs = client_top100()
    client = cohere.ClientV2(api_key=ADMIN_KEY, base_url=gateway.url)
    response = client.rerank(model="rerank-v3.5", query=QUERY, documents=docs)
    sent = sent_documents(cohere_fake)
    assert sorted(sent) == sorted(docs)  # 10 of them cost 1 search unit; all 100 cost the same
    assert [r.index for r in response.results] == sorted(range(100), key=lambda i: -score_of(docs[i]))
    meta = response.meta.model_dump() if response.meta is not None else {}
    assert meta["billed_units"]["search_units"] == 1
    assert meta["leanrank"]["documents_forwarded"] == 100


def test_150_documents_to_a_search_unit_backend_are_one_unit_s_worth_the_rest_below(
    gateway: LiveServer, cohere_fake: FakeProvider
) -> None:
    more = [d for d in client_top100(seed=12) if d not in _ABOUT_FOR]
    docs = client_top100(seed=13) + more[:50]  # 150 distinct documents: 2 search units sent whole
    client = cohere.ClientV2(api_key=ADMIN_KEY, base_url=gateway.url)
    response = client.rerank(model="rerank-v3.5", query=QUERY, documents=docs)
    sent = sent_documents(cohere_fake)
    assert len(sent) == len(set(sent)) == 100  # 1 unit instead of 2
    assert set(_ABOUT_FOR) <= set(sent)
    meta = response.meta.model_dump() if response.meta is not None else {}
    assert meta["billed_units"]["search_units"] == 1
    assert meta["leanrank"]["documents_forwarded"] == 100
    first, held_back = response.results[:100], response.results[100:]
    assert {docs[r.index] for r in first} == set(sent)
    assert [r.relevance_score for r in first] == pytest.approx([score_of(docs[r.index]) for r in first])
    assert len(held_back) == 50
    scores = [r.relevance_score for r in held_back]
    assert max(scores) < min(r.relevance_score for r in first)
    assert scores == sorted(scores, reverse=True)
    assert len(set(scores)) == 50


def test_max_chunks_per_doc_windows_count_against_the_unit(
    gateway: LiveServer, cohere_fake: FakeProvider
) -> None:
    """60 long documents × 10 windows of 50 tokens: ten documents' windows fill the one search unit."""
    rng = random.Random(14)
    docs = [" ".join(rng.choices(_WORDS, k=600)) for _ in range(60)]  # ~30 windows each, 10 kept
    with gateway.client(ADMIN_KEY) as http:
        reply = http.post(
            "/v1/rerank",
            json={
                "model": MODEL,
                "query": QUERY,
                "documents": docs,
                "max_chunks_per_doc": 10,
                "max_tokens_per_doc": 50,
            },
        )
    assert reply.status_code == 200, reply.text
    assert len(sent_documents(cohere_fake)) == 100  # 10 documents × 10 windows (the cut alone: 17, 170)
    assert reply.headers["x-leanrank-documents-forwarded"] == "10"
    assert reply.json()["meta"]["billed_units"] == {"search_units": 1}


def test_a_document_over_the_search_unit_context_counts_as_its_chunks(
    gateway: LiveServer, cohere_fake: FakeProvider
) -> None:
    """60 documents of ~6,000 tokens: each is split into 2 chunks beside the query, so 50 fill the unit."""
    rng = random.Random(15)
    words = ["".join(rng.choices(string.ascii_lowercase, k=7)) for _ in range(500)]  # no near-duplicates
    docs = [" ".join(rng.choices(words, k=3_000)) for _ in range(60)]
    count = counter_for(f"cohere:{MODEL}").count
    assert {search_unit_documents(count(QUERY), d, count) for d in docs} == {2}
    assert all(count(d) + count(QUERY) > SEARCH_UNIT_CONTEXT_TOKENS for d in docs)
    with gateway.client(ADMIN_KEY) as http:
        reply = http.post("/v2/rerank", json={"model": MODEL, "query": QUERY, "documents": docs})
    assert reply.status_code == 200, reply.text
    assert len(sent_documents(cohere_fake)) == 50  # 50 × 2 chunks = 100 billed documents: 1 unit
    assert reply.headers["x-leanrank-documents-forwarded"] == "50"


def _truncating(fake: FakeProvider, max_words: int) -> WindowedReranker:
    """`fake` behind the backend's own truncation, as the catalog configures Cohere's `max_doc_tokens`
    (counted here in words, so the arithmetic can be done by hand)."""
    return WindowedReranker(adapter(fake), WindowPolicy(max_words, mode="truncate"), lambda t: len(t.split()))


@pytest.mark.parametrize("chained", [False, True], ids=["alone", "first-of-a-chain"])
def test_a_backend_that_truncates_is_counted_by_what_it_sends_not_the_whole_text(
    tmp_path: Path, cohere_fake: FakeProvider, jina_fake: FakeProvider, index: Pipeline, chained: bool
) -> None:
    """60 documents of 5,000 words, cut by the backend to their first 1,000 before sending: each is one billed
    document, so all 60 go for 1 unit (counted whole, each would be 3 chunks and only 33 would go)."""
    rng = random.Random(16)
    words = ["".join(rng.choices(string.ascii_lowercase, k=7)) for _ in range(500)]
    docs = [" ".join(rng.choices(words, k=5_000)) for _ in range(60)]
    count = counter_for(f"cohere:{MODEL}").count
    # The provider's count is the character estimate: the query's 31 characters, 16 of its 25 letters
    # Cyrillic, at 31 × (0.64 / 4.04 + 0.36 / 4.35) = 7.48 → 7 tokens; a document whole, 5,000 words of 7
    # letters and a space less one = 39,999 Latin characters / 4.35 = 9,195 tokens
    q = count(QUERY)
    assert q == 7
    # ceil(9,195 / (4,096 - 7)) = 3 chunks each; cut to 1,000 words, 7,999 characters / 4.35 = 1,839 tokens,
    # 1 each.
    assert {search_unit_documents(q, d, count) for d in docs} == {3}
    assert {count(" ".join(d.split()[:1_000])) for d in docs} == {1_839}
    backend: Reranker = _truncating(cohere_fake, 1_000)
    if chained:
        backend = FallbackReranker([backend, adapter(jina_fake)])
    server = LiveServer(create_app(priced(tmp_path), reranker=backend, pipeline=index))
    try:
        with server.client(ADMIN_KEY) as http:
            reply = http.post("/v2/rerank", json={"model": MODEL, "query": QUERY, "documents": docs})
    finally:
        server.close()
    assert reply.status_code == 200, reply.text
    sent = sent_documents(cohere_fake)
    assert sent == [" ".join(d.split()[:1_000]) for d in docs]  # BM25 matches none: the client's order
    assert reply.headers["x-leanrank-documents-forwarded"] == "60"
    assert reply.json()["meta"]["billed_units"] == {"search_units": 1}
    # What sending all 60 would have cost is counted the same way, through the chain's link: 1 unit, $0.002.
    assert reply.headers["x-leanrank-full-cost-usd"] == reply.headers["x-leanrank-cost-usd"] == "0.00200000"


def test_held_back_documents_follow_in_the_pre_ranking_order(
    token_gateway: LiveServer, jina_fake: FakeProvider
) -> None:
    """Nothing but the client's order tells the held-back passages apart here: its order is kept."""
    docs = client_top100(seed=1)
    with token_gateway.client(ADMIN_KEY) as http:
        body = http.post("/v2/rerank", json={"model": MODEL, "query": QUERY, "documents": docs}).json()
    sent = set(sent_documents(jina_fake))
    rest = [r["index"] for r in body["results"] if docs[r["index"]] not in sent]
    assert len(rest) == 90
    assert rest == sorted(rest)


def test_duplicates_get_their_representatives_score_and_are_sent_once(
    gateway: LiveServer, cohere_fake: FakeProvider
) -> None:
    docs = client_top100(seed=2)
    docs[50] = "  " + docs[0].upper() + "  "  # the same text up to case and spaces
    docs[60] = docs[3] + " Подробнее в уроке."  # one passage wholly inside another: a near-duplicate
    with gateway.client(ADMIN_KEY) as http:
        reply = http.post("/v2/rerank", json={"model": MODEL, "query": QUERY, "documents": docs})
    scores = {r["index"]: r["relevance_score"] for r in reply.json()["results"]}
    assert scores[50] == scores[0]
    assert scores[60] == scores[3]
    sent = sent_documents(cohere_fake)
    assert sum(d.casefold().strip() == docs[0].casefold() for d in sent) == 1
    assert not (docs[3] in sent and docs[60] in sent)
    assert reply.headers["x-leanrank-documents-collapsed"] == "2"
    assert int(reply.headers["x-leanrank-documents-forwarded"]) == len(sent)


def test_blank_documents_are_never_sent_rank_last_and_are_not_counted_as_forwarded(
    gateway: LiveServer, cohere_fake: FakeProvider
) -> None:
    docs = client_top100(seed=5)
    docs[0], docs[40], docs[99] = "", "   ", "\n\t"
    for opt_out in ({}, {"x-leanrank-cascade": "OFF"}):  # header values in any case
        with gateway.client(ADMIN_KEY) as http:
            reply = http.post(
                "/v2/rerank", json={"model": MODEL, "query": QUERY, "documents": docs}, headers=opt_out
            )
        assert reply.status_code == 200, reply.text
        sent = sent_documents(cohere_fake)
        assert all(d.strip() for d in sent)
        assert len(sent) == len(docs) - 3  # every non-blank document: one search unit holds them
        assert int(reply.headers["x-leanrank-documents-forwarded"]) == len(sent)
        results = reply.json()["results"]
        assert sorted(r["index"] for r in results[-3:]) == [0, 40, 99]  # ranked last
        assert all(r["relevance_score"] >= 0 for r in results)
        assert "3 blank documents ranked last, not sent" in reply.headers["x-leanrank-warning"]


def test_invisible_characters_alone_are_blank_and_never_sent(
    gateway: LiveServer, cohere_fake: FakeProvider
) -> None:
    calls = len(cohere_fake.requests)
    docs = ["", " ", "\u00a0", "\u200b", "\ufeff\u2060\u00ad\u200c\u200d"]
    with gateway.client(ADMIN_KEY) as http:
        reply = http.post("/v2/rerank", json={"model": MODEL, "query": QUERY, "documents": docs})
        empty = http.post("/v2/rerank", json={"model": MODEL, "query": "\u200b ", "documents": ["text"]})
    assert reply.status_code == 200, reply.text
    assert len(cohere_fake.requests) == calls  # nothing to score: no call, nothing billed
    assert reply.headers["x-leanrank-documents-forwarded"] == "0"
    assert "5 blank documents ranked last, not sent" in reply.headers["x-leanrank-warning"]
    assert reply.json()["meta"]["billed_units"] == {"search_units": 0}
    assert (empty.status_code, empty.json()["error_type"]) == (400, "empty_input")


def test_documents_whose_code_differs_are_not_collapsed(
    gateway: LiveServer, cohere_fake: FakeProvider
) -> None:
    code = [
        "In JavaScript use === for comparison without type coercion.",
        "In JavaScript use == for comparison without type coercion.",
        "x = a + b",
        "x = a - b",
    ]
    docs = code + client_top100(seed=10)[:20]
    with gateway.client(ADMIN_KEY) as http:
        reply = http.post(
            "/v2/rerank", json={"model": MODEL, "query": "compare in JavaScript", "documents": docs}
        )
    assert reply.headers["x-leanrank-documents-collapsed"] == "0"
    sent = set(sent_documents(cohere_fake))
    assert set(code[:2]) <= sent
    scores = [r["relevance_score"] for r in reply.json()["results"] if r["index"] < 4]
    assert len(set(scores)) == 4  # each scored for itself, none with a twin's score


def test_a_cut_collapsed_below_min_depth_is_refilled(
    token_gateway: LiveServer, jina_fake: FakeProvider
) -> None:
    names = [chr(ord("a") + n % 26) * (1 + n // 26) for n in range(60)]  # a … z, aa … zz, aaa … hhh
    # Near-duplicates told apart by one word, with the same numbers (none): numbered ones state other facts.
    loops = [
        f"Loops in Python repeat a block of code for every item of a sequence. Example {x}." for x in names
    ]
    docs = loops + client_top100(seed=11)[:40]
    with token_gateway.client(ADMIN_KEY) as http:
        reply = http.post("/v2/rerank", json={"model": MODEL, "query": "loops in Python", "documents": docs})
    # The balanced preset's min_depth is 10: one loop passage and nine of the others, not one alone.
    sent = sent_documents(jina_fake)
    assert reply.headers["x-leanrank-documents-forwarded"] == str(len(sent)) == "10"
    assert sum(d in loops for d in sent) == 1
    collapsed = int(reply.headers["x-leanrank-documents-collapsed"])
    scores = {r["index"]: r["relevance_score"] for r in reply.json()["results"]}
    assert sum(scores[i] == scores[0] for i in range(60)) == collapsed + 1


def test_top_n_and_return_documents_behave_as_the_provider_documents(gateway: LiveServer) -> None:
    docs = client_top100(seed=3)
    client = cohere.ClientV2(api_key=ADMIN_KEY, base_url=gateway.url)
    whole = client.rerank(model="rerank-v3.5", query=QUERY, documents=docs)
    top = client.rerank(model="rerank-v3.5", query=QUERY, documents=docs, top_n=5)
    assert [r.index for r in top.results] == [r.index for r in whole.results[:5]]
    with gateway.client(ADMIN_KEY) as http:
        v1 = http.post(
            "/v1/rerank",
            json={"model": MODEL, "query": QUERY, "documents": docs, "top_n": 80, "return_documents": True},
        ).json()
        jina = http.post(
            "/v1/rerank",
            json={"model": "jina-reranker-v2-base-multilingual", "query": QUERY, "documents": docs},
        ).json()
        tei = http.post("/rerank", json={"query": QUERY, "texts": docs, "return_text": True}).json()
    assert len(v1["results"]) == 80
    assert all(r["document"] == {"text": docs[r["index"]]} for r in v1["results"])  # held back ones too
    assert sorted(r["index"] for r in jina["results"]) == list(range(100))
    assert all(r["document"] == {"text": docs[r["index"]]} for r in jina["results"])
    assert [r["index"] for r in tei] == [r.index for r in whole.results]
    assert all(r["text"] == docs[r["index"]] for r in tei)


def test_one_call_opts_out_with_a_header(gateway: LiveServer, cohere_fake: FakeProvider) -> None:
    docs = client_top100(seed=4)
    client = cohere.ClientV2(api_key=ADMIN_KEY, base_url=gateway.url)
    response = client.rerank(
        model="rerank-v3.5",
        query=QUERY,
        documents=docs,
        request_options={"additional_headers": {"X-Leanrank-Cascade": "off"}},
    )
    assert sent_documents(cohere_fake) == docs
    assert [r.index for r in response.results] == sorted(range(100), key=lambda i: -score_of(docs[i]))
    with gateway.client(ADMIN_KEY, headers={"X-Leanrank-Cascade": "maybe"}) as http:
        refused = http.post("/v2/rerank", json={"model": MODEL, "query": QUERY, "documents": docs})
    assert refused.status_code == 422
    assert "x-leanrank-cascade" in refused.json()["error"].lower()


def _ledger_rows(data_dir: Path) -> list[dict[str, Any]]:
    engine = sa.create_engine(f"sqlite:///{data_dir / 'ledger.sqlite'}")
    try:
        with engine.connect() as conn:
            table = sa.Table(DEFAULT_TABLE, sa.MetaData(), autoload_with=conn)
            return [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(table.c.id))]
    finally:
        engine.dispose()


def test_the_ledger_says_what_sending_every_received_document_would_have_cost(
    tmp_path: Path, cohere_fake: FakeProvider, index: Pipeline
) -> None:
    """150 documents through Cohere's wire: today 2 search units; the cascade sends one unit's worth."""
    settings = priced(tmp_path)  # $0.002 a search unit
    docs = client_top100(seed=5) + client_top100(seed=6)[:50]
    server = serve(settings, cohere_fake, index)
    try:
        with server.client(DEMO_KEY) as http:
            reply = http.post("/v2/rerank", json={"model": MODEL, "query": QUERY, "documents": docs})
            usage = http.get("/v1/usage").json()
    finally:
        server.close()
    assert reply.headers["x-leanrank-documents-collapsed"] == "4"  # the 4 passages the 50 repeat
    assert len(sent_documents(cohere_fake)) == 100  # 146 distinct: one unit's worth of them
    [row] = _ledger_rows(settings.data_dir)
    assert (row["documents_received"], row["documents"]) == (150, len(sent_documents(cohere_fake)))
    assert row["full_cost_usd"] == pytest.approx(math.ceil(150 / 100) * 0.002)
    assert row["cost_usd"] == pytest.approx(0.002)
    assert float(reply.headers["x-leanrank-full-cost-usd"]) == pytest.approx(0.004)
    [demo] = usage["rows"]
    assert (demo["key"], demo["documents_received"]) == ("demo", 150)
    assert (demo["full_cost_usd"], demo["saved_usd"]) == (pytest.approx(0.004), pytest.approx(0.002))


JINA_PRICE = f"""provider = "jina"

[[price]]
model = "{MODEL}"
unit = "per_million_tokens"
price = 0.02
currency = "USD"
as_of = 2026-11-22
source = "https://example.test/pricing"
verified = true
"""


def test_a_token_billed_backend_is_billed_for_fewer_tokens_and_the_ledger_prices_them_all(
    tmp_path: Path, index: Pipeline
) -> None:
    prices = tmp_path / "jina.toml"
    prices.write_text(JINA_PRICE, encoding="utf-8")
    settings = settings_for(tmp_path / "data").model_copy(
        update={"cost": CostSettings(pricing_files=[prices])}
    )
    docs = client_top100(seed=7)
    fake = FakeProvider("jina")
    server = serve(settings, fake, index)
    try:
        with server.client(DEMO_KEY) as http:
            body = http.post(
                "/v1/rerank",
                json={"model": "jina-reranker-v2-base-multilingual", "query": QUERY, "documents": docs},
            ).json()
    finally:
        server.close()
        fake.close()
    [row] = _ledger_rows(settings.data_dir)
    counter = counter_for(f"jina:{MODEL}")
    everything = pair_tokens(counter.count(QUERY), [counter.count(d) for d in docs])
    assert row["full_cost_usd"] == pytest.approx(everything * 0.02 / 1e6)
    assert row["cost_usd"] < row["full_cost_usd"] / 3
    assert body["usage"]["total_tokens"] == row["query_tokens"] + row["document_tokens"]


def test_a_key_with_the_cascade_off_is_served_as_before(
    tmp_path: Path, cohere_fake: FakeProvider, index: Pipeline
) -> None:
    gateway = GatewaySettings(keys={"teacher-demo": ClientCascadeSettings(preset="off")})
    settings = priced(tmp_path).model_copy(update={"gateway": gateway})
    docs = client_top100(seed=8) + client_top100(seed=9)[:50]
    server = serve(settings, cohere_fake, index)
    try:
        with server.client(DEMO_KEY) as http:
            off = http.post("/v2/rerank", json={"model": MODEL, "query": QUERY, "documents": docs})
            assert sent_documents(cohere_fake) == docs  # all 150, uncapped: 2 search units as before
        with server.client(ADMIN_KEY) as http:
            http.post("/v2/rerank", json={"model": MODEL, "query": QUERY, "documents": docs})
            assert len(sent_documents(cohere_fake)) == 100  # other keys: the cascade, one unit's worth
    finally:
        server.close()
    assert [r["index"] for r in off.json()["results"]] == sorted(range(150), key=lambda i: -score_of(docs[i]))
    assert off.json()["meta"]["billed_units"] == {"search_units": 2}
    demo = _ledger_rows(settings.data_dir)[0]
    assert (demo["documents"], demo["documents_received"]) == (150, 150)
    assert demo["full_cost_usd"] == demo["cost_usd"] == pytest.approx(0.004)


def _gateway_counts(server: LiveServer) -> dict[str, float]:
    """`leanrank_gateway_documents_{received,forwarded}_total`, summed over their labels."""
    with server.client(ADMIN_KEY) as http:
        text = http.get("/metrics").text
    counts: dict[str, float] = {}
    for name, value in re.findall(r"^leanrank_gateway_documents_(\w+)_total\{[^}]*\} (\S+)$", text, re.M):
        counts[name] = counts.get(name, 0.0) + float(value)
    return counts


def test_each_batch_entry_goes_through_the_cascade_as_its_own_rerank_call_would(
    tmp_path: Path, index: Pipeline
) -> None:
    """Two entries of 100 documents to a token-billed provider: each forwards what `/v1/rerank` forwards for
    the same query and documents, gets the same scores, and is recorded with what sending all 100 would have
    cost; with `X-Leanrank-Cascade: off` every entry's 100 are forwarded."""
    prices = tmp_path / "jina.toml"
    prices.write_text(JINA_PRICE, encoding="utf-8")
    settings = settings_for(tmp_path / "data").model_copy(
        update={"cost": CostSettings(pricing_files=[prices])}
    )
    entries = [
        {"query": QUERY, "documents": client_top100(seed=12)},
        {"query": "Как прервать цикл for?", "documents": client_top100(seed=13)},
    ]
    fake = FakeProvider("jina")
    server = serve(settings, fake, index)
    try:
        with server.client(DEMO_KEY) as http:
            single = [http.post("/v1/rerank", json=entry).json() for entry in entries]
            alone = [r.body["documents"] for r in fake.requests]
            batch = http.post("/v1/rerank/batch", json={"requests": entries}, headers={"x-request-id": "on"})
            batched = {r.body["query"]: r.body["documents"] for r in fake.requests[2:]}
            off = http.post(
                "/v1/rerank/batch",
                json={"requests": entries},
                headers={"x-request-id": "off", "X-Leanrank-Cascade": "off"},
            )
            everything = {r.body["query"]: r.body["documents"] for r in fake.requests[4:]}
        counts = _gateway_counts(server)
    finally:
        server.close()
        fake.close()
    assert (batch.status_code, off.status_code, len(fake.requests)) == (200, 200, 6)
    rows = {row["request_id"]: row for row in _ledger_rows(settings.data_dir)}
    singles = list(rows.values())[:2]
    counter = counter_for(f"jina:{MODEL}")
    for i, (entry, answer) in enumerate(zip(entries, batch.json()["results"], strict=True)):
        docs = entry["documents"]
        assert 0 < len(alone[i]) < 100
        assert batched[entry["query"]] == alone[i]
        assert sorted(h["index"] for h in answer["results"]) == list(range(100))
        scores = {h["index"]: h["relevance_score"] for h in answer["results"]}
        assert scores == pytest.approx({r["index"]: r["relevance_score"] for r in single[i]["results"]})
        assert answer["cascade"] == {
            "documents_received": 100,
            "documents_forwarded": len(alone[i]),
            "documents_collapsed": 0,
            "documents_cached": 0,
        }
        row = rows[f"teacher-demo/on#{i}"]
        assert (row["documents_received"], row["documents"]) == (100, len(alone[i]))
        everything_tokens = pair_tokens(counter.count(entry["query"]), [counter.count(d) for d in docs])
        assert row["full_cost_usd"] == pytest.approx(everything_tokens * 0.02 / 1e6)
        assert row["cost_usd"] < row["full_cost_usd"]
        assert (row["cost_usd"], row["full_cost_usd"]) == (
            singles[i]["cost_usd"],
            singles[i]["full_cost_usd"],
        )
        assert (answer["cost_usd"], answer["full_cost_usd"]) == pytest.approx(
            (row["cost_usd"], row["full_cost_usd"])
        )
        assert everything[entry["query"]] == docs
        opted_out = off.json()["results"][i]
        assert opted_out["cascade"]["documents_forwarded"] == 100
        whole = rows[f"teacher-demo/off#{i}"]
        assert (whole["documents_received"], whole["documents"]) == (100, 100)
        # One rule for the full cost, cascade or not: the estimate over every document (at least the cost).
        assert whole["full_cost_usd"] == pytest.approx(max(everything_tokens * 0.02 / 1e6, whole["cost_usd"]))
        assert whole["cost_usd"] > row["cost_usd"]
    forwarded = 2 * (len(alone[0]) + len(alone[1])) + 200  # the two calls, the batch, the opted-out batch
    assert counts == {"received": 600.0, "forwarded": float(forwarded)}


def test_a_batch_entry_is_sent_one_search_unit_unless_its_key_has_the_cascade_off(
    tmp_path: Path, cohere_fake: FakeProvider, index: Pipeline
) -> None:
    """150 documents in a batch to a search-unit backend: one unit's worth is sent ($0.002 of $0.004), as
    `/v2/rerank` sends; a key whose policy is off is served as before, all 150 sent (2 units)."""
    gateway = GatewaySettings(keys={"teacher-demo": ClientCascadeSettings(preset="off")})
    settings = priced(tmp_path).model_copy(update={"gateway": gateway})
    docs = client_top100(seed=14) + client_top100(seed=15)[:50]
    batch = {"model": "rerank-v3.5", "requests": [{"query": QUERY, "documents": docs}]}
    server = serve(settings, cohere_fake, index)
    try:
        with server.client(DEMO_KEY) as http:
            [off] = http.post("/v1/rerank/batch", json=batch).json()["results"]
            assert sent_documents(cohere_fake) == docs
        with server.client(ADMIN_KEY, headers={"X-Leanrank-Course": "demo"}) as http:
            [on] = http.post("/v1/rerank/batch", json=batch).json()["results"]
            sent = sent_documents(cohere_fake)
    finally:
        server.close()
    assert len(sent) == on["cascade"]["documents_forwarded"] <= 100
    assert (on["cascade"]["documents_received"], off["cascade"]["documents_forwarded"]) == (150, 150)
    assert [h["index"] for h in off["results"]] == sorted(range(150), key=lambda i: -score_of(docs[i]))
    assert (off["usage"]["search_units"], on["usage"]["search_units"]) == (2, 1)
    demo, admin = _ledger_rows(settings.data_dir)
    assert (demo["documents"], demo["documents_received"]) == (150, 150)
    assert demo["full_cost_usd"] == demo["cost_usd"] == pytest.approx(0.004)
    assert (admin["documents"], admin["documents_received"]) == (len(sent), 150)
    assert (admin["cost_usd"], admin["full_cost_usd"]) == (pytest.approx(0.002), pytest.approx(0.004))
    assert (on["cost_usd"], on["full_cost_usd"]) == (pytest.approx(0.002), pytest.approx(0.004))
