"""Run configurations over a dataset through the real embedded pipeline, and record what each one did.

The pool is encoded and written once, straight through the store (its chunks are already made), grouped
by source with a content hash as the file hash: a second run over the same data directory finds every
source unchanged and encodes nothing, which is how benchmarks cache the encoded pool. Every configuration
then runs as its own `Pipeline` over that one store, so a difference between configurations is never a
difference between indexes.

Queries run one at a time, after one warm-up per configuration (`Pipeline.awarm_up`: no paid call, no
ledger record), so latencies are those of a single request rather than of a saturated machine.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.progress import Progress

from leanrank.aio import run_sync
from leanrank.cascade.plan import Sendable
from leanrank.encode.base import DenseEncoder, Matrix, SparseEncoder, SparseVec
from leanrank.errors import ConfigError
from leanrank.eval.configs import PRESETS, EvalConfig
from leanrank.eval.datasets import Answer, Dataset, DatasetError, Doc
from leanrank.index.base import Store
from leanrank.index.edge import EdgeStore, point_id
from leanrank.pipeline import Pipeline
from leanrank.rerank.base import Reranker
from leanrank.rerank.catalog import reranker as reranker_by_name
from leanrank.retrieve.steering import Steering
from leanrank.settings import Settings
from leanrank.types import Chunk

TokenCount = Callable[[str], int]
ENCODE_BATCH = 32
REFERENCE = "reference"
LESSON_NEIGHBOURS = 3
"""Chunks on each side of a query's answer that make up its `lesson` context."""


@dataclass(frozen=True, slots=True)
class Sent:
    """One document handed to the rerank step: its tokens are what a priced backend bills.

    `answer_survives` is the hook for context trimming: once chunks are trimmed before reranking, a
    relevant chunk whose answer span was cut away no longer counts as reaching the reranker.
    """

    doc_id: str
    tokens: int
    answer_survives: bool = True


@dataclass(frozen=True, slots=True)
class QueryOutcome:
    """One query under one configuration: final ranking, what was sent to rerank, time per stage.

    `scores` and `sources` are the ranked hits' scores (as `served_by` scored them; the fused score under
    `identity`) and source files; `dropped` what each cascade stage (and `min_relevance`) left out;
    `agreement` the reranker-embedder agreement of `SearchResult`.
    """

    qid: str
    ranking: tuple[str, ...]
    sent: tuple[Sent, ...]
    query_tokens: int
    timings_s: Mapping[str, float]
    scores: tuple[float, ...] = ()
    sources: tuple[str, ...] = ()
    served_by: str = ""
    dropped: Mapping[str, int] = field(default_factory=dict)
    agreement: float | None = None
    judged: int = 0
    judge_usd: float | None = None


@dataclass(frozen=True)
class ConfigRun:
    """All outcomes of one configuration, in query order."""

    config: EvalConfig
    outcomes: tuple[QueryOutcome, ...]

    @property
    def name(self) -> str:
        return self.config.name

    def rankings(self) -> dict[str, list[str]]:
        return {o.qid: list(o.ranking) for o in self.outcomes}

    def candidates(self) -> dict[str, list[str]]:
        """Per query, the candidates that reached the rerank step with their answer, in first-stage order."""
        return {o.qid: [s.doc_id for s in o.sent if s.answer_survives] for o in self.outcomes}

    def requests(self) -> list[tuple[int, list[int]]]:
        """Per query, (query tokens, tokens of each document sent): what a rerank API would bill."""
        return [(o.query_tokens, [s.tokens for s in o.sent]) for o in self.outcomes]

    def timings(self, stage: str) -> list[float]:
        return [o.timings_s[stage] for o in self.outcomes if stage in o.timings_s]


@dataclass(frozen=True)
class EvalResult:
    """Every configuration's run over one dataset; `reference` is the silver reference run, when asked for."""

    dataset: Dataset
    runs: tuple[ConfigRun, ...]
    reference: ConfigRun | None
    encoded_docs: int
    index_s: float


def reference_config(reranker: str) -> EvalConfig:
    """The silver reference: `reranker` over the naive dense top-100."""
    naive = PRESETS["naive"]
    return EvalConfig(REFERENCE, f"{reranker} over the naive dense top-100", naive.retrieve, reranker)


