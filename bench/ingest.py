"""Ingest throughput, first time and after a one-line edit: what re-embedding only changed chunks saves.

1. End to end, through `Pipeline.ingest` with the bundled encoder, on one lesson of the real bilingual
   course (a notebook of about 80 chunks): the first ingest, the same file after one line of one
   markdown cell in its middle was edited, and after a new cell was inserted at its top (every chunk
   moves). Each row: chunks written, chunks embedded, seconds, chunks/s and embedded tokens/s.
2. For every lesson of the course, without the encoder: how many chunks the same kind of one-line edit
   gives an indexed text no earlier ingest embedded (what the passage-vector cache re-embeds).

    .venv/bin/python bench/ingest.py [--lesson PATH] [--course DIR] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from leanrank.encode.base import Matrix
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.ingest.chunker import ChunkerConfig, chunk_source
from leanrank.ingest.loaders import parse_file
from leanrank.pipeline import Pipeline
from leanrank.settings import Settings

COURSE = Path("../shared/data/mlcourse/course")
LESSON = "jupyter_russian/topic04_linear_models/topic4_linear_models_part1_mse_likelihood_bias_variance.ipynb"


class Counting(E5SmallEncoder):
    """The bundled encoder, counting the passages and tokens it embeds."""

    def __init__(self) -> None:
        super().__init__()
        self.passages = 0
        self.tokens = 0

    def embed_passages(self, texts: Sequence[str]) -> Matrix:
        self.passages += len(texts)
        self.tokens += sum(self.token_count(t) for t in texts)
        return super().embed_passages(texts)


def edit_one_line(notebook: bytes) -> bytes:
    """The longest line of the middle markdown cell (of those over 200 characters) gets one more word."""
    nb = json.loads(notebook)
    cells = [c for c in nb["cells"] if c["cell_type"] == "markdown" and len("".join(c["source"])) > 200]
    cell = cells[len(cells) // 2]
    lines = cell["source"] if isinstance(cell["source"], list) else cell["source"].splitlines(keepends=True)
    i = max(range(len(lines)), key=lambda k: len(lines[k]))
    end = "\n" if lines[i].endswith("\n") else ""
    lines[i] = lines[i].rstrip("\n") + " (edited)" + end
    cell["source"] = lines
    return json.dumps(nb, ensure_ascii=False).encode()


def insert_cell(notebook: bytes) -> bytes:
    nb = json.loads(notebook)
    nb["cells"].insert(
        0, {"cell_type": "markdown", "metadata": {}, "source": ["# Введение\n", "Новый абзац."]}
    )
    return json.dumps(nb, ensure_ascii=False).encode()


def changed_chunks(path: Path, encoder: E5SmallEncoder, config: ChunkerConfig) -> tuple[int, int]:
    """Chunks of `path`, and how many of the edited file's chunks have an indexed text the original lacks."""

    def chunks(data: bytes) -> set[str]:
        source = parse_file(path, data)
        found = chunk_source(
            source, course="c", file_hash="h", count_tokens=encoder.token_count, config=config
        )
        return {c.indexed_text for c in found}

    data = path.read_bytes()
    before = chunks(data)
    return len(before), len(chunks(edit_one_line(data)) - before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--course", type=Path, default=COURSE)
    parser.add_argument("--lesson", default=LESSON, help="A notebook under --course.")
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="leanrank-ingest-", dir=args.out))
    encoder = Counting()
    rows: list[dict[str, Any]] = []
    try:
        folder = tmp / "course"
        folder.mkdir()
        lesson = folder / Path(args.lesson).name
        original = (args.course / args.lesson).read_bytes()
        versions = {
            "first ingest": original,
            "one line edited": edit_one_line(original),
            "a cell inserted at the top": insert_cell(edit_one_line(original)),
        }
        with Pipeline(Settings(data_dir=tmp / "data"), dense=encoder) as pipe:
            encoder.embed_passages(["warm-up"])  # the model loads outside the timings
            for case, data in versions.items():
                lesson.write_bytes(data)
                passages, tokens = encoder.passages, encoder.tokens
                t0 = time.perf_counter()
                [report] = pipe.ingest(folder, "bench").files
                seconds = time.perf_counter() - t0
                rows.append(
                    {
                        "case": case,
                        "chunks": report.chunks,
                        "embedded": report.embedded,
                        "embedded_tokens": encoder.tokens - tokens,
                        "seconds": seconds,
                        "chunks_per_s": report.chunks / seconds,
                        "embedded_tokens_per_s": (encoder.tokens - tokens) / seconds,
                    }
                )
                assert report.embedded == encoder.passages - passages
            config = pipe._chunker
        lessons = sorted(args.course.rglob("*.ipynb"))
        edits = [
            (p.relative_to(args.course).as_posix(), *changed_chunks(p, encoder, config)) for p in lessons
        ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    load = os.getloadavg()[0]
    print(f"{args.lesson}; load average {load:.1f} on {os.cpu_count()} cores\n")
    print("| case | chunks written | chunks embedded | embedded tokens | s | chunks/s | embedded tokens/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['case']} | {r['chunks']} | {r['embedded']} | {r['embedded_tokens']:,} | "
            f"{r['seconds']:.2f} | {r['chunks_per_s']:.1f} | {r['embedded_tokens_per_s']:,.0f} |"
        )
    changed = [n for _, _, n in edits]
    print(
        f"\nOne-line edit of each of {len(edits)} lessons ({min(c for _, c, _ in edits)}-"
        f"{max(c for _, c, _ in edits)} chunks): chunks re-embedded median {statistics.median(changed):g}, "
        f"max {max(changed)}; {sum(1 for n in changed if n <= 3)}/{len(edits)} at most 3"
    )
    report_json = {"lesson": args.lesson, "load_avg_1m": load, "rows": rows, "edits": edits}
    (args.out / "ingest.json").write_text(
        json.dumps(report_json, indent=2, ensure_ascii=False), encoding="utf-8"
    )


if __name__ == "__main__":
    main()
