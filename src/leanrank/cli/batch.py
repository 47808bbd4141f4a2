"""`leanrank rerank-batch`: many queries, each with its documents, reranked in one call (offline jobs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from leanrank.aio import run_sync
from leanrank.cli.errors import cli_errors
from leanrank.cli.rerank import json_lines, refuse_repeated_ids
from leanrank.errors import InputError
from leanrank.rerank.base import as_finite, is_blank, rank_order, usage_json
from leanrank.rerank.batch import DEFAULT_CONCURRENCY, rerank_many
from leanrank.rerank.catalog import reranker

REQUEST_FIELDS = frozenset({"id", "query", "documents"})


def read_requests(path: Path) -> list[tuple[str, str, list[str]]]:
    """JSON lines of `{"id": ..., "query": ..., "documents": [...]}` (strings or `{"text": ...}`); `id`
    defaults to the line number and must differ from every other line's. Errors name the line; another field
    is one (a typo must not vanish)."""
    requests = []
    ids = []  # (line number, id as written)
    for n, obj in json_lines(path, "requests"):
        if isinstance(obj, dict) and (unknown := [key for key in obj if key not in REQUEST_FIELDS]):
            raise InputError(
                f"{path}:{n}: unknown field {json.dumps(unknown[0], ensure_ascii=False)}; "
                'a request has "id", "query" and "documents"'
            )
        docs = obj.get("documents") if isinstance(obj, dict) else None
        if not isinstance(obj, dict) or not isinstance(obj.get("query"), str) or not isinstance(docs, list):
            raise InputError(
                f'{path}:{n}: expected a JSON object with a string "query" and a "documents" list'
            )
        if is_blank(obj["query"]):
            raise InputError(f"{path}:{n}: the query is empty")
        texts = [d if isinstance(d, str) else d.get("text") if isinstance(d, dict) else None for d in docs]
        if not all(isinstance(t, str) for t in texts):
            raise InputError(f'{path}:{n}: each document is a string or an object with a string "text"')
        rid = str(obj.get("id", n))
        ids.append((n, rid))
        requests.append((rid, obj["query"], [str(t) for t in texts]))
    if not requests:
        raise InputError(f"{path}: no requests")
    refuse_repeated_ids(path, ids, "request")
    return requests


def rerank_batch_command(
    backend: Annotated[str, typer.Option("--backend", "-b", help="Reranker name; see `leanrank backends`.")],
    requests_file: Annotated[
        Path,
        typer.Option(
            "--requests",
            help='JSON lines of {"id", "query", "documents": [...]}; ids unique (default: the line number).',
        ),
    ],
    top_n: Annotated[
        int | None, typer.Option("--top-n", min=1, help="Keep only each query's best N.")
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option("--concurrency", min=1, help="Calls at once to a backend without a batch API."),
    ] = DEFAULT_CONCURRENCY,
) -> None:
    """Rerank many queries in one call: a local model scores them in one pass, an API gets concurrent calls.
    Prints one JSON line per request: its id, ranking and usage."""
    with cli_errors():
        requests = read_requests(requests_file)
        model = reranker(backend)
        responses = run_sync(
            lambda: rerank_many(model, [(q, docs) for _, q, docs in requests], concurrency=concurrency)
        )
    for (rid, _, _), response in zip(requests, responses, strict=True):
        scores = as_finite(response.scores, response.scale)
        line: dict[str, Any] = {
            "id": rid,
            "backend": response.served_by or model.name,
            "ranking": [{"index": i, "score": scores[i]} for i in rank_order(response.scores, top_n)],
            "usage": usage_json(response.usage),
        }
        sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
