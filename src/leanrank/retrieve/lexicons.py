"""Each course's lexicon (`leanrank.encode.lexicon`), built from the indexed chunks and kept up to date.

A lexicon is built from what the store holds, so every way of writing the index (ingest, the HTTP service,
a migration, the evaluation harness) gets one without taking part. It is rebuilt when the course's sources
change (their chunk counts, checked with one facet per search, or `refresh` after an ingest), and saved
under `folder` so a restarted process loads it instead of embedding the vocabulary again; a rebuild
embeds only the words the previous lexicon lacks.
"""

from __future__ import annotations

import threading
from pathlib import Path

from leanrank.encode.base import DenseEncoder
from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.lexicon import Lexicon, build_lexicon, fingerprint
from leanrank.index.base import Store


class CourseLexicons:
    """Lexicons per course over `store`; `folder` (optional) keeps them across processes."""

    def __init__(
        self,
        store: Store,
        dense: DenseEncoder,
        sparse: Bm25Encoder,
        *,
        folder: Path | None,
        min_count: int,
    ) -> None:
        self._store, self._dense, self.sparse = store, dense, sparse
        self._folder, self._min_count = folder, min_count
        self._lock = threading.Lock()
        self._held: dict[str, tuple[dict[str, int], Lexicon]] = {}

    def get(self, course: str) -> Lexicon:
        """The course's lexicon, rebuilt first if its sources changed since it was built."""
        sources = self._store.sources(course)
        with self._lock:
            held = self._held.get(course)
            if held is not None and held[0] == sources:
                return held[1]
            return self._build(course, sources, held[1] if held else None)

    def refresh(self, course: str) -> Lexicon:
        """Rebuild now if the indexed content changed (after an ingest, so no search waits for it)."""
        with self._lock:
            held = self._held.get(course)
            return self._build(course, self._store.sources(course), held[1] if held else None)

    def _build(self, course: str, sources: dict[str, int], previous: Lexicon | None) -> Lexicon:
        chunks = list(self._store.chunks(course))
        parts = sorted(f"{c.source}\x00{c.index}\x00{c.content_hash}" for c in chunks)
        key = fingerprint([f"min_count={self._min_count}", *parts])
        path = None if self._folder is None else self._folder / f"{course}.npz"
        if previous is None and path is not None:
            previous = Lexicon.load(path)
        if previous is None or previous.fingerprint != key or previous.encoder != self._dense.name:
            previous = build_lexicon(
                (c.indexed_text for c in chunks),
                self.sparse,
                self._dense,
                fingerprint=key,
                min_count=self._min_count,
                previous=previous,
            )
            if path is not None:
                previous.save(path)
        self._held[course] = (sources, previous)
        return previous
