"""Turn an `EvalResult` into numbers per configuration, and write them: Markdown, JSON, TREC runs, a chart.

Quality, cost and latency sit side by side because the question the report answers is a trade-off: how
much nDCG@10 each dollar of reranking buys. Runs are saved in TREC format so any other tool (trec_eval,
ranx, pyserini) can re-score them without leanrank.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from leanrank.eval.metrics import (
    MAX_P,
    QUALITY_METRICS,
    STAT_TEST_LABEL,
    Judgements,
    PricedModel,
    Rankings,
    candidate_recall,
    cost_per_1k,
    pareto_frontier,
    percentiles,
    quality,
    significance,
    write_trec_qrels,
    write_trec_run,
)
from leanrank.eval.plot import PlotPoint, cost_quality_chart
from leanrank.eval.runner import ConfigRun, EvalResult
from leanrank.eval.silver import silver_scores

COMPARED_METRICS = ("ndcg@10", "mrr@10", "recall@10")
GROUP_METRICS = (
    "ndcg@10",
    "hit_rate@10",
)  # per query group: order quality, and whether the answer is in view
STAGES = ("retrieve", "cascade", "rerank", "total")
CHART = "cost_quality.png"
_LABELS = {
    "ndcg@10": "nDCG@10",
    "recall@1": "R@1",
    "recall@5": "R@5",
    "recall@10": "R@10",
    "recall@20": "R@20",
    "recall@100": "R@100",
    "hit_rate@10": "hit@10",
    "mrr@10": "MRR@10",
    "precision@5": "P@5",
}


@dataclass(frozen=True)
class ConfigSummary:
    """One configuration's row: quality on judged queries, what reached the rerank step, its price, time.

    `tokens_per_query` counts the query once plus every document sent (XLM-R tokens); `cost_per_1k` is
    US dollars per 1,000 queries by priced model key; `latency_ms` is p50/p95 per stage. `groups` has,
    per query group (`Query.group`: language, cross-lingual), the judged queries, nDCG@10, hit@10 (a relevant
    document in the first 10) and candidate recall, when the dataset has more than one group.

    Issue 20's diagnostics: `distinct_sources_5` is the mean number of different source files (lessons) among
    the first 5 hits; `hits_per_query` how many hits came back, `hit_precision` the share of them relevant
    (judged queries with hits) and `answered` the share of judged queries with a relevant hit among them
    (what `min_relevance` trades); `skipped` the share of queries the paid stage never saw
    (`min_similarity`); `agreement` the mean reranker-embedder agreement (None: nothing reranked).
    """

    name: str
    summary: str
    first_stage: str
    depth: int
    reranker: str
    quality: dict[str, float]
    candidate_recall: float | None
    docs_per_query: float
    tokens_per_query: float
    cost_per_1k: dict[str, float]
    latency_ms: dict[str, dict[str, float]]
    silver: dict[str, float]
    groups: dict[str, dict[str, float]] = field(default_factory=dict)
    distinct_sources_5: float = 0.0
    hits_per_query: float = 0.0
    hit_precision: float | None = None
    answered: float | None = None
    skipped: float = 0.0
    agreement: float | None = None
    judged_per_query: float = 0.0
    judge_usd_per_1k: float | None = None


@dataclass(frozen=True)
class EvalReport:
    """Everything the report files hold; `p_values[a][b][metric]` are paired tests between configurations."""

    dataset: str
    queries: int
    judged_queries: int
    pool_docs: int
    courses: list[str]
    encoded_docs: int
    index_s: float
    reference: str | None
    configs: list[ConfigSummary]
    p_values: dict[str, dict[str, dict[str, float]]]
    frontier: list[str]
    notes: list[str]


def summarise(result: EvalResult, prices: Sequence[PricedModel] = ()) -> EvalReport:
    """The numbers of every configuration; silver scores only when the result has a reference run."""
    data = result.dataset
    judged = {q: docs for q, docs in data.qrels.items() if docs}
    reference = result.reference.rankings() if result.reference else None
    groups: dict[str, set[str]] = {}
    for q in data.queries:
        if q.group and q.qid in judged:
            groups.setdefault(q.group, set()).add(q.qid)
    if len(groups) < 2:
        groups = {}
    configs = [_summary(run, judged, prices, reference, groups) for run in result.runs]
    p_values = significance(judged, {r.name: r.rankings() for r in result.runs}, COMPARED_METRICS)
    points = _points(configs, prices)
    front = pareto_frontier([(p.cost, p.quality) for p in points])
    return EvalReport(
        dataset=data.name,
        queries=len(data.queries),
        judged_queries=len(judged),
        pool_docs=len(data.docs),
        courses=data.courses,
        encoded_docs=result.encoded_docs,
        index_s=result.index_s,
        reference=result.reference.config.reranker if result.reference else None,
        configs=configs,
        p_values=p_values,
        frontier=[f"{points[i].config} · {points[i].series}" for i in front],
        notes=list(data.notes),
    )


def _summary(
    run: ConfigRun,
    judged: Judgements,
    prices: Sequence[PricedModel],
    reference: Rankings | None,
    groups: dict[str, set[str]],
) -> ConfigSummary:
    requests = run.requests()
    n = max(len(requests), 1)
    rankings = run.rankings()
    return ConfigSummary(
        name=run.name,
        summary=run.config.summary,
        first_stage=run.config.retrieve.mode,
        depth=run.config.depth,
        reranker=run.config.reranker,
        quality=quality(judged, rankings),
        candidate_recall=candidate_recall(judged, run.candidates()),
        docs_per_query=sum(len(docs) for _, docs in requests) / n,
        tokens_per_query=sum(q + sum(docs) for q, docs in requests) / n,
        cost_per_1k={m.key: cost_per_1k(m, requests) for m in prices},
        latency_ms={s: {k: 1000 * v for k, v in percentiles(run.timings(s)).items()} for s in STAGES},
        silver=silver_scores(reference, rankings) if reference is not None else {},
        groups={
            name: _group(qids, judged, rankings, run.candidates()) for name, qids in sorted(groups.items())
        },
        **_returned(run, judged),
        judged_per_query=sum(o.judged for o in run.outcomes) / n,
        judge_usd_per_1k=_judge_usd_per_1k(run),
    )


def _returned(run: ConfigRun, judged: Judgements) -> dict[str, Any]:
    """The diagnostics of what came back (see `ConfigSummary`)."""
    outcomes = run.outcomes
    n = max(len(outcomes), 1)
    shown = [o for o in outcomes if o.qid in judged and o.ranking]
    agreements = [o.agreement for o in outcomes if o.agreement is not None]
    hits_relevant = [sum(1 for d in o.ranking if d in judged[o.qid]) for o in shown]
    return {
        "distinct_sources_5": sum(len(set(o.sources[:5])) for o in outcomes) / n,
        "hits_per_query": sum(len(o.ranking) for o in outcomes) / n,
        "hit_precision": (
            sum(r / len(o.ranking) for r, o in zip(hits_relevant, shown, strict=True)) / len(shown)
            if shown
            else None
        ),
        "answered": sum(1 for r in hits_relevant if r) / len(judged) if judged else None,
        "skipped": sum(1 for o in outcomes if o.dropped.get("min_similarity")) / n,
        "agreement": sum(agreements) / len(agreements) if agreements else None,
    }


def _judge_usd_per_1k(run: ConfigRun) -> float | None:
    """What the LLM judge cost per 1,000 queries, as its ledger priced it; None: no judge, or unpriced."""
    costs = [o.judge_usd for o in run.outcomes if o.judged]
    if not costs or any(c is None for c in costs):
        return None
    return 1000 * sum(c for c in costs if c is not None) / len(run.outcomes)


def _group(qids: set[str], judged: Judgements, rankings: Rankings, candidates: Rankings) -> dict[str, float]:
    part = {q: judged[q] for q in qids}
    scores = quality(part, rankings, GROUP_METRICS)
    return {
        "queries": float(len(part)),
        **scores,
        "candidate_recall": candidate_recall(part, candidates) or 0.0,
    }


def _quality_axis(c: ConfigSummary) -> float | None:
    """nDCG@10 on judgements where there are any, else against the silver reference."""
    return c.quality.get("ndcg@10", c.silver.get("ndcg@10"))


def _points(configs: Sequence[ConfigSummary], prices: Sequence[PricedModel]) -> list[PlotPoint]:
    """One point per configuration and priced model; without prices, rerank tokens per query stand in."""
    points: list[PlotPoint] = []
    for c in configs:
        q = _quality_axis(c)
        if q is None:
            continue
        if prices:
            points.extend(PlotPoint(c.name, m.key, c.cost_per_1k[m.key], q) for m in prices)
        else:
            points.append(PlotPoint(c.name, "rerank tokens", c.tokens_per_query, q))
    return [p for p in points if p.cost > 0]  # a log axis has no place for zero


def write_report(
    report: EvalReport, result: EvalResult, out: Path, prices: Sequence[PricedModel] = ()
) -> list[Path]:
    """report.md, report.json, runs/*.trec (+ qrels.trec when judged) and the chart under `out` (made when
    missing); returns the paths.

    The files are written into a staging folder beside `out` and moved in once all are whole, so an
    OSError (raised as is) leaves `out` as it was: no report half-written, or half of one and half of an
    older one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name or 'report'}-", dir=out.parent))
    try:
        names = [p.relative_to(staging) for p in _write_files(report, result, staging, prices)]
        taken = next((out / n for n in names if (out / n).is_dir()), None)
        if taken is not None:  # every place is made sure of before the first file moves in
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(taken))
        for name in names:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
        for name in names:
            (staging / name).replace(out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / name for name in names]


def _write_files(
    report: EvalReport, result: EvalResult, out: Path, prices: Sequence[PricedModel]
) -> list[Path]:
    runs_dir = out / "runs"
    runs_dir.mkdir()
    written = []
    for run in [*result.runs, *([result.reference] if result.reference else [])]:
        for suffix, rankings in (("", run.rankings()), (".candidates", run.candidates())):
            path = runs_dir / f"{run.name}{suffix}.trec"
            write_trec_run(rankings, run.name, path)
            written.append(path)
    judged = {q: docs for q, docs in result.dataset.qrels.items() if docs}
    if judged:
        write_trec_qrels(judged, runs_dir / "qrels.trec")
        written.append(runs_dir / "qrels.trec")
    points = _points(report.configs, prices)
    if points:
        front = pareto_frontier([(p.cost, p.quality) for p in points])
        cost_quality_chart(
            points,
            front,
            out / CHART,
            xlabel="$ per 1,000 queries (log)" if prices else "rerank tokens per query (log)",
            ylabel="nDCG@10" if report.judged_queries else "nDCG@10 vs silver reference",
            title=f"{report.dataset}: {report.queries} queries",
        )
        written.append(out / CHART)
    (out / "report.json").write_text(
        json.dumps(asdict(report), indent=2, ensure_ascii=False, allow_nan=False), encoding="utf-8"
    )
    (out / "report.md").write_text(markdown(report, chart=bool(points)), encoding="utf-8")
    return [*written, out / "report.json", out / "report.md"]


def markdown(report: EvalReport, *, chart: bool = False) -> str:
    """The report as Markdown tables: quality, cost, significance, silver agreement, latency."""
    r = report
    lines = [
        f"# leanrank eval: `{r.dataset}`",
        "",
        f"{r.queries} queries ({r.judged_queries} judged) over a pool of {r.pool_docs} documents in "
        f"{', '.join(r.courses)}; {r.encoded_docs} documents encoded this run ({r.index_s:.0f} s).",
        "",
        *(f"- {note}" for note in r.notes),
        *([""] if r.notes else []),
        "## Quality and what reaches the reranker",
        "",
    ]
    metrics = [m for m in QUALITY_METRICS if any(m in c.quality for c in r.configs)]
    head = ["config", "first stage", "depth", "reranker", *(_LABELS[m] for m in metrics)]
    head += ["cand. recall", "docs/q", "tokens/q"]
    rows = [
        [
            c.name,
            c.first_stage,
            str(c.depth),
            c.reranker,
            *(_num(c.quality[m]) for m in metrics),
            _num(c.candidate_recall),
            f"{c.docs_per_query:.1f}",
            f"{c.tokens_per_query:.0f}",
        ]
        for c in r.configs
    ]
    lines += _table(head, rows)
    group_names = sorted({g for c in r.configs for g in c.groups})
    if group_names:
        lines += ["", "## By question group (nDCG@10 / hit@10 / candidate recall)", ""]
        sizes = {
            g: int(next(c.groups[g]["queries"] for c in r.configs if g in c.groups)) for g in group_names
        }
        lines += _table(
            ["config", *(f"{g} ({sizes[g]})" for g in group_names)],
            [
                [
                    c.name,
                    *(
                        " / ".join(_num(c.groups[g][m]) for m in (*GROUP_METRICS, "candidate_recall"))
                        if g in c.groups
                        else "—"
                        for g in group_names
                    ),
                ]
                for c in r.configs
            ],
        )
    lines += ["", "## What came back: diversity, thresholds, agreement", ""]
    lines += _table(
        ["config", "sources in top 5", "hits/q", "hit precision", "answered", "skipped", "agreement"],
        [
            [
                c.name,
                f"{c.distinct_sources_5:.2f}",
                f"{c.hits_per_query:.1f}",
                _num(c.hit_precision),
                _num(c.answered),
                f"{c.skipped:.1%}",
                _num(c.agreement),
            ]
            for c in r.configs
        ],
    )
    keys = sorted({k for c in r.configs for k in c.cost_per_1k})
    if keys:
        lines += ["", "## $ per 1,000 queries", ""]
        lines += _table(
            ["config", *keys], [[c.name, *(_money(c.cost_per_1k[k]) for k in keys)] for c in r.configs]
        )
    judging = [c for c in r.configs if c.judged_per_query]
    if judging:
        lines += ["", "## LLM judge", ""]
        lines += _table(
            ["config", "passages judged/q", "$ per 1,000 queries"],
            [
                [
                    c.name,
                    f"{c.judged_per_query:.1f}",
                    "—" if c.judge_usd_per_1k is None else _money(c.judge_usd_per_1k),
                ]
                for c in judging
            ],
        )
    if r.p_values:
        base = r.configs[0].name
        lines += [
            "",
            f"## Paired significance vs `{base}` ({STAT_TEST_LABEL}, * p < {MAX_P})",
            "",
        ]
        rows = []
        for c in r.configs[1:]:
            cells = [c.name]
            for m in COMPARED_METRICS:
                delta = c.quality[m] - r.configs[0].quality[m]
                p = r.p_values[c.name][base][m]
                cells.append(f"{delta:+.3f} (p={p:.3f}){'*' if p < MAX_P else ''}")
            rows.append(cells)
        lines += _table(["config", *(f"Δ {_LABELS[m]}" for m in COMPARED_METRICS)], rows)
    if r.reference:
        lines += ["", f"## Agreement with the silver reference (`{r.reference}` over the naive top-100)", ""]
        names = list(r.configs[0].silver)
        lines += _table(
            ["config", *names], [[c.name, *(_num(c.silver.get(n)) for n in names)] for c in r.configs]
        )
    lines += ["", "## Latency per stage (ms, p50 / p95)", ""]
    lines += _table(
        ["config", *STAGES],
        [
            [c.name, *(f"{c.latency_ms[s]['p50']:.1f} / {c.latency_ms[s]['p95']:.1f}" for s in STAGES)]
            for c in r.configs
        ],
    )
    if chart:
        lines += [
            "",
            f"Pareto frontier (cheapest first): {', '.join(r.frontier)}.",
            "",
            f"![cost vs quality]({CHART})",
        ]
    return "\n".join(lines) + "\n"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _num(x: float | None) -> str:
    return "—" if x is None or math.isnan(x) else f"{x:.3f}"


def _money(x: float) -> str:
    return f"${x:.2f}" if x >= 1 else f"${x:.4f}"
