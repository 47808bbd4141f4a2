"""Fit a calibration from an evaluation run: every returned hit's score against its judgement.

The scores are the ones the pipeline hands out (`Hit.score`): the reranker's where it reranked, the fused
first-stage score under `identity`. Hits are judged by the dataset's qrels; unjudged queries are left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from leanrank.errors import InputError
from leanrank.eval.datasets import Dataset
from leanrank.eval.runner import ConfigRun
from leanrank.rerank.calibration import Calibration, Method, fit

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True, slots=True)
class Trade:
    """What a `min_relevance` of `threshold` keeps of the scored hits: their share, the share of them that
    are relevant (precision) and the share of the relevant hits kept (recall)."""

    threshold: float
    kept: float
    precision: float | None
    recall: float


def judged_pairs(run: ConfigRun, dataset: Dataset) -> tuple[str, list[float], list[bool]]:
    """The backend that served most queries, and (score, relevant) for every hit it scored on judged queries.

    Raises `InputError` when no query is judged or nothing was served.
    """
    judged = {q: set(docs) for q, docs in dataset.qrels.items() if docs}
    served = Counter(o.served_by for o in run.outcomes if o.qid in judged and o.ranking)
    if not served:
        raise InputError(f"{dataset.name}: no judged query returned hits; nothing to calibrate on")
    backend = served.most_common(1)[0][0]
    scores: list[float] = []
    labels: list[bool] = []
    for o in run.outcomes:
        if o.qid in judged and o.served_by == backend:
            scores.extend(o.scores)
            labels.extend(d in judged[o.qid] for d in o.ranking)
    return backend, scores, labels


def calibrate_run(run: ConfigRun, dataset: Dataset, method: Method) -> Calibration:
    """`fit` on `judged_pairs`, recording the dataset and the settings that shaped the scores."""
    backend, scores, labels = judged_pairs(run, dataset)
    config = run.config
    shaped = {
        "retrieve": config.retrieve.model_dump(mode="json"),
        "cascade": config.cascade.model_dump(mode="json", exclude={"preset"}),
    }
    return fit(scores, labels, backend=backend, method=method, dataset=dataset.name, settings=shaped)


def trade_off(
    cal: Calibration,
    scores: Sequence[float],
    labels: Sequence[bool],
    thresholds: Sequence[float] = THRESHOLDS,
) -> list[Trade]:
    """The precision/recall trade of each threshold on (score, relevant) pairs."""
    probabilities = cal.probability(scores)
    relevant = sum(labels)
    trades = []
    for t in thresholds:
        kept = [label for p, label in zip(probabilities, labels, strict=True) if p >= t]
        hits = sum(kept)
        trades.append(
            Trade(
                threshold=t,
                kept=len(kept) / len(labels) if labels else 0.0,
                precision=hits / len(kept) if kept else None,
                recall=hits / relevant if relevant else 0.0,
            )
        )
    return trades
