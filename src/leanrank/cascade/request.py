"""The cascade for documents a client sends: what the drop-in gateway forwards to the paid reranker.

A client with its own first stage (its vector store's top-100) posts every document to the gateway, in its
own rank order. Before the paid backend sees them:

1. **exact duplicates** (same text up to case and whitespace, `normalised_hash`) collapse into the first;
2. **a pre-ranking** from what the request holds: the client's order (its first stage) fused by RRF
   (`leanrank.retrieve.fusion`, Qdrant's convention) with BM25 over the request's own documents — the
   pipeline's analyser (`leanrank.encode.bm25`, each word stemmed in its own language), IDF counted over
   the request, since no corpus is at hand. BM25 cannot match a document in the language the query is not
   written in, and a multilingual dense order ranks such a document below the query's own language, so
   the client's first `cross_lang_keep` documents in the other language pass the adaptive cut (step 3)
   whatever their fused score (on the real course's tune half, the one answer the cut lost was the first
   English document of a Russian question's list, at rank 21);
3. the pipeline cascade (`leanrank.cascade.plan.Cascade`) on that list: the **adaptive cut**, **near-duplicate
   collapse**, the optional **gate** and **best-window trimming**;
4. for a backend billed per search unit, the search units: what is sent is counted in billed documents
   (as the backend sends it: windows, truncation, and chunks of those over the provider's context), capped
   at one unit's worth (100) per request and filled up to the units it costs, in pre-ranking order: below
   that, a cut saves nothing and loses answers, so it saves whole units only (150 received: 100 forwarded,
   1 unit instead of 2; 100 received: all forwarded). Token-billed backends pay per token: their cut stands
   as it is.

`merge` then gives every received document a score: forwarded ones the backend's, a duplicate its
representative's, and the rest follow strictly below the lowest forwarded score, in pre-ranking order.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from itertools import islice

from leanrank.cascade.dedup import Fingerprint, remembered_overlap
from leanrank.cascade.plan import Cascade, gate_reranker
from leanrank.cost.billing import SEARCH_UNIT_DOCUMENTS, search_units
from leanrank.encode.base import SparseVec
from leanrank.encode.bm25 import Bm25Encoder
from leanrank.index.base import Candidate
from leanrank.ingest.lang import detect_lang
from leanrank.rerank.base import UNSCORED, Reranker, RerankResponse, is_blank
from leanrank.rerank.windows import TokenCount
from leanrank.retrieve.fusion import rrf_term
from leanrank.retrieve.hybrid import normalised_hash
from leanrank.settings import CascadeSettings, ClientCascadeSettings, GatewaySettings
from leanrank.types import Chunk, Lang

BilledAs = Callable[[str], int]
"""How many documents a backend billed per search unit bills one forwarded text as: the windows or the cut it
sends for it, each split into chunks over the provider's context (`billing.search_unit_documents`)."""

QUERIES = 1024
"""Queries whose BM25 terms and language `DocumentMemo` remembers: analysing a question costs ~20 µs (NFKC,
stemming, counting its scripts' letters), and one question's lists may be reranked more than once (retries,
several lists of one question, batches)."""

PAIRS_PER_DOCUMENT = 8
"""Near-duplicate comparisons `DocumentMemo` remembers per document it remembers (~150 bytes each, ~5 MB for
4096 documents): a 100-document request compares ~300 pairs."""

OFF_LOOP_DOCUMENTS = 16
"""New documents in one request from which their analysis runs in a worker thread: ~3 ms of CPU (0.2 ms each,
measured on the real course's chunks), where the thread hop's ~0.1 ms is worth keeping the event loop free."""


