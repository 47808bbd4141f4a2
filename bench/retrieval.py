"""Retrieval quality and latency of the first stage: dense vs BM25 vs hybrid (RRF inside Qdrant Edge).

Pool: the evaluation harness's `xquad:ru+en+ntrex` dataset (leanrank.eval.datasets) - XQuAD Russian +
English paragraphs chunked by leanrank's own chunker (a few sentences per chunk), plus NTREX ru/en news as
distractors, all in one bilingual course. A question's relevant chunk is the one holding its answer's
first character, in the question's language.

Fusion parameters are tuned on the first half of the articles (the "tune" split) and reported on the other
half ("test"), so the reported numbers are not fitted to the questions they are measured on. Recall is
ranx's, through leanrank.eval.metrics.

Latency: the same pipeline against a course of ~50k chunks. Encoding 50k chunks with the 4-bit e5-small on
2 cores takes ~45 minutes, so the 50k course is the real pool plus filler chunks: real NTREX sentence mixes
(BM25 vectors from their real text) with dense vectors that are noisy copies of real chunk vectors. The
engine's cost depends on counts and sparsity, which the filler reproduces; recall is never measured on it.

    .venv/bin/python bench/retrieval.py [--shared ../shared] [--scale 50000] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from leanrank.encode.base import Matrix, SparseVec
from leanrank.eval.datasets import Dataset, Query, load_dataset
from leanrank.eval.metrics import quality
from leanrank.eval.runner import doc_chunks
from leanrank.index.base import HybridQuery
from leanrank.ingest.chunker import ChunkerConfig
from leanrank.ingest.lang import detect_lang
from leanrank.pipeline import Pipeline
from leanrank.retrieve.hybrid import RetrieveFilter
from leanrank.settings import Settings
from leanrank.types import Chunk

KS = (5, 10, 20, 100)
SPEC = "xquad:ru+en+ntrex"
SCALE_COURSE = "scale"


def index(pipe: Pipeline, data: Dataset) -> tuple[list[Chunk], np.ndarray]:
    """Encode and write the pool, one source at a time (the pipeline's own write path)."""
    by_source: dict[tuple[str, str], list[int]] = {}
    for i, d in enumerate(data.docs):
        by_source.setdefault((d.course, d.source), []).append(i)
    chunks: list[Chunk] = []
    dense = np.zeros((len(data.docs), pipe.dense.dim), dtype=np.float32)
    t0 = time.perf_counter()
    for done, ids in enumerate(by_source.values(), 1):
        part = doc_chunks([data.docs[i] for i in ids], pipe.dense.token_count)
        vecs = pipe.dense.embed_passages([c.indexed_text for c in part])
        dense[ids] = vecs
        sparse = pipe.sparse.embed_documents([c.indexed_text for c in part])
        pipe.store.replace_source(part[0].course, part[0].source, part, vecs, sparse)
        chunks.extend(part)
        print(
            f"\r  indexed {done}/{len(by_source)} sources ({time.perf_counter() - t0:.0f}s)",
            end="",
            flush=True,
        )
    print()
    order = [i for ids in by_source.values() for i in ids]
    return chunks, dense[order]


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared")
    ap.add_argument("--scale", type=int, default=50_000, help="chunks in the latency course")
    ap.add_argument("--max-tokens", type=int, default=96, help="chunk budget for XQuAD paragraphs")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)

    with tempfile.TemporaryDirectory() as tmp, Pipeline(Settings(data_dir=Path(tmp))) as pipe:
        chunker = ChunkerConfig(max_tokens=args.max_tokens)
        data = load_dataset(
            SPEC, count_tokens=pipe.dense.token_count, chunker=chunker, data_root=args.shared / "data"
        )
        questions = list(data.queries)
        print(f"pool: {len(data.docs)} chunks, {len(questions)} questions")
        chunks, dense = index(pipe, data)

        t0 = time.perf_counter()
        qvecs = {q.qid: (pipe.dense.embed_query(q.text), pipe.sparse.embed_query(q.text)) for q in questions}
        print(f"  encoded {len(questions)} queries in {time.perf_counter() - t0:.0f}s")

        def run(weights: tuple[float, float], k: int, qs: list[Query]) -> dict[str, list[str]]:
            return {q.qid: ranked(pipe, q.course, *qvecs[q.qid], weights, k) for q in qs}

        tune = [q for q in questions if q.split == "tune"]
        test = [q for q in questions if q.split == "test"]
        grid = [
            (w, k)
            for w in ((1.0, 1.0), (1.0, 0.5), (1.0, 0.75), (0.75, 1.0), (1.0, 1.5))
            for k in (10, 30, 60)
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
                results[split_name][f"hybrid ({lang} questions)"] = recall(
                    data, run(best_w, best_k, sub), sub
                )

        # latency at scale ---------------------------------------------------------------------------------
        filler_n = max(0, args.scale - len(chunks))
        sentences = [c.text for c in chunks if c.source.startswith("ntrex")]
        scale_chunks = [
            Chunk(
                SCALE_COURSE,
                c.source,
                c.index,
                c.text,
                c.start,
                c.end,
                c.heading,
                c.lang,
                c.content_hash,
                c.file_hash,
                c.tokens,
            )
            for c in chunks
        ]
        scale_dense = [dense]
        batch_chunks: list[Chunk] = []
        for i in range(filler_n):
            body = " ".join(rng.sample(sentences, 2))
            batch_chunks.append(
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
        scale_dense.append(filler_dense)
        all_chunks = scale_chunks + batch_chunks
        all_dense = np.concatenate(scale_dense)
        by_source: dict[str, list[int]] = {}
        for i, c in enumerate(all_chunks):
            by_source.setdefault(c.source, []).append(i)
        t0 = time.perf_counter()
        for source, ids in by_source.items():
            part = [all_chunks[i] for i in ids]
            sparse = pipe.sparse.embed_documents([c.indexed_text for c in part])
            pipe.store.replace_source(SCALE_COURSE, source, part, all_dense[ids], sparse)
        print(f"scale course: {len(all_chunks)} chunks written in {time.perf_counter() - t0:.0f}s")

        sample = rng.sample(test, min(300, len(test)))
        pipe.retriever.retrieve(sample[0].text, RetrieveFilter(SCALE_COURSE))  # warm-up
        end_to_end, engine = [], []
        for q in sample:
            t0 = time.perf_counter()
            pipe.retriever.retrieve(q.text, RetrieveFilter(SCALE_COURSE), depth=20)
            end_to_end.append(time.perf_counter() - t0)
            qd, qs_ = qvecs[q.qid]
            t0 = time.perf_counter()
            pipe.store.hybrid(
                HybridQuery(
                    course=SCALE_COURSE,
                    dense=qd,
                    sparse=qs_,
                    limit=60,
                    prefetch=100,
                    rrf_k=best_k,
                    weights=best_w,
                )
            )
            engine.append(time.perf_counter() - t0)

        def pct(xs: list[float], p: int) -> float:
            return 1000 * statistics.quantiles(xs, n=100)[p - 1]

        latency: dict[str, Any] = {
            "chunks": len(all_chunks),
            "queries": len(sample),
            "end_to_end_ms": {"p50": pct(end_to_end, 50), "p95": pct(end_to_end, 95)},
            "engine_ms": {"p50": pct(engine, 50), "p95": pct(engine, 95)},
        }

    report = {
        "pool_chunks": len(chunks),
        "questions": {"tune": len(tune), "test": len(test)},
        "chunk_max_tokens": args.max_tokens,
        "fusion": {"weights": best_w, "rrf_k": best_k},
        "recall": results,
        "latency": latency,
    }
    (args.out / "retrieval.json").write_text(
        json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    lines = [
        f"Recall@k on the test split ({len(test)} questions, {len(chunks)} chunks; "
        f"fusion weights {best_w}, k={best_k} chosen on the tune split):",
        "",
        "| first stage | " + " | ".join(f"R@{k}" for k in KS) + " |",
        "|---|" + "---|" * len(KS),
    ]
    for name, r in results["test"].items():
        lines.append(f"| {name} | " + " | ".join(f"{r[k]:.3f}" for k in KS) + " |")
    lines += [
        "",
        f"Latency over {latency['queries']} queries, course of {latency['chunks']} chunks: "
        f"end-to-end (query encoding + engine + trim) p50 {latency['end_to_end_ms']['p50']:.1f} ms, "
        f"p95 {latency['end_to_end_ms']['p95']:.1f} ms; "
        f"engine only p50 {latency['engine_ms']['p50']:.1f} ms, p95 {latency['engine_ms']['p95']:.1f} ms.",
    ]
    table = "\n".join(lines)
    (args.out / "retrieval.md").write_text(table + "\n", encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
