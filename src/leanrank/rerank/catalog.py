"""Rerankers by name. The backends of the reranker layer register here; `identity` is the offline default."""

from __future__ import annotations

from leanrank.errors import ConfigError
from leanrank.rerank.base import Reranker
from leanrank.rerank.identity import IdentityReranker

KNOWN = ("identity",)


def reranker(name: str) -> Reranker:
    """The reranker called `name`; an unknown name lists the known ones."""
    if name == "identity":
        return IdentityReranker()
    raise ConfigError(f"unknown reranker {name!r}; known: {', '.join(KNOWN)}")