@dataclass(frozen=True, slots=True)
class ClientPlan:
    """What one request's documents become; every index points into the request's documents.

    `forward` is sent to the backend as `texts` (a best window when trimming), best pre-ranked first; `rest`
    are the documents held back, in pre-ranking order; `stands_for[i]` is the document whose score document
    `i` gets (its own, or the one it duplicates); `blank` are the blank documents (`is_blank`), in
    neither list: they are ranked last, unscored, as the rerank guard ranks them (`leanrank.rerank.guard`).
    """

    received: int
    forward: list[int]
    texts: list[str]
    rest: list[int]
    stands_for: list[int]
    blank: list[int] = field(default_factory=list)

    @property
    def collapsed(self) -> int:
        """Documents answered with a duplicate's score instead of being forwarded or ranked."""
        return sum(1 for i, s in enumerate(self.stands_for) if i != s)

    @property
    def sent(self) -> int:
        """Forwarded documents that reach the backend (the guard keeps back blank ones, even forwarded)."""
        return sum(1 for text in self.texts if not is_blank(text))


def pass_through(documents: Sequence[str]) -> ClientPlan:
    """Every document forwarded as sent: today's gateway."""
    n = len(documents)
    return ClientPlan(n, list(range(n)), list(documents), [], list(range(n)))


def bm25_scores(
    query_terms: set[int] | frozenset[int], documents: Sequence[Mapping[int, float]]
) -> list[float]:
    """Okapi BM25 of each document for a query, IDF `ln(1 + (N - df + 0.5) / (df + 0.5))` counted over the
    documents themselves (Robertson & Zaragoza 2009, eq. 3.11). `documents` map term id to the analyser's
    term-frequency part (`term_weights` of `Bm25Encoder.embed_documents`); the work is per query term, not
    per document term, since a question has a handful of terms and a paragraph a hundred, and a document
    that holds none of them is never visited again (its score is 0)."""
    if not query_terms:
        return [0.0] * len(documents)
    n = len(documents)
    parts: dict[int, list[float]] = {}  # each matching document's terms' scores, in query term order
    for t in query_terms:
        hits = [j for j, doc in enumerate(documents) if t in doc]
        if hits:
            idf = math.log(1 + (n - len(hits) + 0.5) / (len(hits) + 0.5))
            for j in hits:
                parts.setdefault(j, []).append(idf * documents[j][t])
    return [sum(parts[j]) if j in parts else 0.0 for j in range(n)]


def term_weights(vec: SparseVec) -> dict[int, float]:
    """A sparse vector as {term id: weight}, the form `bm25_scores` looks terms up in."""
    return dict(zip(vec.indices, vec.values, strict=True))


@dataclass(frozen=True, slots=True)
class Analysed:
    """One client document as the pre-ranking sees it: BM25 term weights, language, `normalised_hash`."""

    weights: Mapping[int, float]
    lang: Lang
    digest: str


class DocumentMemo:
    """Each document's analysis (`Analysed`), `Fingerprint` and cascade unit (`chunk`), by its text, for the
    `size` texts seen last, the near-duplicate comparisons of `PAIRS_PER_DOCUMENT` × `size` pairs, and the
    BM25 terms and language of the last `QUERIES` queries (`query_terms`, `query_lang`).

    A client's pipeline sends documents of one corpus again and again, and analysing a paragraph costs
    about 0.2 ms of CPU: 100 new documents take ~20 ms, 100 remembered ones almost nothing. Fingerprints are
    kept apart because only the documents that reach the near-duplicate collapse need them. `size` 0
    remembers nothing. Thread-safe: the gateway analyses large batches of new documents in a worker thread.
    """

    def __init__(self, sparse: Bm25Encoder, size: int = 4096) -> None:
        self.sparse = sparse
        self._size = size
        self._known: OrderedDict[str, Analysed] = OrderedDict()
        self._lock = threading.Lock()
        self.fingerprint: Callable[[str], Fingerprint] = lru_cache(maxsize=size)(Fingerprint)
        self.overlap = remembered_overlap(PAIRS_PER_DOCUMENT * size)
        self.chunk: Callable[[str, Lang, int], Chunk] = lru_cache(maxsize=size)(_chunk)
        queries = QUERIES if size > 0 else 0
        self.query_terms: Callable[[str], frozenset[int]] = lru_cache(maxsize=queries)(self._query_terms)
        self.query_lang: Callable[[str], Lang] = lru_cache(maxsize=queries)(detect_lang)

    def _query_terms(self, query: str) -> frozenset[int]:
        return frozenset(self.sparse.embed_query(query).indices)

    def recall(self, texts: Sequence[str]) -> list[Analysed | None]:
        """Each text's analysis if it is remembered (and now among the most recently used), else None."""
        known = self._known
        found: list[Analysed | None] = []
        with self._lock:
            for text in texts:
                analysed = known.get(text)
                if analysed is not None:
                    known.move_to_end(text)
                found.append(analysed)
        return found

    def analyse(self, texts: Sequence[str]) -> list[Analysed]:
        """Analyse `texts` and remember them, the least recently used forgotten beyond `size`."""
        vectors = self.sparse.embed_documents(texts)
        fresh = [
            Analysed(term_weights(v), detect_lang(t), normalised_hash(t))
            for t, v in zip(texts, vectors, strict=True)
        ]
        if self._size > 0:
            with self._lock:
                for text, analysed in zip(texts, fresh, strict=True):
                    self._known[text] = analysed
                    self._known.move_to_end(text)
                while len(self._known) > self._size:
                    self._known.popitem(last=False)
        return fresh


