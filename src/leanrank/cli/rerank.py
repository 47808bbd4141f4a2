"""`leanrank rerank` and `leanrank backends`: try any backend on your own documents and see what it bills."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from leanrank.aio import run_sync
from leanrank.checks import non_text
from leanrank.cli.console import err, out, styled
from leanrank.cli.errors import cli_errors
from leanrank.errors import InputError
from leanrank.rerank.base import RerankResponse, as_finite, is_blank, rank_order, usage_json
from leanrank.rerank.catalog import catalog_rows, reranker


@dataclass(frozen=True, slots=True)
class Doc:
    id: str
    text: str


def json_lines(path: Path, what: str) -> Iterator[tuple[int, Any]]:
    """(line number, decoded value) of each non-blank line of `path`; InputError naming the file (and the
    line) when it cannot be read, a line is not JSON or holds a string that is not text (`checks.non_text`).
    `what` names the lines in the read error."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read {what} ({exc})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"{path}:{n}: not valid JSON") from None
        why = non_text(value, "the line")
        if why is not None:
            raise InputError(f"{path}:{n}: {why}")
        yield n, value


def refuse_repeated_ids(path: Path, ids: Iterable[tuple[int, str]], what: str) -> None:
    """InputError naming both lines when two (line number, id) pairs share an id as the output writes it
    (`2` and `"2"` are one): callers join results by id. `what` names one line's item in the message."""
    lines_by_id: dict[str, int] = {}
    for n, rid in ids:
        if rid in lines_by_id:
            shown = json.dumps(rid, ensure_ascii=False)
            raise InputError(
                f"{path}:{n}: id {shown} is already line {lines_by_id[rid]}'s; each {what} needs its own"
            )
        lines_by_id[rid] = n


def read_docs(path: Path) -> list[Doc]:
    """JSON lines of `{"text": ..., "id": ...}` (`id` defaults to the line number, and must be unique);
    errors name the line."""
    docs, lines = [], []
    for n, obj in json_lines(path, "documents"):
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise InputError(f'{path}:{n}: expected a JSON object with a string "text"')
        docs.append(Doc(str(obj.get("id", n)), obj["text"]))
        lines.append(n)
    if not docs:
        raise InputError(f"{path}: no documents")
    refuse_repeated_ids(path, zip(lines, (d.id for d in docs), strict=True), "document")
    return docs


def rerank_command(
    backend: Annotated[str, typer.Option("--backend", "-b", help="Reranker name; see `leanrank backends`.")],
    query: Annotated[str, typer.Option("--query", "-q", help="The query to rank the documents for.")],
    docs: Annotated[Path, typer.Option("--docs", help='JSON lines: {"text": ..., "id": ...} per line.')],
    top_n: Annotated[int | None, typer.Option("--top-n", min=1, help="Show only the best N.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object: scores and usage.")] = False,
) -> None:
    """Rerank a file of documents with one backend; print scores and the usage record."""
    with cli_errors():
        if is_blank(query):
            raise InputError("the query is empty")
        documents = read_docs(docs)
        model = reranker(backend)
        response = run_sync(lambda: model.rerank(query, [d.text for d in documents]))
    order = rank_order(response.scores, top_n)
    scores = as_finite(response.scores, response.scale)  # unscored documents: the scale's lowest
    if as_json:
        result = _result_json(model.name, documents, response, scores, order)
        sys.stdout.write(json.dumps(result, ensure_ascii=False))
        sys.stdout.write("\n")
        return
    table = Table(title=styled(query, (f"  ({response.served_by or model.name})", "dim")))
    for col in ("#", "score", "id", "text"):
        table.add_column(col, overflow="fold")
    for rank, i in enumerate(order, 1):
        snippet = " ".join(documents[i].text.split())
        cut = snippet[:120] + ("…" if len(snippet) > 120 else "")
        table.add_row(str(rank), f"{scores[i]:.4f}", documents[i].id, cut)
    out.print(table)
    fields = ", ".join(f"{k}={v}" for k, v in usage_json(response.usage).items() if v not in (None, []))
    out.print(f"usage: {fields}", highlight=False)
    for failure in response.failed:
        err.print(styled(("fell back:", "yellow"), f" {failure}"))


def _result_json(
    name: str, documents: list[Doc], response: RerankResponse, scores: list[float], order: list[int]
) -> dict[str, Any]:
    return {
        "backend": response.served_by or name,
        "scores": scores,
        "ranking": [{"index": i, "id": documents[i].id, "score": scores[i]} for i in order],
        "usage": usage_json(response.usage),
        "failed": list(response.failed),
    }


def backends_command(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """List the reranker kinds: name format, where they run, billing unit, limits, configuration."""
    rows = catalog_rows()
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table("kind", "example", "where", "billed", "docs/req", "doc tokens", "extra")
    for row in rows:
        table.add_row(
            row["kind"],
            row["example"],
            row["where"],
            row["billed_unit"],
            str(row["max_docs_per_request"] or "—"),
            str(row["max_doc_tokens"] or "—"),
            "|".join(row["extras"]) or "—",
        )
    out.print(table)
    out.print(
        "Names: KIND:TARGET[?option=value&...]; join with ' | ' for a fallback chain. Keys and URLs: "
        "LEANRANK_<KIND>_API_KEY, LEANRANK_<KIND>_BASE_URL. "
        "Options for long inputs: max_doc_tokens, long_docs=maxpool|truncate, overlap_tokens, "
        "max_windows, max_query_tokens."
    )
