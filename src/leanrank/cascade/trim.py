"""Trimming: send the reranker each candidate's best window for the query, not the whole chunk.

Token-billed rerankers charge for every token of every candidate, and a 160-token chunk usually answers a
question in one or two sentences. The window is the run of consecutive sentences that holds the most
query terms (stemmed by the same BM25 analyser as the first stage) within a token budget; ties go to the
shorter, then the earlier run. It is cheap — no model — so it can run on every candidate. Offsets are kept
so the evaluation can check that the answer span survived.
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
    text: str, query_terms: Set[int], budget: int, count: TokenCount, terms_of: TermsOf
) -> Window:
    """The best window of `text` for the query within `budget` tokens; the whole text when it fits."""
    total = count(text)
    if total <= budget:
        return Window(0, len(text), text, total, len(terms_of(text) & query_terms))
    spans = _pieces(text, budget, count)
    sizes = [count(text[s:e]) for s, e in spans]
    terms = [terms_of(text[s:e]) & query_terms for s, e in spans]
    best = (-len(terms[0]), sizes[0], 0, 0)  # (-hits, tokens, first, last): smallest wins
    for first in range(len(spans)):
        used, held = 0, set[int]()
        for last in range(first, len(spans)):
            if used + sizes[last] > budget and last > first:
                break
            used += sizes[last]
            held |= terms[last]
            key = (-len(held), used, first, last)
            best = min(best, key)
    hits, used, first, last = -best[0], best[1], best[2], best[3]
    start, end = spans[first][0], spans[last][1]
    return Window(start, end, text[start:end], used, hits)


def _pieces(text: str, budget: int, count: TokenCount) -> list[tuple[int, int]]:
    """Sentences, with any sentence over the budget cut into word windows that fit."""
    pieces: list[tuple[int, int]] = []
    for start, end in sentence_spans(text) or [(0, len(text))]:
        sentence = text[start:end]
        if count(sentence) <= budget:
            pieces.append((start, end))
            continue
        cursor = start
        for part in split_windows(sentence, budget, count):
            at = text.index(part, cursor)
            pieces.append((at, at + len(part)))
            cursor = at + len(part)
    return pieces
