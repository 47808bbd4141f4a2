"""What the harness-based benchmarks share: every configuration over one dataset, progress on stderr."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.eval.configs import EvalConfig, resolve_configs
from leanrank.eval.datasets import Dataset
from leanrank.eval.runner import EvalResult, run_eval


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
