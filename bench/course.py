"""Benchmark (not part of the test suite): a real bilingual course — notebooks, code, cross-lingual questions.

The evaluation harness on `own:COURSE@QUESTIONS:SPLIT`: the course's files go through leanrank's own loaders
and chunker exactly as `leanrank ingest` would, and a passage is relevant when it comes from a question's
gold file and contains its answer phrase. For each configuration: hit@10 of the final order (identity
reranker, so the first stage's order), candidate recall (a relevant passage among what the rerank step is
handed) and tokens handed to it per question, both as ratios to `naive` (dense top-100, whole chunks), and
the same broken down by question group (ru, en, cross-lingual).

Targets (issue 14): the default at ≥ 99% of naive's candidate recall and ≤ 15% of its tokens; hit@10 ≥ 0.95
over all questions and ≥ 0.90 over cross-lingual ones. Settings are chosen on `--split tune` and reported
on `--split test` (the default); questions split by a hash of their id.

    .venv/bin/python bench/course.py [--split test|tune|all] [--configs naive,default,...]
        [--course ../shared/data/mlcourse] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from harness import run_configs
from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.eval.datasets import load_dataset
from leanrank.eval.report import summarise

CONFIGS = "naive,default,cheap,best,hybrid-20,dense-20"


def run(args: argparse.Namespace) -> dict[str, Any]:
    dense, sparse = E5SmallEncoder(), Bm25Encoder()
    split = "" if args.split == "all" else f":{args.split}"
    spec = f"own:{args.course / 'course'}@{args.course / 'questions.jsonl'}{split}"
    data = load_dataset(spec, count_tokens=dense.token_count)
    result = run_configs(data, args.configs, dense, sparse, args.out / "course-index")
    report = summarise(result)
    naive = next(c for c in report.configs if c.name == "naive")
    rows = []
    for c in report.configs:
        rows.append(
            {
                "config": c.name,
                "hit@10": c.quality["hit_rate@10"],
                "ndcg@10": c.quality["ndcg@10"],
                "candidate_recall": c.candidate_recall,
                "recall_vs_naive": (c.candidate_recall or 0) / (naive.candidate_recall or 1),
                "docs_per_query": c.docs_per_query,
                "tokens_per_query": c.tokens_per_query,
                "tokens_vs_naive": c.tokens_per_query / naive.tokens_per_query,
                "groups": c.groups,
                "cascade_p95_ms": c.latency_ms["cascade"]["p95"],
            }
        )
    return {"dataset": data.name, "judged": report.judged_queries, "notes": report.notes, "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    groups = sorted({g for r in result["rows"] for g in r["groups"]})
    sizes = {g: int(result["rows"][0]["groups"][g]["queries"]) for g in groups}
    head = "| config | hit@10 | nDCG@10 | cand. recall | × naive | docs/q | tokens/q | × naive |"
    head += "".join(f" {g} ({sizes[g]}) hit@10 / cand. |" for g in groups)
    lines = [head, "|" + "---|" * (8 + len(groups))]
    for r in result["rows"]:
        cells = [
            r["config"],
            f"{r['hit@10']:.3f}",
            f"{r['ndcg@10']:.3f}",
            f"{r['candidate_recall']:.3f}",
            f"{r['recall_vs_naive']:.3f}",
            f"{r['docs_per_query']:.1f}",
            f"{r['tokens_per_query']:,.0f}",
            f"{r['tokens_vs_naive']:.1%}",
            *(
                f"{r['groups'][g]['hit_rate@10']:.3f} / {r['groups'][g]['candidate_recall']:.3f}"
                for g in groups
            ),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = Path(__file__).resolve().parents[1].parent / "shared"
    ap.add_argument("--course", type=Path, default=shared / "data" / "mlcourse")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    ap.add_argument("--split", choices=["tune", "test", "all"], default="test")
    ap.add_argument("--configs", default=CONFIGS)
    args = ap.parse_args()
    t0 = time.perf_counter()
    result = run(args)
    out = args.out / "course"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.split}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(markdown(result))
    print(f"\n{result['dataset']}: {result['judged']} judged questions; {time.perf_counter() - t0:.0f} s.")
    for note in result["notes"]:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
