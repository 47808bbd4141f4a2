"""The one place that wires ingest → encode → index → retrieve → rerank.

Everything above it (CLI, service, evaluation) talks to `Pipeline`; everything below it knows nothing of
the others. The core is async where a network may be involved (reranking); `search` is a thin sync wrapper.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from leanrank.aio import run_sync
from leanrank.cascade.plan import Cascade, Sendable, gate_reranker
from leanrank.cascade.result_cache import result_cache, same_question
from leanrank.checks import (
    MAX_DEPTH,
    MAX_HEADING_SEGMENTS,
    MAX_HITS,
    check_count,
    check_fraction,
    check_langs,
    check_strings,
    check_text,
)
from leanrank.cost.meter import Meter
from leanrank.encode.base import DenseEncoder, SparseEncoder
from leanrank.encode.bm25 import Bm25Encoder, normalise
from leanrank.encode.cached import PassageVectors, QueryCache
from leanrank.encode.catalog import dense_encoder, sparse_encoder
from leanrank.errors import (
    ConfigError,
    DocumentError,
    EmptyQueryError,
    InputError,
    QueryTooLongError,
    StoreError,
    UnknownCourseError,
)
from leanrank.index.base import Candidate, Store
from leanrank.index.factory import open_store
from leanrank.ingest.chunker import ChunkerConfig, chunk_source
from leanrank.ingest.files import check_source, discover, file_hash, source_id
from leanrank.ingest.lang import detect_lang
from leanrank.ingest.loaders import parse_file, read_file
from leanrank.ingest.roots import COURSES_FILE, CourseRoots, check_new_root, place
from leanrank.rerank.base import Reranker, RerankResponse, Usage, is_blank
from leanrank.rerank.cache import with_cache
from leanrank.rerank.calibration import CALIBRATION_DIR, Calibration, load_calibrations
from leanrank.rerank.catalog import reranker as reranker_by_name
from leanrank.rerank.guard import guard
from leanrank.rerank.identity import IdentityReranker
from leanrank.rerank.judge import JudgeStage, judge_from_settings
from leanrank.rerank.stage import RerankStage, first_stage_scores
from leanrank.retrieve.hybrid import HybridRetriever, RetrieveFilter
from leanrank.retrieve.lexicons import CourseLexicons
from leanrank.retrieve.steering import Steering, resolve
from leanrank.settings import Settings
from leanrank.tracing import span, traced
from leanrank.types import Hit, Lang

_COURSE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

FileStatus = Literal["added", "updated", "unchanged", "skipped", "removed"]
_CHANGED = ("added", "updated", "removed")
RESULT_CACHE = "result-cache"
# The reranker-embedder agreement: how many of the reranker's first AGREE_TOP the first stage had in its
# first AGREE_WITHIN. Low agreement means the reranker prefers passages the first stage ranks low, so cutting
# the first stage's list (the cascade) is costing answers; it is 1.0 whenever no more than 50 are reranked.
AGREE_TOP, AGREE_WITHIN = 10, 50


@dataclass(frozen=True, slots=True)
class FileReport:
    """What ingesting one file did; `reason` says why a file was skipped. `embedded` counts the chunks
    the dense encoder ran on: those of `chunks` whose indexed text no earlier ingest had embedded.

    `kept` counts the chunks an earlier ingest indexed for a file skipped now (it turned unreadable,
    invalid, empty or too large): they are kept and still answer searches, and the report says so. The
    last good version of a lesson serves students better than a hole where it was, and a file that turns
    bad is more often half-saved or mid-copy than withdrawn; one withdrawn is removed from the folder and
    pruned (`ingest(prune=True)`), as a deleted file is.
    """

    source: str
    status: FileStatus
    chunks: int = 0
    reason: str = ""
    embedded: int = 0
    kept: int = 0


@dataclass(slots=True)
class IngestReport:
    """Totals of one ingest run, file by file; `missing` are indexed sources of the course under the folder
    ingested that it no longer holds (kept and still searched unless `prune` deleted them).

    `root` is the folder source ids are relative to (`leanrank.ingest.roots`); `previous_root` is the
    course's recorded folder this ingest replaced (the course moved, or `root=` named another), else None.
    """

    course: str
    files: list[FileReport] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    root: Path | None = None
    previous_root: Path | None = None

    def count(self, status: FileStatus) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def chunks(self) -> int:
        return sum(f.chunks for f in self.files if f.status in ("added", "updated"))

    @property
    def embedded(self) -> int:
        return sum(f.embedded for f in self.files)

    @property
    def stale(self) -> list[FileReport]:
        """Skipped files whose earlier version is still indexed and searched (`FileReport.kept`)."""
        return [f for f in self.files if f.kept]


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Hits best first, how many candidates reached the rerank step, its usage, and time per stage.

    `retrieved` is how many the first stage returned, `dropped` how many each cascade stage removed before
    the rerank step (`leanrank.cascade.plan`) and `sent` what the rerank step was handed. When fewer were
    reranked than asked for, the candidates the cascade cut follow in first-stage order, with their fused
    score as `score` and no `rerank` stage score.

    `served_by` is the reranker that produced the order (a fallback or a hard budget cap may have chosen
    it); `cost_usd` is what the call cost (None: no known price); `budget` is the budget level before it.

    With `rerank.min_relevance`, hits whose calibrated P(relevant) (`stage_scores["relevance"]`) is below it
    are left out (`dropped["min_relevance"]`). `agreement` is the share of the reranked first 10 that were in
    the first stage's first 50 (None when nothing was reranked).

    `judge_usage` and `judge_cost_usd` are the LLM judge's call, when one ran (`leanrank.rerank.judge`); the
    cost is what the ledger recorded, a failed call's estimate (`judge:unconfirmed`) included.
    """

    query: str
    course: str
    hits: list[Hit]
    candidates: int
    usage: Usage
    timings_s: dict[str, float]
    request_id: str = ""
    served_by: str = ""
    cost_usd: float | None = None
    budget: str = "ok"
    failed: tuple[str, ...] = ()
    retrieved: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    sent: tuple[Sendable, ...] = ()
    agreement: float | None = None
    judge_usage: Usage | None = None
    judge_cost_usd: float | None = None

    @property
    def sent_tokens(self) -> int:
        return sum(s.tokens for s in self.sent)


