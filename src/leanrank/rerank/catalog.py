"""Rerankers by name, from one typed catalog: `leanrank backends` prints it, `reranker(name)` builds one.

A name is `KIND:TARGET[?option=value&...]`, e.g. `cohere:rerank-v3.5?timeout_s=10`,
`local:/models/bge-reranker-v2-m3?runtime=onnx&max_length=1024`, `tei:http://gpu:8080`; names joined by
`|` form a fallback chain (`jina:jina-reranker-v2-base-multilingual | local:/models/bge`). Options are
validated per kind, so a typo is an error rather than a silently ignored setting. Options for long
inputs apply to every kind: `max_doc_tokens`, `long_docs=maxpool|truncate`, `overlap_tokens`,
`max_windows`, `max_query_tokens`; HTTP providers cap documents and queries at their documented limits by
default. Keys and base URLs of HTTP providers come from `LEANRANK_<KIND>_API_KEY` / `_BASE_URL`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from leanrank.cost._names import chain_links
from leanrank.cost.tokens import counter_for
from leanrank.encode.e5 import xlmr_token_count
from leanrank.errors import ConfigError
from leanrank.rerank.base import BilledUnit, Reranker
from leanrank.rerank.fallback import FallbackReranker
from leanrank.rerank.guard import guard
from leanrank.rerank.identity import IdentityReranker
from leanrank.rerank.providers import PROVIDERS, HttpReranker
from leanrank.rerank.windows import LongDocs, TokenCount, WindowedReranker, WindowPolicy
from leanrank.retry import RetryPolicy

Where = Literal["builtin", "local", "self-hosted", "api"]


@dataclass(frozen=True, slots=True)
class BackendKind:
    """One entry of the catalog: what a `KIND:` name builds and what it needs."""

    kind: str
    example: str
    where: Where
    billed_unit: BilledUnit
    summary: str
    extras: tuple[str, ...] = ()


CATALOG: dict[str, BackendKind] = {
    entry.kind: entry
    for entry in (
        BackendKind("identity", "identity", "builtin", "none", "keeps the first-stage order; free"),
        BackendKind(
            "local",
            "local:BAAI/bge-reranker-v2-m3",
            "local",
            "tokens",
            "XLM-R cross-encoders and Qwen3-Reranker in-process (ONNX Runtime or torch, CPU/GPU)",
            ("onnx", "torch"),
        ),
        BackendKind("tei", "tei:http://127.0.0.1:8080", "self-hosted", "tokens", "text-embeddings-inference"),
        BackendKind(
            "infinity",
            "infinity:BAAI/bge-reranker-v2-m3",
            "self-hosted",
            "characters",
            "infinity server; usage counts characters unless run with --lengths-via-tokenize",
        ),
        BackendKind("cohere", "cohere:rerank-v3.5", "api", "search_units", "Cohere v2 rerank"),
        BackendKind("jina", "jina:jina-reranker-v2-base-multilingual", "api", "tokens", "Jina rerank"),
        BackendKind("voyage", "voyage:rerank-2.5-lite", "api", "tokens", "Voyage rerank"),
        BackendKind("mixedbread", "mixedbread:mxbai-rerank-large-v2", "api", "tokens", "Mixedbread"),
        BackendKind(
            "siliconflow", "siliconflow:Qwen/Qwen3-Reranker-0.6B", "api", "tokens", "SiliconFlow rerank"
        ),
        BackendKind(
            "deepinfra", "deepinfra:Qwen/Qwen3-Reranker-0.6B", "api", "tokens", "DeepInfra inference"
        ),
        BackendKind(
            "fireworks",
            "fireworks:accounts/fireworks/models/qwen3-reranker-8b",
            "api",
            "tokens",
            "Fireworks rerank",
        ),
    )
}


class _Options(BaseModel):
    """Options every kind accepts: how long documents and queries are handled on the client."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_doc_tokens: int | None = Field(None, ge=1)
    long_docs: LongDocs = "truncate"
    overlap_tokens: int = Field(0, ge=0)
    max_windows: int | None = Field(None, ge=1)
    max_query_tokens: int | None = Field(None, ge=1)


class _HttpOptions(_Options):
    timeout_s: float = Field(30.0, gt=0)
    max_docs: int | None = Field(None, ge=1)
    max_attempts: int = Field(4, ge=1)
    billed_unit: BilledUnit | None = None


class _LocalOptions(_Options):
    runtime: Literal["auto", "torch", "onnx"] = "auto"
    device: str = "auto"
    max_length: int = Field(512, ge=8)
    normalize: bool = False
    batch_size: int = Field(16, ge=1)
    local_files_only: bool = True
    family: Literal["auto", "xlmr", "qwen3"] = "auto"
    instruction: str | None = None


