"""What the harness-based benchmarks share: every configuration over one dataset, progress on stderr; the
vectors of the pool the harness encoded."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.eval.configs import EvalConfig, resolve_configs
from leanrank.eval.datasets import Dataset
from leanrank.eval.runner import EvalResult, run_eval
from leanrank.index.edge import EdgeStore


def run_configs(
    data: Dataset,
    configs: str | Sequence[EvalConfig],
    dense: E5SmallEncoder,
    sparse: Bm25Encoder,
    index_dir: Path,
) -> EvalResult:
    """`run_eval` over the comma-separated preset names (or the configurations given); the pool is encoded
    once into `index_dir` and reused by later runs (an unchanged pool encodes nothing)."""
    columns: Sequence[TextColumn | BarColumn | MofNCompleteColumn | TimeElapsedColumn] = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        return run_eval(
            data,
            resolve_configs(configs) if isinstance(configs, str) else configs,
            dense=dense,
            sparse=sparse,
            data_dir=index_dir,
            progress=progress,
        )


def harness_vectors(index_dir: Path) -> dict[str, np.ndarray]:
    """The pool's vectors by doc id from the index the evaluation harness built (`bench/course.py`'s
    `course-index`, `bench/cascade.py`'s `eval-index`), when there is one: the same encoder over the same
    `indexed_text`, so the pool need not be encoded twice (`savings.py`, `retrieval.py --latency-only`);
    empty when there is no index at `index_dir`."""
    if not (index_dir / "leanrank-index.json").exists():
        return {}
    store = EdgeStore(index_dir, dim=384, encoder=E5SmallEncoder.name)
    found: dict[str, np.ndarray] = {}
    offset: str | None = None
    try:
        while True:
            points, offset = store.scroll(1000, offset)
            found.update((p.chunk.meta["doc_id"], p.dense) for p in points)
            if offset is None:
                return found
    finally:
        store.close()
