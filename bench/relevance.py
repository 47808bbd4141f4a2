"""Benchmark (not part of the test suite), issue 20: MMR diversity, calibrated `min_relevance`, the
nothing-relevant `min_similarity` cut, through the evaluation harness, on the real course and on XQuAD.

For each dataset:

1. **Calibration.** The default pipeline (identity reranker, so the calibrated score is the fused RRF score)
   runs over the tune split; Platt and isotonic maps are fitted on its hits (`leanrank.eval.calibrate`, what
   `leanrank calibrate` does) and scored on the test split's hits: Brier score and expected calibration
   error (ECE), against always answering the test base rate.
2. **Thresholds and diversity** on the test split, each a configuration of the harness: `default`, MMR at
   several λ, `min_relevance` at several P (Platt map from 1.), `min_similarity` at several dense cosines.
   Reported: candidate recall and tokens (what the paid stage gets), hit@10, distinct source files in the
   first 5 hits, hits returned, their precision and the share of questions with a relevant hit among them,
   and the share of questions the paid stage never saw, for the dataset's questions (on topic) and for the
   other dataset's questions asked of this one (off topic: the "nothing here is relevant" case).

    .venv/bin/python bench/relevance.py [--datasets course,xquad] [--limit 300] [--out bench/out]

The pools are encoded once under `bench/out/course-index` and `bench/out/eval-index`, shared with
`bench/course.py` and `bench/cascade.py`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from harness import run_configs
from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.eval.calibrate import calibrate_run, judged_pairs
from leanrank.eval.configs import PRESETS, EvalConfig
from leanrank.eval.datasets import Dataset, Query, load_dataset
from leanrank.eval.report import summarise
from leanrank.rerank.calibration import calibration_error, fit
from leanrank.settings import CascadeSettings

LAMBDAS = (0.9, 0.7, 0.5)
RELEVANCE = (0.2, 0.3, 0.5)
SIMILARITY = (0.80, 0.83, 0.86)
OFF_TOPIC = 60


def specs(shared: Path) -> dict[str, tuple[str, str]]:
    """Dataset name → (spec without split, index folder name)."""
    course = shared / "data" / "mlcourse"
    return {
        "course": (f"own:{course / 'course'}@{course / 'questions.jsonl'}", "course-index"),
        "xquad": ("xquad:ru+en+ntrex", "eval-index"),
    }


def with_off_topic(data: Dataset, other: Dataset) -> Dataset:
    """`data` plus up to `OFF_TOPIC` of `other`'s questions asked of `data`'s first course, unjudged."""
    course = data.courses[0]
    extra = [
        Query(f"off-{q.qid}", q.text, q.lang, course, group="off-topic")
        for q in other.limit(OFF_TOPIC).queries
    ]
    return dataclasses.replace(data, queries=(*data.queries, *extra))


def configs(calibration: Path) -> list[EvalConfig]:
    base = PRESETS["default"]
    out = [base]
    for lam in LAMBDAS:
        cascade = CascadeSettings(preset="balanced", mmr_lambda=lam)
        out.append(dataclasses.replace(base, name=f"mmr λ={lam}", cascade=cascade))
    for p in RELEVANCE:
        out.append(
            dataclasses.replace(base, name=f"min_relevance {p}", min_relevance=p, calibration_dir=calibration)
        )
    for s in SIMILARITY:
        cascade = CascadeSettings(preset="balanced", min_similarity=s)
        out.append(dataclasses.replace(base, name=f"min_similarity {s}", cascade=cascade))
    return out


def run_one(
    name: str, args: argparse.Namespace, dense: E5SmallEncoder, sparse: Bm25Encoder
) -> dict[str, Any]:
    spec, folder = specs(args.shared)[name]
    index = args.out / folder
    # Off-topic questions: XQuAD's (without its NTREX pool, not needed for questions) or the course's.
    other_spec = "xquad:ru+en" if name == "course" else specs(args.shared)["course"][0]
    load = {"count_tokens": dense.token_count, "data_root": args.shared / "data"}
    tune = load_dataset(f"{spec}:tune", **load)
    test = load_dataset(f"{spec}:test", **load)
    if args.limit:
        tune, test = tune.limit(args.limit), test.limit(args.limit)
    test = with_off_topic(test, load_dataset(other_spec, **load))
    # 1. Calibration on the tune split, scored on the test split.
    fitted = run_configs(tune, "default", dense, sparse, index)
    work = args.out / "relevance" / name
    cals = {}
    for method in ("platt", "isotonic"):
        cal = calibrate_run(fitted.runs[0], tune, method)  # type: ignore[arg-type]
        cal.write(work / method)
        cals[method] = cal
    # 2. Every configuration on the test split.
    chosen = [c for c in configs((work / "platt").resolve()) if c.name.startswith(("default", *args.only))]
    result = run_configs(test, chosen, dense, sparse, index)
    report = summarise(result)
    _, scores, labels = judged_pairs(result.runs[0], test)
    base_rate = sum(labels) / len(labels)
    calibration = {
        m: {
            "fitted_on": {"pairs": c.pairs, "positives": c.positives, **c.quality},
            "test": calibration_error(c.probability(scores), labels),
            "params": {"a": c.a, "b": c.b} if m == "platt" else {"steps": len(c.x)},
        }
        for m, c in cals.items()
    }
    calibration["base rate"] = {"test": {"brier": base_rate * (1 - base_rate), "ece": 0.0}}
    # A refit on the test pairs: how far the tune map is from the best map for this split.
    calibration["platt refit on test"] = {"test": fit(scores, labels, backend="x").quality}
    default = report.configs[0]
    rows = []
    for c, run in zip(report.configs, result.runs, strict=True):
        groups: dict[str, list[bool]] = {"on": [], "off": []}
        for o, q in zip(run.outcomes, test.queries, strict=True):
            groups["off" if q.group == "off-topic" else "on"].append(bool(o.dropped.get("min_similarity")))
        rows.append(
            {
                "config": c.name,
                "candidate_recall": c.candidate_recall,
                "recall_vs_default": (c.candidate_recall or 0) / (default.candidate_recall or 1),
                "tokens_per_query": c.tokens_per_query,
                "hit@10": c.quality["hit_rate@10"],
                "ndcg@10": c.quality["ndcg@10"],
                "sources@5": c.distinct_sources_5,
                "hits_per_query": c.hits_per_query,
                "hit_precision": c.hit_precision,
                "answered": c.answered,
                "skipped_on_topic": sum(groups["on"]) / max(len(groups["on"]), 1),
                "skipped_off_topic": sum(groups["off"]) / max(len(groups["off"]), 1),
            }
        )
    return {
        "dataset": test.name,
        "judged": report.judged_queries,
        "off_topic": sum(1 for q in test.queries if q.group == "off-topic"),
        "calibration": calibration,
        "rows": rows,
    }


def markdown(name: str, result: dict[str, Any]) -> str:
    lines = [
        f"### {name}: `{result['dataset']}` ({result['judged']} judged, {result['off_topic']} off-topic)",
        "",
        "| calibration | Brier (test) | ECE (test) |",
        "|---|---|---|",
    ]
    for m, v in result["calibration"].items():
        lines.append(f"| {m} | {v['test']['brier']:.4f} | {v['test']['ece']:.4f} |")
    lines += [
        "",
        "| config | cand. recall | × default | tokens/q | hit@10 | sources in top 5 | hits/q | hit precision "
        "| answered | skipped on topic | skipped off topic |",
        "|" + "---|" * 11,
    ]
    for r in result["rows"]:
        cells = [
            r["config"],
            f"{r['candidate_recall']:.3f}",
            f"{r['recall_vs_default']:.3f}",
            f"{r['tokens_per_query']:,.0f}",
            f"{r['hit@10']:.3f}",
            f"{r['sources@5']:.2f}",
            f"{r['hits_per_query']:.1f}",
            "—" if r["hit_precision"] is None else f"{r['hit_precision']:.3f}",
            "—" if r["answered"] is None else f"{r['answered']:.3f}",
            f"{r['skipped_on_topic']:.1%}",
            f"{r['skipped_off_topic']:.1%}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    ap.add_argument("--datasets", default="course,xquad")
    ap.add_argument("--limit", type=int, default=None, help="at most N questions per split")
    ap.add_argument(
        "--only",
        default="mmr,min_relevance,min_similarity",
        type=lambda text: tuple(text.split(",")),
        help="configurations besides default, by name prefix",
    )
    args = ap.parse_args()
    dense, sparse = E5SmallEncoder(), Bm25Encoder()
    for name in args.datasets.split(","):
        t0 = time.perf_counter()
        result = run_one(name, args, dense, sparse)
        folder = args.out / "relevance"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
        print(markdown(name, result))
        print(f"\n{name}: {time.perf_counter() - t0:.0f} s\n", flush=True)


if __name__ == "__main__":
    main()