class _Replay:
    """The scores of a cached answer, replayed through the meter so the ledger sees a free call."""

    name = RESULT_CACHE

    def __init__(self, scores: list[float]) -> None:
        self._scores = scores

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        usage = dataclasses.replace(Usage.free(len(documents), 0.0), cache_hits=len(documents))
        return RerankResponse(tuple(self._scores), usage, served_by=RESULT_CACHE)


def reranker_agreement(
    candidates: Sequence[Candidate], reranked: Sequence[Hit], served_by: str
) -> float | None:
    """Share of the reranked first `AGREE_TOP` that the first stage ranked within `AGREE_WITHIN`."""
    if served_by == IdentityReranker.name or not reranked:
        return None
    rank = {c.chunk_id: i for i, c in enumerate(candidates)}
    top = reranked[:AGREE_TOP]
    return sum(1 for h in top if rank.get(h.chunk_id, AGREE_WITHIN) < AGREE_WITHIN) / len(top)


def _unreranked(hit: Hit) -> Hit:
    scores = {k: v for k, v in hit.stage_scores.items() if k != "rerank"}
    return dataclasses.replace(hit, score=scores["fusion"], stage_scores=scores)


def _folded(text: str) -> str:
    """`text` as the heading filter compares it: BM25's folding (`normalise`), then case."""
    return normalise(text).casefold()


