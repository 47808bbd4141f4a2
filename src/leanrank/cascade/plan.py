"""The cascade: what the paid reranker is handed, decided by stages that cost nothing per token.

Between the first stage and the paid reranker the candidates go through, in order:

0. **nothing relevant** (`min_similarity`): when no candidate's dense cosine reaches it, nothing is sent
   (the question is not about this course); **diversity** (`mmr_lambda`, `leanrank.cascade.mmr`): the
   candidates are put in MMR order, so the cut below keeps fewer near-copies of one passage;
1. **adaptive depth**: when the fused list is confident (its top scores stand well clear of the rest),
   fewer candidates go on; `keep_ratio` × the top fused score is the cut, never below `min_depth`;
2. **near-duplicate collapse** (`leanrank.cascade.dedup`): overlapping chunks and translations of one text
   are paid for once, the query's language preferred; when fewer than `min_depth` are left, the cut is
   refilled with the next candidates below it that duplicate none kept;
3. **a gate**: an optional cheap local reranker that passes on its best `gate_keep`;
4. **trimming** (`leanrank.cascade.trim`): each survivor is sent as its best window for the query.

Each stage says what it dropped, so the evaluation can show where the savings come from. The stages keep
the first-stage order (the gate, its own), which the paid reranker then replaces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, field

import numpy as np

from leanrank.cascade.dedup import DedupConfig, Fingerprint, Overlap, collapse_groups, overlap
from leanrank.cascade.mmr import mmr_order
from leanrank.cascade.trim import Window, best_window
from leanrank.encode.base import SparseEncoder
from leanrank.errors import ConfigError
from leanrank.index.base import Candidate
from leanrank.ingest.lang import detect_lang
from leanrank.rerank.base import Reranker, rank_order
from leanrank.rerank.catalog import reranker as reranker_by_name
from leanrank.rerank.windows import TokenCount
from leanrank.settings import CascadeSettings
from leanrank.types import Lang


def gate_reranker(name: str, is_paid: Callable[[str], bool]) -> Reranker | None:
    """The cascade's gate named `name` (`off`: none). A gate scores every candidate before the paid stage and
    its calls are not metered, so a backend with a price (`is_paid`, the meter's) is refused: raises
    `ConfigError`, as for any unknown backend name (`leanrank.rerank.catalog.reranker`)."""
    if name == "off":
        return None
    if is_paid(name):
        raise ConfigError(
            f"gate {name!r} is a paid backend; a gate's calls are not billed, so it must be a free one "
            "(a local cross-encoder `local:…`, `identity`, or a self-hosted server without a price)"
        )
    return reranker_by_name(name)


@dataclass(frozen=True, slots=True)
class Sendable:
    """A candidate as the paid stage sees it: `text == candidate.chunk.text[start:end]`."""

    candidate: Candidate
    text: str
    start: int
    end: int
    tokens: int

    @property
    def trimmed(self) -> bool:
        return self.end - self.start < len(self.candidate.chunk.text)


@dataclass(frozen=True, slots=True)
class Selection:
    """What goes to the paid stage, out of how many retrieved, and how many each stage dropped.

    `rest` are the candidates cut by the adaptive depth or the gate, in first-stage order: not worth paying
    for, but still answers, so a search that asks for more hits than were reranked lists them after the
    reranked ones. Near-duplicates are not in it: `twins` maps each one's `chunk_id` to that of the candidate
    standing for it.
    """

    sent: list[Sendable]
    retrieved: int
    dropped: dict[str, int] = field(default_factory=dict)
    rest: list[Candidate] = field(default_factory=list)
    twins: dict[str, str] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.sent)


def adaptive_depth(candidates: Sequence[Candidate], keep_ratio: float, min_depth: int) -> int:
    """How many of the fused list go on: those scoring ≥ `keep_ratio` × the top score, at least `min_depth`.

    Fused RRF scores are rank based, so the ratio measures agreement: a chunk first in both lists scores
    about twice one that is first in one list only, and a confident query has few chunks near its top.
    """
    if not candidates or keep_ratio <= 0:
        return len(candidates)
    floor = keep_ratio * candidates[0].fused
    above = sum(1 for c in candidates if c.fused >= floor)
    return min(len(candidates), max(min_depth, above))


def _similar(candidates: Sequence[Candidate], floor: float) -> bool:
    """Whether any candidate's dense cosine reaches `floor` (one found by BM25 alone has none)."""
    return any(c.dense is not None and c.dense >= floor for c in candidates)


def _diverse(candidates: Sequence[Candidate], lam: float) -> list[Candidate]:
    """The candidates in MMR order (fused score relative to the top as relevance, dense cosine as
    redundancy); as they are when a vector is missing (a store that returned none)."""
    if len(candidates) < 2 or any(c.vector is None for c in candidates):
        return list(candidates)
    top = max(c.fused for c in candidates)
    relevance = [c.fused / top if top > 0 else 0.0 for c in candidates]
    rows = np.stack([np.asarray(c.vector, dtype=np.float32) for c in candidates])
    return [candidates[i] for i in mmr_order(relevance, rows, lam)]


class Cascade:
    """The stages between retrieval and the paid reranker, configured by `CascadeSettings`.

    `fingerprint`, `overlap_of` and `query_lang` may remember what they computed (the gateway's
    `DocumentMemo`): a text's `Fingerprint`, two fingerprints' `overlap`, a query's language.
    """

    def __init__(
        self,
        settings: CascadeSettings,
        *,
        count: TokenCount,
        sparse: SparseEncoder,
        gate: Reranker | None = None,
        fingerprint: Callable[[str], Fingerprint] = Fingerprint,
        overlap_of: Overlap = overlap,
        query_lang: Callable[[str], Lang] = detect_lang,
    ) -> None:
        self.settings = settings
        self._count = count
        self._sparse = sparse
        self._gate = gate
        self._fingerprint = fingerprint
        self._overlap = overlap_of
        self._query_lang = query_lang

    @property
    def needs_vectors(self) -> bool:
        """Cross-lingual dedup and MMR compare the candidates' dense vectors, which the store must return."""
        return self.settings.cross_lingual is not None or self.settings.mmr_lambda is not None

    async def select(self, query: str, candidates: Sequence[Candidate]) -> Selection:
        s = self.settings
        dropped: dict[str, int] = {}
        if s.min_similarity is not None and not _similar(candidates, s.min_similarity):
            return Selection([], len(candidates), {"min_similarity": len(candidates)}, list(candidates))
        if s.mmr_lambda is not None:
            candidates = _diverse(candidates, s.mmr_lambda)
        depth = adaptive_depth(candidates, s.keep_ratio, s.min_depth) if s.adaptive else len(candidates)
        dedup = s.near_dup is not None or s.cross_lingual is not None
        twins: dict[str, str] = {}
        if dedup:
            kept, twins, read = self._dedup(candidates, depth, self._query_lang(query))
        else:
            kept, read = list(candidates[:depth]), depth
        rest = list(candidates[read:])
        dropped["depth"] = len(rest)
        if dedup:
            dropped["near_dup"] = read - len(kept)
        if self._gate is not None and len(kept) > s.gate_keep:
            response = await self._gate.rerank(query, [c.chunk.text for c in kept])
            order = rank_order(response.scores)
            dropped["gate"] = len(kept) - s.gate_keep
            passed = set(order[: s.gate_keep])
            rest = [c for i, c in enumerate(kept) if i not in passed] + rest
            kept = [kept[i] for i in order[: s.gate_keep]]
        terms = set(self._sparse.embed_query(query).indices) if s.trim_tokens > 0 else set[int]()
        sent = [self._sendable(terms, c) for c in kept]
        return Selection(sent, len(candidates), dropped, rest, twins)

    def _dedup(
        self, candidates: Sequence[Candidate], depth: int, query_lang: Lang
    ) -> tuple[list[Candidate], dict[str, str], int]:
        """The first `depth` candidates without near-duplicates, refilled from below the cut up to
        `min_depth`; the duplicates' representatives (`Selection.twins`); how many candidates were read."""
        s = self.settings
        vectors = None
        if s.cross_lingual is not None and candidates and all(c.vector is not None for c in candidates):
            rows = np.stack([np.asarray(c.vector, dtype=np.float32) for c in candidates])
            vectors = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        config = DedupConfig(
            containment=s.near_dup,
            cross_lingual=s.cross_lingual,
            prefer_query_lang=s.prefer_query_lang,
        )
        keep, stands_for = collapse_groups(
            [c.chunk.text for c in candidates],
            [c.chunk.lang for c in candidates],
            config,
            query_lang=query_lang,
            vectors=vectors,
            fingerprint_of=self._fingerprint,
            overlap_of=self._overlap,
            depth=depth,
            min_kept=s.min_depth if s.adaptive else 0,
        )
        twins = {candidates[i].chunk_id: candidates[k].chunk_id for i, k in enumerate(stands_for) if i != k}
        return [candidates[i] for i in keep], twins, len(stands_for)

    def _sendable(self, query_terms: Set[int], cand: Candidate) -> Sendable:
        text = cand.chunk.text
        budget = self.settings.trim_tokens
        if budget <= 0:
            return Sendable(cand, text, 0, len(text), cand.chunk.tokens)
        window = self.window(query_terms, text, budget, total=cand.chunk.tokens)
        return Sendable(cand, window.text, window.start, window.end, window.tokens)

    def window(self, query_terms: Set[int], text: str, budget: int, *, total: int | None = None) -> Window:
        """The best window of one chunk for the query, by stemmed query terms (the first stage's analyser)."""

        def terms_of(part: str) -> Set[int]:
            return set(self._sparse.embed_documents([part])[0].indices)

        return best_window(text, query_terms, budget, self._count, terms_of, total=total)