class ClientCascade:
    """`ClientCascadeSettings` made runnable: the pipeline's `Cascade` over a pre-ranking of the request."""

    def __init__(
        self,
        settings: ClientCascadeSettings,
        *,
        count: TokenCount,
        memo: DocumentMemo,
        gate: Reranker | None = None,
    ) -> None:
        self.settings = settings
        self._count = count
        self._memo = memo
        s = settings
        self._cascade = Cascade(
            CascadeSettings(
                preset="off",
                adaptive=s.keep_ratio > 0,
                keep_ratio=s.keep_ratio,
                min_depth=min(s.min_depth, 1000),
                near_dup=s.near_dup,
                trim_tokens=s.trim_tokens,
                gate_keep=min(s.gate_keep, 1000),
            ),
            count=count,
            sparse=memo.sparse,
            gate=gate,
            fingerprint=memo.fingerprint,
            overlap_of=memo.overlap,
            query_lang=memo.query_lang,
        )

    async def plan(
        self, query: str, documents: Sequence[str], *, billed_as: BilledAs | None = None
    ) -> ClientPlan:
        """Which documents to forward, in what form. `billed_as`, for a backend billed per search unit,
        sizes each forwarded text in billed documents: the plan is then fitted to search units
        (`fit_search_units`), a request of fewer than `min_documents` too: it skips the cut, not the cap of
        one unit per request. A policy that is not `enabled` forwards everything as sent, uncapped."""
        s = self.settings
        if not s.enabled:
            return pass_through(documents)
        blank = [i for i, doc in enumerate(documents) if is_blank(doc)]
        if blank and len(blank) == len(documents):
            return pass_through(documents)  # the guard answers without a call; nothing collapses
        if blank:
            filled = [d for d in documents if not is_blank(d)]
            return _with_blanks(await self.plan(query, filled, billed_as=billed_as), blank)
        if len(documents) < s.min_documents:
            plan = pass_through(documents)
        else:
            plan = await self._plan(query, documents)
        return plan if billed_as is None else fit_search_units(plan, documents, billed_as)

    async def _plan(self, query: str, documents: Sequence[str]) -> ClientPlan:
        s = self.settings
        every = await self._analysed(documents)
        first: dict[str, int] = {}
        stands_for = [first.setdefault(a.digest, i) for i, a in enumerate(every)]
        unique = [i for i, r in enumerate(stands_for) if r == i]
        texts = [documents[i] for i in unique]
        analysed = [every[i] for i in unique]
        terms = self._memo.query_terms(query)
        bm25 = bm25_scores(terms, [a.weights for a in analysed])
        matched = sorted((j for j, b in enumerate(bm25) if b > 0), key=bm25.__getitem__, reverse=True)
        bm25_rank = {j: r for r, j in enumerate(matched)}
        client = _rrf_terms(len(unique), s.rrf_k, s.client_weight)
        lexical = _rrf_terms(len(unique), s.rrf_k, s.bm25_weight)
        fused = list(client)  # a document BM25 did not match gets the client's term alone
        for r, j in enumerate(matched):
            fused[j] = client[j] + lexical[r]
        if s.cross_lang_keep and s.keep_ratio > 0:
            floor = s.keep_ratio * max(fused)
            for j in _other_language(self._memo.query_lang(query), analysed, s.cross_lang_keep):
                fused[j] = max(fused[j], floor)
        order = sorted(range(len(unique)), key=fused.__getitem__, reverse=True)  # stable: ties keep j order
        tokens: Callable[[str], int] = self._count if s.trim_tokens > 0 else (lambda _: 0)
        chunk = self._memo.chunk
        candidates = [
            Candidate(
                chunk_id=str(unique[j]),
                chunk=chunk(texts[j], analysed[j].lang, tokens(texts[j])),
                fused=fused[j],
                dense=None,
                bm25=bm25[j] if j in bm25_rank else None,
                dense_rank=j,
                bm25_rank=bm25_rank.get(j),
            )
            for j in order
        ]
        selection = await self._cascade.select(query, candidates)
        for dup, rep in selection.twins.items():
            stands_for = [int(rep) if r == int(dup) else r for r in stands_for]
        forward = [int(sent.candidate.chunk_id) for sent in selection.sent]
        gone = {*forward, *map(int, selection.twins)}
        rest = [unique[j] for j in order if unique[j] not in gone]
        return ClientPlan(len(documents), forward, [x.text for x in selection.sent], rest, stands_for)

    async def _analysed(self, documents: Sequence[str]) -> list[Analysed]:
        """Every document's analysis: remembered ones from the memo, new ones analysed once each, in a
        worker thread when there are `OFF_LOOP_DOCUMENTS` or more (a client's first request, a re-indexed
        corpus), so that the event loop keeps serving other requests meanwhile."""
        known = self._memo.recall(documents)
        new = list(dict.fromkeys(doc for doc, a in zip(documents, known, strict=True) if a is None))
        if not new:
            return [a for a in known if a is not None]
        if len(new) >= OFF_LOOP_DOCUMENTS:
            analysed = await asyncio.to_thread(self._memo.analyse, new)
        else:
            analysed = self._memo.analyse(new)
        fresh = dict(zip(new, analysed, strict=True))
        return [a if a is not None else fresh[doc] for doc, a in zip(documents, known, strict=True)]