def reranker(name: str) -> Reranker:
    """The reranker called `name` (see the module docstring); an unknown kind says how to list the known.

    Behind `guard.guard`: blank documents are never sent and non-finite scores rank last, whatever the kind.
    """
    links = chain_links(name)
    if len(links) > 1:
        return guard(FallbackReranker([_single(link) for link in links]))
    return guard(_single(links[0]))


def _single(name: str) -> Reranker:
    spec, _, query = name.partition("?")
    kind, sep, target = spec.partition(":")
    entry = CATALOG.get(kind)
    if entry is None or (kind != "identity" and not sep) or (kind == "identity" and sep):
        raise ConfigError(
            f"unknown reranker {name!r}: expected KIND:TARGET with KIND one of "
            f"{', '.join(CATALOG)}; `leanrank backends` lists them with examples"
        )
    raw = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    if kind == "identity":
        _parse(_Options, raw, name)
        return IdentityReranker()
    if kind == "local":
        local = _parse(_LocalOptions, raw, name)
        return _local(target, local)
    http = _parse(_HttpOptions, raw, name)
    provider = PROVIDERS[kind]
    if kind == "tei":
        model, base_url = "", target or None
    else:
        model, base_url = target, None
    counter = counter_for(f"{kind}:{model}")
    inner = HttpReranker(
        provider,
        model,
        base_url=base_url,
        timeout_s=http.timeout_s,
        retry=RetryPolicy(max_attempts=http.max_attempts),
        max_docs=http.max_docs,
        billed_unit=http.billed_unit,
        count=counter.count,
        count_source=counter.source,
    )
    return _windowed(
        inner,
        http,
        default_doc=provider.max_doc_tokens,
        default_query=provider.max_query_tokens,
        # Caps guard against paying for text the server drops; another family's count is close enough.
        count=counter.count if counter.source == "tokenizer" else xlmr_token_count,
    )


_O = TypeVar("_O", bound=_Options)


def _parse(model: type[_O], raw: dict[str, str], name: str) -> _O:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        option = ".".join(str(p) for p in first["loc"])
        known = ", ".join(model.model_fields)
        raise ConfigError(f"reranker {name!r}: option {option}: {first['msg']} (options: {known})") from None


def _local(target: str, options: _LocalOptions) -> Reranker:
    from leanrank.rerank.local import local_reranker

    if not target:
        raise ConfigError("local reranker needs a model directory or hub id: local:PATH_OR_ID")
    model = local_reranker(
        Path(target) if Path(target).exists() else target,
        runtime=options.runtime,
        device=options.device,
        max_length=options.max_length,
        normalize=options.normalize,
        batch_size=options.batch_size,
        local_files_only=options.local_files_only,
        family=options.family,
        instruction=options.instruction,
    )
    return _windowed(model, options, default_doc=None, default_query=None, count=model.token_count)


def _windowed(
    inner: Reranker,
    options: _Options,
    *,
    default_doc: int | None,
    default_query: int | None,
    count: TokenCount,
) -> Reranker:
    max_doc = options.max_doc_tokens or default_doc
    max_query = options.max_query_tokens or default_query
    if max_doc is None and max_query is None:
        return inner
    policy = WindowPolicy(
        # A query-only cap still needs a document budget: one large enough never to split.
        max_tokens=max_doc or 1 << 30,
        overlap_tokens=options.overlap_tokens,
        mode=options.long_docs,
        max_windows=options.max_windows,
        max_query_tokens=max_query,
    )
    return WindowedReranker(inner, policy, count)


def catalog_rows() -> list[dict[str, Any]]:
    """The catalog as plain rows, for `leanrank backends` (table or JSON)."""
    rows = []
    for entry in CATALOG.values():
        provider = PROVIDERS.get(entry.kind)
        rows.append(
            {
                "kind": entry.kind,
                "example": entry.example,
                "where": entry.where,
                "billed_unit": entry.billed_unit,
                "max_docs_per_request": provider.max_docs if provider else None,
                "max_doc_tokens": provider.max_doc_tokens if provider else None,
                "env": _env_hint(provider.env_prefix, provider.needs_key) if provider else None,
                "extras": list(entry.extras),
                "summary": entry.summary,
            }
        )
    return rows


def _env_hint(prefix: str, needs_key: bool) -> str:
    return f"{prefix}_API_KEY, {prefix}_BASE_URL" if needs_key else f"{prefix}_BASE_URL"
