"""The embedded store: Qdrant Edge, the real Qdrant engine running in-process.

Only this module imports the engine's storage API. Schema: named dense vector `dense` (cosine) and sparse
vector `bm25` with the IDF modifier, or `lexical` without it for bge-m3's learned weights
(`leanrank.index.base.SPARSE_VECTOR`); keyword payload indexes on course, lang, source, file hash and heading
prefixes. Point ids are UUIDv5 of (course, source, chunk index, content hash), so re-ingesting the same
content rewrites the same points.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from leanrank.encode.base import Matrix, SparseVec
from leanrank.errors import ConfigError, IndexLockedError, StoreError
from leanrank.index.base import SPARSE_VECTOR, Candidate, HybridQuery, Quantization, Steer, StoredPoint
from leanrank.ingest.lang import contained_langs, lang_filter
from leanrank.settings import SparseKind
from leanrank.storage import ensure_free
from leanrank.types import Chunk

# 2: chunks carry `context` and `langs`, and BM25 reads them through leanrank's own analyser.
SCHEMA_VERSION = 2
_NAMESPACE = uuid.UUID("6f1c2b1e-3c55-4a8e-9f0e-6c65616e72a1")
KEYWORD_FIELDS = ("course", "lang", "langs", "source", "file_hash", "heading_prefixes")
# The payload key a search's language filter matches: every language a chunk contains.
LANGS_FIELD = "langs"
_FACET_LIMIT = 1_000_000
_SCROLL_PAGE = 1024
# A point costs its vectors and payload in the write-ahead log and again in a segment, with slack.
_WRITE_AMPLIFICATION = 4
_POINT_OVERHEAD_BYTES = 1024
META_FILE = "leanrank-index.json"
LOCK_FILE = "leanrank.lock"
_IN_USE = "the index is open in another process (stop it or use another LEANRANK_DATA_DIR)"


def point_id(chunk: Chunk) -> str:
    """Deterministic id: the same chunk content at the same place always maps to the same point."""
    key = "\x00".join((chunk.course, chunk.source, str(chunk.index), chunk.content_hash))
    return str(uuid.uuid5(_NAMESPACE, key))


def _heading_prefixes(heading: Sequence[str]) -> list[str]:
    return [" > ".join(heading[: i + 1]) for i in range(len(heading))]


def chunk_payload(chunk: Chunk) -> dict[str, Any]:
    """The payload every store writes (the Qdrant server store too), so a migration copies it unchanged."""
    return {
        "course": chunk.course,
        "source": chunk.source,
        "index": chunk.index,
        "text": chunk.text,
        "start": chunk.start,
        "end": chunk.end,
        "heading": list(chunk.heading),
        "heading_prefixes": _heading_prefixes(chunk.heading),
        "lang": chunk.lang,
        "langs": list(chunk.langs or contained_langs(chunk.text, also=(chunk.lang,))),
        "context": chunk.context,
        "content_hash": chunk.content_hash,
        "file_hash": chunk.file_hash,
        "tokens": chunk.tokens,
        "meta": dict(chunk.meta),
    }


def payload_chunk(payload: dict[str, Any]) -> Chunk:
    """The inverse of `chunk_payload`."""
    return Chunk(
        course=payload["course"],
        source=payload["source"],
        index=int(payload["index"]),
        text=payload["text"],
        start=int(payload["start"]),
        end=int(payload["end"]),
        heading=tuple(payload["heading"]),
        lang=payload["lang"],
        content_hash=payload["content_hash"],
        file_hash=payload["file_hash"],
        tokens=int(payload["tokens"]),
        meta={str(k): str(v) for k, v in (payload.get("meta") or {}).items()},
        context=str(payload.get("context", "")),
        langs=tuple(payload.get("langs", ())),
    )


def _match(key: str, value: str) -> qe.FieldCondition:
    return qe.FieldCondition(key=key, match=qe.MatchValue(value))


def _sparse(vec: SparseVec) -> qe.SparseVector:
    return qe.SparseVector(indices=list(vec.indices), values=list(vec.values))


def _quantization_config(
    quantization: Quantization | None,
) -> qe.ScalarQuantizationConfig | qe.BinaryQuantizationConfig | None:
    """The engine's config for `quantization`; the quantised copy stays in RAM (its point)."""
    if quantization is None:
        return None
    if quantization.kind == "int8":
        return qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=0.99, always_ram=True)
    return qe.BinaryQuantizationConfig(always_ram=True)


