"""What the report measures: ranking quality through ranx, and what a configuration sends and costs.

Ranking metrics are ranx's, never re-implemented here: ranx's kernels are tested against trec_eval, and one
implementation keeps the numbers comparable with published ones. This is the only module importing ranx.

Rankings are plain `{qid: [doc_id, ...]}` best first; they become ranx runs with strictly decreasing scores,
so ranx ranks exactly in the given order and ties never reorder documents.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from leanrank.errors import DependencyError

try:
    from ranx import Qrels, Run, compare, evaluate
except ImportError as exc:
    raise DependencyError("ranx", "eval") from exc

Rankings = Mapping[str, Sequence[str]]
Judgements = Mapping[str, Mapping[str, int]]

QUALITY_METRICS = (
    "ndcg@10",
    "recall@1",
    "recall@5",
    "recall@10",
    "recall@20",
    "recall@100",
    "hit_rate@10",
    "mrr@10",
    "precision@5",
)
# The paired t-test, not ranx's randomisation test: that one seeds numpy inside a parallel numba loop, so its
# p-values change from run to run. With hundreds of queries the two agree closely (Smucker et al., CIKM 2007).
STAT_TEST = "student"
STAT_TEST_LABEL = "paired t-test"
MAX_P = 0.05


class PricedModel(Protocol):
    """A rerank backend's price: what one request with these token counts costs, in US dollars."""

    @property
    def key(self) -> str: ...

    def cost_usd(self, query_tokens: int, document_tokens: Sequence[int]) -> float: ...


# An empty ranking becomes this one unjudged document: ranx's kernels need at least one row per query, and
# an unjudged document scores 0 on every metric here, as the empty list would.
_NOTHING = "\x00"
_SURROGATE_WIDTH = 12


def _scored(docs: Sequence[str]) -> dict[str, float]:
    return {doc: float(len(docs) - i) for i, doc in enumerate(docs)} or {_NOTHING: 0.0}


def write_trec_run(rankings: Rankings, name: str, path: Path) -> None:
    """`qid Q0 doc rank score name` lines, ranx's own TREC layout; queries with no documents have no lines.

    Written here rather than by `ranx.Run.save`, which compiles numba typed-dict accessors in every process
    (tens of seconds on two cores) just to iterate over the run.
    """
    lines = (
        f"{qid} Q0 {doc} {rank} {score} {name}\n"
        for qid, docs in rankings.items()
        for rank, (doc, score) in enumerate(_scored(docs).items(), 1)
        if docs
    )
    path.write_text("".join(lines), encoding="utf-8")


def write_trec_qrels(judgements: Judgements, path: Path) -> None:
    """`qid 0 doc grade` lines, the TREC qrels layout ranx and trec_eval read."""
    lines = (f"{qid} 0 {doc} {grade}\n" for qid, docs in judgements.items() for doc, grade in docs.items())
    path.write_text("".join(lines), encoding="utf-8")


def quality(
    judgements: Judgements, rankings: Rankings, metrics: Sequence[str] = QUALITY_METRICS
) -> dict[str, float]:
    """Mean of each ranx metric over the judged queries; a judged query missing from `rankings` scores 0.

    Plain dicts go to `ranx.evaluate` in the judgements' query order (ranx pairs them by position).
    """
    if not judgements:
        return {}
    run = {qid: _scored(rankings.get(qid, ())) for qid in judgements}
    scores = evaluate(
        {q: dict(d) for q, d in judgements.items()}, run, list(metrics), save_results_in_run=False
    )
    if len(metrics) == 1:  # ranx returns a bare float for one metric
        return {metrics[0]: float(scores)}
    return {m: float(v) for m, v in scores.items()}


def candidate_recall(judgements: Judgements, candidates: Rankings) -> float | None:
    """Share of judged queries with a relevant document among the candidates handed to the rerank step.

    ranx `hit_rate` over the candidate lists: no reranker can recover what the first stage did not hand it,
    so this bounds every reranker's quality. `candidates` must hold only candidates that still carry their
    answer (see `Sent.answer_survives` in the runner). None without judgements.
    """
    if not judgements:
        return None
    return quality(judgements, candidates, ["hit_rate"])["hit_rate"]


def significance(
    judgements: Judgements, runs: Mapping[str, Rankings], metrics: Sequence[str]
) -> dict[str, dict[str, dict[str, float]]]:
    """Paired p-values `{a: {b: {metric: p}}}` between every two configurations, from ranx `compare`.

    Doc ids are swapped for same-width surrogates first: ranx stores ids in numpy arrays as wide as the
    longest id, and numba compiles its kernels once per width; one width means one compile, cached on disk.
    """
    if len(runs) < 2 or not judgements:
        return {}
    ids = {d for j in judgements.values() for d in j} | {
        d for r in runs.values() for ds in r.values() for d in ds
    }
    alias = {d: f"{i:0{_SURROGATE_WIDTH}d}" for i, d in enumerate(sorted(ids | {_NOTHING}))}
    qrels = Qrels({q: {alias[d]: g for d, g in j.items()} for q, j in judgements.items()})
    ranx_runs = [
        Run({q: {alias[d]: s for d, s in _scored(r.get(q, ())).items()} for q in judgements}, name=name)
        for name, r in runs.items()
    ]
    report = compare(qrels, ranx_runs, list(metrics), stat_test=STAT_TEST, max_p=MAX_P).to_dict()
    return {
        a: {b: {m: _p(p) for m, p in by_metric.items()} for b, by_metric in report[a]["comparisons"].items()}
        for a in runs
    }


def _p(value: float) -> float:
    """Identical per-query scores make the t statistic 0/0; the two are then indistinguishable: p = 1."""
    return 1.0 if math.isnan(value) else float(value)


def cost_per_1k(model: PricedModel, requests: Sequence[tuple[int, Sequence[int]]]) -> float:
    """US dollars per 1,000 queries: the mean price of one query's rerank request, times 1,000.

    `requests` holds, per query, the query's tokens and the tokens of each document sent with it.
    """
    if not requests:
        return 0.0
    return 1000.0 * sum(model.cost_usd(q, docs) for q, docs in requests) / len(requests)


def percentiles(samples: Sequence[float], points: Sequence[int] = (50, 95)) -> dict[str, float]:
    """`{"p50": ..., "p95": ...}` by linear interpolation; NaN for no samples."""
    if not samples:
        return {f"p{p}": float("nan") for p in points}
    values = np.percentile(np.asarray(samples, dtype=float), list(points))
    return {f"p{p}": float(v) for p, v in zip(points, values, strict=True)}


def pareto_frontier(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, quality) points no other point beats: cheaper-or-equal and better-or-equal,
    strictly in one. Sorted by cost, so they draw as a line; equal points are all kept.
    """
    front = [
        i
        for i, (cost, q) in enumerate(points)
        if not any(c <= cost and v >= q and (c < cost or v > q) for c, v in points)
    ]
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))
