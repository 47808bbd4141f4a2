"""The guard every backend sits behind, the declared score scales and the sync wrappers (issue 16, 1-6).

Against a real loopback Cohere wire that refuses blank documents, as Cohere does.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from leanrank.errors import InputError
from leanrank.rerank.base import (
    UNSCORED,
    BatchReranker,
    RerankResponse,
    Scale,
    Usage,
    as_finite,
    as_logits,
    as_probabilities,
    is_blank,
    rank_order,
)
from leanrank.rerank.cache import with_cache
from leanrank.rerank.catalog import reranker
from leanrank.rerank.guard import guard
from tests.rerank.servers import API_KEY, MODEL, FakeProvider, Fault, score_of

QUERY = "Как работает цикл for?"
# Issue 16, item 1: one real document, two blank ones, another real one.
ISSUE_DOCS = ["Цикл for перебирает элементы списка.", "", "   \n", "Функция объявляется словом def."]


@pytest.fixture
def cohere(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProvider]:
    fake = FakeProvider("cohere")
    monkeypatch.setenv("LEANRANK_COHERE_BASE_URL", fake.url)
    monkeypatch.setenv("LEANRANK_COHERE_API_KEY", API_KEY)
    yield fake
    fake.close()


class Fixed:
    """Answers the given scores on the given scale, whatever it is asked; records what it was sent."""

    def __init__(self, scores: Sequence[float], scale: Scale = "logits") -> None:
        self.name = "fixed"
        self.scores = tuple(scores)
        self.scale: Scale = scale
        self.sent: list[list[str]] = []

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        self.sent.append(list(documents))
        usage = Usage(0, len(documents), len(documents), "tokens", "reported", 0.0, len(documents))
        return RerankResponse(self.scores[: len(documents)], usage, scale=self.scale)


async def test_blank_documents_are_not_sent_and_rank_last(cohere: FakeProvider) -> None:
    response = await reranker(f"cohere:{MODEL}").rerank(QUERY, ISSUE_DOCS)
    assert cohere.requests[0].body["documents"] == [ISSUE_DOCS[0], ISSUE_DOCS[3]]
    assert response.scores == (score_of(ISSUE_DOCS[0]), UNSCORED, UNSCORED, score_of(ISSUE_DOCS[3]))
    assert rank_order(response.scores)[2:] == [1, 2]
    assert response.usage.billed_units == 1  # one search unit: the two real documents
    assert response.usage.warnings == ("2 blank documents ranked last, not sent",)


async def test_an_all_blank_request_makes_no_call(cohere: FakeProvider) -> None:
    response = await reranker(f"cohere:{MODEL} | identity").rerank(QUERY, ["", "   \n"])
    assert cohere.requests == []
    assert response.scores == (UNSCORED, UNSCORED)
    assert (response.usage.billed_units, response.usage.documents) == (0.0, 2)


def test_whitespace_and_invisible_format_characters_alone_are_blank() -> None:
    invisible = [
        "",
        " \n\t",
        "\u00a0",
        "\u200b",
        "\u200c\u200d",
        "\u2060",
        "\ufeff",
        "\u00ad",
        "\u3000\u200b",
    ]
    assert all(is_blank(text) for text in invisible)
    assert not any(is_blank(text) for text in ["x", "\u200bx", ".", "\u00ad-"])


async def test_a_zero_width_space_is_not_sent(cohere: FakeProvider) -> None:
    docs = ["\u200b", ISSUE_DOCS[0], "\ufeff\u00ad "]
    response = await reranker(f"cohere:{MODEL}").rerank(QUERY, docs)
    assert cohere.requests[0].body["documents"] == [ISSUE_DOCS[0]]
    assert response.scores == (UNSCORED, score_of(ISSUE_DOCS[0]), UNSCORED)
    assert response.usage.warnings == ("2 blank documents ranked last, not sent",)


async def test_blank_documents_stay_out_of_a_micro_batch() -> None:
    from tests.serve.test_batching import CountingModel, score

    model = CountingModel()
    guarded = guard(model)
    assert isinstance(guarded, BatchReranker)
    responses = await guarded.rerank_batch([("q", ["a", " "]), ("q", ["", "\t"]), ("q", [])])
    assert [r.scores for r in responses] == [(score("q", "a"), UNSCORED), (UNSCORED, UNSCORED), ()]
    assert model.calls == [2]  # one pass, without the all-blank request


async def test_text_that_is_not_utf8_is_refused_before_any_backend_is_called(cohere: FakeProvider) -> None:
    """A catalog backend's HTTP client raised `UnicodeEncodeError` (a local model's tokenizer too)."""
    model = reranker(f"cohere:{MODEL}")
    with pytest.raises(InputError) as caught:
        await model.rerank(QUERY, ["ok", "", "x \ud800"])
    assert str(caught.value) == (
        "document 2 holds a lone UTF-16 surrogate (U+D800 at character 2), which is not text"
    )
    with pytest.raises(
        InputError, match=r"^the query holds a lone UTF-16 surrogate \(U\+DCFF at character 3\)"
    ):
        await model.rerank("for\udcff", ["ok"])
    assert cohere.requests == []


async def test_a_batch_names_the_request_that_is_not_text() -> None:
    from tests.serve.test_batching import CountingModel

    model = CountingModel()
    guarded = guard(model)
    assert isinstance(guarded, BatchReranker)
    with pytest.raises(InputError) as caught:
        await guarded.rerank_batch([("q", ["a"]), ("q", ["b", "\udfff"])])
    assert str(caught.value) == (
        "request 1: document 1 holds a lone UTF-16 surrogate (U+DFFF at character 0), which is not text"
    )
    assert model.calls == []


async def test_non_finite_scores_rank_last_with_a_warning() -> None:
    """Issue 16, item 6: a local model that emits NaN for some documents."""
    model = guard(Fixed([2.0, math.nan, -1.0, math.inf], "logits"))
    response = await model.rerank(QUERY, ["a", "b", "c", "d"])
    assert response.scores == (2.0, UNSCORED, -1.0, UNSCORED)
    assert rank_order(response.scores) == [0, 2, 1, 3]
    assert response.usage.warnings == ("2 non-finite scores from fixed ranked last",)
    assert as_probabilities(response.scores, "logits") == pytest.approx(
        [1 / (1 + math.exp(-2.0)), 0.0, 1 / (1 + math.exp(1.0)), 0.0]
    )


def test_rank_order_puts_nan_last_even_unguarded() -> None:
    assert rank_order([0.2, math.nan, 0.9, 0.5], 3) == [2, 3, 0]


def test_wire_scales_come_from_the_declared_scale_not_the_values() -> None:
    """Issue 16, item 4: logits 0.9 and 0.45 are logits whether or not a third score is -8.15."""
    two = as_probabilities([0.9, 0.45], "logits")
    three = as_probabilities([0.9, 0.45, -8.15], "logits")
    assert two == pytest.approx([1 / (1 + math.exp(-0.9)), 1 / (1 + math.exp(-0.45))])
    assert three[:2] == two
    assert as_probabilities([0.9, 0.45], "probabilities") == [0.9, 0.45]
    assert as_logits([0.5, 0.9], "probabilities") == pytest.approx([0.0, math.log(9)])
    assert as_logits([UNSCORED], "logits") == [-1000.0]
    assert as_finite([UNSCORED, 0.3], "probabilities") == [0.0, 0.3]


async def test_the_cache_keeps_no_fallback_answer(cohere: FakeProvider, tmp_path: Path) -> None:
    """Issue 16, item 5: during an outage identity answers in input order; after it, the provider does."""
    docs = [f"Документ {i} про циклы." for i in range(5)]
    model = with_cache(reranker(f"cohere:{MODEL}?max_attempts=1 | identity"), "sqlite", tmp_path, 3600)
    cohere.script(Fault(503))
    outage = await model.rerank(QUERY, docs)
    assert outage.served_by == "identity"
    assert rank_order(outage.scores) == [0, 1, 2, 3, 4]
    recovered = await model.rerank(QUERY, docs)
    assert recovered.served_by == f"cohere:{MODEL}"
    assert recovered.scores == tuple(score_of(d) for d in docs)
    again = await model.rerank(QUERY, docs)
    assert (again.served_by, again.scores, again.usage.cache_hits) == ("cache", recovered.scores, 5)
    assert len(cohere.requests) == 2  # the outage and the recovery; the third call was a hit


async def test_cached_scores_keep_their_scale(tmp_path: Path) -> None:
    inner = Fixed([1.5, -0.5], "logits")
    model = with_cache(guard(inner), "sqlite", tmp_path, 3600)
    first = await model.rerank(QUERY, ["a", "b"])
    hit = await model.rerank(QUERY, ["a", "b"])
    assert (first.scale, hit.scale, hit.scores, hit.usage.cache_hits) == ("logits", "logits", (1.5, -0.5), 2)
    assert inner.sent == [["a", "b"]]
