"""Silver labels for unlabelled queries: the strongest reranker over the naive top-100 is the reference.

Without judgements the question "how much quality does a cheaper configuration give up" can still be
answered relative to the most expensive pipeline one would run: the reference reranker over the naive
dense top-100. Its top-k become binary judgements, so the scores are ranx metrics against those:
`overlap@k` is ranx precision@k against the reference top-k (|top-k ∩ reference top-k| / k), and
`ndcg@10` is nDCG@10 against the reference top-10.
"""

from __future__ import annotations

from leanrank.eval.metrics import Rankings, quality

OVERLAP_KS = (5, 10)
NDCG_K = 10


def silver_qrels(reference: Rankings, k: int) -> dict[str, dict[str, int]]:
    """The reference's top-k of each query as relevant (grade 1); queries it returned nothing for drop out."""
    return {qid: dict.fromkeys(docs[:k], 1) for qid, docs in reference.items() if docs}


def silver_scores(reference: Rankings, rankings: Rankings) -> dict[str, float]:
    """`overlap@k` for k in `OVERLAP_KS` and `ndcg@10` of `rankings` against the reference's top-k."""
    wanted = [(f"overlap@{k}", f"precision@{k}", k) for k in OVERLAP_KS]
    wanted.append((f"ndcg@{NDCG_K}", f"ndcg@{NDCG_K}", NDCG_K))
    scores: dict[str, float] = {}
    for name, metric, k in wanted:
        judged = silver_qrels(reference, k)
        if judged:
            scores[name] = quality(judged, rankings, [metric])[metric]
    return scores
