"""leanrank: course RAG retrieval that sends the paid reranker as little as possible.

One door in: `Pipeline` (ingest a course, search it), configured by `Settings`; domain types and the
error tree are re-exported here so callers need no private imports.
"""

from leanrank.cost.ledger import RequestConflictError
from leanrank.errors import (
    BackendError,
    ConfigError,
    DependencyError,
    DocumentError,
    EmptyQueryError,
    IndexLockedError,
    InputError,
    LeanrankError,
    QueryTooLongError,
    StoreError,
    UnknownCourseError,
)
from leanrank.pipeline import FileReport, IngestReport, Pipeline, SearchResult
from leanrank.rerank.base import Reranker, RerankResponse, Usage
from leanrank.settings import Settings
from leanrank.types import Chunk, Hit

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "Chunk",
    "ConfigError",
    "DependencyError",
    "DocumentError",
    "EmptyQueryError",
    "FileReport",
    "Hit",
    "IndexLockedError",
    "IngestReport",
    "InputError",
    "LeanrankError",
    "Pipeline",
    "QueryTooLongError",
    "RequestConflictError",
    "RerankResponse",
    "Reranker",
    "SearchResult",
    "Settings",
    "StoreError",
    "UnknownCourseError",
    "Usage",
]