def _search_params(quantization: Quantization | None) -> qe.SearchParams | None:
    if quantization is None:
        return None
    rescoring = qe.QuantizationSearchParams(
        rescore=quantization.rescore, oversampling=quantization.oversampling
    )
    return qe.SearchParams(quantization=rescoring)


def _dense_query(vector: Matrix, steer: Steer | None) -> qe.Query:
    """The dense lists' query: plain nearest, or the engine's recommend/discover query from `steer`."""
    target = vector.tolist()
    if steer is None:
        return qe.Query.Nearest(target, using="dense")
    positives = [v.tolist() for v in steer.positives]
    negatives = [v.tolist() for v in steer.negatives]
    if steer.strategy == "discover":
        pairs = [qe.ContextPair(p, n) for p in positives for n in negatives]
        return qe.Query.Discover(qe.DiscoverQuery(target, pairs), using="dense")
    examples = qe.RecommendQuery([target, *positives], negatives)
    if steer.strategy == "best_score":
        return qe.Query.RecommendBestScore(examples, using="dense")
    return qe.Query.RecommendSumScores(examples, using="dense")


def dense_of(vector: Any) -> Matrix | None:
    """The named dense vector of a returned point, if the engine sent one."""
    dense = vector.get("dense") if isinstance(vector, dict) else None
    return None if dense is None else np.asarray(dense, dtype=np.float32)


def stored_meta(path: Path) -> dict[str, Any] | None:
    """What the index at `path` was built with (schema, dim, encoder; quantization and sparse kind when not
    the defaults), or `None` if there is no index yet.

    Lets a tool open an existing index (e.g. to migrate it) without loading the encoder to learn its dim.
    """
    meta_file = path / META_FILE
    return dict(json.loads(meta_file.read_text(encoding="utf-8"))) if meta_file.exists() else None


def built_otherwise(found: dict[str, Any], expected: dict[str, Any]) -> str:
    """What differs between how an index was built and what the settings ask, for the refusal's one line
    (a key recorded only when not the default reads as its default)."""
    defaults = {"sparse": "bm25", "quantization": "none"}
    keys = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))

    def values(meta: dict[str, Any]) -> str:
        return ", ".join(f"{k} {meta.get(k, defaults.get(k))!r}" for k in keys)

    return (
        f"was built with {values(found)}, settings ask for {values(expected)}: set them back, or use another "
        "data directory (data_dir) for an index built the new way"
    )


