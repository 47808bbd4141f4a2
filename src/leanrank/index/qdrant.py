"""A `Store` on qdrant-client: a Qdrant server or cluster, or qdrant-client's local mode (tests, small sets).

Only this module imports `qdrant_client` (the `leanrank[qdrant]` extra). It ranks as the embedded store does:
the same schema (named dense vector `dense`, cosine; sparse `bm25` with the IDF modifier, or `lexical` without
it for bge-m3's learned weights, `leanrank.index.base.SPARSE_VECTOR`), the same payload
and deterministic point ids (`leanrank.index.edge`), BM25 vectors from the same client-side analyser, and the
same fusion, server-side: weighted RRF with the query's explicit `k`, which Qdrant scores as
`1 / ((rank + 1) / w + k - 1)` with 0-based ranks, in the engine and in local mode alike. Local mode supports
`RrfQuery` with `k` and weights and the IDF modifier, so nothing is fused client-side.

Where a server can differ: BM25 IDF is computed per shard (only `shard_number = 1` matches the embedded store
exactly), dense search above the full-scan threshold is approximate (HNSW), and a server keeps counting
deleted points in IDF until their segments are optimised, while local mode counts live points only.

Multitenancy: one collection for all courses; `course` is a keyword index marked `is_tenant`, and HNSW
graphs are built per course only (`m=0`, `payload_m=16`) because every search is filtered by course.
The index metadata (schema, dim, encoder; quantization and sparse kind when not the defaults) lives in the
collection's metadata and is checked on open.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any, TypeVar

import httpx
import numpy as np

from leanrank.encode.base import Matrix, SparseVec
from leanrank.errors import ConfigError, DependencyError, LeanrankError, StoreError
from leanrank.index.base import (
    SPARSE_VECTOR,
    Candidate,
    HybridQuery,
    Quantization,
    Steer,
    StoredPoint,
    quantization_of,
)
from leanrank.index.edge import (
    KEYWORD_FIELDS,
    LANGS_FIELD,
    SCHEMA_VERSION,
    chunk_payload,
    dense_of,
    payload_chunk,
    point_id,
)
from leanrank.ingest.lang import lang_filter
from leanrank.retry import RetryPolicy, retry_after_s
from leanrank.settings import SparseKind, StoreSettings
from leanrank.types import Chunk

try:
    from qdrant_client import QdrantClient, models
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise DependencyError("qdrant-client", "qdrant") from exc

T = TypeVar("T")
_META_KEY = "leanrank"
_CHECKPOINT_KEY = "leanrank_migration"
_FACET_LIMIT = 1_000_000
# Points per write request: keeps a 1024-dim batch far below the server's 32 MB request limit.
_WRITE_BATCH = 256
_SCROLL_PAGE = 1024


def _match(key: str, value: str) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def _sparse(vec: SparseVec) -> models.SparseVector:
    return models.SparseVector(indices=list(vec.indices), values=list(vec.values))


def _point(pid: str, chunk: Chunk, dense: Matrix, using: str, sparse: SparseVec) -> models.PointStruct:
    return models.PointStruct(
        id=pid, vector={"dense": dense.tolist(), using: _sparse(sparse)}, payload=chunk_payload(chunk)
    )


def _dense_query(vector: Matrix, steer: Steer | None) -> Any:
    """The dense lists' query: the vector itself (nearest), or a recommend/discover query from `steer`."""
    target = vector.tolist()
    if steer is None:
        return target
    positives = [v.tolist() for v in steer.positives]
    negatives = [v.tolist() for v in steer.negatives]
    if steer.strategy == "discover":
        pairs = [models.ContextPair(positive=p, negative=n) for p in positives for n in negatives]
        return models.DiscoverQuery(discover=models.DiscoverInput(target=target, context=pairs))
    strategy = (
        models.RecommendStrategy.BEST_SCORE
        if steer.strategy == "best_score"
        else models.RecommendStrategy.SUM_SCORES
    )
    examples = models.RecommendInput(positive=[target, *positives], negative=negatives, strategy=strategy)
    return models.RecommendQuery(recommend=examples)