def run_eval(
    dataset: Dataset,
    configs: Sequence[EvalConfig],
    *,
    dense: DenseEncoder,
    sparse: SparseEncoder,
    data_dir: Path,
    count_tokens: TokenCount | None = None,
    base: Settings | None = None,
    reference: str | None = None,
    progress: Progress | None = None,
) -> EvalResult:
    """Index the pool under `data_dir` (reusing what is already there), then run every configuration.

    `count_tokens` counts what is sent to rerank (default: the dense encoder's tokenizer); `reference`
    names the reranker of the silver reference run; `base` supplies the settings configurations leave
    alone (query length limit) and the index's `sparse` kind, which `sparse` must produce.
    """
    if not dataset.queries:
        raise DatasetError(f"{dataset.name}: no queries to run")
    names = [c.name for c in configs]
    if not names or len(set(names)) != len(names) or REFERENCE in names:
        raise ConfigError(
            f"need unique configuration names other than {REFERENCE!r}, got: {', '.join(names)}"
        )
    count = count_tokens or dense.token_count
    settings = base or Settings(data_dir=data_dir)
    store = EdgeStore(data_dir / "index", dim=dense.dim, encoder=dense.name, sparse=settings.sparse)
    try:
        t0 = time.perf_counter()
        encoded = index_pool(store, dense, sparse, dataset.docs, count_tokens=count, progress=progress)
        index_s = time.perf_counter() - t0
        todo = [*configs, reference_config(reference)] if reference else list(configs)
        runs = run_sync(lambda: _run_all(todo, dataset, settings, dense, sparse, store, count, progress))
    finally:
        store.close()
    ref = runs.pop() if reference else None
    return EvalResult(dataset, tuple(runs), ref, encoded, index_s)


def index_pool(
    store: Store,
    dense: DenseEncoder,
    sparse: SparseEncoder,
    docs: Sequence[Doc],
    *,
    count_tokens: TokenCount,
    progress: Progress | None = None,
) -> int:
    """Write the pool source by source, skipping sources already indexed with the same content; returns
    how many docs were encoded. Sources of the pool's courses that the pool no longer has are deleted.
    """
    groups: dict[tuple[str, str], list[Doc]] = {}
    for doc in docs:
        groups.setdefault((doc.course, doc.source), []).append(doc)
    for course in {c for c, _ in groups}:
        for source in set(store.sources(course)) - {s for c, s in groups if c == course}:
            store.delete_source(course, source)
    pending = []
    for (course, source), group in groups.items():
        chunks = doc_chunks(group, count_tokens)
        if store.source_file_hashes(course, source) != {chunks[0].file_hash}:
            pending.append(chunks)
    texts = [c.indexed_text for chunks in pending for c in chunks]
    vectors, sparse_vecs = _encode(dense, sparse, texts, progress)
    at = 0
    for chunks in pending:
        end = at + len(chunks)
        store.replace_source(chunks[0].course, chunks[0].source, chunks, vectors[at:end], sparse_vecs[at:end])
        at = end
    if pending:
        store.optimize()
    return at


def doc_chunks(group: Sequence[Doc], count_tokens: TokenCount) -> list[Chunk]:
    """The docs of one source as indexed chunks; the content hash stands in for the file hash, so an
    unchanged source is recognised, and `meta["doc_id"]` maps hits back to the dataset's ids.

    Offsets are into each doc's own text: the pool has no source file to point into.
    """
    digest = hashlib.sha256()
    for d in group:
        digest.update(f"{d.doc_id}\x00{d.lang}\x00{d.context}\x00{d.text}\x01".encode())
    return [
        Chunk(
            course=d.course,
            source=d.source,
            index=i,
            text=d.text,
            start=0,
            end=len(d.text),
            heading=(),
            lang=d.lang,
            content_hash=hashlib.sha256(d.text.encode()).hexdigest()[:32],
            file_hash=digest.hexdigest(),
            tokens=count_tokens(d.text),
            meta={"doc_id": d.doc_id},
            context=d.context,
            langs=d.langs,
        )
        for i, d in enumerate(group)
    ]


def _encode(
    dense: DenseEncoder, sparse: SparseEncoder, texts: Sequence[str], progress: Progress | None
) -> tuple[Matrix, list[SparseVec]]:
    """Both vectors of `texts`, batch by batch: bge-m3's lexical weights come from the dense pass just run."""
    task = progress.add_task("encode pool", total=len(texts)) if progress and texts else None
    parts, sparse_vecs = [], []
    for i in range(0, len(texts), ENCODE_BATCH):
        batch = texts[i : i + ENCODE_BATCH]
        parts.append(dense.embed_passages(batch))
        sparse_vecs += sparse.embed_documents(batch)
        if progress and task is not None:
            progress.advance(task, len(batch))
    vectors = np.concatenate(parts) if parts else np.zeros((0, dense.dim), dtype=np.float32)
    return vectors, sparse_vecs