@contextmanager
def _engine_errors(action: str) -> Iterator[None]:
    """The engine raises bare `Exception`s; give callers one typed error with the engine's reason."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:  # the engine's only exception type
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "WouldBlock" in reason:
            raise IndexLockedError(f"{action} failed: {_IN_USE}") from exc
        raise StoreError(f"{action} failed: {reason}") from exc


def _lock(path: Path) -> int:
    """An exclusive `flock` on `path/leanrank.lock`, taken before the engine touches a file; its descriptor.

    The engine's own lock is checked only after it has opened (and replayed into) the shard's files, which
    damages the storage of the process holding it; this lock makes a second process fail before that.
    The kernel drops it when the holder exits, so a killed process leaves no stale lock.
    """
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise IndexLockedError(f"opening the index at {path} failed: {_IN_USE}") from None
    return fd


class EdgeStore:
    """A `Store` on one Qdrant Edge shard under `path`; `dim`, `encoder`, `quantization` and the `sparse`
    kind are checked against the index (ConfigError when it was built with others).

    One process at a time holds the index (`StoreError` for the next). `leanrank-index.json` is written last
    when an index is created, so an index without it was interrupted while being created: the next open
    completes it (the shard is made afresh if the engine had not written its config yet, and missing
    payload indexes are created).
    """

    def __init__(
        self,
        path: Path,
        *,
        dim: int,
        encoder: str,
        quantization: Quantization | None = None,
        sparse: SparseKind = "bm25",
    ) -> None:
        self.path = path
        expected: dict[str, Any] = {"schema": SCHEMA_VERSION, "dim": dim, "encoder": encoder}
        if quantization is not None:  # recorded only when set: indexes made before it stay valid
            expected["quantization"] = quantization.kind
        if sparse != "bm25":  # likewise
            expected["sparse"] = sparse
        self._sparse = SPARSE_VECTOR[sparse]
        self._params = _search_params(quantization)
        self._lock = _lock(path)
        shard: qe.EdgeShard | None = None
        try:
            found = stored_meta(path)
            if found is not None and found != expected:
                raise ConfigError(f"index at {path} {built_otherwise(found, expected)}")
            with _engine_errors(f"opening the index at {path}"):
                shard = self._open(path / "shard", dim, quantization, sparse)
                if found is None:
                    (path / META_FILE).write_text(json.dumps(expected), encoding="utf-8")
        except BaseException:
            if shard is not None:
                shard.close()
            os.close(self._lock)
            raise
        self._shard = shard

    def _open(
        self, shard_dir: Path, dim: int, quantization: Quantization | None, sparse: SparseKind
    ) -> qe.EdgeShard:
        if (shard_dir / "edge_config.json").exists():
            shard = qe.EdgeShard.load(str(shard_dir))
        else:
            ensure_free(shard_dir.parent, 0, f"creating the index at {shard_dir.parent}")
            shutil.rmtree(shard_dir, ignore_errors=True)  # a creation cut short before the engine's config
            shard_dir.mkdir(parents=True)
            config = qe.EdgeConfig(
                vectors={"dense": qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
                sparse_vectors={
                    self._sparse: qe.EdgeSparseVectorParams(
                        modifier=qe.Modifier.Idf if sparse == "bm25" else None
                    )
                },
                quantization_config=_quantization_config(quantization),
            )
            shard = qe.EdgeShard.create(str(shard_dir), config)
        missing = [f for f in KEYWORD_FIELDS if f not in shard.info().payload_schema]
        for field in missing:
            shard.update(qe.UpdateOperation.create_field_index(field, qe.PayloadSchemaType.Keyword))
        if missing:
            shard.flush()
        return shard

    def replace_source(
        self, course: str, source: str, chunks: Sequence[Chunk], dense: Matrix, sparse: Sequence[SparseVec]
    ) -> None:
        if not len(chunks) == len(dense) == len(sparse):
            raise ValueError("chunks, dense and sparse must have the same length")
        hashes = {c.file_hash for c in chunks}
        points = [
            qe.Point(point_id(c), {"dense": d.tolist(), self._sparse: _sparse(s)}, chunk_payload(c))
            for c, d, s in zip(chunks, dense, sparse, strict=True)
        ]
        size = (
            sum(len(c.text.encode()) for c in chunks)
            + dense.nbytes
            + 12 * sum(len(v.indices) for v in sparse)
        )
        need = _WRITE_AMPLIFICATION * (size + _POINT_OVERHEAD_BYTES * len(chunks))
        ensure_free(self.path, need, f"writing {course}/{source}")
        with _engine_errors(f"writing {course}/{source}"):
            # One operation for the whole file: the WAL applies it entirely or not at all.
            if points:
                self._shard.update(qe.UpdateOperation.upsert_points(points))
            stale = qe.Filter(
                must=[_match("course", course), _match("source", source)],
                must_not=[qe.FieldCondition(key="file_hash", match=qe.MatchAny(sorted(hashes)))]
                if hashes
                else None,
            )
            self._shard.update(qe.UpdateOperation.delete_points_by_filter(stale))
            self._shard.flush()

    def source_file_hashes(self, course: str, source: str) -> set[str]:
        flt = qe.Filter(must=[_match("course", course), _match("source", source)])
        return {str(v) for v in self._facet("file_hash", flt)}

    def sources(self, course: str) -> dict[str, int]:
        return {
            str(k): v for k, v in self._facet("source", qe.Filter(must=[_match("course", course)])).items()
        }

    def headings(self, course: str) -> dict[str, int]:
        flt = qe.Filter(must=[_match("course", course)])
        return {str(k): v for k, v in self._facet("heading_prefixes", flt).items()}

    def courses(self) -> dict[str, int]:
        return {str(k): v for k, v in self._facet("course", None).items()}

    def count(self, course: str) -> int:
        with _engine_errors(f"counting course {course}"):
            return int(
                self._shard.count(
                    qe.CountRequest(exact=True, filter=qe.Filter(must=[_match("course", course)]))
                )
            )

    def chunks(self, course: str) -> Iterator[Chunk]:
        offset = None
        while True:
            request = qe.ScrollRequest(
                offset=offset,
                limit=_SCROLL_PAGE,
                filter=qe.Filter(must=[_match("course", course)]),
                with_payload=True,
                with_vector=False,
            )
            with _engine_errors(f"reading course {course}"):
                records, offset = self._shard.scroll(request)
            yield from (payload_chunk(r.payload or {}) for r in records)
            if offset is None:
                return

    def _facet(self, key: str, flt: qe.Filter | None) -> dict[str | int | bool, int]:
        with _engine_errors(f"listing {key}"):
            response = self._shard.facet(qe.FacetRequest(key=key, limit=_FACET_LIMIT, exact=True, filter=flt))
        # The engine keeps values whose points were all deleted, with a count of 0.
        return {hit.value: int(hit.count) for hit in response.hits if hit.count}

    def _delete(self, flt: qe.Filter, what: str) -> int:
        ensure_free(self.path, 0, f"deleting {what}")
        with _engine_errors(f"deleting {what}"):
            n = int(self._shard.count(qe.CountRequest(exact=True, filter=flt)))
            if n:
                self._shard.update(qe.UpdateOperation.delete_points_by_filter(flt))
                self._shard.flush()
        return n

    def delete_source(self, course: str, source: str) -> int:
        return self._delete(qe.Filter(must=[_match("course", course), _match("source", source)]), source)

    def delete_course(self, course: str) -> int:
        return self._delete(qe.Filter(must=[_match("course", course)]), f"course {course}")

    def hybrid(self, query: HybridQuery) -> list[Candidate]:
        must: list[Any] = [_match("course", query.course)]
        for langs in lang_filter(query.langs):
            must.append(qe.FieldCondition(key=LANGS_FIELD, match=qe.MatchAny([str(lang) for lang in langs])))
        if query.heading_prefix:
            must.append(_match("heading_prefixes", " > ".join(query.heading_prefix)))
        flt = qe.Filter(must=must)
        dense_q = _dense_query(query.dense, query.steer)
        params = self._params
        prefetches = [qe.Prefetch(limit=query.prefetch, query=dense_q, filter=flt, params=params)]
        requests = [qe.QueryRequest(limit=query.prefetch, query=dense_q, filter=flt, params=params)]
        weights = [query.weights[0]]
        if query.sparse.indices:
            sparse_q = qe.Query.Nearest(_sparse(query.sparse), using=self._sparse)
            prefetches.append(qe.Prefetch(limit=query.prefetch, query=sparse_q, filter=flt))
            requests.append(qe.QueryRequest(limit=query.prefetch, query=sparse_q, filter=flt))
            weights.append(query.weights[1])
        for lang, weight in zip(query.lang_legs, query.weights[2:], strict=True):
            in_lang = qe.Filter(must=[*must, _match(LANGS_FIELD, lang)])
            prefetches.append(qe.Prefetch(limit=query.prefetch, query=dense_q, filter=in_lang, params=params))
            weights.append(weight)
        if query.translated.indices and query.translated_weight > 0:
            translated_q = qe.Query.Nearest(_sparse(query.translated), using=self._sparse)
            skip: list[Any] = [_match(LANGS_FIELD, query.translated_skip)] if query.translated_skip else []
            other = qe.Filter(must=must, must_not=skip)
            prefetches.append(qe.Prefetch(limit=query.prefetch, query=translated_q, filter=other))
            weights.append(query.translated_weight)
        fused = qe.QueryRequest(
            limit=query.limit,
            prefetches=prefetches,
            query=qe.Fusion.Rrf(k=query.rrf_k, weights=weights),  # type: ignore[arg-type]  # stub: Rrf is a Fusion
            with_payload=True,
            with_vector=["dense"] if query.with_vectors else None,
            score_threshold=query.min_score,
        )
        with _engine_errors("hybrid search"):
            results = self._shard.query_batch(qe.QueryBatchRequest([fused, *requests]))
        per_list = [{str(p.id): (rank, float(p.score)) for rank, p in enumerate(r)} for r in results[1:]]
        dense_hits = per_list[0]
        bm25_hits = per_list[1] if len(per_list) > 1 else {}
        out = []
        for p in results[0]:
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
        with _engine_errors(f"reading vectors of course {course}"):
            if source is None:
                records = self._shard.retrieve(
                    list(chunk_ids), with_payload=["course"], with_vector=["dense"]
                )
                found = [r for r in records if (r.payload or {}).get("course") == course]
            else:
                flt = qe.Filter(must=[_match("course", course), _match("source", source)])
                found, offset = [], None
                while True:
                    request = qe.ScrollRequest(
                        offset=offset, limit=1_000, filter=flt, with_payload=False, with_vector=["dense"]
                    )
                    page, offset = self._shard.scroll(request)
                    found.extend(page)
                    if offset is None:
                        break
        return {str(r.id): v for r in found if (v := dense_of(r.vector)) is not None}

    def optimize(self) -> None:
        """Merge segments and build their HNSW graphs and quantised vectors: the embedded engine has no
        background optimiser, so an index never optimised is searched by brute force (at 50k chunks the
        default hybrid query took 46 ms in the engine, 13 ms once optimised: `bench/retrieval.py
        --optimize`), and quantised search only applies to optimised segments. 1–2 minutes for 50k chunks
        on 2 cores; milliseconds when little was written since the last call (a small new segment stays
        plain)."""
        with _engine_errors("optimizing the index"):
            self._shard.optimize()
            self._shard.flush()

    def scroll(self, limit: int, offset: str | None = None) -> tuple[list[StoredPoint], str | None]:
        """Up to `limit` points in id order from `offset`, with both vectors; the next offset or `None`."""
        request = qe.ScrollRequest(offset=offset, limit=limit, with_payload=True, with_vector=True)
        with _engine_errors("reading points"):
            records, next_offset = self._shard.scroll(request)
        points = []
        for r in records:
            vectors: dict[str, Any] = r.vector  # type: ignore[assignment]  # named vectors: a dict
            sparse = vectors[self._sparse]
            points.append(
                StoredPoint(
                    str(r.id),
                    payload_chunk(r.payload or {}),
                    np.asarray(vectors["dense"], dtype=np.float32),
                    SparseVec(tuple(sparse.indices), tuple(float(v) for v in sparse.values)),
                )
            )
        return points, None if next_offset is None else str(next_offset)

    def close(self) -> None:
        if self._lock < 0:
            return
        try:
            with _engine_errors("closing the index"):
                self._shard.close()
        finally:
            os.close(self._lock)  # after the engine's close: its last writes happen under the lock
            self._lock = -1
