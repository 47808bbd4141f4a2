"""A result cache per course: a question asked again, even slightly reworded, reuses the whole answer.

Students of one course ask the same questions, often in near-identical wording ("как открыть файл" /
"Подскажите, как открыть файл?"). Such a query's dense vector is nearly parallel to the earlier one's, so a
cached answer is served when the cosine reaches `threshold` within the same course and the same `scope` —
the caller's string for everything else that changes the answer (query language, filters, configuration
fingerprint). A served answer skips retrieval and every paid stage.

Lookup is brute force over the scope's live vectors with numpy (best cosine wins, ties go to the most
recent entry): one matrix-vector product, a fraction of a millisecond for thousands of entries per scope,
which `max_per_scope` bounds. Entries expire after `ttl_s`; `invalidate` drops a course's entries when it
is re-ingested or deleted, since its answers may cite chunks that changed or no longer exist.

SQLite (one file, any number of processes on one machine) is the default; Redis shares the cache between
machines. A broken backend or a corrupt entry is a miss, logged at warning: the cache may slow a search
down but never fails it. `invalidate` is the exception and raises, because a silently failed invalidation
would serve answers from the old material.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from leanrank.errors import ConfigError
from leanrank.rerank.cache import redis_client
from leanrank.types import Chunk, Hit

_log = logging.getLogger(__name__)
# float32 rounding: a vector compared with itself must reach a threshold of 1.0 and report 1.0.
_EPS = 1e-6
_Vector = npt.NDArray[np.float32]

_WORD = re.compile(r"\w+")
# Lead-ins and politeness that do not change what is asked. Negations and question words are never here:
# "when"/"where" or "не" change the question, so they must match.
FILLER_WORDS = frozenset(
    [
        "скажите",
        "подскажите",
        "пожалуйста",
        "вопрос",
        "слушайте",
        "привет",
        "ну",
        "а",
        "tell",
        "me",
        "please",
        "quick",
        "question",
        "so",
        "sorry",
        "hi",
        "hey",
        "can",
        "you",
        "remind",
    ]
)


def wording(text: str) -> frozenset[str]:
    """The words that make a question: case-folded, in any order, without lead-ins and politeness."""
    return frozenset(w for w in _WORD.findall(text.casefold()) if w not in FILLER_WORDS)


def same_question(a: str, b: str) -> bool:
    """Near-identical wording: the same words up to case, punctuation, spacing, order and filler.

    Dense similarity alone is not enough: the e5 vectors of "Who won the final?" and "Who lost the
    final?" are nearly parallel, and on XQuAD 8% of questions have another question of their course at
    cosine ≥ 0.97. A reused answer to a different question is a wrong answer, so both must agree.
    """
    words = wording(a)
    return bool(words) and words == wording(b)


@dataclass(frozen=True, slots=True)
class ResultHit:
    """A cached answer: the hits as stored, the cached query's text and its cosine with the new query."""

    hits: list[Hit]
    query: str
    similarity: float


class ResultCache(Protocol):
    """Whole search answers per (course, scope), found by dense similarity of the query."""

    name: str

    def lookup(self, course: str, scope: str, vector: np.ndarray) -> ResultHit | None: ...

    def store(self, course: str, scope: str, query: str, vector: np.ndarray, hits: Sequence[Hit]) -> None: ...

    def invalidate(self, course: str) -> int:
        """Drop every entry of `course`; returns how many live entries were dropped."""
        ...

    def close(self) -> None: ...


