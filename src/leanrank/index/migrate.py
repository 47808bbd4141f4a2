"""Copy an index into a Qdrant server or cluster: streaming, resumable, verified.

Points are streamed in id order, in batches, with both vectors and the payload, and upserted under the same
ids; nothing is re-encoded, so the copy ranks exactly as the original. After each batch the offset to go on
from is saved in the target collection's metadata, so an interrupted run continues where it stopped, and
re-copying a batch is harmless because point ids are deterministic. The copy is then checked: chunk counts
per course, and a sample of hybrid queries (the stored vectors of sample chunks used as queries, so no
encoder is needed) whose top-k must agree on both sides once ties are broken one way (`canonical_order`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from leanrank.index.base import Candidate, HybridQuery, PointSource
from leanrank.index.qdrant import QdrantStore
from leanrank.settings import RetrieveSettings

TOP_K = 10
# Scores this close are one tie: the embedded engine scores in float32, local mode in float64.
_TIE = 1e-6


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What one run copied and what the verification found; `ok` is the verdict."""

    copied: int
    resumed_after: int
    counts: dict[str, tuple[int, int]]
    queries: int
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches and all(src == dst for src, dst in self.counts.values())


def _engine_rrf(rank: int, k: int, weight: float) -> float:
    """Qdrant's weighted RRF term for a 0-based rank, as its engine and its local mode compute it."""
    return 0.0 if weight <= 0 else 1.0 / ((rank + 1) / weight + k - 1)


def canonical_order(
    hits: Sequence[Candidate], *, rrf_k: int, weights: tuple[float, float]
) -> list[tuple[str, float]]:
    """The fused ranking with ties broken one fixed way: (chunk id, fused score), best first.

    Qdrant orders neither equal scores within a list (BM25 ties are common: same terms, same length) nor
    equal fused sums, and two stores holding the same points break them differently. Here every hit of a
    tie group in a list gets the group's best rank, fused scores are recomputed with the engine's formula,
    and equal sums are ordered by chunk id. `hits` must hold every hit of both lists (query with
    `limit >= 2 * prefetch`), since ranks are recomputed from the hits present.
    """
    fused = dict.fromkeys((c.chunk_id for c in hits), 0.0)
    for weight, scores in zip(
        weights, ({c.chunk_id: c.dense for c in hits}, {c.chunk_id: c.bm25 for c in hits}), strict=True
    ):
        listed = {cid: s for cid, s in scores.items() if s is not None}
        for cid, score in listed.items():
            rank = sum(1 for other in listed.values() if other > score + _TIE)
            fused[cid] += _engine_rrf(rank, rrf_k, weight)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def rankings_agree(
    a: Sequence[Candidate],
    b: Sequence[Candidate],
    *,
    k: int,
    rrf_k: int,
    weights: tuple[float, float],
    tol: float = 1e-4,
) -> bool:
    """The same top `k` once ties are broken the same way, with every score within `tol`."""
    top_a = canonical_order(a, rrf_k=rrf_k, weights=weights)[:k]
    top_b = canonical_order(b, rrf_k=rrf_k, weights=weights)[:k]
    if [cid for cid, _ in top_a] != [cid for cid, _ in top_b]:
        return False
    by_a, by_b = {c.chunk_id: c for c in a}, {c.chunk_id: c for c in b}

    def close(x: float | None, y: float | None) -> bool:
        return (x is None and y is None) or (x is not None and y is not None and abs(x - y) <= tol)

    return all(
        close(fa, fb) and close(by_a[cid].dense, by_b[cid].dense) and close(by_a[cid].bm25, by_b[cid].bm25)
        for (cid, fa), (_, fb) in zip(top_a, top_b, strict=True)
    )


def _verify_queries(
    source: PointSource, target: QdrantStore, n: int, fusion: RetrieveSettings
) -> tuple[int, list[str]]:
    """Run up to `n` sample queries on both stores: how many ran, and those whose rankings differ."""
    pool, _ = source.scroll(n * 10)
    sample = pool[:: max(1, len(pool) // n)][:n]
    weights = (fusion.dense_weight, fusion.sparse_weight)
    mismatches = []
    for p in sample:
        query = HybridQuery(
            course=p.chunk.course,
            dense=p.dense,
            sparse=p.sparse,
            limit=2 * fusion.prefetch,
            prefetch=fusion.prefetch,
            rrf_k=fusion.rrf_k,
            weights=weights,
        )
        found = source.hybrid(query), target.hybrid(query)
        if not rankings_agree(*found, k=TOP_K, rrf_k=fusion.rrf_k, weights=weights):
            mismatches.append(
                f"query from {p.chunk.course}/{p.chunk.source}#{p.chunk.index}: top-{TOP_K} differs"
            )
    return len(sample), mismatches


def migrate(
    source: PointSource,
    target: QdrantStore,
    *,
    source_name: str,
    batch: int = 512,
    queries: int = 20,
    fusion: RetrieveSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> MigrationReport:
    """Copy every point of `source` into `target`, resuming a run from `source_name` that did not finish.

    `progress(copied, total)` is called before the first batch and after each one. A finished run leaves
    a `done` checkpoint; running again copies everything again (idempotent), which also picks up chunks
    ingested into the source since. Chunks deleted from the source are not deleted from the target: the
    count check reports them.
    """
    if batch < 1:
        raise ValueError("batch must be positive")
    state = target.checkpoint()
    resuming = state is not None and state.get("source") == source_name and not state.get("done")
    offset: str | None = state["next"] if state and resuming else None
    before = int(state["copied"]) if state and resuming else 0
    total = sum(source.courses().values())
    copied = 0
    if progress:
        progress(before, total)
    while True:
        points, offset = source.scroll(batch, offset)
        target.upsert_points(points)
        copied += len(points)
        target.save_checkpoint(
            {"source": source_name, "next": offset, "copied": before + copied, "done": offset is None}
        )
        if progress:
            progress(before + copied, total)
        if offset is None:
            break
    target_counts = target.courses()
    counts = {course: (n, target_counts.get(course, 0)) for course, n in sorted(source.courses().items())}
    checked, mismatches = (
        _verify_queries(source, target, queries, fusion or RetrieveSettings()) if queries else (0, [])
    )
    return MigrationReport(copied, before, counts, checked, mismatches)
