"""The `Store` contract: what retrieval and ingestion need from a vector engine, and nothing more."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from leanrank.encode.base import Matrix, SparseVec
from leanrank.settings import SparseKind, StoreSettings
from leanrank.types import Chunk, Lang

NO_TERMS = SparseVec((), ())
SPARSE_VECTOR: dict[SparseKind, str] = {"bm25": "bm25", "bge-m3": "lexical"}
"""The named sparse vector each kind is stored as. `bm25` has the IDF modifier: its weights are BM25's
term-frequency part and the engine multiplies in IDF. `lexical` has none: bge-m3's learned weights are
matched by their plain dot product, the lexical matching score the model was trained with
(Chen et al. 2024, "BGE M3-Embedding", arXiv:2402.03216)."""


@dataclass(frozen=True, slots=True)
class Quantization:
    """A quantised copy of the dense vectors, searched first (`kind`: int8 scalar or 1-bit binary).

    Scalar: each dimension as int8 between the 0.99-quantile bounds of the data (Qdrant's default); binary:
    the sign of each dimension, compared by Hamming distance. With `rescore`, the best `oversampling` ×
    limit hits of the quantised search are re-scored with the full float vectors (Qdrant's documented
    remedy for the accuracy lost). The engine uses the quantised copy in optimised (indexed) segments.
    """

    kind: Literal["int8", "binary"]
    rescore: bool = True
    oversampling: float = 2.0


def quantization_of(settings: StoreSettings) -> Quantization | None:
    """The `store.quantization`, `rescore` and `oversampling` settings as a `Quantization` (None: off)."""
    if settings.quantization == "none":
        return None
    return Quantization(settings.quantization, settings.rescore, settings.oversampling)


SteerStrategy = Literal["sum_scores", "best_score", "discover"]


@dataclass(frozen=True, slots=True)
class Steer:
    """Examples the dense lists move toward (`positives`) and away from (`negatives`), as dense vectors.

    Run with the engine's own queries: `sum_scores` and `best_score` are Qdrant's recommend strategies over
    the query vector plus the positives against the negatives; `discover` is its discovery query (target: the
    query vector; context: every positive/negative pair), which needs both sides.
    """

    positives: tuple[Matrix, ...] = ()
    negatives: tuple[Matrix, ...] = ()
    strategy: SteerStrategy = "sum_scores"


@dataclass(frozen=True, slots=True)
class HybridQuery:
    """One first-stage request: both vectors, the filters applied to every prefetch, and the fusion.

    The fused legs are the dense list, the BM25 list (when the query has terms), one more dense list
    per language in `lang_legs`, restricted to chunks containing that language, and a second BM25 list for
    `translated`, the query's words in the other language (when it has terms), over the chunks that do not
    contain `translated_skip` (the query's own language, whose chunks the BM25 list already matches by the
    words themselves, so a noisy translation cannot outrank them there). `weights` are the dense and BM25
    weights, then one per language leg (0 drops a leg); `translated_weight` weighs the last.
    """

    course: str
    dense: Matrix
    sparse: SparseVec
    limit: int
    prefetch: int
    rrf_k: int
    weights: tuple[float, ...] = (1.0, 1.0)
    langs: tuple[Lang, ...] = ()  # chunks containing one of them, `mixed`: both (`ingest.lang.lang_filter`)
    lang_legs: tuple[Lang, ...] = ()
    heading_prefix: tuple[str, ...] = ()
    min_score: float | None = None
    with_vectors: bool = False  # return each hit's dense vector (cross-lingual dedup compares them)
    steer: Steer | None = None  # the dense lists recommend from examples instead of the plain nearest
    translated: SparseVec = NO_TERMS
    translated_weight: float = 0.0
    translated_skip: Lang | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A fused first-stage hit; `dense`/`bm25` are `None` when the chunk was outside that list's prefetch.

    `bm25` and `bm25_rank` are the sparse list's score and rank, whichever kind the index holds (`bm25`
    or bge-m3's learned `lexical` weights).
    """

    chunk_id: str
    chunk: Chunk
    fused: float
    dense: float | None
    bm25: float | None
    dense_rank: int | None
    bm25_rank: int | None
    vector: Matrix | None = None


@dataclass(frozen=True, slots=True)
class StoredPoint:
    """One indexed chunk with both its vectors: what a migration copies from one store to another."""

    chunk_id: str
    chunk: Chunk
    dense: Matrix
    sparse: SparseVec


class Store(Protocol):
    """A course-partitioned hybrid index. Every write of one source is all-or-nothing for readers."""

    def replace_source(
        self, course: str, source: str, chunks: Sequence[Chunk], dense: Matrix, sparse: Sequence[SparseVec]
    ) -> None:
        """Make `chunks` the whole content of (`course`, `source`), removing what was there before."""
        ...

    def source_file_hashes(self, course: str, source: str) -> set[str]:
        """File hashes of the versions of `source` currently indexed (normally zero or one)."""
        ...

    def sources(self, course: str) -> dict[str, int]:
        """Chunk count per source of `course`."""
        ...

    def headings(self, course: str) -> dict[str, int]:
        """Chunk count per heading path prefix of `course` (`"Lesson 2"`, `"Lesson 2 > Loops"`, ...)."""
        ...

    def delete_source(self, course: str, source: str) -> int: ...

    def delete_course(self, course: str) -> int: ...

    def courses(self) -> dict[str, int]:
        """Chunk count per course."""
        ...

    def count(self, course: str) -> int:
        """Chunks of one course; cheap enough to check on every search."""
        ...

    def chunks(self, course: str) -> Iterator[Chunk]:
        """Every chunk of one course, payload only (the course lexicon is built from their text)."""
        ...

    def hybrid(self, query: HybridQuery) -> list[Candidate]:
        """Dense and BM25 prefetches with the same filters, fused by weighted RRF, best first."""
        ...

    def dense_vectors(
        self, course: str, *, chunk_ids: Sequence[str] = (), source: str | None = None
    ) -> dict[str, Matrix]:
        """Dense vectors by chunk id: of `chunk_ids` that are in `course`, or of every chunk of `source`."""
        ...

    def optimize(self) -> None:
        """Build the search indexes (HNSW graphs, quantised copies) of what was written since the last call,
        where the engine does not do it on its own. Called after each ingest that changed something: cheap
        when little changed (a few ms), the real work when a course grew by thousands of chunks."""
        ...

    def close(self) -> None: ...


class PointSource(Store, Protocol):
    """A store that can stream out everything it holds; kept out of `Store`, which retrieval uses."""

    def scroll(self, limit: int, offset: str | None = None) -> tuple[list[StoredPoint], str | None]:
        """Up to `limit` points in id order from `offset`, and where to go on from (`None` at the end)."""
        ...
