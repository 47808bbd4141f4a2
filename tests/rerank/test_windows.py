"""Long documents: windows of whole words within the budget, max-pooled or truncated, on any backend."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from leanrank.errors import ConfigError
from leanrank.rerank.base import RerankResponse, Usage
from leanrank.rerank.guard import guard
from leanrank.rerank.windows import WindowedReranker, WindowPolicy, as_sent, clip_tokens, split_windows


def words(text: str) -> int:
    """One token per word: makes every window boundary hand-checkable."""
    return len(text.split())


class Recording:
    """Scores each text by how often it says "answer"; remembers what it was sent."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        self.calls.append((query, list(documents)))
        scores = tuple(float(d.split().count("answer")) for d in documents)
        return RerankResponse(
            scores, Usage(0, 0, float(len(documents)), "tokens", "reported", 0.0, len(documents))
        )


TEXT = "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9"


def test_text_within_budget_is_one_unchanged_window() -> None:
    assert split_windows("  short  text ", 5, words) == ["  short  text "]


def test_windows_cut_between_words_and_cover_the_text() -> None:
    assert split_windows(TEXT, 4, words) == ["w0 w1 w2 w3", "w4 w5 w6 w7", "w8 w9"]


def test_windows_overlap_by_whole_words() -> None:
    assert split_windows(TEXT, 4, words, overlap_tokens=2) == [
        "w0 w1 w2 w3",
        "w2 w3 w4 w5",
        "w4 w5 w6 w7",
        "w6 w7 w8 w9",
    ]


def test_windows_are_slices_of_the_original_text() -> None:
    text = "Первая  фраза.\nВторая фраза, длиннее первой. Третья!"
    windows = split_windows(text, 3, words)
    assert all(w in text for w in windows)
    assert " ".join(" ".join(windows).split()) == " ".join(text.split())


def test_a_word_over_the_budget_is_a_window_of_its_own() -> None:
    def chars(text: str) -> int:
        return len(text)

    assert split_windows("ab " + "x" * 12 + " cd", 5, chars) == ["ab", "x" * 12, "cd"]


def test_clip_keeps_the_longest_prefix_of_whole_words() -> None:
    assert clip_tokens(TEXT, 3, words) == "w0 w1 w2"


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"max_tokens": 0}, "max_doc_tokens"),
        ({"max_tokens": 4, "overlap_tokens": 4}, "overlap_tokens"),
        ({"max_tokens": 4, "max_windows": 0}, "max_windows"),
        ({"max_tokens": 4, "max_query_tokens": 0}, "max_query_tokens"),
    ],
)
def test_bad_policy_names_the_option(kwargs: dict[str, int], option: str) -> None:
    with pytest.raises(ConfigError, match=option):
        WindowPolicy(**kwargs)  # type: ignore[arg-type]


async def test_maxpool_takes_each_documents_best_window() -> None:
    inner = Recording()
    docs = ["intro " * 6 + "answer answer here", "answer short", "nothing at all"]
    response = await WindowedReranker(inner, WindowPolicy(max_tokens=4), words).rerank("q", docs)
    # Doc 0's last window "intro answer answer here" holds two answers; its first windows hold none.
    assert response.scores == (2.0, 1.0, 0.0)
    assert len(inner.calls) == 1
    assert inner.calls[0][1] == [
        "intro intro intro intro",
        "intro intro answer answer",
        "here",
        "answer short",
        "nothing at all",
    ]
    assert response.usage.documents == 5


async def test_the_windows_split_ahead_are_what_the_call_sends_tokenized_once() -> None:
    """The meter splits before the call (to estimate it); the call then sends those windows without
    counting again. A call for other documents, or a second one, splits for itself."""
    counted: list[str] = []

    def counting(text: str) -> int:
        counted.append(text)
        return words(text)

    inner = Recording()
    windowed = WindowedReranker(inner, WindowPolicy(max_tokens=4), counting)
    docs = ["intro " * 6 + "answer", "short"]
    split = windowed.split("q", docs)
    assert (split.texts, split.owner) == (
        ["intro intro intro intro", "intro intro answer", "short"],
        [0, 0, 1],
    )
    once = len(counted)
    await windowed.rerank("q", docs)
    assert (len(counted), inner.calls) == (once, [("q", split.texts)])
    await windowed.rerank("q", docs)
    assert len(counted) == 2 * once
    windowed.split("q", docs)
    await windowed.rerank("q", ["other"])
    assert inner.calls[-1] == ("q", ["other"])


async def test_truncate_sends_only_the_first_window() -> None:
    inner = Recording()
    docs = ["intro " * 6 + "answer answer", "answer short"]
    response = await WindowedReranker(inner, WindowPolicy(max_tokens=4, mode="truncate"), words).rerank(
        "q", docs
    )
    assert inner.calls[0][1] == ["intro intro intro intro", "answer short"]
    assert response.scores == (0.0, 1.0)


async def test_max_windows_bounds_the_cost_of_one_document() -> None:
    inner = Recording()
    policy = WindowPolicy(max_tokens=2, max_windows=2)
    await WindowedReranker(inner, policy, words).rerank("q", [TEXT])
    assert inner.calls[0][1] == ["w0 w1", "w2 w3"]


async def test_long_queries_are_clipped() -> None:
    inner = Recording()
    policy = WindowPolicy(max_tokens=100, max_query_tokens=2)
    await WindowedReranker(inner, policy, words).rerank("one two three four", ["doc"])
    assert inner.calls[0][0] == "one two"


async def test_no_documents_means_an_empty_call() -> None:
    inner = Recording()
    response = await WindowedReranker(inner, WindowPolicy(max_tokens=4), words).rerank("q", [])
    assert response.scores == ()


async def test_as_sent_is_what_the_inner_backend_is_sent_through_every_layer_of_windows() -> None:
    """A request's cap (4 words, first window only) over a backend's own windows behind the guard (2 words,
    query cut to 1): TEXT becomes "w0 w1 w2 w3", then "w0 w1" and "w2 w3"."""
    inner = Recording()
    backend = guard(WindowedReranker(inner, WindowPolicy(max_tokens=2, max_query_tokens=1), words))
    request = WindowedReranker(backend, WindowPolicy(max_tokens=4, mode="truncate"), words)
    await request.rerank("one two", [TEXT, "short"])
    assert as_sent(request, "one two", [TEXT, "short"]) == ("one", ["w0 w1", "w2 w3", "short"])
    assert inner.calls == [("one", ["w0 w1", "w2 w3", "short"])]
