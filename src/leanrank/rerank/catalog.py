"""Rerankers by name. The backends of the reranker layer register here; `identity` is the offline default.

HTTP providers are named `PROVIDER:MODEL` (`cohere:rerank-v3.5`); TEI serves one model, so it is named by
its URL (`tei:http://gpu:8080`, or `tei:` with `LEANRANK_TEI_BASE_URL` set). Keys and base URLs come from
`LEANRANK_<PROVIDER>_API_KEY` / `LEANRANK_<PROVIDER>_BASE_URL`.
"""

from __future__ import annotations

from leanrank.errors import ConfigError
from leanrank.rerank.base import Reranker
from leanrank.rerank.identity import IdentityReranker
from leanrank.rerank.providers import PROVIDERS, HttpReranker

KNOWN = ("identity", "tei:URL", *(f"{name}:MODEL" for name in PROVIDERS if name != "tei"))


def reranker(name: str) -> Reranker:
    """The reranker called `name`; an unknown name lists the known ones."""
    if name == "identity":
        return IdentityReranker()
    provider, sep, rest = name.partition(":")
    spec = PROVIDERS.get(provider)
    if sep and spec is not None:
        if provider == "tei":
            return HttpReranker(spec, base_url=rest or None)
        return HttpReranker(spec, rest)
    raise ConfigError(f"unknown reranker {name!r}; known: {', '.join(KNOWN)}")