async def _run_all(
    configs: Sequence[EvalConfig],
    dataset: Dataset,
    settings: Settings,
    dense: DenseEncoder,
    sparse: SparseEncoder,
    store: Store,
    count: TokenCount,
    progress: Progress | None,
) -> list[ConfigRun]:
    rerankers: dict[str, Reranker] = {}
    tokens: dict[str, int] = {}
    runs = []
    contexts = lesson_context(dataset) if any(c.context == "lesson" for c in configs) else {}
    for config in configs:
        model = rerankers.get(config.reranker) or reranker_by_name(config.reranker)
        rerankers[config.reranker] = model
        with Pipeline(
            config.settings(settings), dense=dense, sparse=sparse, store=store, reranker=model
        ) as pipe:
            steering = contexts if config.context == "lesson" else {}
            outcomes = await _run_config(pipe, config, dataset, tokens, count, progress, steering)
        runs.append(ConfigRun(config, tuple(outcomes)))
    return runs


async def _run_config(
    pipe: Pipeline,
    config: EvalConfig,
    dataset: Dataset,
    tokens: dict[str, int],
    count: TokenCount,
    progress: Progress | None,
    steering: Mapping[str, Steering],
) -> list[QueryOutcome]:
    """Every query through one configuration's pipeline, after one unrecorded warm-up; `steering` is the
    context of each query that has one."""
    queries = dataset.queries
    task = progress.add_task(config.name, total=len(queries)) if progress else None
    if queries:  # lazy model loads and cold caches are not a query's latency; nothing billed or recorded
        await pipe.awarm_up(queries[0].text, queries[0].course, depth=config.depth)
    outcomes = []
    for q in queries:
        t0 = time.perf_counter()
        result = await pipe.asearch(q.text, q.course, k=config.depth, steering=steering.get(q.qid))
        timings = {**result.timings_s, "total": time.perf_counter() - t0}
        answer = dataset.answers.get(q.qid)
        sent = tuple(_sent(s, tokens, count, answer) for s in result.sent)
        ranking = tuple(h.chunk.meta["doc_id"] for h in result.hits)
        judge = result.judge_usage
        outcomes.append(
            QueryOutcome(
                q.qid,
                ranking,
                sent,
                count(q.text),
                timings,
                scores=tuple(h.score for h in result.hits),
                sources=tuple(h.chunk.source for h in result.hits),
                served_by=result.served_by,
                dropped=result.dropped,
                agreement=result.agreement,
                judged=judge.documents if judge else 0,
                judge_usd=result.judge_cost_usd,
            )
        )
        if progress and task is not None:
            progress.advance(task)
    return outcomes


def lesson_context(dataset: Dataset, neighbours: int = LESSON_NEIGHBOURS) -> dict[str, Steering]:
    """Per judged query, the context of a student reading the lesson its answer is in: the `neighbours`
    chunks before and after its first relevant doc in the same source, every relevant doc left out (the
    context must not hand over the answer). A query whose answer's source has no other chunk gets none."""
    ids: dict[str, str] = {}
    order: dict[tuple[str, str], list[str]] = {}
    groups: dict[tuple[str, str], list[Doc]] = {}
    for doc in dataset.docs:
        groups.setdefault((doc.course, doc.source), []).append(doc)
    for key, group in groups.items():
        for doc, chunk in zip(group, doc_chunks(group, len), strict=True):
            ids[doc.doc_id] = point_id(chunk)
        order[key] = [d.doc_id for d in group]
    where = {d.doc_id: (d.course, d.source) for d in dataset.docs}
    out = {}
    for qid, judged in dataset.qrels.items():
        relevant = [d for d, grade in judged.items() if grade > 0 and d in where]
        if not relevant:
            continue
        first = relevant[0]
        docs = order[where[first]]
        at = docs.index(first)
        near = [d for d in docs[max(0, at - neighbours) : at + neighbours + 1] if d not in judged]
        if near:
            out[qid] = Steering(positive_chunks=tuple(ids[d] for d in near))
    return out


def _sent(sendable: Sendable, memo: dict[str, int], count: TokenCount, answer: Answer | None) -> Sent:
    """What the rerank step was handed for one candidate: the whole chunk, or the window the cascade cut."""
    chunk = sendable.candidate.chunk
    doc_id = chunk.meta["doc_id"]
    if sendable.trimmed:
        window = (sendable.start, sendable.end)
        return Sent(doc_id, count(sendable.text), answer_survives(answer, doc_id, window, len(chunk.text)))
    if doc_id not in memo:
        memo[doc_id] = count(chunk.text)
    return Sent(doc_id, memo[doc_id])


def answer_survives(answer: Answer | None, doc_id: str, window: tuple[int, int], length: int) -> bool:
    """Whether a window (offsets into a chunk of `length` characters) still holds the answer span, or the
    part of it inside the chunk (an answer may run past a chunk's end).

    Only the judged answer's chunk can lose it; for other chunks, and unjudged queries, it is True.
    """
    if answer is None or answer.doc_id != doc_id:
        return True
    start, end = window
    return start <= answer.start and min(answer.start + len(answer.text), length) <= end
