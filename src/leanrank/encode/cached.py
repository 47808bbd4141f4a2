"""Encoder work done once: passage vectors kept on disk by what was embedded, query vectors in memory.

`PassageVectors` keeps every passage vector under `(encoder, dimension, SHA-256 of the embedded text)` in a
SQLite file, so re-ingesting a file after a one-line edit embeds only the chunks whose indexed text (context
included) changed; a chunk that only moved keeps its vector. It is a cache: losing it costs re-embedding,
nothing else, so it commits without syncing to disk, and a row that cannot be read is embedded again.

`QueryCache` wraps a dense encoder with a least-recently-used cache of query vectors: a question asked
again (a class asking the same thing) skips the encoder.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from leanrank.encode.base import DenseEncoder, Matrix
from leanrank.errors import StoreError

UNUSED_TTL_S = 90 * 86_400
"""Vectors no ingest has used for this long (a file deleted or rewritten long ago) are dropped on open."""
EMBED_BATCH = 32
"""Passages per encoder call while filling the cache: how often a progress bar moves within a file."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS passage_vectors (
    encoder TEXT NOT NULL,
    text_sha256 BLOB NOT NULL,
    vector BLOB NOT NULL,
    used_at INTEGER NOT NULL,
    PRIMARY KEY (encoder, text_sha256)
) WITHOUT ROWID
"""


def text_key(text: str) -> bytes:
    """SHA-256 of the text exactly as the encoder is given it (UTF-8)."""
    return hashlib.sha256(text.encode()).digest()


class PassageVectors:
    """Passage vectors by `(encoder name and dim, text hash)` in the SQLite file `path`; thread-safe.

    Raises `StoreError` when the file cannot be opened or written.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # a cache: a crash loses at most re-embedding
            self._db.execute(_SCHEMA)
            self._db.execute("DELETE FROM passage_vectors WHERE used_at < ?", (_now() - UNUSED_TTL_S,))
        except sqlite3.Error as exc:
            raise StoreError(f"vector cache {path}: {exc}") from exc

    def embed(
        self,
        encoder: DenseEncoder,
        texts: Sequence[str],
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[Matrix, int]:
        """`encoder.embed_passages(texts)` (shape (len(texts), dim), float32) and how many were embedded.

        Only texts not kept for this encoder are embedded (each distinct text once), `EMBED_BATCH` at a
        time, with `progress(done, to_embed)` after each batch; the new vectors are kept.
        """
        scope = f"{encoder.name}@{encoder.dim}"
        keys = [text_key(t) for t in texts]
        kept = self._read(scope, set(keys), encoder.dim)
        missing: dict[bytes, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in kept:
                missing.setdefault(key, text)
        todo = list(missing.items())
        for start in range(0, len(todo), EMBED_BATCH):
            part = todo[start : start + EMBED_BATCH]
            vectors = encoder.embed_passages([text for _, text in part])
            for (key, _), row in zip(part, vectors, strict=True):
                kept[key] = np.ascontiguousarray(row, dtype=np.float32)
            self._write(scope, [(key, kept[key]) for key, _ in part])
            if progress is not None:
                progress(min(start + EMBED_BATCH, len(todo)), len(todo))
        matrix = np.stack([kept[key] for key in keys]) if keys else np.zeros((0, encoder.dim), np.float32)
        return matrix.astype(np.float32, copy=False), len(todo)

    def _read(self, scope: str, keys: set[bytes], dim: int) -> dict[bytes, Matrix]:
        found: dict[bytes, Matrix] = {}
        ordered = sorted(keys)
        with self._lock, self._errors():
            for start in range(0, len(ordered), 500):  # under SQLite's bound-parameter limit
                part = ordered[start : start + 500]
                marks = ",".join("?" * len(part))
                rows = self._db.execute(
                    "SELECT text_sha256, vector FROM passage_vectors "
                    f"WHERE encoder = ? AND text_sha256 IN ({marks})",
                    (scope, *part),
                ).fetchall()
                for key, blob in rows:
                    if len(blob) == dim * 4:  # else unreadable: embedded again and overwritten
                        found[bytes(key)] = np.frombuffer(blob, dtype=np.float32)
            if found:
                self._db.executemany(
                    "UPDATE passage_vectors SET used_at = ? WHERE encoder = ? AND text_sha256 = ?",
                    [(_now(), scope, key) for key in found],
                )
        return found

    def _write(self, scope: str, rows: list[tuple[bytes, Matrix]]) -> None:
        now = _now()
        with self._lock, self._errors():
            self._db.executemany(
                "INSERT OR REPLACE INTO passage_vectors VALUES (?, ?, ?, ?)",
                [(scope, key, vector.tobytes(), now) for key, vector in rows],
            )

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"vector cache {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _now() -> int:
    return int(time.time())


class QueryCache:
    """A `DenseEncoder` that remembers the last `size` query vectors it computed (LRU); all else delegates.

    The vectors handed out are read-only: one shared array must not be changed by a caller.
    """

    def __init__(self, encoder: DenseEncoder, size: int = 1024) -> None:
        self.encoder = encoder
        self._size = size
        self._lock = threading.Lock()
        self._vectors: OrderedDict[str, Matrix] = OrderedDict()

    @property
    def name(self) -> str:
        return self.encoder.name

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def embed_passages(self, texts: Sequence[str]) -> Matrix:
        return self.encoder.embed_passages(texts)

    def embed_query(self, text: str) -> Matrix:
        """Shape (dim,), float32, L2-normalised, read-only; computed once per distinct `text` while kept."""
        with self._lock:
            vector = self._vectors.get(text)
            if vector is not None:
                self._vectors.move_to_end(text)
                return vector
        vector = np.array(self.encoder.embed_query(text), dtype=np.float32)
        vector.flags.writeable = False
        with self._lock:
            self._vectors[text] = vector
            while len(self._vectors) > self._size:
                self._vectors.popitem(last=False)
        return vector

    def token_count(self, text: str) -> int:
        return self.encoder.token_count(text)
