"""`leanrank calibrate`: fit P(relevant) for a backend's scores on labelled questions and store it as data."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from leanrank.cli.console import err, out
from leanrank.cli.errors import cli_errors
from leanrank.cli.eval import DATASET_HELP, DataDirOption, DataRootOption, DistractorsOption, harness
from leanrank.cli.outputs import check_folder, writing
from leanrank.eval.datasets import DEFAULT_DATA_ROOT
from leanrank.rerank.calibration import CALIBRATION_DIR
from leanrank.settings import Settings


def calibrate_command(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help=f"Labelled questions: {DATASET_HELP}.")],
    backend: Annotated[
        str | None, typer.Option("--backend", "-b", help="Reranker to calibrate (default: rerank.backend).")
    ] = None,
    method: Annotated[
        Literal["platt", "isotonic"],
        typer.Option("--method", help="platt (2 parameters, few labels) or isotonic (monotone steps, many)."),
    ] = "platt",
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder for the JSON file (default: rerank.calibration_dir)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only N questions, spread over the set.")
    ] = None,
    data_dir: DataDirOption = None,
    data_root: DataRootOption = DEFAULT_DATA_ROOT,
    distractors: DistractorsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the fit and its trade-off as JSON.")] = False,
) -> None:
    """Fit a monotone map from BACKEND's raw score to P(relevant) on labelled questions, run through the
    configured retrieval and cascade, and write it where `rerank.min_relevance` finds it.

    Under `identity` the score calibrated is the first stage's fused score."""
    from leanrank.eval.calibrate import calibrate_run, judged_pairs, trade_off
    from leanrank.eval.configs import EvalConfig

    with cli_errors():
        settings = Settings()
        folder = out_dir or settings.rerank.calibration_dir or settings.data_dir / CALIBRATION_DIR
        check_folder(folder, "--out" if out_dir else "the calibration folder")  # before the run
        name = backend or settings.rerank.backend
        config = EvalConfig(
            "calibrate", f"{name} over the configured pipeline", settings.retrieve, name, settings.cascade
        )
        result = harness(
            settings,
            [config],
            spec=dataset,
            limit=limit,
            reference=None,
            data_dir=data_dir,
            data_root=data_root,
            distractors=distractors or [],
        )
        run = result.runs[0]
        cal = calibrate_run(run, result.dataset, method)
        with writing("the calibration", folder):
            path = cal.write(folder)
        _, scores, labels = judged_pairs(run, result.dataset)
        trades = trade_off(cal, scores, labels)
    if as_json:
        body = {
            "file": str(path),
            "backend": cal.backend,
            "method": cal.method,
            "pairs": cal.pairs,
            "positives": cal.positives,
            "quality": cal.quality,
            "trade_off": [asdict(t) for t in trades],
        }
        out.print_json(json.dumps(body))
        return
    table = Table("min_relevance", "hits kept", "precision", "recall", title=f"{cal.backend} ({cal.method})")
    for t in trades:
        precision = "—" if t.precision is None else f"{t.precision:.3f}"
        table.add_row(f"{t.threshold:.1f}", f"{t.kept:.1%}", precision, f"{t.recall:.3f}")
    out.print(table)
    out.print(
        f"{cal.pairs} hits, {cal.positives} relevant; Brier {cal.quality['brier']:.4f}, "
        f"ECE {cal.quality['ece']:.4f} (on the fitting data)"
    )
    err.print(f"wrote {path}")