def _config_key(settings: Settings, encoder: str, reranker: str) -> str:
    """Everything of a pipeline's configuration that shapes a ranking, for result-cache scopes."""
    shape = {
        "encoder": encoder,
        "sparse": settings.sparse,
        "reranker": reranker,
        "retrieve": settings.retrieve.model_dump(mode="json"),
        "cascade": settings.cascade.model_dump(mode="json", exclude={"preset"}),
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()


def check_course_id(course: str) -> str:
    """Course ids become payload keys and file names in reports: keep them plain."""
    if not _COURSE_ID.fullmatch(course):  # `match` lets `$` pass a trailing newline
        raise InputError(
            f"invalid course id {course!r}: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return course


class Pipeline:
    """Ingest course files and answer course-scoped questions on one machine, offline by default.

    Once closed, every method raises `StoreError` saying so.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        dense: DenseEncoder | None = None,
        sparse: SparseEncoder | None = None,
        store: Store | None = None,
        reranker: Reranker | None = None,
        meter: Meter | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._closed = False
        encoder = dense or dense_encoder(self.settings.encoder)
        # A question asked again skips the encoder; a pipeline sharing another's encoder shares its cache.
        self.dense = encoder if isinstance(encoder, QueryCache) else QueryCache(encoder)
        self._vectors: PassageVectors | None = None  # opened by the first ingest: searching needs none
        self.sparse = sparse or sparse_encoder(self.settings.sparse, encoder)
        self._owns_store = store is None  # a store handed in is the caller's to close (shared by runs)
        self.store = store or open_store(self.settings, self.dense.dim, self.dense.name)
        settings_r = self.settings.retrieve
        lexicons = (
            CourseLexicons(
                self.store,
                self.dense,
                self.sparse,
                folder=self.settings.data_dir / "lexicon",
                min_count=settings_r.lexicon_min_count,
            )
            if settings_r.translate_weight > 0 and isinstance(self.sparse, Bm25Encoder)
            else None
        )
        self.retriever = HybridRetriever(self.store, self.dense, self.sparse, settings_r, lexicons=lexicons)
        self._owns_meter = meter is None
        self.meter = meter or Meter.from_settings(self.settings)
        cs = self.settings.cascade
        self.cascade = Cascade(
            cs,
            count=self.dense.token_count,
            # Windows are chosen by the query's stemmed words (BM25's analyser) whichever sparse list the
            # first stage uses: learned weights would run the model once per window tried.
            sparse=self.sparse if isinstance(self.sparse, Bm25Encoder) else Bm25Encoder(),
            gate=gate_reranker(cs.gate, self.meter.is_paid),
        )
        self.results = result_cache(
            cs.result_cache, self.settings.data_dir, threshold=cs.result_similarity, ttl_s=cs.result_ttl_s
        )
        rs = self.settings.rerank
        self.rerank = RerankStage(
            guard(
                reranker
                or with_cache(reranker_by_name(rs.backend), rs.cache, self.settings.data_dir, rs.cache_ttl_s)
            ),
            self.settings.rerank.top_k,
            meter=self.meter,
            fallback=reranker_by_name(self.settings.cost.fallback),
        )
        js = self.settings.judge
        self.judge = (
            JudgeStage(
                guard(with_cache(judge_from_settings(js), js.cache, self.settings.data_dir, rs.cache_ttl_s)),
                top_n=js.top_n,
                action=js.action,
                meter=self.meter,
            )
            if js.model
            else None
        )
        self._judge_key = js.model_dump_json(exclude={"api_key", "enabled", "cache"})
        self._config_key = _config_key(self.settings, self.dense.name, self.rerank.reranker.name)
        self._calibrations: dict[str, Calibration] | None = None
        if self.settings.rerank.min_relevance is not None:
            self.calibrations(ConfigError)  # a threshold nothing can apply fails at start-up
        ing = self.settings.ingest
        self._chunker = ChunkerConfig(
            max_tokens=ing.max_tokens, overlap_sentences=ing.overlap_sentences, min_tokens=ing.min_tokens
        )
        self.roots = CourseRoots(self.settings.data_dir / COURSES_FILE)

    def calibrations(
        self, missing: type[ConfigError] | type[InputError] = InputError
    ) -> dict[str, Calibration]:
        """The newest calibration per backend in `rerank.calibration_dir`, read once; raises `missing` when
        no backend of the policy has one (a threshold could not apply; a fallback link without one keeps
        all its hits)."""
        self._check_open()
        rs = self.settings.rerank
        folder = rs.calibration_dir or self.settings.data_dir / CALIBRATION_DIR
        if self._calibrations is None:
            self._calibrations = load_calibrations(folder)
        members = self.rerank.reranker.name.split(" | ")
        if not any(m in self._calibrations for m in members):
            raise missing(
                f"min_relevance needs a calibration of {members[0]} in {folder}: "
                "fit one with `leanrank calibrate`"
            )
        return self._calibrations

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close what this pipeline opened; a store or meter passed in stays open for its owner. Closing
        again does nothing."""
        if self._closed:
            return
        self._closed = True
        if self._owns_store:
            self.store.close()
        if self._owns_meter:
            self.meter.close()
        if self.results is not None:
            self.results.close()
        if self._vectors is not None:
            self._vectors.close()

    def _check_open(self) -> None:
        """Every public method's first step: past `close` the store and caches are gone, and the engine's
        own error would not say why."""
        if self._closed:
            raise StoreError("the pipeline is closed: open a new Pipeline to go on")

    # ingest -------------------------------------------------------------------------------------------------

    def ingest(
        self,
        path: Path | str,
        course: str,
        *,
        prune: bool = False,
        root: Path | str | None = None,
        remember_root: bool = True,
        on_file: Callable[[FileReport], None] | None = None,
        on_embed: Callable[[int, int], None] | None = None,
    ) -> IngestReport:
        """Index every supported file under `path`; a bad file is reported and skipped, the rest go on (one
        indexed before keeps that version: `FileReport.kept`).

        Source ids are paths relative to the course's folder, recorded at its first folder ingest, so a
        sub-folder or a single file of it ingested later keeps the ids the whole folder gave; `root` names
        that folder explicitly (the course moved), and a folder outside the recorded one becomes the new
        one (`leanrank.ingest.roots.place`; `InputError` for a file outside it, and for a folder holding
        none of the course's indexed files: `check_new_root`). `remember_root=False` leaves the record
        alone (uploads, whose temporary folder is no course's home).

        With `prune`, sources of the course under the folder `path` that it no longer holds are deleted, so
        the index mirrors the folder; sources outside it are left alone. A changed file re-embeds only the
        chunks whose indexed text changed (`PassageVectors` under `data_dir`); `on_embed(done, to_embed)`
        reports the file being embedded, batch by batch.
        """
        self._check_open()
        check_course_id(course)
        path, root = Path(path), None if root is None else Path(root)
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
        if prune and not path.is_dir():
            raise InputError(f"{path}: --prune needs a folder, the whole course")
        recorded = self.roots.get(course)
        placed = place(path, course, recorded, root)
        indexed = self.store.sources(course)  # what a file skipped now leaves from an earlier ingest
        files = discover(placed.target)
        if placed.record and root is None:
            names = {source_id(f, placed.root) for f in files}
            check_new_root(path, course, placed.root, recorded, names, indexed)
        report = IngestReport(course, root=placed.root)
        if placed.record and remember_root:
            self.roots.set(course, placed.root)
            report.previous_root = recorded
        for file in files:
            result = self._ingest_file(file, placed.root, course, on_embed)
            if result.status == "skipped" and result.source in indexed:
                result = dataclasses.replace(result, kept=indexed[result.source])
            self._record(report, result, on_file)
        if placed.target.is_dir():
            under = "" if placed.target == placed.root else source_id(placed.target, placed.root) + "/"
            seen = {f.source for f in report.files}
            gone = sorted(s for s in self.store.sources(course) if s.startswith(under) and s not in seen)
            for source in gone if prune else ():
                n = self.store.delete_source(course, source)
                self._record(report, FileReport(source, "removed", n), on_file)
            report.missing = [] if prune else gone
        if any(f.status in _CHANGED for f in report.files):
            self.store.optimize()  # the embedded engine builds no search index by itself
            if self.results is not None:
                self.results.invalidate(course)  # cached answers may cite chunks that are gone or stale
            if self.retriever.lexicons is not None:
                self.retriever.lexicons.refresh(course)  # built now, not by the next search
        return report

    @staticmethod
    def _record(
        report: IngestReport, result: FileReport, on_file: Callable[[FileReport], None] | None
    ) -> None:
        report.files.append(result)
        if on_file:
            on_file(result)

    def ingest_plan(self, path: Path | str) -> list[Path]:
        """The files `ingest` will look at, for progress bars."""
        self._check_open()
        return discover(Path(path))

    def _ingest_file(
        self, file: Path, root: Path, course: str, on_embed: Callable[[int, int], None] | None
    ) -> FileReport:
        sid = source_id(file, root)
        try:
            check_source(file, root)
            data = read_file(file, max_bytes=self.settings.ingest.max_file_bytes)
            fhash = file_hash(data)
            present = self.store.source_file_hashes(course, sid)
            if present == {fhash}:
                return FileReport(sid, "unchanged")
            source = dataclasses.replace(parse_file(file, data), path=sid)
            chunks = chunk_source(
                source,
                course=course,
                file_hash=fhash,
                count_tokens=self.dense.token_count,
                config=self._chunker,
            )
            if not chunks:
                raise DocumentError(sid, "no text to index: only embedded data, or one thing repeated")
            texts = [c.indexed_text for c in chunks]
            if self._vectors is None:
                self._vectors = PassageVectors(self.settings.data_dir / "passage-vectors.sqlite")
            dense, embedded = self._vectors.embed(self.dense, texts, progress=on_embed)
            sparse = self.sparse.embed_documents(texts)
            self.store.replace_source(course, sid, chunks, dense, sparse)
        except DocumentError as exc:
            return FileReport(sid, "skipped", reason=exc.reason)
        return FileReport(sid, "updated" if present else "added", len(chunks), embedded=embedded)

    # search -------------------------------------------------------------------------------------------------

    def check_query(self, query: str) -> str:
        """Refuse queries that cannot be searched, before any model runs: `EmptyQueryError`,
        `QueryTooLongError`, `InputError` for one that is not a string or not text (`checks.check_text`)."""
        self._check_open()
        if not isinstance(query, str):
            raise InputError(f"the query must be a string, not {type(query).__name__}")
        text = check_text(query, "the query").strip()
        if is_blank(text):
            raise EmptyQueryError("the query is empty")
        limit = self.settings.max_query_chars
        if len(text) > limit:
            raise QueryTooLongError(
                f"the query has {len(text)} characters, the limit is {limit} (LEANRANK_MAX_QUERY_CHARS)"
            )
        return text

    def check_course(self, course: str) -> None:
        """A filtered count on the hot path; the full course list only for the error message."""
        self._check_open()
        if not self.store.count(check_text(course, "the course id")):
            raise UnknownCourseError(course, self.store.courses())

    def heading_path(self, course: str, prefix: Sequence[str]) -> tuple[str, ...]:
        """The one heading path of `course` whose segments start with `prefix`'s, in any case and folded as
        BM25 folds words (`normalise`: ё as е, stress marks and soft hyphens left out):
        `["урок 2", "цикл f"]` finds `("Урок 2. Условия и циклы", "Цикл for и функция range")`.

        Raises `InputError` naming the candidates when none or several paths match.
        """
        self._check_open()
        segments = [_folded(p.strip()) for p in prefix]
        wanted = " > ".join(p.strip() for p in prefix)
        paths = [p.split(" > ") for p in sorted(self.store.headings(course))]
        found = sorted(
            {
                " > ".join(path[: len(segments)])
                for path in paths
                if len(path) >= len(segments)
                and all(_folded(s).startswith(w) for s, w in zip(path, segments, strict=False))
            }
        )
        if len(found) == 1:
            return tuple(found[0].split(" > "))
        shown = found or [path[0] for path in paths if len(path) == 1]
        listing = "; ".join(shown[:8]) + ("; …" if len(shown) > 8 else "")
        if found:
            raise InputError(f"heading {wanted!r} matches several headings of course {course}: {listing}")
        raise InputError(f"no heading of course {course} starts with {wanted!r}; its top headings: {listing}")

    @traced("leanrank.search")
    async def asearch(
        self,
        query: str,
        course: str,
        *,
        langs: Sequence[Lang] = (),
        heading_prefix: Sequence[str] = (),
        k: int | None = None,
        depth: int | None = None,
        request_id: str | None = None,
        tenant: str | None = None,
        min_relevance: float | None = None,
        judge: bool | None = None,
        steering: Steering | None = None,
    ) -> SearchResult:
        """Hybrid first stage, then the rerank step; hits are from `course` only, containing one of `langs`
        (`mixed`: both ru and en), under the heading path `heading_prefix` starts (see `heading_path`).
        `k` hits (1 to `checks.MAX_HITS`, default `rerank.top_k`) of `depth` candidates (1 to
        `checks.MAX_DEPTH`, default `retrieve.depth`, raised to `k`).
        `judge` runs the LLM judge on the top hits (None: `judge.enabled`); InputError when none is set up.
        `steering` names chunks or sources to move toward or away from (`leanrank.retrieve.steering`).

        The rerank call is written to the cost ledger under `request_id` (a fresh one when None): a
        client retrying with the same id is billed once (`RequestConflictError` for one in use).
        `min_relevance` (0 to 1) overrides `rerank.min_relevance` for this search (`InputError` when no
        backend of the policy has a calibration). Arguments out of range or of the wrong type (a bare string
        for `langs` or `heading_prefix`) raise `InputError`, as the CLI and the service refuse them.
        """
        text = self.check_query(query)
        langs, heading_prefix, want, depth, floor = self._arguments(
            langs, heading_prefix, k, depth, min_relevance
        )
        use_judge = self._use_judge(judge)
        self.check_course(course)
        heading = await asyncio.to_thread(self.heading_path, course, heading_prefix) if heading_prefix else ()
        steer = None
        if steering is not None and not steering.empty:
            strategy = self.settings.retrieve.steer_strategy
            steer = await asyncio.to_thread(resolve, self.store, course, steering, strategy)
        where = RetrieveFilter(course, langs, heading)
        rid = request_id or uuid.uuid4().hex
        if depth is None and want > self.settings.retrieve.depth:
            depth = want  # asking for more hits than the configured depth retrieves more, not fewer hits
        t0 = time.perf_counter()
        vector, scope = None, ""
        if self.results is not None:
            vector = await asyncio.to_thread(self.dense.embed_query, text)
            scope = self._scope(text, where, want, depth, floor, use_judge, steering)
            cached = await asyncio.to_thread(self.results.lookup, course, scope, vector)
            if cached is not None and same_question(cached.query, text):
                return await self._answered(text, course, cached.hits, rid, tenant, t0)
        with span("leanrank.retrieve", {"leanrank.course": course}) as current:
            candidates = await asyncio.to_thread(
                self.retriever.retrieve,
                text,
                where,
                depth=depth,
                vector=vector,
                with_vectors=self.cascade.needs_vectors,
                steer=steer,
            )
            current.set_attributes({"leanrank.candidates": len(candidates)})
        t1 = time.perf_counter()
        with span("leanrank.cascade", {"leanrank.candidates": len(candidates)}) as current:
            selection = await self.cascade.select(text, candidates)
            current.set_attributes({"leanrank.sent": len(selection.sent)})
        t2 = time.perf_counter()
        stage = await self.rerank.run(
            text,
            [s.candidate for s in selection.sent],
            top_k=want,
            request_id=rid,
            course=course,
            tenant=tenant,
            windows=[(s.start, s.end) for s in selection.sent],
        )
        t3 = time.perf_counter()
        if stage.served_by == IdentityReranker.name:
            # Nothing was reranked: identity's rank-based scores would pose as relevance; keep the fused ones.
            stage = dataclasses.replace(stage, hits=[_unreranked(h) for h in stage.hits])
        tail = [
            Hit(c.chunk_id, c.chunk, c.fused, first_stage_scores(c))
            for c in selection.rest[: max(0, want - len(stage.hits))]
        ]
        dropped = selection.dropped
        hits, cut = self._relevant(stage.hits, tail, stage.served_by, floor)
        if cut is not None:
            dropped = {**dropped, "min_relevance": cut}
        failed = stage.failed
        timings = {"retrieve": t1 - t0, "cascade": t2 - t1, "rerank": t3 - t2}
        judged = None
        if use_judge and self.judge is not None:
            judged = await self.judge.run(text, hits, request_id=rid, course=course, tenant=tenant)
            hits, failed = judged.hits, (*failed, *judged.failed)
            timings["judge"] = time.perf_counter() - t3
        if self.results is not None and vector is not None and not failed and stage.budget == "ok":
            await asyncio.to_thread(self.results.store, course, scope, text, vector, hits)
        return SearchResult(
            text,
            course,
            hits,
            len(selection.sent),
            stage.usage,
            timings,
            request_id=rid,
            served_by=stage.served_by,
            cost_usd=stage.cost_usd,
            budget=stage.budget,
            failed=failed,
            retrieved=selection.retrieved,
            dropped=dropped,
            sent=tuple(selection.sent),
            agreement=reranker_agreement(candidates, stage.hits, stage.served_by),
            judge_usage=judged.usage if judged else None,
            judge_cost_usd=judged.cost_usd if judged else None,
        )

    def _arguments(
        self,
        langs: Sequence[Lang],
        heading_prefix: Sequence[str],
        k: int | None,
        depth: int | None,
        min_relevance: float | None,
    ) -> tuple[tuple[Lang, ...], tuple[str, ...], int, int | None, float | None]:
        """`asearch`'s arguments checked as the CLI and the service check them (`leanrank.checks`): the
        languages, the heading prefix, the hits wanted, the depth and the relevance floor in effect."""
        wanted = check_langs(langs)
        prefix = check_strings(heading_prefix, "heading_prefix", MAX_HEADING_SEGMENTS)
        want = self.rerank.top_k if k is None else check_count(k, "k", MAX_HITS)
        depth = None if depth is None else check_count(depth, "depth", MAX_DEPTH)
        floor = (
            self.settings.rerank.min_relevance
            if min_relevance is None
            else check_fraction(min_relevance, "min_relevance")
        )
        if floor is not None:
            self.calibrations()
        return wanted, prefix, want, depth, floor

    async def awarm_up(self, query: str, course: str, *, depth: int | None = None) -> None:
        """Run a search's steps once, so lazy model loads and cold caches are no later search's latency,
        billing and recording nothing: the first stage and the cascade run as in `asearch`, the reranker is
        called directly (no ledger record) and only when free, the LLM judge not at all. A paid backend's
        connection set-up falls to the first search instead."""
        text = self.check_query(query)
        depth = None if depth is None else check_count(depth, "depth", MAX_DEPTH)
        self.check_course(course)
        candidates = await asyncio.to_thread(
            self.retriever.retrieve,
            text,
            RetrieveFilter(course),
            depth=depth,
            with_vectors=self.cascade.needs_vectors,
        )
        selection = await self.cascade.select(text, candidates)
        reranker = self.rerank.reranker
        if selection.sent and not self.meter.is_paid(reranker.name):
            await reranker.rerank(text, [s.text for s in selection.sent])

    def _relevant(
        self, reranked: list[Hit], tail: list[Hit], served_by: str, floor: float | None
    ) -> tuple[list[Hit], int | None]:
        """The hits at or above `floor` by the serving backend's calibration, each with its `relevance`, and
        how many were left out; all hits and None when there is no threshold or no calibration for
        `served_by`. Hits the rerank step never scored have no relevance and are left out, except under
        `identity`, whose scores are the fused ones throughout."""
        cal = None if floor is None else self.calibrations().get(served_by)
        if floor is None or cal is None:
            return reranked + tail, None
        scored = reranked + tail if served_by == IdentityReranker.name else reranked
        probabilities = cal.probability([h.score for h in scored])
        kept = [
            dataclasses.replace(h, stage_scores={**h.stage_scores, "relevance": p})
            for h, p in zip(scored, probabilities, strict=True)
            if p >= floor
        ]
        return kept, len(reranked) + len(tail) - len(kept)

    def _use_judge(self, judge: bool | None) -> bool:
        """Whether this search runs the judge; asking for one that is not set up is the caller's error."""
        if judge is not None and not isinstance(judge, bool):
            raise InputError(f"judge must be True, False or None, not {judge!r}")
        use = self.settings.judge.enabled if judge is None else judge
        if use and self.judge is None:
            raise InputError("no LLM judge is configured: set judge.model (LEANRANK_JUDGE__MODEL)")
        return use

    def _scope(
        self,
        query: str,
        where: RetrieveFilter,
        want: int,
        depth: int | None,
        floor: float | None,
        judge: bool = False,
        steering: Steering | None = None,
    ) -> str:
        """What must match, besides the course and a near-identical question, to reuse a cached answer:
        the question's language, the filters, the hits asked for and everything that shapes the ranking
        (fixed for this pipeline, hashed once in `_config_key`)."""
        shape = [self._config_key, detect_lang(query), where.langs, where.heading_prefix, want, depth, floor]
        if judge:
            shape.append(self._judge_key)
        if steering is not None and not steering.empty:
            shape.append(steering.key())
        return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:32]

    async def _answered(
        self, query: str, course: str, hits: list[Hit], request_id: str, tenant: str | None, t0: float
    ) -> SearchResult:
        """A result-cache hit: recorded in the ledger as a free call whose documents were all cache hits."""
        replay = _Replay([h.score for h in hits])
        metered = await self.meter.rerank(
            replay,
            query,
            [h.chunk.text for h in hits],
            request_id=request_id,
            course=course,
            tenant=tenant,
        )
        return SearchResult(
            query,
            course,
            hits,
            0,
            metered.response.usage,
            {"result_cache": time.perf_counter() - t0},
            request_id=request_id,
            served_by=RESULT_CACHE,
            cost_usd=0.0,
            budget=metered.budget_state.level,
        )

    def search(
        self,
        query: str,
        course: str,
        *,
        langs: Sequence[Lang] = (),
        heading_prefix: Sequence[str] = (),
        k: int | None = None,
        depth: int | None = None,
        request_id: str | None = None,
        tenant: str | None = None,
        min_relevance: float | None = None,
        judge: bool | None = None,
        steering: Steering | None = None,
    ) -> SearchResult:
        """Sync wrapper of `asearch` for scripts and the CLI; also works inside a running event loop."""
        return run_sync(
            lambda: self.asearch(
                query,
                course,
                langs=langs,
                heading_prefix=heading_prefix,
                k=k,
                depth=depth,
                request_id=request_id,
                tenant=tenant,
                min_relevance=min_relevance,
                judge=judge,
                steering=steering,
            )
        )

    # courses ------------------------------------------------------------------------------------------------

    def courses(self) -> dict[str, int]:
        self._check_open()
        return self.store.courses()

    def delete_course(self, course: str) -> int:
        self.check_course(course)
        self.roots.forget(course)  # a course ingested again later may come from another folder
        if self.results is not None:
            self.results.invalidate(course)
        return self.store.delete_course(course)
