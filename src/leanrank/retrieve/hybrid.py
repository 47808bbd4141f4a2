"""The hybrid first stage: encode the query both ways, fuse in the engine, then trim the list.

Besides the dense and BM25 lists, one dense list per language (chunks containing Russian, chunks containing
English) joins the fusion when `lang_weight` > 0: multilingual embeddings score text in the query's own
language higher, so a Russian question's best English passage sits below many Russian ones in one dense list,
but near the top of the English one — the only way its answer is found when the course has it in English only.
That list, the one of the language the query is *not* written in, weighs `cross_lang_weight`. With a course
lexicon (`leanrank.retrieve.lexicons`) and `translate_weight` > 0, a second BM25 list searches the query's
words translated into the other language.

Dedup and the per-source cap run after fusion, on an over-fetched list, so that removing candidates
never leaves fewer than `depth` when enough distinct ones exist.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from leanrank.encode.base import DenseEncoder, Matrix, SparseEncoder
from leanrank.index.base import NO_TERMS, Candidate, HybridQuery, Steer, Store
from leanrank.ingest.lang import PLAIN_LANGS, detect_lang, lang_filter
from leanrank.retrieve.lexicons import CourseLexicons
from leanrank.settings import RetrieveSettings
from leanrank.types import Lang

_OVERFETCH = 3
# One list alone: the others are weighted 0, so their hits only trail the fused list with score 0.
_ONE_LIST = {"dense": (1.0, 0.0, 0.0, 0.0), "sparse": (0.0, 1.0, 0.0, 0.0)}


def normalised_hash(text: str) -> str:
    """Hash of the text up to case and whitespace: two chunks with the same hash say the same thing.

    `str.split()` splits on the whitespace `\\s` matches, several times faster than a regex substitution
    (the gateway hashes every document a client sends)."""
    return hashlib.sha256(" ".join(text.split()).casefold().encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class RetrieveFilter:
    """What a search is restricted to; the course is mandatory so tenants never mix."""

    course: str
    langs: tuple[Lang, ...] = ()
    heading_prefix: tuple[str, ...] = ()


class HybridRetriever:
    """Dense + BM25 prefetches fused by RRF inside the store, then dedup and a per-source cap."""

    def __init__(
        self,
        store: Store,
        dense: DenseEncoder,
        sparse: SparseEncoder,
        settings: RetrieveSettings,
        *,
        lexicons: CourseLexicons | None = None,
    ) -> None:
        self._store = store
        self._dense = dense
        self._sparse = sparse
        self.settings = settings
        self.lexicons = lexicons

    def retrieve(
        self,
        query: str,
        where: RetrieveFilter,
        *,
        depth: int | None = None,
        vector: Matrix | None = None,
        with_vectors: bool = False,
        steer: Steer | None = None,
    ) -> list[Candidate]:
        """The fused, trimmed first-stage list; `vector` is the query's dense embedding when the caller has
        already computed it (the result cache needs it first), `with_vectors` returns the hits' vectors,
        `steer` moves the dense lists toward and away from examples (`leanrank.retrieve.steering`)."""
        s = self.settings
        request = self.request(
            query, where, depth=depth, vector=vector, with_vectors=with_vectors, steer=steer
        )
        found = self._store.hybrid(request)
        if s.mode != "hybrid":
            found = [c for c in found if (c.dense_rank if s.mode == "dense" else c.bm25_rank) is not None]
        return trim(found, depth=depth or s.depth, dedup=s.dedup, max_per_source=s.max_per_source)

    def request(
        self,
        query: str,
        where: RetrieveFilter,
        *,
        depth: int | None = None,
        vector: Matrix | None = None,
        with_vectors: bool = False,
        steer: Steer | None = None,
    ) -> HybridQuery:
        """The engine query `retrieve` runs (arguments as there): both query encodings, every list and its
        weight, over-fetched when trimming follows. Public so the engine alone can be timed
        (`bench/retrieval.py`)."""
        s = self.settings
        want = depth or s.depth
        trims = s.dedup or s.max_per_source > 0
        dense_w, sparse_w, lang_w, cross_w = _ONE_LIST.get(
            s.mode, (s.dense_weight, s.sparse_weight, s.lang_weight, s.cross_lang_weight)
        )
        asked = {lang for group in lang_filter(where.langs) for lang in group}
        legs = (
            tuple(lang for lang in PLAIN_LANGS if not asked or lang in asked)
            if lang_w > 0 or cross_w > 0
            else ()
        )
        translated = NO_TERMS
        if s.mode == "hybrid" and s.translate_weight > 0 and self.lexicons is not None:
            translated = self.lexicons.get(where.course).translate(
                query,
                self.lexicons.sparse,
                self._dense,
                threshold=s.translate_threshold,
                per_word=s.translate_per_word,
                margin=s.translate_margin,
            )
        return HybridQuery(
            course=where.course,
            dense=self._dense.embed_query(query) if vector is None else vector,
            sparse=self._sparse.embed_query(query),
            limit=want * _OVERFETCH if trims else want,
            prefetch=max(s.prefetch, want),
            rrf_k=s.rrf_k,
            weights=(dense_w, sparse_w, *_leg_weights(query, legs, lang_w, cross_w)),
            langs=where.langs,
            lang_legs=legs,
            heading_prefix=where.heading_prefix,
            min_score=s.min_score,
            with_vectors=with_vectors,
            steer=steer,
            translated=translated,
            translated_weight=s.translate_weight,
            translated_skip=_own_lang(query),
        )


def _leg_weights(query: str, legs: Sequence[Lang], own: float, other: float) -> tuple[float, ...]:
    """Weights of the language legs: `other` for the language the query is not written in (where an answer
    the dense list buries is found), `own` for the query's; `own` for both when the query mixes them."""
    lang = detect_lang(query)
    return tuple(own if lang in ("mixed", leg) else other for leg in legs)


def _own_lang(query: str) -> Lang | None:
    """The query's language when it is written in one (`ru`/`en`); None for a mixed one."""
    lang = detect_lang(query)
    return None if lang == "mixed" else lang


def trim(candidates: Sequence[Candidate], *, depth: int, dedup: bool, max_per_source: int) -> list[Candidate]:
    """Keep the best `depth` candidates, skipping repeated texts and sources over their cap."""
    seen: set[str] = set()
    per_source: dict[str, int] = {}
    out: list[Candidate] = []
    for cand in candidates:
        if len(out) == depth:
            break
        if dedup:
            key = normalised_hash(cand.chunk.text)
            if key in seen:
                continue
            seen.add(key)
        if max_per_source:
            n = per_source.get(cand.chunk.source, 0)
            if n >= max_per_source:
                continue
            per_source[cand.chunk.source] = n + 1
        out.append(cand)
    return out
