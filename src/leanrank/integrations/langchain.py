"""`LeanrankCompressor`: any leanrank reranker as a LangChain document compressor.

Plugs into `ContextualCompressionRetriever` or any chain that takes a `BaseDocumentCompressor`. Needs the
extra `leanrank[langchain]`; without it, importing this module raises `DependencyError` naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from leanrank.aio import run_sync as _run_sync
from leanrank.errors import DependencyError
from leanrank.integrations import USAGE_KEY, _best, _resolve, _usage_record
from leanrank.rerank.base import Reranker

try:
    from langchain_core.callbacks import Callbacks
    from langchain_core.documents import BaseDocumentCompressor, Document
except ImportError as exc:
    raise DependencyError("langchain-core", "langchain") from exc

__all__ = ["SCORE_KEY", "USAGE_KEY", "LeanrankCompressor"]

SCORE_KEY = "relevance_score"
"""The metadata key LangChain's own rerank compressors use for the score."""


class LeanrankCompressor(BaseDocumentCompressor):
    """Keeps the `top_n` documents (all if None) the reranker scores best, best first.

    Each kept document is a copy of the input one with `metadata[SCORE_KEY]` (the reranker's score) and
    `metadata[USAGE_KEY]` (the whole call's usage, see `leanrank.integrations`). `reranker` takes a
    `Reranker` or a catalog name such as `"cohere:rerank-v3.5"`. The documents' `page_content` is what is
    scored and billed. Empty input returns `[]` without calling (or paying) the reranker.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    reranker: Reranker
    top_n: int | None = Field(default=3, ge=1)

    @field_validator("reranker", mode="before")
    @classmethod
    def _by_name(cls, value: object) -> object:
        return _resolve(value)

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Sync wrapper of `acompress_documents`; safe to call while an event loop is running."""
        return _run_sync(lambda: self.acompress_documents(documents, query, callbacks))

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Native async: the base class would run the sync method in a thread."""
        docs = list(documents)
        if not docs:
            return []
        response = await self.reranker.rerank(query, [doc.page_content for doc in docs])
        usage = _usage_record(self.reranker, response)
        return [_scored(docs[i], response.scores[i], usage) for i in _best(response.scores, self.top_n)]


def _scored(doc: Document, score: float, usage: dict[str, Any]) -> Document:
    """A copy of `doc` with its score and the call's usage; `model_copy` keeps the class and the id."""
    return doc.model_copy(update={"metadata": {**doc.metadata, SCORE_KEY: score, USAGE_KEY: dict(usage)}})
