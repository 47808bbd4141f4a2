"""Retrieval quality and latency of the first stage: dense vs BM25 vs hybrid (RRF inside Qdrant Edge).

Pool: the evaluation harness's `xquad:ru+en+ntrex` dataset (leanrank.eval.datasets) - XQuAD Russian +
English paragraphs chunked by leanrank's own chunker (a few sentences per chunk), plus NTREX ru/en news as
distractors, all in one bilingual course. A question's relevant chunk is the one holding its answer's
first character, in the question's language.

Fusion parameters are tuned on the first half of the articles (the "tune" split) and reported on the other
half ("test"), so the reported numbers are not fitted to the questions they are measured on. Recall is
ranx's, through leanrank.eval.metrics.

Latency: the pipeline's default retriever (`Pipeline.retriever` with `RetrieveSettings`' defaults: dense, BM25
and the per-language dense lists fused, then trimmed) against a course of ~50k chunks. Encoding 50k chunks
with the 4-bit e5-small on 2 cores takes ~45 minutes, so the 50k course is the real pool plus filler chunks:
real NTREX sentence mixes (BM25 vectors from their real text) with dense vectors that are noisy copies of real
chunk vectors. The engine's cost depends on counts and sparsity, which the filler reproduces; recall is never
measured on it. Over 300 distinct test questions:
- end to end: `retrieve` (both query encodings, engine, trim) with the pipeline's query-vector cache bypassed
  (the timed retriever has an empty cache of its own), so every question is embedded;
- repeated question: the same questions again through that retriever, the query vector from its cache (the
  LRU's case: a class asking the same thing);
- engine only: `store.hybrid` on the query the retriever builds for the question (`HybridRetriever.request`).

`--latency-only` skips the pool's encoding and the recall grid: the real part of the latency course is the
evaluation harness's pool, chunked as the harness does, with the dense vectors of its index
`OUT/eval-index/index` (built by `bench/cascade.py` or `bench/eval.py`; exit status 2 when it is missing).
Results go to `OUT/retrieval-latency.{json,md}` instead of `OUT/retrieval.{json,md}`.

    .venv/bin/python bench/retrieval.py [--shared ../shared] [--scale 50000] [--out bench/out]
    .venv/bin/python bench/retrieval.py --latency-only [--scale 50000] [--out bench/out]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness import harness_vectors
from leanrank.encode.base import Matrix, SparseVec
from leanrank.encode.cached import QueryCache
from leanrank.eval.datasets import Dataset, Query, TokenCount, load_dataset
from leanrank.eval.metrics import quality
from leanrank.eval.runner import doc_chunks
from leanrank.index.base import HybridQuery
from leanrank.ingest.chunker import ChunkerConfig
from leanrank.ingest.lang import detect_lang
from leanrank.pipeline import Pipeline
from leanrank.retrieve.hybrid import HybridRetriever, RetrieveFilter
from leanrank.settings import Settings
from leanrank.types import Chunk

KS = (5, 10, 20, 100)
SPEC = "xquad:ru+en+ntrex"
SCALE_COURSE = "scale"
TIMED = 300
"""Distinct test questions timed in the latency course."""


def sources(data: Dataset) -> list[list[int]]:
    """Doc indices grouped by (course, source), in first-seen order: the unit the pipeline writes."""
    by_source: dict[tuple[str, str], list[int]] = {}
    for i, d in enumerate(data.docs):
        by_source.setdefault((d.course, d.source), []).append(i)
    return list(by_source.values())


def index(pipe: Pipeline, data: Dataset) -> tuple[list[Chunk], np.ndarray]:
    """Encode and write the pool, one source at a time (the pipeline's own write path)."""
    groups = sources(data)
    chunks: list[Chunk] = []
    dense = np.zeros((len(data.docs), pipe.dense.dim), dtype=np.float32)
    t0 = time.perf_counter()
    for done, ids in enumerate(groups, 1):
        part = doc_chunks([data.docs[i] for i in ids], pipe.dense.token_count)
        vecs = pipe.dense.embed_passages([c.indexed_text for c in part])
        dense[ids] = vecs
        sparse = pipe.sparse.embed_documents([c.indexed_text for c in part])
        pipe.store.replace_source(part[0].course, part[0].source, part, vecs, sparse)
        chunks.extend(part)
        print(
            f"\r  indexed {done}/{len(groups)} sources ({time.perf_counter() - t0:.0f}s)", end="", flush=True
        )
    print()
    order = [i for ids in groups for i in ids]
    return chunks, dense[order]


def harness_pool(data: Dataset, index_dir: Path, count_tokens: TokenCount) -> tuple[list[Chunk], np.ndarray]:
    """The pool's chunks as the harness indexes them and their dense vectors (shape (chunks, dim), float32)
    read from the harness's index at `index_dir`, in the same order.

    Raises `LookupError` when there is no index there or it lacks any of the pool's chunks (another pool's).
    """
    vectors = harness_vectors(index_dir)
    if not vectors:
        raise LookupError(f"no evaluation index at {index_dir}")
    chunks = [c for ids in sources(data) for c in doc_chunks([data.docs[i] for i in ids], count_tokens)]
    missing = sum(c.meta["doc_id"] not in vectors for c in chunks)
    if missing:
        raise LookupError(
            f"the evaluation index at {index_dir} lacks {missing} of the pool's {len(chunks)} chunks"
        )
    return chunks, np.stack([vectors[c.meta["doc_id"]] for c in chunks]).astype(np.float32)


def ranked(
    pipe: Pipeline,
    course: str,
    qd: Matrix,
    qs: SparseVec,
    weights: tuple[float, float],
    k: int,
    limit: int = 100,
) -> list[str]:
    """Top `limit` doc ids; weight 0 on one list gives the other list's pure ranking."""
    request = HybridQuery(
        course=course, dense=qd, sparse=qs, limit=limit, prefetch=100, rrf_k=k, weights=weights
    )
    return [c.chunk.meta["doc_id"] for c in pipe.store.hybrid(request)]


def recall(data: Dataset, runs: dict[str, list[str]], questions: list[Query]) -> dict[int, float]:
    judged = {q.qid: data.qrels[q.qid] for q in questions}
    scores = quality(judged, runs, [f"recall@{k}" for k in KS])
    return {k: scores[f"recall@{k}"] for k in KS}


def recall_grid(pipe: Pipeline, data: Dataset, chunks: list[Chunk]) -> tuple[dict[str, Any], list[str]]:
    """Fusion tuned on the tune split, recall of each first stage on both splits: the report's part and its
    markdown lines."""
    questions = list(data.queries)
    t0 = time.perf_counter()
    qvecs = {q.qid: (pipe.dense.embed_query(q.text), pipe.sparse.embed_query(q.text)) for q in questions}
    print(f"  encoded {len(questions)} queries in {time.perf_counter() - t0:.0f}s")

    def run(weights: tuple[float, float], k: int, qs: list[Query]) -> dict[str, list[str]]:
        return {q.qid: ranked(pipe, q.course, *qvecs[q.qid], weights, k) for q in qs}

    tune = [q for q in questions if q.split == "tune"]
    test = [q for q in questions if q.split == "test"]
    grid = [
        (w, k) for w in ((1.0, 1.0), (1.0, 0.5), (1.0, 0.75), (0.75, 1.0), (1.0, 1.5)) for k in (10, 30, 60)
    ]
    scored = []
    for weights, k in grid:
        r = recall(data, run(weights, k, tune), tune)
        scored.append((r[20] + r[10] / 10, weights, k, r))
        print(f"  tune w={weights} k={k}: {r}")
    _, best_w, best_k, _ = max(scored, key=lambda s: s[0])
    print(f"chosen on tune split: weights={best_w} k={best_k}")

    results: dict[str, dict[str, dict[int, float]]] = {}
    for split_name, qs in (("test", test), ("tune", tune)):
        results[split_name] = {
            "dense": recall(data, run((1.0, 0.0), 60, qs), qs),
            "bm25": recall(data, run((0.0, 1.0), 60, qs), qs),
            "hybrid": recall(data, run(best_w, best_k, qs), qs),
        }
        for lang in ("ru", "en"):
            sub = [q for q in qs if q.lang == lang]
            results[split_name][f"hybrid ({lang} questions)"] = recall(data, run(best_w, best_k, sub), sub)
    part = {
        "questions": {"tune": len(tune), "test": len(test)},
        "fusion": {"weights": best_w, "rrf_k": best_k},
        "recall": results,
    }
    lines = [
        f"Recall@k on the test split ({len(test)} questions, {len(chunks)} chunks; "
        f"fusion weights {best_w}, k={best_k} chosen on the tune split):",
        "",
        "| first stage | " + " | ".join(f"R@{k}" for k in KS) + " |",
        "|---|" + "---|" * len(KS),
    ]
    for name, r in results["test"].items():
        lines.append(f"| {name} | " + " | ".join(f"{r[k]:.3f}" for k in KS) + " |")
    return part, lines


def scale_course(
    pipe: Pipeline, chunks: list[Chunk], dense: np.ndarray, size: int, rng: random.Random
) -> int:
    """Write `SCALE_COURSE`: the real chunks (`dense` their vectors, row for row) and filler up to `size`
    chunks (pairs of real NTREX sentences; noisy copies of real vectors, noise σ 0.05, re-normalised);
    BM25 from every chunk's text. Returns its chunk count."""
    filler_n = max(0, size - len(chunks))
    sentences = [c.text for c in chunks if c.source.startswith("ntrex")]
    filler = []
    for i in range(filler_n):
        body = " ".join(rng.sample(sentences, 2))
        filler.append(
            Chunk(
                SCALE_COURSE,
                f"filler/{i // 1000}.txt",
                i % 1000,
                body,
                0,
                len(body),
                (),
                detect_lang(body),
                f"f{i}",
                "f",
                0,
            )
        )
    noise = np.random.default_rng(0).normal(0, 0.05, (filler_n, dense.shape[1])).astype(np.float32)
    filler_dense = dense[np.random.default_rng(1).integers(0, len(dense), filler_n)] + noise
    filler_dense /= np.linalg.norm(filler_dense, axis=1, keepdims=True)
    all_chunks = [dataclasses.replace(c, course=SCALE_COURSE) for c in chunks] + filler
    all_dense = np.concatenate([dense, filler_dense])
    by_source: dict[str, list[int]] = {}
    for i, c in enumerate(all_chunks):
        by_source.setdefault(c.source, []).append(i)
    t0 = time.perf_counter()
    for source, ids in by_source.items():
        part = [all_chunks[i] for i in ids]
        sparse = pipe.sparse.embed_documents([c.indexed_text for c in part])
        pipe.store.replace_source(SCALE_COURSE, source, part, all_dense[ids], sparse)
    print(f"scale course: {len(all_chunks)} chunks written in {time.perf_counter() - t0:.0f}s")
    return len(all_chunks)


def clock(call: Callable[..., object], *args: object) -> float:
    """Seconds one call takes."""
    t0 = time.perf_counter()
    call(*args)
    return time.perf_counter() - t0


def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    """p50 and p95 in milliseconds (`statistics.quantiles`, its default exclusive method)."""
    cuts = statistics.quantiles(seconds, n=100)
    return {"p50": 1000 * cuts[49], "p95": 1000 * cuts[94]}


def latency(pipe: Pipeline, questions: Sequence[Query], rng: random.Random) -> dict[str, Any]:
    """The three timings of the module docstring over `TIMED` distinct questions (one more warms up) in
    `SCALE_COURSE`."""
    texts = list(dict.fromkeys(q.text for q in questions))
    warm, *timed = rng.sample(texts, min(TIMED + 1, len(texts)))
    where = RetrieveFilter(SCALE_COURSE)
    # The pipeline's retriever with an empty query-vector cache of its own: a question's first call embeds.
    fresh = HybridRetriever(
        pipe.store,
        QueryCache(pipe.dense.encoder),
        pipe.sparse,
        pipe.retriever.settings,
        lexicons=pipe.retriever.lexicons,
    )
    fresh.retrieve(warm, where)
    end_to_end, engine, repeated = [], [], []
    legs = 0
    for text in timed:
        end_to_end.append(clock(fresh.retrieve, text, where))
        request = fresh.request(text, where)
        legs = len(request.lang_legs)
        engine.append(clock(pipe.store.hybrid, request))
    for text in timed:
        repeated.append(clock(fresh.retrieve, text, where))
    return {
        "queries": len(timed),
        "retrieve": pipe.retriever.settings.model_dump(),
        "language_lists": legs,
        "end_to_end_ms": percentiles(end_to_end),
        "repeated_ms": percentiles(repeated),
        "engine_ms": percentiles(engine),
    }


def latency_line(lat: dict[str, Any]) -> str:
    e2e, rep, eng = lat["end_to_end_ms"], lat["repeated_ms"], lat["engine_ms"]
    return (
        f"Latency over {lat['queries']} queries, course of {lat['chunks']} chunks "
        f"({lat['real_chunks']} real, the rest filler), default retriever (dense, BM25 and "
        f"{lat['language_lists']} per-language dense lists fused): end-to-end with the query-vector cache "
        f"bypassed (query encoding + engine + trim) p50 {e2e['p50']:.1f} ms, p95 {e2e['p95']:.1f} ms; "
        f"a repeated question (query vector from the cache) p50 {rep['p50']:.1f} ms, "
        f"p95 {rep['p95']:.1f} ms; engine only (the retriever's own query) p50 {eng['p50']:.1f} ms, "
        f"p95 {eng['p95']:.1f} ms."
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared")
    ap.add_argument("--scale", type=int, default=50_000, help="chunks in the latency course")
    ap.add_argument(
        "--max-tokens",
        type=int,
        default=96,
        help="chunk budget for XQuAD paragraphs (not with --latency-only: the harness's chunks)",
    )
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    ap.add_argument(
        "--optimize",
        action="store_true",
        help="time again after EdgeStore.optimize() (HNSW graphs built), in the same run",
    )
    ap.add_argument(
        "--latency-only",
        action="store_true",
        help="no recall grid, no pool encoding: the latency course's real part is the harness's pool, "
        "its vectors read from OUT/eval-index/index (bench/cascade.py builds it)",
    )
    args = ap.parse_args()
    rng = random.Random(0)

    with tempfile.TemporaryDirectory() as tmp, Pipeline(Settings(data_dir=Path(tmp))) as pipe:
        count = pipe.dense.token_count
        root = args.shared / "data"
        report: dict[str, Any]
        lines: list[str]
        if args.latency_only:
            data = load_dataset(SPEC, count_tokens=count, data_root=root)  # chunked as the harness does
            try:
                chunks, dense = harness_pool(data, args.out / "eval-index" / "index", count)
            except LookupError as exc:
                ap.exit(2, f"{exc}: run bench/cascade.py first\n")
            print(f"pool: {len(chunks)} chunks from the evaluation index")
            report, lines, name = {"pool_chunks": len(chunks)}, [], "retrieval-latency"
        else:
            chunker = ChunkerConfig(max_tokens=args.max_tokens)
            data = load_dataset(SPEC, count_tokens=count, chunker=chunker, data_root=root)
            print(f"pool: {len(data.docs)} chunks, {len(data.queries)} questions")
            chunks, dense = index(pipe, data)
            part, lines = recall_grid(pipe, data, chunks)
            report = {"pool_chunks": len(chunks), "chunk_max_tokens": args.max_tokens, **part}
            lines.append("")
            name = "retrieval"
        size = scale_course(pipe, chunks, dense, args.scale, rng)
        test = [q for q in data.queries if q.split == "test"]
        report["latency"] = {"chunks": size, "real_chunks": len(chunks), **latency(pipe, test, rng)}
        lines.append(latency_line(report["latency"]))
        if args.optimize:  # the embedded store the bench writes; a no-op on a server
            seconds = clock(pipe.store.optimize)
            tuned = {"chunks": size, "real_chunks": len(chunks), **latency(pipe, test, random.Random(0))}
            report["latency_optimised"] = {"optimize_s": seconds, **tuned}
            lines.append(
                f"After `EdgeStore.optimize()` ({seconds:.0f} s: HNSW graphs built), " + latency_line(tuned)
            )

    table = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    (args.out / f"{name}.md").write_text(table + "\n", encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