class ClientCascades:
    """The gateway's policies made runnable, one `ClientCascade` per policy on first use, sharing one BM25
    analyser; `for_call` picks the key's, else the course's, else the default (`GatewaySettings.policy`)."""

    def __init__(self, settings: GatewaySettings, count: TokenCount, is_paid: Callable[[str], bool]) -> None:
        self._settings = settings
        memo = DocumentMemo(Bm25Encoder(), settings.memo_documents)
        policies = [settings.cascade, *settings.keys.values(), *settings.courses.values()]
        self._built = {
            id(p): ClientCascade(
                p,
                count=count,
                memo=memo,
                gate=gate_reranker(p.gate, is_paid),
            )
            for p in policies
        }

    def for_call(self, key_id: str, course: str | None) -> ClientCascade:
        return self._built[id(self._settings.policy(key_id, course))]


def fit_search_units(plan: ClientPlan, documents: Sequence[str], billed_as: BilledAs) -> ClientPlan:
    """`plan` fitted to search units, `billed_as(text)` documents billed for each text sent.

    The cap: the forwarded documents are kept, in order, while they fit one unit (`SEARCH_UNIT_DOCUMENTS`
    billed documents; the first always goes, whatever it costs); the others join the front of the rest. The
    fill: the units they cost pay for up to 100 documents each (`search_units`), so the held-back ones that
    still fit, in pre-ranking order, go too, whole (trimming saves tokens, which a unit does not bill). A
    document that does not fit is passed over for the next that does. Duplicates stay collapsed: they are
    in neither list.
    """
    text_of = dict(zip(plan.forward, plan.texts, strict=True))
    forward: list[int] = []
    over: list[int] = []
    used = 0
    for i in plan.forward:
        size = billed_as(text_of[i])
        if forward and used + size > SEARCH_UNIT_DOCUMENTS:
            over.append(i)
        else:
            forward.append(i)
            used += size
    fill_to = search_units(used) * SEARCH_UNIT_DOCUMENTS
    rest: list[int] = []
    for i in over + plan.rest:
        text = text_of.get(i, documents[i])
        if used < fill_to and used + (size := billed_as(text)) <= fill_to:
            forward.append(i)
            text_of[i] = text
            used += size
        else:
            rest.append(i)
    return replace(plan, forward=forward, texts=[text_of[i] for i in forward], rest=rest)


