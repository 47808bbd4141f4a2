"""Benchmark (not part of the test suite): quantised dense vectors at 50k chunks: recall and memory.

The vectors are a real course's: the chunks `bench/course.py` encoded into `bench/out/course-index` (run it
first), topped up to `--scale` with noisy copies of them (σ 0.05 per dimension, renormalised: the same filler
as `bench/retrieval.py`, so the engine sees real directions at a realistic count). Queries are the course's
questions, encoded with the same e5. For each setting the index is built in the embedded engine, optimised
(HNSW graph and quantised copy built now), and each question's dense top-10 is compared with the exact float
top-10 from numpy: recall@10 against exact search is what quantisation (and HNSW) can lose, and rescoring is
meant to win back. Memory: the size of the quantised copy the engine keeps in RAM (`quantized*` files) next to
the float vectors it replaces in the hot path (n × dim × 4 bytes), and the index's whole size on disk.

    .venv/bin/python bench/quantization.py [--scale 50000] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from leanrank.encode.base import SparseVec
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.index.base import HybridQuery, Quantization
from leanrank.index.edge import EdgeStore, stored_meta
from leanrank.types import Chunk

SETTINGS: list[tuple[str, Quantization | None]] = [
    ("float32", None),
    ("int8, rescored", Quantization("int8")),
    ("int8, not rescored", Quantization("int8", rescore=False)),
    ("binary, rescored ×2", Quantization("binary")),
    ("binary, rescored ×4", Quantization("binary", oversampling=4.0)),
    ("binary, not rescored", Quantization("binary", rescore=False)),
]
K = 10


def size(path: Path, pattern: str = "*") -> int:
    return sum(f.stat().st_size for f in path.rglob(pattern) if f.is_file())


def course_vectors(index: Path) -> np.ndarray:
    meta = stored_meta(index)
    if meta is None:
        raise SystemExit(f"no index at {index}: run bench/course.py first")
    store = EdgeStore(index, dim=int(meta["dim"]), encoder=str(meta["encoder"]))
    vectors, offset = [], None
    try:
        while True:
            points, offset = store.scroll(1_000, offset)
            vectors.extend(p.dense for p in points)
            if offset is None:
                break
    finally:
        store.close()
    return np.stack(vectors)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = Path(__file__).resolve().parent
    ap.add_argument("--scale", type=int, default=50_000)
    ap.add_argument("--out", type=Path, default=here / "out")
    ap.add_argument(
        "--questions", type=Path, default=here.parent.parent / "shared/data/mlcourse/questions.jsonl"
    )
    args = ap.parse_args()
    real = course_vectors(args.out / "course-index" / "index")
    rng = np.random.default_rng(0)
    extra = max(0, args.scale - len(real))
    filler = real[rng.integers(0, len(real), extra)] + rng.normal(0, 0.05, (extra, real.shape[1]))
    filler /= np.linalg.norm(filler, axis=1, keepdims=True)
    x = np.concatenate([real, filler.astype(np.float32)])
    e5 = E5SmallEncoder()
    questions = [
        json.loads(line)["query"] for line in args.questions.read_text(encoding="utf-8").splitlines()
    ]
    q = np.stack([e5.embed_query(text) for text in questions])
    exact = [set(np.argsort(-(x @ v))[:K].tolist()) for v in q]
    chunks = [Chunk("c", f"s{i // 1000}", i, f"t{i}", 0, 1, (), "en", f"h{i}", "f", 1) for i in range(len(x))]
    rows: list[dict[str, Any]] = []
    built: dict[str, Path] = {}
    for name, quant in SETTINGS:
        kind = "none" if quant is None else quant.kind
        path = args.out / "quantization" / kind
        if kind not in built:
            shutil.rmtree(path, ignore_errors=True)
            store = EdgeStore(path, dim=x.shape[1], encoder="bench", quantization=quant)
            t0 = time.perf_counter()
            for start in range(0, len(x), 1_000):
                part = slice(start, start + 1_000)
                sparse = [SparseVec((), ())] * len(chunks[part])
                store.replace_source("c", f"s{start // 1000}", chunks[part], x[part], sparse)
            store.optimize()
            print(f"{kind}: {len(x)} vectors written and optimised in {time.perf_counter() - t0:.0f} s")
            store.close()
            built[kind] = path
        store = EdgeStore(path, dim=x.shape[1], encoder="bench", quantization=quant)
        hits, latency = [], []
        for v, truth in zip(q, exact, strict=True):
            t0 = time.perf_counter()
            found = store.hybrid(HybridQuery("c", v, SparseVec((), ()), limit=K, prefetch=K, rrf_k=60))
            latency.append(time.perf_counter() - t0)
            hits.append(len(truth & {c.chunk.index for c in found}) / K)
        store.close()
        rows.append(
            {
                "setting": name,
                "recall@10": statistics.fmean(hits),
                "p50_ms": 1000 * statistics.median(latency),
                "quantized_mb": size(path, "quantized*") / 1e6,
                "float_mb": x.nbytes / 1e6,
                "disk_mb": size(path) / 1e6,
            }
        )
    (args.out / "quantization.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    print(f"\n{len(x)} vectors ({len(real)} real course chunks), {len(q)} questions, dim {x.shape[1]}:\n")
    print(
        "| setting | recall@10 vs exact | p50 ms | quantised copy MB | float vectors MB | index on disk MB |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['setting']} | {r['recall@10']:.3f} | {r['p50_ms']:.1f} | {r['quantized_mb']:.1f} | "
            f"{r['float_mb']:.1f} | {r['disk_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
