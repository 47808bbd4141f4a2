"""`leanrank eval`: run pipeline configurations over a labelled (or silver-labelled) dataset and report.

The harness's modules load ranx and matplotlib, so they are imported when the command runs, not when the
CLI starts.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from leanrank.cli.console import Steps, err
from leanrank.cli.errors import cli_errors
from leanrank.cli.outputs import check_folder, writing
from leanrank.errors import ConfigError
from leanrank.eval.configs import PRESETS
from leanrank.eval.datasets import DEFAULT_DATA_ROOT
from leanrank.rerank.calibration import CALIBRATION_DIR
from leanrank.settings import Settings

if TYPE_CHECKING:
    from leanrank.cost.pricing import ModelPrice
    from leanrank.eval.configs import EvalConfig
    from leanrank.eval.runner import EvalResult


DATASET_HELP = (
    "xquad:ru|en|ru+en|cross[+ntrex][:tune|:test], squad:FILE[:tune|:test], beir:DIR or "
    "own:DIR@QUESTIONS.jsonl[:tune|:test] (questions judged by chunk ids, or by gold_files + answer phrase)"
)


# The options `eval` and `calibrate` share: both run the harness over the same datasets.
DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Keep the encoded pool here to reuse it (default: a temporary one)."),
]
DataRootOption = Annotated[
    Path, typer.Option("--data-root", envvar="LEANRANK_EVAL_DATA", help="Folder with xquad/ and ntrex/.")
]
DistractorsOption = Annotated[
    list[Path] | None, typer.Option("--distractors", help="Files or folders added to every pool.")
]


def priced_models(settings: Settings, keys: Sequence[str] = ()) -> list[ModelPrice]:
    """The paid rerank models of the price table (packaged files, then the user's), or just `keys`.

    The judge's chat models are priced too, but pricing a reranker's candidates at a chat model's input rate
    says nothing: they are left out unless named (the judge's own cost is its own column).
    """
    from leanrank.cost.pricing import Pricing

    models = Pricing.from_settings(settings).models
    unknown = [k for k in keys if k not in models]
    if unknown:
        raise ConfigError(f"no price for {unknown[0]!r}; priced models: {', '.join(sorted(models))}")
    if keys:
        return [models[k] for k in keys]
    return [m for _, m in sorted(models.items()) if m.is_paid and m.is_rerank]


def eval_command(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help=f"Dataset SPEC: {DATASET_HELP}.")],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for report.md, report.json, runs/ and the chart.")
    ],
    configs: Annotated[
        str, typer.Option("--configs", "-c", help=f"Comma-separated presets: {', '.join(PRESETS)}.")
    ] = "naive,default",
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only N queries, spread over the set.")
    ] = None,
    silver: Annotated[
        bool, typer.Option("--silver", help="Also score against a reference reranker over the naive top-100.")
    ] = False,
    reference: Annotated[
        str | None,
        typer.Option("--reference", help="Reranker of the silver reference (default: the configured one)."),
    ] = None,
    data_dir: DataDirOption = None,
    data_root: DataRootOption = DEFAULT_DATA_ROOT,
    distractors: DistractorsOption = None,
    price: Annotated[
        list[str] | None,
        typer.Option("--price", help="Price with this model (provider:model); default: every rerank API."),
    ] = None,
    mmr_lambda: Annotated[
        float | None,
        typer.Option("--mmr-lambda", min=0.0, max=1.0, help="Every configuration with MMR at this λ."),
    ] = None,
    min_similarity: Annotated[
        float | None,
        typer.Option(
            "--min-similarity",
            min=-1.0,
            max=1.0,
            help="Every configuration skips the paid stage when no candidate reaches this dense cosine.",
        ),
    ] = None,
    min_relevance: Annotated[
        float | None,
        typer.Option(
            "--min-relevance",
            min=0.0,
            max=1.0,
            help="Every configuration drops hits below this calibrated P(relevant) (`leanrank calibrate`).",
        ),
    ] = None,
) -> None:
    """Compare pipeline configurations: quality (ranx), candidate recall, rerank tokens, $ and latency."""
    with cli_errors():
        check_folder(out_dir, "--out")  # before the run: it may take hours
        settings = Settings()
        cascade = {
            k: v for k, v in (("mmr_lambda", mmr_lambda), ("min_similarity", min_similarity)) if v is not None
        }
        rerank: dict[str, Any] = {}
        if min_relevance is not None:
            folder = settings.rerank.calibration_dir or settings.data_dir / CALIBRATION_DIR
            rerank = {"min_relevance": min_relevance, "calibration_dir": folder.resolve()}
        _run(
            settings,
            spec=dataset,
            out_dir=out_dir,
            names=configs,
            limit=limit,
            reference=(reference or settings.rerank.backend) if silver else None,
            data_dir=data_dir,
            data_root=data_root,
            distractors=distractors or [],
            prices=priced_models(settings, price or []),
            cascade=cascade,
            rerank=rerank,
        )


def _run(
    settings: Settings,
    *,
    spec: str,
    out_dir: Path,
    names: str,
    limit: int | None,
    reference: str | None,
    data_dir: Path | None,
    data_root: Path,
    distractors: list[Path],
    prices: Sequence[ModelPrice],
    cascade: dict[str, Any],
    rerank: dict[str, Any],
) -> None:
    from leanrank.eval.configs import resolve_configs
    from leanrank.eval.report import markdown, summarise, write_report

    chosen = [
        dataclasses.replace(c, cascade=c.cascade.model_copy(update=cascade), **rerank)
        for c in resolve_configs(names)
    ]
    result = harness(
        settings,
        chosen,
        spec=spec,
        limit=limit,
        reference=reference,
        data_dir=data_dir,
        data_root=data_root,
        distractors=distractors,
    )
    report = summarise(result, prices)
    with writing("the report", out_dir):
        written = write_report(report, result, out_dir, prices)
    sys.stdout.write(markdown(report))
    err.print(f"wrote {len(written)} files under {out_dir}")


def harness(
    settings: Settings,
    configs: Sequence[EvalConfig],
    *,
    spec: str,
    limit: int | None,
    reference: str | None,
    data_dir: Path | None,
    data_root: Path,
    distractors: list[Path],
) -> EvalResult:
    """Load the dataset `spec` as the settings chunk it, then run `configs` over it with progress shown;
    the pool is encoded with the settings' `encoder` and `sparse` kind (LEANRANK_ENCODER, LEANRANK_SPARSE).

    Shared by `leanrank eval` and `leanrank calibrate`."""
    if data_dir is not None:
        check_folder(data_dir, "--data-dir")
    from leanrank.encode.catalog import dense_encoder, sparse_encoder
    from leanrank.encode.e5 import E5SmallEncoder, xlmr_token_count
    from leanrank.eval.datasets import add_distractors, load_dataset
    from leanrank.eval.runner import run_eval
    from leanrank.ingest.chunker import ChunkerConfig

    dense = dense_encoder(settings.encoder)
    sparse = sparse_encoder(settings.sparse, dense)  # before the dataset: a bad pairing fails at once
    # Rerank bills are counted in XLM-R tokens (the bge/jina rerankers' own); e5 has that tokenizer.
    count = dense.token_count if isinstance(dense, E5SmallEncoder) else xlmr_token_count
    ing = settings.ingest
    chunker = ChunkerConfig(
        max_tokens=ing.max_tokens, overlap_sentences=ing.overlap_sentences, min_tokens=ing.min_tokens
    )
    data = load_dataset(
        spec,
        count_tokens=dense.token_count,
        chunker=chunker,
        data_root=data_root,
        max_query_chars=settings.max_query_chars,
    )
    if distractors:
        data = add_distractors(data, distractors, count_tokens=dense.token_count, chunker=chunker)
    if limit:
        data = data.limit(limit)
    with ExitStack() as stack:
        folder = data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="leanrank-eval-")))
        progress = stack.enter_context(Steps())
        return run_eval(
            data,
            configs,
            dense=dense,
            sparse=sparse,
            data_dir=folder,
            count_tokens=count,
            base=settings,
            reference=reference,
            progress=progress,
        )
