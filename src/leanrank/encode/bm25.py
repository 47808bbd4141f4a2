"""BM25 sparse vectors from Qdrant's own analyser (the `Bm25` model shipped in `qdrant-edge-py`).

Each chunk is analysed with the stemmer and stopwords of its language; a `mixed` chunk, and a query whose
script is mixed, is analysed with both and the term sets merged. Term ids are hashes of the stemmed token,
so Russian and English terms share one index space without colliding in practice. IDF is applied by the
engine (the `bm25` sparse vector is created with the IDF modifier), so vectors hold term-frequency weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from leanrank.encode.base import SparseVec
from leanrank.ingest.lang import detect_lang
from leanrank.types import Lang

_LANGUAGE = {"ru": "russian", "en": "english"}


class Bm25Encoder:
    """Per-language BM25 analysis; `k`, `b` and `avg_len` are the usual Okapi parameters."""

    def __init__(self, k: float = 1.2, b: float = 0.75, avg_len: float = 64.0) -> None:
        import qdrant_edge

        self.name = f"qdrant-bm25(k={k},b={b},avg_len={avg_len})"
        self._models: dict[str, Any] = {
            code: qdrant_edge.Bm25(qdrant_edge.Bm25Config(k=k, b=b, avg_len=avg_len, language=language))
            for code, language in _LANGUAGE.items()
        }

    def _analyse(self, text: str, lang: Lang, *, query: bool) -> SparseVec:
        codes = ("ru", "en") if lang == "mixed" else (lang,)
        merged: dict[int, float] = {}
        for code in codes:
            model = self._models[code]
            vec = model.embed_query(text) if query else model.embed_document(text)
            for index, value in zip(vec.indices, vec.values, strict=True):
                merged[index] = max(value, merged.get(index, 0.0))
        ordered = sorted(merged.items())
        return SparseVec(tuple(i for i, _ in ordered), tuple(v for _, v in ordered))

    def embed_documents(self, texts: Sequence[str], langs: Sequence[Lang]) -> list[SparseVec]:
        return [self._analyse(text, lang, query=False) for text, lang in zip(texts, langs, strict=True)]

    def embed_query(self, text: str) -> SparseVec:
        return self._analyse(text, detect_lang(text), query=True)

    def token_count(self, text: str) -> int:
        return len(self._analyse(text, detect_lang(text), query=False).indices)
