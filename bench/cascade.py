"""Benchmark (not part of the test suite): rerank less — the cascade and the caches against `naive`.

Part 1, the cascade, on `xquad:ru+en+ntrex:SPLIT` through the evaluation harness: what each configuration
hands the paid reranker (tokens per query, query counted once) and whether the chunk holding the answer
is among it with its answer span (candidate recall), both as a ratio to `naive` (dense top-100, whole
chunks); and the p95 time of the cheap stages (the `cascade` stage; the first stage is the same hybrid
query for every cascade configuration). Targets: ≤ 10% of naive's tokens at ≥ 99% of its recall, and
≤ 20 ms added p95.

Part 2, the caches, on a question stream built from the same split's questions (`leanrank.eval.stream`:
Zipf popularity, repeats, rewordings and translations): the default pipeline with the score cache and the
result cache on (both SQLite), in front of a stand-in paid reranker that counts the tokens it is sent.
Paid tokens per request are compared with what naive would have sent for the same requests (no cache:
naive's tokens for that question every time). Target: ≤ 5% of naive. The result cache's answers are
checked against a cache-less run: a cached answer counts as wrong when its first hit differs.

The presets were tuned on `--split tune`; the README reports `--split test` (the default).

    .venv/bin/python bench/cascade.py [--split test] [--stream 3000] [--shared ../shared] [--out bench/out]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness import run_configs
from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.eval.configs import PRESETS
from leanrank.eval.datasets import Dataset, load_dataset
from leanrank.eval.metrics import percentiles
from leanrank.eval.report import summarise
from leanrank.eval.runner import ConfigRun
from leanrank.eval.stream import StreamQuery, question_stream, stream_stats
from leanrank.index.edge import EdgeStore
from leanrank.pipeline import RESULT_CACHE, Pipeline
from leanrank.rerank.base import RerankResponse, Usage
from leanrank.rerank.cache import with_cache
from leanrank.settings import CascadeSettings, Settings

CONFIGS = "naive,default,cheap,best,hybrid-20"


class CountingReranker:
    """Stands in for a paid API: keeps the fusion order and counts every token it is sent."""

    name = "counting"

    def __init__(self, count: Callable[[str], int]) -> None:
        self._count = count
        self.tokens = 0

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        count = self._count
        sent = count(query) + sum(count(d) for d in documents)
        self.tokens += sent
        scores = tuple(-float(i) for i in range(len(documents)))  # keep the order it was given
        return RerankResponse(scores, Usage(0, sent, sent, "tokens", "tokenizer", 0.0, len(documents)))


def cascade_part(
    data: Dataset, args: argparse.Namespace, dense: E5SmallEncoder, sparse: Bm25Encoder
) -> tuple[dict[str, Any], ConfigRun]:
    """The harness over every configuration: one row each, and naive's run for the stream's baseline."""
    result = run_configs(data, args.configs, dense, sparse, args.out / "eval-index")
    report = summarise(result)
    by_name = {c.name: c for c in report.configs}
    naive = by_name["naive"]
    rows = []
    for c in report.configs:
        run = next(r for r in result.runs if r.name == c.name)
        rows.append(
            {
                "config": c.name,
                "ndcg@10": c.quality["ndcg@10"],
                "candidate_recall": c.candidate_recall,
                "recall_vs_naive": (c.candidate_recall or 0) / (naive.candidate_recall or 1),
                "docs_per_query": c.docs_per_query,
                "tokens_per_query": c.tokens_per_query,
                "tokens_vs_naive": c.tokens_per_query / naive.tokens_per_query,
                "answer_survives": survival(run, data.qrels),
                "cascade_p95_ms": c.latency_ms["cascade"]["p95"],
            }
        )
    naive_run = next(r for r in result.runs if r.name == "naive")
    return {"judged_queries": report.judged_queries, "rows": rows}, naive_run


def survival(run: ConfigRun, qrels: Mapping[str, Mapping[str, int]]) -> float | None:
    """Share of the answer chunks sent as a window that kept the answer span; None when nothing is trimmed."""
    if run.config.cascade.trim_tokens <= 0:
        return None
    sent = [s.answer_survives for o in run.outcomes for s in o.sent if s.doc_id in qrels.get(o.qid, {})]
    return sum(sent) / max(len(sent), 1)


async def stream_part(
    data: Dataset, args: argparse.Namespace, dense: E5SmallEncoder, sparse: Bm25Encoder, naive: ConfigRun
) -> dict[str, Any]:
    """The default pipeline over the question stream without caches, then with both; tokens paid for."""
    stream = question_stream(data, args.stream, seed=0)
    naive_tokens = {o.qid: o.query_tokens + sum(s.tokens for s in o.sent) for o in naive.outcomes}
    default = PRESETS["default"]
    work = args.out / "stream"
    shutil.rmtree(work, ignore_errors=True)
    store = EdgeStore(args.out / "eval-index" / "index", dim=dense.dim, encoder=dense.name)
    try:
        plain_settings = default.settings(Settings(data_dir=work / "plain"))
        plain = await run_stream(stream, plain_settings, dense, sparse, store, cache=False)
        cached_settings = default.settings(Settings(data_dir=work / "cached"))
        cascade = CascadeSettings(**{**cached_settings.cascade.model_dump(), "result_cache": "sqlite"})
        cached_settings = cached_settings.model_copy(update={"cascade": cascade})
        cached = await run_stream(stream, cached_settings, dense, sparse, store, cache=True)
    finally:
        store.close()
    naive_total = sum(naive_tokens[q.qid] for q in stream)
    served = [i for i, c in enumerate(cached["firsts"]) if c["served_by"] == RESULT_CACHE]

    def right(run: dict[str, Any], i: int) -> bool:
        return run["firsts"][i]["first"] in data.qrels.get(stream[i].qid, {})

    every = range(len(stream))
    return {
        "requests": len(stream),
        "stream": stream_stats(stream),
        "naive_tokens_per_request": naive_total / len(stream),
        "no_cache_tokens_per_request": plain["tokens"] / len(stream),
        "cached_tokens_per_request": cached["tokens"] / len(stream),
        "no_cache_vs_naive": plain["tokens"] / naive_total,
        "cached_vs_naive": cached["tokens"] / naive_total,
        "result_cache_answers": len(served),
        "hit@1_no_cache": sum(right(plain, i) for i in every) / len(stream),
        "hit@1_cached": sum(right(cached, i) for i in every) / len(stream),
        "hit@1_reused_answers": sum(right(cached, i) for i in served) / max(len(served), 1),
        "hit@1_same_requests_no_cache": sum(right(plain, i) for i in served) / max(len(served), 1),
        "score_cache_hits": cached["score_hits"],
        "p95_ms_no_cache": plain["p95_ms"],
        "p95_ms_cached": cached["p95_ms"],
    }


async def run_stream(
    stream: Sequence[StreamQuery],
    settings: Settings,
    dense: E5SmallEncoder,
    sparse: Bm25Encoder,
    store: EdgeStore,
    *,
    cache: bool,
) -> dict[str, Any]:
    """Every request through one pipeline, in order; with `cache`, the score cache wraps the paid stage."""
    paid = CountingReranker(dense.token_count)
    reranker = with_cache(paid, "sqlite", settings.data_dir, 86_400) if cache else paid
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    firsts: list[dict[str, Any]] = []
    times: list[float] = []
    score_hits = 0
    with Pipeline(settings, dense=dense, sparse=sparse, store=store, reranker=reranker) as pipe:
        for q in stream:
            t0 = time.perf_counter()
            result = await pipe.asearch(q.text, q.course, k=10)
            times.append(time.perf_counter() - t0)
            score_hits += result.usage.cache_hits if result.served_by != RESULT_CACHE else 0
            first = result.hits[0].chunk.meta["doc_id"] if result.hits else None
            firsts.append({"first": first, "served_by": result.served_by})
    return {
        "tokens": paid.tokens,
        "firsts": firsts,
        "score_hits": score_hits,
        "p95_ms": 1000 * percentiles(times)["p95"],
    }


def markdown(cascade: dict[str, Any], stream: dict[str, Any] | None) -> str:
    lines = [
        "| config | nDCG@10 | cand. recall | × naive | docs/q | tokens/q | × naive | answer kept "
        "| cascade p95 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in cascade["rows"]:
        kept = "—" if r["answer_survives"] is None else f"{r['answer_survives']:.3f}"
        lines.append(
            f"| {r['config']} | {r['ndcg@10']:.3f} | {r['candidate_recall']:.3f} "
            f"| {r['recall_vs_naive']:.3f} "
            f"| {r['docs_per_query']:.1f} | {r['tokens_per_query']:,.0f} | {r['tokens_vs_naive']:.1%} "
            f"| {kept} | {r['cascade_p95_ms']:.1f} |"
        )
    if stream:
        s = stream
        lines += [
            "",
            f"Question stream: {s['requests']} requests, {s['stream']}.",
            "",
            "| paid tokens per request | tokens | × naive |",
            "|---|---|---|",
            f"| naive (dense top-100, no cache) | {s['naive_tokens_per_request']:,.0f} | 100% |",
            f"| default, no cache | {s['no_cache_tokens_per_request']:,.0f} | {s['no_cache_vs_naive']:.1%} |",
            f"| default + score cache + result cache | {s['cached_tokens_per_request']:,.0f} "
            f"| {s['cached_vs_naive']:.1%} |",
            "",
            f"Result cache: {s['result_cache_answers']} answers reused; hit@1 of those "
            f"{s['hit@1_reused_answers']:.3f} against {s['hit@1_same_requests_no_cache']:.3f} for the same "
            f"requests answered afresh (whole stream: {s['hit@1_cached']:.3f} with caches, "
            f"{s['hit@1_no_cache']:.3f} without). Score cache: {s['score_cache_hits']} documents not "
            f"re-sent. p95 per request: {s['p95_ms_no_cache']:.0f} ms without caches, "
            f"{s['p95_ms_cached']:.0f} ms with.",
        ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    ap.add_argument("--split", choices=["tune", "test"], default="test")
    ap.add_argument("--configs", default=CONFIGS)
    ap.add_argument("--stream", type=int, default=3000, help="requests in the question stream; 0: skip")
    ap.add_argument("--limit", type=int, default=None, help="only N questions (quick look)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    dense, sparse = E5SmallEncoder(), Bm25Encoder()
    data = load_dataset(
        f"xquad:ru+en+ntrex:{args.split}", count_tokens=dense.token_count, data_root=args.shared / "data"
    )
    if args.limit:
        data = data.limit(args.limit)
    cascade, naive = cascade_part(data, args, dense, sparse)
    stream = asyncio.run(stream_part(data, args, dense, sparse, naive)) if args.stream else None
    out = args.out / "cascade"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.split}.json").write_text(json.dumps({"cascade": cascade, "stream": stream}, indent=2))
    print(markdown(cascade, stream))
    print(
        f"\n{args.split} split, {cascade['judged_queries']} judged questions; "
        f"{time.perf_counter() - t0:.0f} s."
    )


if __name__ == "__main__":
    main()