class SqliteResultCache:
    """One WAL-mode table; every call is its own short transaction, so several processes share the file."""

    name = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        threshold: float = 0.95,
        ttl_s: float = 86_400.0,
        max_per_scope: int = 5_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _check(threshold, ttl_s, max_per_scope)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._threshold = threshold
        self._ttl_s = ttl_s
        self._max = max_per_scope
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a lost cache write costs one search, not data
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS results (id INTEGER PRIMARY KEY, course TEXT NOT NULL,"
            " scope TEXT NOT NULL, query TEXT NOT NULL, vector BLOB NOT NULL, hits TEXT NOT NULL,"
            " expires REAL NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS results_scope ON results (course, scope, id)")
        self._db.execute("CREATE INDEX IF NOT EXISTS results_expires ON results (expires)")

    def lookup(self, course: str, scope: str, vector: np.ndarray) -> ResultHit | None:
        unit = _unit(vector)
        if unit is None:
            return None
        try:
            with self._lock:
                rows = self._db.execute(
                    "SELECT query, vector, hits FROM results WHERE course = ? AND scope = ?"
                    " AND expires > ? AND length(vector) = ? ORDER BY id",
                    (course, scope, self._clock(), unit.nbytes),
                ).fetchall()
        except sqlite3.Error as exc:
            _log.warning("result cache unavailable, searching without it: %s", exc)
            return None
        entries = [(q, np.frombuffer(v, dtype=np.float32), h) for q, v, h in rows]
        return _best(entries, unit, self._threshold)

    def store(self, course: str, scope: str, query: str, vector: np.ndarray, hits: Sequence[Hit]) -> None:
        unit = _unit(vector)
        if unit is None:
            return
        now = self._clock()
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute("DELETE FROM results WHERE expires <= ?", (now,))
                    self._db.execute(
                        "INSERT INTO results (course, scope, query, vector, hits, expires)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (course, scope, query, unit.tobytes(), _encode_hits(hits), now + self._ttl_s),
                    )
                    self._db.execute(
                        "DELETE FROM results WHERE id IN (SELECT id FROM results WHERE course = ?"
                        " AND scope = ? ORDER BY id DESC LIMIT -1 OFFSET ?)",
                        (course, scope, self._max),
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            _log.warning("result cache unavailable, answer not cached: %s", exc)

    def invalidate(self, course: str) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM results WHERE expires <= ?", (self._clock(),))
                dropped = self._db.execute("DELETE FROM results WHERE course = ?", (course,)).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return dropped

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RedisResultCache:
    """One hash per (course, scope) under `prefix`; each field is an entry that carries its own expiry.

    A field is named `SEQ:EXPIRES`, so pruning and eviction read field names only; `SEQ` comes from
    HINCRBY on the same hash, which orders entries across machines and vanishes with the hash. The hash as
    a whole expires `ttl_s` after its last write, so abandoned scopes do not linger.
    """

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        threshold: float = 0.95,
        ttl_s: float = 86_400.0,
        max_per_scope: int = 5_000,
        prefix: str = "leanrank:results:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        _check(threshold, ttl_s, max_per_scope)
        self._threshold = threshold
        self._ttl_s = ttl_s
        self._max = max_per_scope
        self._prefix = prefix
        self._clock = clock
        self._client: Any = redis_client(url)

    def lookup(self, course: str, scope: str, vector: np.ndarray) -> ResultHit | None:
        unit = _unit(vector)
        if unit is None:
            return None
        try:
            fields: dict[bytes, bytes] = self._client.hgetall(self._key(course, scope))
        except Exception as exc:  # any client failure degrades to a miss
            _log.warning("result cache unavailable, searching without it: %s", exc)
            return None
        now = self._clock()
        entries: list[tuple[str, _Vector, str]] = []
        for _, expires, field in _fields(fields):
            if expires <= now:
                continue
            value = fields[field]
            try:
                record = json.loads(value)
                vec = np.frombuffer(base64.b64decode(record["vector"]), dtype=np.float32)
                entry = (str(record["query"]), vec, str(record["hits"]))
            except (ValueError, KeyError, TypeError) as exc:
                _log.warning("result cache: skipping an undecodable entry of %s: %s", course, exc)
                continue
            if vec.shape == unit.shape:
                entries.append(entry)
        return _best(entries, unit, self._threshold)

    def store(self, course: str, scope: str, query: str, vector: np.ndarray, hits: Sequence[Hit]) -> None:
        unit = _unit(vector)
        if unit is None:
            return
        key = self._key(course, scope)
        now = self._clock()
        record = {
            "query": query,
            "vector": base64.b64encode(unit.tobytes()).decode(),
            "hits": _encode_hits(hits),
        }
        try:
            seq = int(self._client.hincrby(key, "seq", 1))
            with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(key, f"{seq}:{now + self._ttl_s!r}", json.dumps(record, ensure_ascii=False))
                pipe.pexpire(key, int(self._ttl_s * 1000))
                pipe.hkeys(key)
                names: list[bytes] = pipe.execute()[-1]
            drop = [f for _, expires, f in _fields(names) if expires <= now]
            kept = [f for _, expires, f in _fields(names) if expires > now]
            drop += kept[: max(0, len(kept) - self._max)]
            if drop:
                self._client.hdel(key, *drop)
        except Exception as exc:  # any client failure: the answer is simply not cached
            _log.warning("result cache unavailable, answer not cached: %s", exc)

    def invalidate(self, course: str) -> int:
        now = self._clock()
        dropped = 0
        # The scope digest has a fixed length, so course "a" never matches the keys of course "a:b".
        pattern = _glob_escape(self._prefix + course) + ":" + "?" * 40
        for key in self._client.scan_iter(match=pattern, count=1000):
            names: list[bytes] = self._client.hkeys(key)
            dropped += sum(1 for _, expires, _ in _fields(names) if expires > now)
            self._client.delete(key)
        return dropped

    def close(self) -> None:
        self._client.close()

    def _key(self, course: str, scope: str) -> str:
        return f"{self._prefix}{course}:{hashlib.sha1(scope.encode()).hexdigest()}"


def result_cache(spec: str, data_dir: Path, *, threshold: float, ttl_s: float) -> ResultCache | None:
    """The result cache that `spec` (off, sqlite or a Redis URL) names; None when it is off."""
    if spec == "off":
        return None
    if spec == "sqlite":
        return SqliteResultCache(data_dir / "result-cache.sqlite", threshold=threshold, ttl_s=ttl_s)
    if spec.startswith(("redis://", "rediss://")):
        return RedisResultCache(spec, threshold=threshold, ttl_s=ttl_s)
    raise ConfigError(f"the result cache must be off, sqlite or a redis:// URL, got {spec!r}")


def _check(threshold: float, ttl_s: float, max_per_scope: int) -> None:
    if not 0 < threshold <= 1:
        raise ConfigError(f"result cache threshold must be in (0, 1], got {threshold}")
    if ttl_s <= 0:
        raise ConfigError(f"result cache ttl must be positive, got {ttl_s}")
    if max_per_scope < 1:
        raise ConfigError(f"result cache max_per_scope must be at least 1, got {max_per_scope}")


def _unit(vector: np.ndarray) -> _Vector | None:
    """`vector` as a float32 unit vector, so the dot product is the cosine; None if it has no direction."""
    v = np.asarray(vector, dtype=np.float64).ravel()
    norm = float(np.linalg.norm(v))
    if v.size == 0 or not np.isfinite(norm) or norm == 0:
        _log.warning("result cache: ignoring a query vector without a direction")
        return None
    return (v / norm).astype(np.float32)


def _best(entries: Sequence[tuple[str, _Vector, str]], unit: _Vector, threshold: float) -> ResultHit | None:
    """The most similar entry (the latest among equals) if it reaches `threshold`; entries oldest first."""
    if not entries:
        return None
    sims = np.stack([v for _, v, _ in entries]).astype(np.float64) @ unit.astype(np.float64)
    best = len(sims) - 1 - int(np.argmax(sims[::-1]))
    similarity = float(sims[best])
    if similarity < threshold - _EPS:
        return None
    query, _, hits = entries[best]
    try:
        restored = _decode_hits(hits)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        _log.warning("result cache: undecodable entry for %r, treated as a miss: %s", query, exc)
        return None
    return ResultHit(restored, query, 1.0 if similarity >= 1 - _EPS else similarity)


def _encode_hits(hits: Sequence[Hit]) -> str:
    return json.dumps([asdict(h) for h in hits], ensure_ascii=False)


def _decode_hits(text: str) -> list[Hit]:
    """Hits from `_encode_hits`; a missing or unknown field raises, which the caller turns into a miss.

    JSON turns tuples (a chunk's heading, a hit's trimmed window) into arrays, and neither type holds a
    list, so every array is read back as a tuple.
    """
    return [Hit(**{**_tuples(item), "chunk": Chunk(**_tuples(item["chunk"]))}) for item in json.loads(text)]


def _tuples(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}


def _fields(names: Iterable[bytes]) -> list[tuple[int, float, bytes]]:
    """(sequence, expiry, name) of the entry fields `SEQ:EXPIRES`, oldest first; other fields are skipped."""
    parsed = []
    for name in names:
        head, _, tail = name.partition(b":")
        try:
            parsed.append((int(head), float(tail), name))
        except ValueError:  # the `seq` counter, or a field no version of this module wrote
            continue
    return sorted(parsed)


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
