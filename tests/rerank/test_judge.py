"""The LLM judge: its wire against a loopback chat-completions server, its price, and its place in search
(after the reranker, metered under the stage `judge`, skipped without losing the hits when it fails)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from leanrank.cost.pricing import Pricing
from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.errors import InputError
from leanrank.pipeline import Pipeline
from leanrank.rerank.base import Usage
from leanrank.rerank.http import (
    BadResponseError,
    RateLimitedError,
    RerankServerError,
    RerankTimeoutError,
)
from leanrank.rerank.judge import SYSTEM_PROMPT, ChatJudge, parse_verdict, user_prompt
from leanrank.retry import RetryPolicy
from leanrank.settings import Settings
from tests.conftest import SAMPLE_COURSE
from tests.rerank.chat_server import CHAT_MODEL, FakeChat
from tests.rerank.servers import API_KEY, Fault, tokens_of

FAST = RetryPolicy(max_attempts=3, backoff_s=0.0, max_wait_s=0.0)
QUESTION = "Что такое цикл while?"
PRICE = f"""provider = "chat"
[[price]]
model = "{CHAT_MODEL}"
unit = "per_million_tokens"
price = 1.0
output_price = 4.0
currency = "USD"
as_of = 2026-11-29
source = "https://example.test/pricing"
verified = true
"""


@pytest.fixture
def chat() -> Iterator[FakeChat]:
    server = FakeChat(yes_words=("while",))
    yield server
    server.close()


def judge_of(chat: FakeChat, **options: float) -> ChatJudge:
    return ChatJudge(CHAT_MODEL, chat.url, api_key=API_KEY, retry=FAST, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("content", "verdict"),
    [
        ("Yes", 1.0),
        ("yes.", 1.0),
        (" Да, отвечает", 1.0),
        ("NO", 0.0),
        ("нет!", 0.0),
        ("No, it is about for", 0.0),
    ],
)
def test_verdicts_in_either_language(content: str, verdict: float) -> None:
    assert parse_verdict(content) == verdict


@pytest.mark.parametrize("content", ["maybe", "", "I think yes", None, 1, ["yes"]])
def test_anything_else_is_a_malformed_answer(content: object) -> None:
    with pytest.raises(BadResponseError, match="not yes or no"):
        parse_verdict(content)


async def test_one_request_per_passage_with_reported_usage(chat: FakeChat) -> None:
    docs = ["Цикл while повторяет тело, пока условие истинно.", "Цикл for перебирает элементы."]
    response = await judge_of(chat).rerank(QUESTION, docs)
    assert response.scores == (1.0, 0.0)
    prompts = [sum(tokens_of(t) for t in (SYSTEM_PROMPT, user_prompt(QUESTION, d))) for d in docs]
    usage = response.usage
    assert (usage.document_tokens, usage.billed_units, usage.output_tokens) == (sum(prompts), sum(prompts), 4)
    assert (usage.billed_unit, usage.count_source, usage.documents) == ("tokens", "reported", 2)
    assert len(chat.requests) == 2
    body = chat.requests[0]
    assert (body["model"], body["temperature"], body["max_tokens"]) == (CHAT_MODEL, 0, 3)
    assert [m["role"] for m in body["messages"]] == ["system", "user"]


async def test_no_usage_reported_is_estimated(tmp_path: Path) -> None:
    server = FakeChat(usage=False)
    try:
        response = await judge_of(server).rerank("q", ["a for loop"])
    finally:
        server.close()
    assert response.scores == (1.0,)
    assert response.usage.count_source == "estimate"
    assert response.usage.document_tokens > 0


async def test_429_and_5xx_are_retried(chat: FakeChat) -> None:
    chat.script(Fault(429, headers={"retry-after": "0"}), Fault(503))
    response = await judge_of(chat).rerank(QUESTION, ["while"])
    assert response.scores == (1.0,)
    assert len(chat.requests) == 3


@pytest.mark.parametrize(
    ("fault", "error"), [(Fault(429), RateLimitedError), (Fault(500), RerankServerError)]
)
async def test_persistent_failure_is_typed(chat: FakeChat, fault: Fault, error: type[Exception]) -> None:
    chat.script(fault, fault, fault)
    with pytest.raises(error, match="gave up after 3 attempts"):
        await judge_of(chat).rerank(QUESTION, ["while"])


async def test_slow_server_times_out(chat: FakeChat) -> None:
    chat.script(Fault(200, {}, delay_s=1.0))
    with pytest.raises(RerankTimeoutError):
        await judge_of(chat, timeout_s=0.2).rerank(QUESTION, ["while"])


@pytest.mark.parametrize(
    "body",
    [
        {"choices": []},
        {"choices": [{"message": {"content": "perhaps"}}]},
        {
            "choices": [{"message": {"content": "yes"}}],
            "usage": {"prompt_tokens": -1, "completion_tokens": 1},
        },
        b"not json",
    ],
)
async def test_malformed_answers_are_bad_responses(chat: FakeChat, body: object) -> None:
    chat.script(Fault(200, body))
    with pytest.raises(BadResponseError):
        await judge_of(chat).rerank(QUESTION, ["while"])


def test_price_counts_input_and_output_tokens(tmp_path: Path) -> None:
    prices = tmp_path / "chat.toml"
    prices.write_text(PRICE, encoding="utf-8")
    pricing = Pricing.load([prices])
    usage = Usage(0, 1000, 1000.0, "tokens", "reported", 0.1, 3, output_tokens=6)
    # 1,000 input tokens at $1/M and 6 output tokens at $4/M.
    assert pricing.cost_of(usage, f"chat:{CHAT_MODEL}") == pytest.approx(0.001024)
    assert pricing.is_paid(f"chat:{CHAT_MODEL}")
    packaged = Pricing.load().price("chat:gpt-4o-mini")
    assert packaged is not None
    assert (packaged.price, packaged.output_price) == (0.15, 0.60)


# In search -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, e5: E5SmallEncoder, bm25: Bm25Encoder) -> Path:
    data_dir = tmp_path_factory.mktemp("judged")
    with Pipeline(Settings(data_dir=data_dir), dense=e5, sparse=bm25) as pipe:
        pipe.ingest(SAMPLE_COURSE, "py")
    return data_dir


def settings_for(
    data_dir: Path,
    chat: FakeChat,
    tmp_path: Path,
    budgets: tuple[dict[str, object], ...] = (),
    **judge: object,
) -> Settings:
    prices = tmp_path / "chat.toml"
    prices.write_text(PRICE, encoding="utf-8")
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    return Settings(
        data_dir=data_dir,
        judge={"model": CHAT_MODEL, "base_url": chat.url, "api_key": API_KEY, "max_attempts": 1, **judge},
        cost={"ledger_url": ledger, "pricing_files": [prices], "budgets": list(budgets)},
        cascade={"result_cache": "off"},
    )


def ledger_rows(tmp_path: Path) -> list[tuple[str, str, str, int, float]]:
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        return db.execute(
            "SELECT stage, backend, model, documents, cost_usd FROM leanrank_rerank_calls ORDER BY stage"
        ).fetchall()


def test_search_demotes_hits_the_judge_says_do_not_answer(
    indexed: Path, e5: E5SmallEncoder, bm25: Bm25Encoder, chat: FakeChat, tmp_path: Path
) -> None:
    settings = settings_for(indexed, chat, tmp_path, top_n=3)
    with Pipeline(settings, dense=e5, sparse=bm25) as pipe:
        plain = pipe.search(QUESTION, "py", k=5, request_id="r0")
        judged = pipe.search(QUESTION, "py", k=5, request_id="r1", judge=True)
    assert chat.requests
    assert len(chat.requests) == 3
    top3 = plain.hits[:3]
    answers = [h.chunk_id for h in top3 if "while" in h.chunk.text]
    not_answers = [h.chunk_id for h in top3 if "while" not in h.chunk.text]
    assert answers
    assert not_answers
    expected = [*answers, *(h.chunk_id for h in plain.hits[3:]), *not_answers]
    assert [h.chunk_id for h in judged.hits] == expected
    assert {h.chunk_id: h.stage_scores.get("judge") for h in judged.hits[:1]} == {answers[0]: 1.0}
    assert "judge" in judged.timings_s
    assert "judge" not in plain.timings_s
    usage = judged.judge_usage
    assert usage is not None
    assert usage.documents == 3
    assert usage.output_tokens == 6
    assert judged.judge_cost_usd == pytest.approx(usage.billed_units * 1e-6 + 6 * 4e-6)
    rows = ledger_rows(tmp_path)
    assert [(r[0], r[1], r[2], r[3]) for r in rows if r[0] == "judge"] == [
        ("judge", f"chat:{CHAT_MODEL}", CHAT_MODEL, 3)
    ]
    assert [r[4] for r in rows if r[0] == "judge"] == [pytest.approx(judged.judge_cost_usd)]


def test_drop_removes_them_and_enabled_judges_by_default(
    indexed: Path, e5: E5SmallEncoder, bm25: Bm25Encoder, chat: FakeChat, tmp_path: Path
) -> None:
    settings = settings_for(indexed, chat, tmp_path, top_n=3, action="drop", enabled=True)
    with Pipeline(settings, dense=e5, sparse=bm25) as pipe:
        judged = pipe.search(QUESTION, "py", k=5)
        skipped = pipe.search(QUESTION, "py", k=5, judge=False)
    kept = {h.chunk_id for h in judged.hits}
    dropped = [h for h in skipped.hits[:3] if "while" not in h.chunk.text]
    assert dropped
    assert not kept & {h.chunk_id for h in dropped}
    assert len(judged.hits) == 5 - len(dropped)
    assert skipped.judge_usage is None
    assert len(chat.requests) == 3


def test_a_failing_judge_keeps_the_reranker_order(
    indexed: Path, e5: E5SmallEncoder, bm25: Bm25Encoder, chat: FakeChat, tmp_path: Path
) -> None:
    chat.script(*[Fault(500)] * 3)
    settings = settings_for(indexed, chat, tmp_path)
    with Pipeline(settings, dense=e5, sparse=bm25) as pipe:
        plain = pipe.search(QUESTION, "py", k=5, judge=False)
        judged = pipe.search(QUESTION, "py", k=5, judge=True)
    assert [h.chunk_id for h in judged.hits] == [h.chunk_id for h in plain.hits]
    assert judged.judge_usage is None
    assert len(judged.failed) == 1
    assert "judge skipped" in judged.failed[0]
    assert "HTTP 500" in judged.failed[0]


@pytest.mark.parametrize("content", ["Maybe, it depends", ""])
def test_an_unusable_verdict_reports_the_cost_the_ledger_recorded(
    indexed: Path, e5: E5SmallEncoder, bm25: Bm25Encoder, chat: FakeChat, tmp_path: Path, content: str
) -> None:
    """The provider answered, so it may bill: the result carries the `judge:unconfirmed` estimate."""
    answer = {
        "choices": [{"message": {"content": content}}],
        "usage": {"prompt_tokens": 90, "completion_tokens": 1},
    }
    chat.script(*[Fault(200, answer)] * 3)
    settings = settings_for(indexed, chat, tmp_path, top_n=3)
    with Pipeline(settings, dense=e5, sparse=bm25) as pipe:
        judged = pipe.search(QUESTION, "py", k=5, judge=True)
    assert "judge skipped" in judged.failed[0]
    assert judged.judge_usage is None
    rows = [r for r in ledger_rows(tmp_path) if r[0].startswith("judge")]
    assert [(r[0], r[1], r[3]) for r in rows] == [("judge:unconfirmed", f"chat:{CHAT_MODEL}", 3)]
    assert rows[0][4] > 0
    assert judged.judge_cost_usd == pytest.approx(rows[0][4])


def test_a_hard_cap_skips_the_judge_without_calling_it(
    indexed: Path, e5: E5SmallEncoder, bm25: Bm25Encoder, chat: FakeChat, tmp_path: Path
) -> None:
    settings = settings_for(indexed, chat, tmp_path, ({"scope": "course", "name": "py", "hard_usd": 0.0},))
    with Pipeline(settings, dense=e5, sparse=bm25) as pipe:
        judged = pipe.search(QUESTION, "py", k=5, judge=True)
    assert chat.requests == []
    assert judged.judge_usage is None
    assert "budget" in judged.failed[0]


def test_asking_for_a_judge_that_is_not_configured_is_an_input_error(
    indexed: Path, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> None:
    with (
        Pipeline(Settings(data_dir=indexed), dense=e5, sparse=bm25) as pipe,
        pytest.raises(InputError, match=r"judge\.model"),
    ):
        pipe.search(QUESTION, "py", judge=True)
    with pytest.raises(ValueError, match=r"judge\.enabled needs judge\.model"):
        Settings(judge={"enabled": True})
