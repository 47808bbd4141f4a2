"""`leanrank index migrate`: move the embedded index to a Qdrant server or cluster without re-encoding.

Errors the user can fix print one line on stderr and exit with status 2; a failed verification exits 1.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from leanrank.cli.console import Steps, err, out, styled, typer_app
from leanrank.cli.errors import cli_errors
from leanrank.errors import InputError
from leanrank.index.base import Quantization
from leanrank.index.edge import EdgeStore, stored_meta
from leanrank.index.factory import parse_location
from leanrank.settings import Settings, SparseKind

index_app = typer_app()
# soft_wrap: messages stay one line each in logs, whatever the terminal width.


# A callback keeps this a group even with one command, so the command is `leanrank index migrate`.
@index_app.callback()
def index_group() -> None:
    """Manage the index."""


@index_app.command("migrate")
def migrate_command(
    source: Annotated[
        str, typer.Option("--from", help="The embedded index: edge:PATH (edge: alone is data_dir/index).")
    ],
    target: Annotated[
        str, typer.Option("--to", help="qdrant:http(s)://HOST:6333 for a server, qdrant:PATH for local mode.")
    ],
    batch: Annotated[
        int, typer.Option("--batch", min=1, max=10_000, help="Points per read and write.")
    ] = 512,
    queries: Annotated[
        int, typer.Option("--queries", min=0, help="Sample queries compared after the copy; 0 skips them.")
    ] = 20,
) -> None:
    """Copy every chunk with its vectors into a Qdrant collection; resumable, then verified.

    The collection, API key, shards and replication come from the `store` settings
    (LEANRANK_STORE__COLLECTION, ...). An interrupted run continues where it stopped when run again.
    """
    with cli_errors():
        settings = Settings()
        ok = _migrate(settings, source, target, batch=batch, queries=queries)
    if not ok:
        raise typer.Exit(1)


def _migrate(settings: Settings, source: str, target: str, *, batch: int, queries: int) -> bool:
    from leanrank.index.migrate import migrate
    from leanrank.index.qdrant import QdrantStore  # the optional extra; a missing one is a one-line error

    src, dst = parse_location(source), parse_location(target)
    if src.kind != "edge":
        raise InputError(f"--from {source!r}: give the embedded index as edge:PATH")
    if dst.kind == "edge":
        raise InputError(
            f"--to {target!r}: give a Qdrant server (qdrant:URL) or a local-mode folder (qdrant:PATH)"
        )
    path = Path(src.where) if src.where else settings.data_dir / "index"
    meta = stored_meta(path)
    if meta is None:
        raise InputError(f"{path}: no leanrank index there")
    dim, encoder = int(meta["dim"]), str(meta["encoder"])
    sparse: SparseKind = "bge-m3" if meta.get("sparse") == "bge-m3" else "bm25"  # the copy keeps it
    # The source opens as it was built (its metadata is checked); the copy's quantization is the settings'.
    kind = meta.get("quantization")
    store = settings.store
    built = Quantization(kind, store.rescore, store.oversampling) if kind in ("int8", "binary") else None
    with (
        closing(EdgeStore(path, dim=dim, encoder=encoder, sparse=sparse, quantization=built)) as edge,
        closing(
            QdrantStore(dst.where, dim=dim, encoder=encoder, settings=settings.store, sparse=sparse)
        ) as qdrant,
        Steps() as bar,
    ):
        task = bar.add_task("migrate", total=None, unit="points")
        report = migrate(
            edge,
            qdrant,
            source_name=f"edge:{path.resolve()}",
            batch=batch,
            queries=queries,
            fusion=settings.retrieve,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if report.resumed_after:
        err.print(f"resumed after {report.resumed_after} points copied by an earlier run")
    table = Table("course", "source", "target", "")
    for course, (n_src, n_dst) in report.counts.items():
        table.add_row(course, str(n_src), str(n_dst), styled("ok" if n_src == n_dst else ("differs", "red")))
    out.print(table)
    for line in report.mismatches:
        err.print(styled(("mismatch:", "yellow"), f" {line}"))
    if report.mismatches:
        err.print(
            "rankings can differ when the collection holds other data, has several shards (BM25 IDF is "
            "per shard) or still counts deleted points in IDF; see deploy/README.md"
        )
    agreed = report.queries - len(report.mismatches)
    verdict = ("verified", "green") if report.ok else ("verification failed", "red")
    err.print(
        styled(
            verdict,
            f": {report.copied} points copied to {qdrant.collection} at {dst.where}; "
            f"{agreed}/{report.queries} sample queries agree",
        )
    )
    return report.ok
