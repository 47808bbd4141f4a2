"""Trimming: send the reranker each candidate's best window for the query, not the whole chunk.

Token-billed rerankers charge for every token of every candidate, and a 160-token chunk usually answers a
question in one or two sentences. The window is the run of consecutive sentences that holds the most query
terms (stemmed by the same BM25 analyser as the first stage) within a token budget; ties go to the longer,
then the earlier run, so the budget is filled with the sentences around the query's terms (answers often sit
next to the sentence that repeats the question's words, not in it). It is cheap — no model — so it can run on
every candidate. Offsets are kept so the evaluation can check that the answer span survived.
"""

from __future__ import annotations

from collections.abc import Callable, Set
from dataclasses import dataclass

from leanrank.ingest.chunker import sentence_spans
from leanrank.rerank.windows import TokenCount, split_windows

TermsOf = Callable[[str], Set[int]]


@dataclass(frozen=True, slots=True)
class Window:
    """`text == chunk_text[start:end]`; `hits` is how many query terms it holds."""

    start: int
    end: int
    text: str
    tokens: int
    hits: int


def best_window(
    text: str,
    query_terms: Set[int],
    budget: int,
    count: TokenCount,
    terms_of: TermsOf,
    *,
    total: int | None = None,
) -> Window:
    """The best window of `text` for the query within `budget` tokens; the whole text when it fits.

    `total` is the text's token count when the caller knows it (indexed chunks carry it). Sentence sizes
    are then estimated from it by their share of the characters, and only the chosen window is counted
    exactly, shrunk from its weaker end while over the budget: the tokenizer, not the search, is what
    costs time here (about 0.6 ms a call on 2 cores).
    """
    if total is None:
        total = count(text)
        size: Callable[[int, int], int] = lambda s, e: count(text[s:e])  # noqa: E731
    else:
        density = total / max(len(text), 1)
        size = lambda s, e: max(1, round((e - s) * density))  # noqa: E731
    if total <= budget:
        return Window(0, len(text), text, total, len(terms_of(text) & query_terms))
    spans = _pieces(text, budget, count, size)
    sizes = [size(s, e) for s, e in spans]
    terms = [terms_of(text[s:e]) & query_terms for s, e in spans]
    best = (-len(terms[0]), -sizes[0], 0, 0)  # (-hits, -tokens, first, last): smallest wins
    for first in range(len(spans)):
        used, held = 0, set[int]()
        for last in range(first, len(spans)):
            if used + sizes[last] > budget and last > first:
                break
            used += sizes[last]
            held |= terms[last]
            best = min(best, (-len(held), -used, first, last))
    first, last = best[2], best[3]
    while True:
        start, end = spans[first][0], spans[last][1]
        tokens = count(text[start:end])
        if tokens <= budget or first == last:
            break
        if len(terms[last]) <= len(terms[first]):
            last -= 1
        else:
            first += 1
    if tokens > budget:  # one sentence the estimate let through: cut it into word windows, keep the best
        parts = [(text.index(p, start), p) for p in split_windows(text[start:end], budget, count)]
        at, part = max(parts, key=lambda ap: len(terms_of(ap[1]) & query_terms))
        return Window(at, at + len(part), part, count(part), len(terms_of(part) & query_terms))
    held = set[int]().union(*terms[first : last + 1])
    return Window(start, end, text[start:end], tokens, len(held))


def _pieces(
    text: str, budget: int, count: TokenCount, size: Callable[[int, int], int]
) -> list[tuple[int, int]]:
    """Sentences, with any sentence over the budget (counted exactly) cut into word windows that fit."""
    pieces: list[tuple[int, int]] = []
    for start, end in sentence_spans(text) or [(0, len(text))]:
        sentence = text[start:end]
        if size(start, end) <= budget or count(sentence) <= budget:
            pieces.append((start, end))
            continue
        cursor = start
        for part in split_windows(sentence, budget, count):
            at = text.index(part, cursor)
            pieces.append((at, at + len(part)))
            cursor = at + len(part)
    return pieces