def _quantization_config(kind: str) -> models.QuantizationConfig | None:
    """The collection's quantisation (`leanrank.index.base.Quantization`), kept in RAM; None for `none`."""
    if kind == "int8":
        scalar = models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=0.99, always_ram=True)
        return models.ScalarQuantization(scalar=scalar)
    if kind == "binary":
        return models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))
    return None


def _search_params(quantization: Quantization | None) -> models.SearchParams | None:
    if quantization is None:
        return None
    rescoring = models.QuantizationSearchParams(
        rescore=quantization.rescore, oversampling=quantization.oversampling
    )
    return models.SearchParams(quantization=rescoring)


def _transient(exc: Exception) -> bool:
    """Worth retrying: the server was unreachable, timed out or answered 5xx; never a 4xx."""
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code is not None and exc.status_code >= 500
    return isinstance(exc, ResponseHandlingException) and isinstance(exc.source, httpx.TransportError)


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnexpectedResponse):
        try:
            detail = str(exc.structured()["status"]["error"])
        except (ValueError, KeyError, TypeError):
            detail = exc.reason_phrase
        return f"HTTP {exc.status_code}: {detail}"
    if isinstance(exc, ResponseHandlingException):
        return f"cannot reach Qdrant ({type(exc.source).__name__}: {exc.source})"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class QdrantStore:
    """A `Store` on one Qdrant collection; `where` is a server URL, `:memory:` or a folder for local mode.

    `dim`, `encoder`, the quantisation of `settings` and the `sparse` kind are checked against the collection
    (ConfigError when it was built with others).
    """

    def __init__(
        self,
        where: str,
        *,
        dim: int,
        encoder: str,
        settings: StoreSettings | None = None,
        sparse: SparseKind = "bm25",
        backoff_s: float = 0.5,
    ) -> None:
        s = settings or StoreSettings()
        self.where = where
        self._kind = sparse
        self._sparse = SPARSE_VECTOR[sparse]
        self.collection = s.collection
        self._retry = RetryPolicy(max_attempts=s.retries + 1, backoff_s=backoff_s)
        self._remote = where.startswith(("http://", "https://"))
        self._params = _search_params(quantization_of(s))
        try:
            if self._remote:
                key = s.api_key.get_secret_value() if s.api_key else None
                self._client = QdrantClient(
                    url=where, api_key=key, timeout=s.timeout_s, check_compatibility=False
                )
            elif where == ":memory:":
                self._client = QdrantClient(location=":memory:")
            else:
                self._client = QdrantClient(path=where)
        except (RuntimeError, ValueError) as exc:  # local mode: folder locked by another process, bad path
            raise StoreError(f"opening Qdrant at {where} failed: {_reason(exc)}") from exc
        try:
            expected: dict[str, Any] = {"schema": SCHEMA_VERSION, "dim": dim, "encoder": encoder}
            if s.quantization != "none":  # recorded only when set: collections made before it stay valid
                expected["quantization"] = s.quantization
            if sparse != "bm25":  # likewise
                expected["sparse"] = sparse
            self._open(expected, s)
        except LeanrankError:
            self._client.close()  # local mode holds a lock on its folder until closed
            raise

    def _open(self, expected: dict[str, Any], s: StoreSettings) -> None:
        """Create the collection if missing, then check it was built for this encoder and dim."""
        if not self._call("opening the collection", lambda: self._client.collection_exists(self.collection)):
            self._create(expected, s)
        found = self._metadata().get(_META_KEY)
        if found is None:
            raise ConfigError(
                f"collection {self.collection!r} at {self.where} was not created by leanrank; "
                "choose another one with LEANRANK_STORE__COLLECTION"
            )
        if found != expected:
            raise ConfigError(
                f"collection {self.collection!r} at {self.where} was built with {found}, settings ask for "
                f"{expected}; use another collection (LEANRANK_STORE__COLLECTION) or re-ingest"
            )

    def _call(self, action: str, fn: Callable[[], T]) -> T:
        """Run one client call, retrying transient failures with exponential backoff and jitter.

        Every call leanrank makes is idempotent (deterministic point ids, deletes by filter), so a retry
        after a timeout whose request did reach the server changes nothing.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except Exception as exc:  # the client raises many unrelated types; classified below
                if attempt >= self._retry.max_attempts or not _transient(exc):
                    raise StoreError(f"{action} failed: {_reason(exc)}") from exc
                headers = exc.headers if isinstance(exc, UnexpectedResponse) else {}
                delay = self._retry.wait_s(attempt, retry_after_s(headers))
            time.sleep(delay)

    def _create(self, meta: dict[str, Any], s: StoreSettings) -> None:
        def create() -> None:
            self._client.create_collection(
                self.collection,
                vectors_config={
                    "dense": models.VectorParams(size=meta["dim"], distance=models.Distance.COSINE)
                },
                sparse_vectors_config={
                    self._sparse: models.SparseVectorParams(
                        modifier=models.Modifier.IDF if self._kind == "bm25" else None
                    )
                },
                shard_number=s.shard_number,
                replication_factor=s.replication_factor,
                write_consistency_factor=s.write_consistency_factor,
                hnsw_config=models.HnswConfigDiff(m=0, payload_m=16),
                quantization_config=_quantization_config(s.quantization),
                metadata={_META_KEY: meta},
            )

        try:
            self._call(f"creating collection {self.collection}", create)
        except StoreError:
            # Another replica may have created it between our check and our create.
            if not self._call(
                "opening the collection", lambda: self._client.collection_exists(self.collection)
            ):
                raise
            return
        if not self._remote:
            return  # local mode scans payloads and ignores (and warns about) payload indexes
        for field in KEYWORD_FIELDS:
            self._index(field)

    def _index(self, field: str) -> None:
        # With `m=0` the only graphs are per value of a field with `enable_hnsw`: one per course, none for
        # the many sources, file hashes and headings.
        tenant = field == "course"
        schema = models.KeywordIndexParams(
            type=models.KeywordIndexType.KEYWORD, is_tenant=tenant, enable_hnsw=tenant
        )
        self._call(
            f"indexing {field}",
            lambda: self._client.create_payload_index(self.collection, field, field_schema=schema, wait=True),
        )

    def _metadata(self) -> dict[str, Any]:
        info = self._call("reading the collection", lambda: self._client.get_collection(self.collection))
        return dict(info.config.metadata or {})

    # writes -------------------------------------------------------------------------------------------------

    def replace_source(
        self, course: str, source: str, chunks: Sequence[Chunk], dense: Matrix, sparse: Sequence[SparseVec]
    ) -> None:
        """Upsert the new points, then delete the source's points of other file versions.

        As in the embedded store, readers never see the source missing: unchanged chunks keep their ids and
        are overwritten in place, and stale ones go only after the new ones are written; at worst a reader
        briefly sees old and new versions of changed chunks together. Qdrant has no transactions, so this
        is as close to all-or-nothing as it allows: a source that fits one request (`_WRITE_BATCH` points)
        is sent with its delete as one batch, applied in order, keeping that window short. A write that
        fails half-way leaves both file hashes indexed, so the next ingest sees the source as changed and
        writes it again; every step is idempotent.
        """
        if not len(chunks) == len(dense) == len(sparse):
            raise ValueError("chunks, dense and sparse must have the same length")
        hashes = sorted({c.file_hash for c in chunks})
        points = [
            _point(point_id(c), c, d, self._sparse, s) for c, d, s in zip(chunks, dense, sparse, strict=True)
        ]
        stale = models.Filter(
            must=[_match("course", course), _match("source", source)],
            must_not=[models.FieldCondition(key="file_hash", match=models.MatchAny(any=hashes))]
            if hashes
            else None,
        )
        batches = [points[i : i + _WRITE_BATCH] for i in range(0, len(points), _WRITE_BATCH)] or [[]]
        for batch in batches[:-1]:
            self._upsert(batch, f"writing {course}/{source}")
        last: list[models.UpdateOperation] = (
            [models.UpsertOperation(upsert=models.PointsList(points=batches[-1]))] if batches[-1] else []
        )
        last.append(models.DeleteOperation(delete=models.FilterSelector(filter=stale)))
        self._call(
            f"writing {course}/{source}",
            lambda: self._client.batch_update_points(self.collection, last, wait=True),
        )

    def _upsert(self, points: list[models.PointStruct], action: str) -> None:
        self._call(action, lambda: self._client.upsert(self.collection, points, wait=True))

    def upsert_points(self, points: Sequence[StoredPoint]) -> None:
        """Write points exactly as another store holds them (migration); their ids make this idempotent."""
        structs = [_point(p.chunk_id, p.chunk, p.dense, self._sparse, p.sparse) for p in points]
        for i in range(0, len(structs), _WRITE_BATCH):
            self._upsert(structs[i : i + _WRITE_BATCH], "writing migrated points")

    def _delete(self, flt: models.Filter, what: str) -> int:
        n = self._count(flt, what)
        if n:
            self._call(
                f"deleting {what}",
                lambda: self._client.delete(self.collection, models.FilterSelector(filter=flt), wait=True),
            )
        return n

    def delete_source(self, course: str, source: str) -> int:
        return self._delete(models.Filter(must=[_match("course", course), _match("source", source)]), source)

    def delete_course(self, course: str) -> int:
        return self._delete(models.Filter(must=[_match("course", course)]), f"course {course}")

    # reads --------------------------------------------------------------------------------------------------

    def _count(self, flt: models.Filter, what: str) -> int:
        result = self._call(
            f"counting {what}", lambda: self._client.count(self.collection, count_filter=flt, exact=True)
        )
        return int(result.count)

    def count(self, course: str) -> int:
        return self._count(models.Filter(must=[_match("course", course)]), f"course {course}")

    def _facet(self, key: str, flt: models.Filter | None) -> dict[str, int]:
        response = self._call(
            f"listing {key}",
            lambda: self._client.facet(
                self.collection, key, facet_filter=flt, limit=_FACET_LIMIT, exact=True
            ),
        )
        return {str(hit.value): int(hit.count) for hit in response.hits if hit.count}

    def source_file_hashes(self, course: str, source: str) -> set[str]:
        return set(
            self._facet("file_hash", models.Filter(must=[_match("course", course), _match("source", source)]))
        )

    def sources(self, course: str) -> dict[str, int]:
        return self._facet("source", models.Filter(must=[_match("course", course)]))

    def headings(self, course: str) -> dict[str, int]:
        return self._facet("heading_prefixes", models.Filter(must=[_match("course", course)]))

    def courses(self) -> dict[str, int]:
        return self._facet("course", None)

    def hybrid(self, query: HybridQuery) -> list[Candidate]:
        must: list[models.Condition] = [_match("course", query.course)]
        for langs in lang_filter(query.langs):
            must.append(
                models.FieldCondition(
                    key=LANGS_FIELD, match=models.MatchAny(any=[str(lang) for lang in langs])
                )
            )
        if query.heading_prefix:
            must.append(_match("heading_prefixes", " > ".join(query.heading_prefix)))
        flt = models.Filter(must=must)
        dense_q = _dense_query(query.dense, query.steer)
        lists: list[tuple[str, Any]] = [("dense", dense_q)]
        if query.sparse.indices:
            lists.append((self._sparse, _sparse(query.sparse)))
        params = self._params
        prefetch = [
            models.Prefetch(
                query=q, using=u, filter=flt, limit=query.prefetch, params=params if u == "dense" else None
            )
            for u, q in lists
        ]
        weights = [query.weights[0], *query.weights[1 : len(lists)]]
        for lang, weight in zip(query.lang_legs, query.weights[2:], strict=True):
            in_lang = models.Filter(must=[*must, _match(LANGS_FIELD, lang)])
            prefetch.append(
                models.Prefetch(
                    query=dense_q, using="dense", filter=in_lang, limit=query.prefetch, params=params
                )
            )
            weights.append(weight)
        if query.translated.indices and query.translated_weight > 0:
            skip = [_match(LANGS_FIELD, query.translated_skip)] if query.translated_skip else []
            other = models.Filter(must=must, must_not=skip)
            prefetch.append(
                models.Prefetch(
                    query=_sparse(query.translated), using=self._sparse, filter=other, limit=query.prefetch
                )
            )
            weights.append(query.translated_weight)
        fused = models.QueryRequest(
            prefetch=prefetch,
            query=models.RrfQuery(rrf=models.Rrf(k=query.rrf_k, weights=weights)),
            limit=query.limit,
            with_payload=True,
            with_vector=["dense"] if query.with_vectors else False,
            score_threshold=query.min_score,
        )
        singles = [
            models.QueryRequest(
                query=q, using=u, filter=flt, limit=query.prefetch, params=params if u == "dense" else None
            )
            for u, q in lists
        ]
        responses = self._call(
            "hybrid search", lambda: self._client.query_batch_points(self.collection, [fused, *singles])
        )
        per_list = [{str(p.id): (rank, p.score) for rank, p in enumerate(r.points)} for r in responses[1:]]
        dense_hits = per_list[0]
        bm25_hits = per_list[1] if len(per_list) > 1 else {}
        out = []
        for p in responses[0].points:
            pid = str(p.id)
            d, b = dense_hits.get(pid), bm25_hits.get(pid)
            out.append(
                Candidate(
                    chunk_id=pid,
                    chunk=payload_chunk(p.payload or {}),
                    fused=float(p.score),
                    dense=d[1] if d else None,
                    bm25=b[1] if b else None,
                    dense_rank=d[0] if d else None,
                    bm25_rank=b[0] if b else None,
                    vector=dense_of(p.vector) if query.with_vectors else None,
                )
            )
        return out

    def dense_vectors(
        self, course: str, *, chunk_ids: Sequence[str] = (), source: str | None = None
    ) -> dict[str, Matrix]:
        what = f"reading vectors of course {course}"
        if source is None:
            ids: list[models.ExtendedPointId] = list(chunk_ids)
            records = self._call(
                what,
                lambda: self._client.retrieve(
                    self.collection, ids, with_payload=["course"], with_vectors=["dense"]
                ),
            )
            found = [r for r in records if (r.payload or {}).get("course") == course]
        else:
            flt = models.Filter(must=[_match("course", course), _match("source", source)])
            found, offset = [], None
            while True:
                page, offset = self._call(what, partial(self._source_page, flt, offset))
                found.extend(page)
                if offset is None:
                    break
        return {str(r.id): v for r in found if (v := dense_of(r.vector)) is not None}

    def _source_page(
        self, flt: models.Filter, offset: models.ExtendedPointId | None
    ) -> tuple[list[models.Record], models.ExtendedPointId | None]:
        return self._client.scroll(
            self.collection, scroll_filter=flt, limit=1_000, offset=offset, with_vectors=["dense"]
        )

    def chunks(self, course: str) -> Iterator[Chunk]:
        flt = models.Filter(must=[_match("course", course)])

        def page(offset: Any) -> tuple[list[models.Record], Any]:
            return self._client.scroll(
                self.collection, scroll_filter=flt, limit=_SCROLL_PAGE, offset=offset, with_payload=True
            )

        offset: Any = None
        while True:
            records, offset = self._call(f"reading course {course}", partial(page, offset))
            yield from (payload_chunk(r.payload or {}) for r in records)
            if offset is None:
                return

    def scroll(self, limit: int, offset: str | None = None) -> tuple[list[StoredPoint], str | None]:
        """Up to `limit` points in id order from `offset`, with both vectors; the next offset or `None`."""
        records, next_offset = self._call(
            "reading points",
            lambda: self._client.scroll(
                self.collection, limit=limit, offset=offset, with_payload=True, with_vectors=True
            ),
        )
        points = []
        for r in records:
            vectors: dict[str, Any] = r.vector  # type: ignore[assignment]  # named vectors: a dict
            # A chunk whose text has no index terms may come back without its (empty) sparse vector.
            sparse = vectors.get(self._sparse) or models.SparseVector(indices=[], values=[])
            points.append(
                StoredPoint(
                    str(r.id),
                    payload_chunk(r.payload or {}),
                    np.asarray(vectors["dense"], dtype=np.float32),
                    SparseVec(tuple(sparse.indices), tuple(float(v) for v in sparse.values)),
                )
            )
        return points, None if next_offset is None else str(next_offset)

    # migration checkpoint -----------------------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any] | None:
        """The last migration's progress, kept in the collection so it survives the migrating machine."""
        found = self._metadata().get(_CHECKPOINT_KEY)
        return dict(found) if isinstance(found, dict) else None

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        self._call(
            "saving the migration checkpoint",
            lambda: self._client.update_collection(self.collection, metadata={_CHECKPOINT_KEY: state}),
        )

    def optimize(self) -> None:
        """Nothing to do: a Qdrant server indexes segments in the background (its optimizer), and local mode
        searches by brute force whatever is done."""

    def close(self) -> None:
        self._client.close()
