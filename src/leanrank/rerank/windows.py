"""Long documents and long queries, handled on the client instead of silently truncated by the server.

A document over the budget is split into windows of whole words; each window is scored and the document
takes its best window's score (max-pool, as Cohere and SiliconFlow do server-side), or only its first
window is sent (`truncate`: the cheap choice, since token-billed providers charge for every token sent
whether or not the model reads it). Queries over `max_query_tokens` are cut: the query is paid once per
document on token-billed APIs, so an overlong query multiplies the bill.

Word-level splitting keeps every window a substring of the document, and counting word by word is exact
for SentencePiece and byte-level BPE tokenizers up to the merge across a space, which they never do.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from leanrank.errors import ConfigError
from leanrank.rerank.base import Reranker, RerankResponse, is_reranker

TokenCount = Callable[[str], int]
LongDocs = Literal["maxpool", "truncate"]

_WORD = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class WindowPolicy:
    """`max_tokens` per window (document text alone); windows overlap by `overlap_tokens`.

    `max_windows` bounds what one huge document can cost (None: no bound); the windows kept are the first.
    """

    max_tokens: int
    overlap_tokens: int = 0
    mode: LongDocs = "maxpool"
    max_windows: int | None = None
    max_query_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ConfigError(f"max_doc_tokens must be positive, got {self.max_tokens}")
        if not 0 <= self.overlap_tokens < self.max_tokens:
            raise ConfigError(f"overlap_tokens must be in [0, max_doc_tokens), got {self.overlap_tokens}")
        if self.max_windows is not None and self.max_windows < 1:
            raise ConfigError(f"max_windows must be positive, got {self.max_windows}")
        if self.max_query_tokens is not None and self.max_query_tokens < 1:
            raise ConfigError(f"max_query_tokens must be positive, got {self.max_query_tokens}")


def split_windows(text: str, max_tokens: int, count: TokenCount, overlap_tokens: int = 0) -> list[str]:
    """Consecutive slices of `text` of at most `max_tokens` tokens each, cut between words.

    A single word longer than the budget becomes a window of its own (the server truncates that one).
    Text within the budget comes back unchanged, as one window.
    """
    # A token covers at least one character, so short texts need no tokenizer call.
    if len(text) <= max_tokens or count(text) <= max_tokens:
        return [text]
    spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    sizes = [count(text[s:e]) for s, e in spans]
    windows: list[str] = []
    first = 0
    while first < len(spans):
        last, used = first, sizes[first]
        while last + 1 < len(spans) and used + sizes[last + 1] <= max_tokens:
            last += 1
            used += sizes[last]
        windows.append(text[spans[first][0] : spans[last][1]])
        if last + 1 == len(spans):
            break
        # Step back over up to `overlap_tokens` of trailing words, but always move forward.
        nxt, back = last + 1, 0
        while nxt - 1 > first and back + sizes[nxt - 1] <= overlap_tokens:
            nxt -= 1
            back += sizes[nxt]
        first = nxt
    return windows


def clip_tokens(text: str, max_tokens: int, count: TokenCount) -> str:
    """The longest prefix of whole words within `max_tokens` (at least the first word)."""
    return split_windows(text, max_tokens, count)[0]


@dataclass(frozen=True, slots=True)
class Windows:
    """What one call of a `WindowedReranker` sends: the query (clipped), every window of every document in
    order, and for each window the index of the document it came from."""

    query: str
    texts: list[str]
    owner: list[int]


class WindowedReranker:
    """Wraps any `Reranker` so documents over the budget are windowed (max-pool) or truncated.

    All windows of all documents go to the inner reranker in one call, so its own batching and
    split-by-limit apply. The usage is the inner call's: `documents` counts the windows sent, which is what
    the provider billed.
    """

    def __init__(self, inner: Reranker, policy: WindowPolicy, count: TokenCount) -> None:
        self.inner = inner
        self.policy = policy
        self._count = count
        self._split: tuple[str, tuple[str, ...], Windows] | None = None  # the last `split`, for its call

    @property
    def name(self) -> str:
        return self.inner.name

    def windows(self, document: str) -> list[str]:
        """What is sent for `document` under the policy."""
        p = self.policy
        parts = split_windows(document, p.max_tokens, self._count, p.overlap_tokens)
        if p.mode == "truncate":
            return parts[:1]
        return parts if p.max_windows is None else parts[: p.max_windows]

    def query(self, query: str) -> str:
        """What is sent for `query` under the policy: cut to `max_query_tokens` when set."""
        limit = self.policy.max_query_tokens
        return query if limit is None else clip_tokens(query, limit, self._count)

    def split(self, query: str, documents: Sequence[str]) -> Windows:
        """What `rerank(query, documents)` sends the inner reranker: each window is a document billed.

        Kept for that call: the meter splits before it, off the event loop, to hold its cost by what is
        really sent, and the call then takes these windows instead of tokenizing every document again.
        """
        windows = self._windows_of(query, documents)
        self._split = (query, tuple(documents), windows)
        return windows

    def _windows_of(self, query: str, documents: Sequence[str]) -> Windows:
        query = self.query(query)
        owner: list[int] = []
        texts: list[str] = []
        for i, doc in enumerate(documents):
            parts = self.windows(doc)
            owner.extend([i] * len(parts))
            texts.extend(parts)
        return Windows(query, texts, owner)

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        split, self._split = self._split, None
        if split is not None and split[:2] == (query, tuple(documents)):
            windows = split[2]
        else:
            windows = self._windows_of(query, documents)
        response = await self.inner.rerank(windows.query, windows.texts)
        best = [float("-inf")] * len(documents)
        for i, score in zip(windows.owner, response.scores, strict=True):
            best[i] = max(best[i], score)
        return replace(response, scores=tuple(best))


def as_sent(
    reranker: Reranker, query: str, documents: Sequence[str], link: str | None = None
) -> tuple[str, list[str]]:
    """The query and texts `reranker` passes on for `query` and `documents`, windows and cuts applied.

    Each `WindowedReranker` met going inwards through the wrappers' `inner` (a request's own caps, then a
    backend's configured windows behind the score cache and the guard) applies its policy in turn. A fallback
    chain (`chain`) goes on into its member named `link` (each link truncates or windows as its backend is
    configured) and, without `link` or such a member, ends the walk. The meter prices sending every received
    document from this (full cost), as the gateway counts what a search-unit link bills.
    """
    return apply_windows(windows_on_path(reranker, link), query, documents)


def windows_on_path(reranker: Reranker, link: str | None = None) -> tuple[WindowedReranker, ...]:
    """The `WindowedReranker`s `as_sent` applies, outermost first: walked once for a call whose texts are
    then sized one by one (a runtime `Protocol` check costs microseconds per layer)."""
    layer: object = reranker
    found: list[WindowedReranker] = []
    while is_reranker(layer):
        if isinstance(layer, WindowedReranker):
            found.append(layer)
        members = getattr(layer, "chain", ())
        if members:
            layer = next((m for m in members if m.name == link), None)
        else:
            layer = getattr(layer, "inner", None)
    return tuple(found)


def apply_windows(
    path: Sequence[WindowedReranker], query: str, documents: Sequence[str]
) -> tuple[str, list[str]]:
    """`query` and `documents` through each of `path`'s policies in turn (`windows_on_path`)."""
    texts = list(documents)
    for layer in path:
        query = layer.query(query)
        texts = [part for doc in texts for part in layer.windows(doc)]
    return query, texts