def _with_blanks(plan: ClientPlan, blank: list[int]) -> ClientPlan:
    """A plan of the non-blank documents as one of every received document, the `blank` ones set aside."""
    received, aside = plan.received + len(blank), set(blank)
    kept = [i for i in range(received) if i not in aside]
    stands_for = list(range(received))
    for j, rep in enumerate(plan.stands_for):
        stands_for[kept[j]] = kept[rep]
    return ClientPlan(
        received,
        [kept[j] for j in plan.forward],
        plan.texts,
        [kept[j] for j in plan.rest],
        stands_for,
        blank,
    )


def _other_language(lang: Lang, analysed: Sequence[Analysed], most: int) -> list[int]:
    """The first `most` documents written only in the language a query in `lang` is not written in, in the
    client's order (none for a query that mixes the languages): those BM25 over the request cannot match."""
    if lang == "mixed":
        return []
    return list(islice((j for j, a in enumerate(analysed) if a.lang not in (lang, "mixed")), most))


@lru_cache(maxsize=64)
def _rrf_terms(n: int, k: int, weight: float) -> tuple[float, ...]:
    """`rrf_term` of ranks 0 … n-1: the same for every request of n documents under one policy."""
    return tuple(rrf_term(r, k, weight) for r in range(n))


def _chunk(text: str, lang: Lang, tokens: int) -> Chunk:
    """A client's document as the cascade's unit: no course, no source, no place in one (index 0; the
    candidate's id is its place in the request), its own language."""
    return Chunk(
        course="",
        source="",
        index=0,
        text=text,
        start=0,
        end=len(text),
        heading=(),
        lang=lang,
        content_hash="",
        file_hash="",
        tokens=tokens,
    )


def merge(plan: ClientPlan, response: RerankResponse) -> RerankResponse:
    """The backend's answer over the forwarded documents as an answer over every received one.

    Forwarded documents keep their scores; the held-back ones follow strictly below the lowest finite
    forwarded score, in pre-ranking order, on every scale: shrinking towards 0 when it is positive (so a 0–1
    wire such as Cohere's keeps its range), 1 apart below it when it is 0 or negative. A 0–1 wire shows
    those below 0 as 0 (`as_probabilities`): tied with a forwarded 0 in value, after it in the results'
    order. A duplicate gets its representative's score; blank documents stay unscored, ranked last, with
    the guard's warning. The usage is the backend's: only forwarded documents were sent and billed.
    """
    scores = [UNSCORED] * plan.received
    for i, score in zip(plan.forward, response.scores, strict=True):
        scores[i] = score
    finite = [x for x in response.scores if math.isfinite(x)]
    if finite:
        lowest, m = min(finite), len(plan.rest)
        for j, i in enumerate(plan.rest):
            scores[i] = lowest * (m - j) / (m + 1) if lowest > 0 else lowest - (j + 1)
    for i, rep in enumerate(plan.stands_for):
        if rep != i:
            scores[i] = scores[rep]
    if not plan.blank:
        return replace(response, scores=tuple(scores))
    warning = f"{len(plan.blank)} blank documents ranked last, not sent"
    usage = replace(response.usage, warnings=(*response.usage.warnings, warning))
    return replace(response, scores=tuple(scores), usage=usage)
