"""Uploads: the files of a multipart request become a folder that `Pipeline.ingest` reads.

Small uploads are ingested before the answer; large ones in a background task whose state a status
endpoint reports, so a client never holds a connection open for minutes of embedding. Ingests (and
deletions) take one writer lock: the index has one writer, readers carry on meanwhile. Jobs and their
files are kept under `data_dir/jobs` until they end, so a restart resumes them.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import re
import shutil
import sqlite3
import unicodedata
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from leanrank.errors import InputError
from leanrank.pipeline import FileReport, Pipeline
from leanrank.serve.errors import NotFoundError, status_of

JobStatus = Literal["queued", "running", "done", "failed"]
_log = logging.getLogger("leanrank.serve")
_MAX_NAME_BYTES = 255  # NAME_MAX of Linux, macOS and Windows file systems
_DRIVE = re.compile(r"[A-Za-z]:")  # `C:\x`, and `C:x`, relative to drive C's current folder
# A `filename` parameter, as sent, that python-multipart's `parse_options_header` cuts to its last part:
# one starting `C:\` or `\` (not `\"`, an escaped quote).
_WINDOWS_PATH = re.compile(r'(?:^|;)\s*filename="?((?:[^"\\]:)?\\(?!")[^"]*)')
# Unicode's bidirectional embeddings and overrides (U+202A-U+202E) and isolates (U+2066-U+2069).
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def source_name(filename: str | None, disposition: str | None = None) -> str:
    """A multipart file name as the source id it will have: a relative POSIX path inside the upload (a `\\`
    separator reads as `/`, as Windows clients send it).

    Absolute paths (`/x`, `C:\\x`, `\\\\server\\share\\x`), empty parts (`a//b`, a trailing `/`), `..` and
    hidden parts are refused rather than rewritten: ingestion skips hidden files silently, and a rewritten
    name would not match the source the client later deletes. Each part must be a name a file system takes:
    UTF-8 text without NUL or another control character (a newline, tab, ESC), at most 255 bytes.
    Bidirectional control characters (U+202A-U+202E, U+2066-U+2069) are refused too: they make a name
    display as another (`report<U+202E>dm.txt` shows as `reporttxt.md`). Raises `InputError` (one line
    naming the file) for each of these.

    `disposition` is the part's Content-Disposition header as sent: the multipart parser cuts a name that
    starts like a Windows path (`C:\\`, `\\`) to its last part (a workaround for Internet Explorer 6, which
    sent whole paths), so such a name is refused as sent, not taken as cut.
    """
    cut = _WINDOWS_PATH.search(disposition or "")
    # Unescaped as the parser unescapes a quoted value: the name as the client meant it, for the message.
    name = cut[1].replace("\\\\", "\\") if cut else filename or ""
    raw = name.replace("\\", "/")
    parts = raw.split("/")
    if (
        cut
        or not raw
        or len(raw) > 512
        or _DRIVE.match(raw)
        or any(p in ("", ".", "..") or p.startswith(".") for p in parts)
    ):
        raise InputError(
            f"files: file name {name!r}: give a relative path of at most 512 characters, without a "
            "leading '/' or drive, empty parts, '..' or parts starting with '.'"
        )
    try:
        too_long = any(len(p.encode("utf-8")) > _MAX_NAME_BYTES for p in parts)
    except UnicodeEncodeError:
        raise InputError(f"files: file name {name!r} is not valid UTF-8 text") from None
    if too_long or "\x00" in raw:
        raise InputError(
            f"files: file name {name!r}: each part of the path must be at most {_MAX_NAME_BYTES} "
            "bytes of UTF-8, without NUL"
        )
    control = next((c for c in raw if unicodedata.category(c) == "Cc"), None)
    if control is not None:  # a newline could forge a line of the ingest report, as on disk (`check_source`)
        raise InputError(f"files: file name {name!r} holds the control character U+{ord(control):04X}")
    bidi = next((c for c in raw if c in _BIDI_CONTROLS), None)
    if bidi is not None:
        raise InputError(
            f"files: file name {name!r} holds the bidirectional control character U+{ord(bidi):04X}, "
            "which makes a name display as another"
        )
    return raw


@dataclass
class IngestJob:
    """One upload's ingestion, as the status endpoint reports it."""

    id: str
    course: str
    bytes: int
    status: JobStatus = "queued"
    files: list[FileReport] = field(default_factory=list)
    error: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None


class _StoppingError(Exception):
    """Raised between two files of an ingest when the service stops: the job is resumed at the next start."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, course TEXT NOT NULL, bytes INTEGER NOT NULL, status TEXT NOT NULL,
    files TEXT NOT NULL, error TEXT, created_at TEXT NOT NULL, finished_at TEXT,
    owner TEXT NOT NULL, dir TEXT NOT NULL
)
"""
_COLUMNS = "id, course, bytes, status, files, error, created_at, finished_at"


class IngestJobs:
    """Runs ingests one at a time; jobs and their uploaded files are durable under `folder`.

    A job's row (SQLite, `synchronous=FULL`) and its files are on disk before the upload is answered, and
    stay until the job ends; the row gains each file's result as soon as that file is done. After a crash
    or a stop the next start resumes every unfinished job (ingestion is idempotent: files already indexed
    come back `unchanged`, and the results saved before the restart stand), or reports it failed if its
    files are gone. The last `keep` finished jobs stay readable. All calls come from the event loop.

    Replicas may share `folder` (one data volume): each process holds a lock on `<owner>.lock` and keeps
    its uploads under `<owner>/`, and takes over only jobs whose owner's lock is free (that process died).
    """

    def __init__(self, folder: Path, keep: int = 1000) -> None:
        self.writer = asyncio.Lock()
        self.folder = folder
        self._keep = keep
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        folder.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(folder / "jobs.sqlite", isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        self.owner = uuid.uuid4().hex
        lock = _hold(folder / f"{self.owner}.lock")
        assert lock is not None  # a new file: nobody else can hold it
        self._lock = lock

    def files_of(self, job_id: str) -> Path:
        """Where this process keeps a new job's uploaded files until the job ends."""
        return self.folder / self.owner / job_id

    def new_id(self) -> str:
        return uuid.uuid4().hex

    def accept(self, job_id: str, course: str, nbytes: int) -> IngestJob:
        """Record a job whose files are saved under `files_of(job_id)`: from here on it survives a restart."""
        job = IngestJob(job_id, course, nbytes)
        self._db.execute(
            "INSERT INTO jobs VALUES (?, ?, ?, ?, '[]', NULL, ?, NULL, ?, ?)",
            (
                job.id,
                job.course,
                job.bytes,
                job.status,
                job.created_at.isoformat(),
                self.owner,
                str(self.files_of(job_id).relative_to(self.folder)),
            ),
        )
        return job

    def get(self, course: str, job_id: str) -> IngestJob:
        """The job, if it belongs to `course`: a key of another course cannot even learn that it exists."""
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE id = ? AND course = ?", (job_id, course)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no ingest job {job_id!r} in course {course!r}")
        return _job(row)

    def _save(self, job: IngestJob) -> None:
        files = json.dumps([asdict(f) for f in job.files])
        finished = job.finished_at.isoformat() if job.finished_at else None
        self._db.execute(
            "UPDATE jobs SET status = ?, files = ?, error = ?, finished_at = ? WHERE id = ?",
            (job.status, files, job.error, finished, job.id),
        )

    async def run(self, pipeline: Pipeline, job: IngestJob) -> None:
        """Ingest the job's files into its course now; they are removed when it ends, errors re-raised.

        Each file's result is saved to the job's row as soon as the file is done (`_progress`), so the status
        endpoint shows the job advancing and a crash keeps what was done.
        """
        folder = self.folder / self._db.execute("SELECT dir FROM jobs WHERE id = ?", (job.id,)).fetchone()[0]
        loop = asyncio.get_running_loop()

        def on_file(result: FileReport) -> None:  # in the ingest thread; the row is written on the loop
            loop.call_soon_threadsafe(self._progress, job, result)
            if self._stopping:
                raise _StoppingError

        try:
            async with self.writer:
                job.status = "running"
                self._save(job)
                # Named as uploaded, relative to the job's folder, which is no course's recorded folder.
                await asyncio.to_thread(
                    pipeline.ingest, folder, job.course, root=folder, remember_root=False, on_file=on_file
                )
            job.status = "done"
        except _StoppingError:
            job.status = "queued"
            self._save(job)
            return
        except Exception as exc:
            job.status = "failed"
            if status_of(exc).code < 500:
                job.error = str(exc)
            else:
                job.error = f"ingestion failed; quote job {job.id} to the operator"
                _log.error("ingest job %s failed: %s: %s", job.id, type(exc).__name__, exc)
            raise
        finally:
            if job.status != "queued":
                job.finished_at = datetime.now(UTC)
                self._save(job)
                shutil.rmtree(folder, ignore_errors=True)
                self._forget_old()

    def _progress(self, job: IngestJob, result: FileReport) -> None:
        """Record one more file done. A resumed job keeps the results saved before the restart: the rerun
        finds those files `unchanged` (its uploaded files did not change), which would hide what was done."""
        if all(f.source != result.source for f in job.files):
            job.files.append(result)
            self._save(job)

    def _forget_old(self) -> None:
        self._db.execute(
            "DELETE FROM jobs WHERE finished_at IS NOT NULL AND id NOT IN "
            "(SELECT id FROM jobs ORDER BY created_at DESC LIMIT ?)",
            (self._keep,),
        )

    def start(self, pipeline: Pipeline, job: IngestJob) -> None:
        """Run the job in the background; its outcome is read from the status endpoint."""
        task = asyncio.get_running_loop().create_task(self._background(pipeline, job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _background(self, pipeline: Pipeline, job: IngestJob) -> None:
        try:
            await self.run(pipeline, job)
        except Exception:  # recorded on the job by `run`
            return

    def resume(self, pipeline: Pipeline) -> None:
        """Take over the unfinished jobs of processes that died (their lock is free) and restart them; a job
        whose files are gone is reported failed; their files no job owns (uploads cut short) are removed."""
        for entry in self.folder.glob("*.lock"):
            owner = entry.stem
            lock = _hold(entry)
            if lock is None:  # a live process
                continue
            try:
                self._take_over(pipeline, owner)
                pending = self._db.execute(
                    "SELECT dir FROM jobs WHERE finished_at IS NULL AND dir LIKE ?", (f"{owner}/%",)
                )
                owned = {row[0] for row in pending}
                for left in (self.folder / owner).glob("*"):
                    if f"{owner}/{left.name}" not in owned:
                        shutil.rmtree(left, ignore_errors=True)
                if not owned:
                    shutil.rmtree(self.folder / owner, ignore_errors=True)
                    entry.unlink()
            finally:
                os.close(lock)

    def _take_over(self, pipeline: Pipeline, owner: str) -> None:
        rows = self._db.execute(
            f"SELECT {_COLUMNS}, dir FROM jobs WHERE finished_at IS NULL AND owner = ? ORDER BY created_at",
            (owner,),
        ).fetchall()
        for row in rows:
            job = _job(row[:-1])
            claimed = self._db.execute(
                "UPDATE jobs SET owner = ? WHERE id = ? AND owner = ?", (self.owner, job.id, owner)
            ).rowcount
            if not claimed:  # another replica was quicker
                continue
            if (self.folder / row[-1]).is_dir():
                job.status = "queued"
                self.start(pipeline, job)
                continue
            job.status = "failed"
            job.error = "the uploaded files were lost in a restart; upload them again"
            job.finished_at = datetime.now(UTC)
            self._save(job)

    async def drain(self, timeout_s: float) -> bool:
        """Stop after the file being ingested; True if every job stopped within `timeout_s`, after which
        closing the index is safe (a job still running keeps its files and resumes at the next start)."""
        self._stopping = True
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout_s)
            if pending:
                _log.warning(
                    "%d ingest job(s) still running at shutdown; they resume at the next start", len(pending)
                )
                return False
        self._db.close()
        os.close(self._lock)
        return True


def _hold(path: Path) -> int | None:
    """A descriptor holding an exclusive lock on `path` (created if missing), or None if another holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _job(row: tuple[Any, ...]) -> IngestJob:
    job_id, course, nbytes, status, files, error, created, finished = row
    return IngestJob(
        job_id,
        course,
        nbytes,
        status,
        [FileReport(**f) for f in json.loads(files)],
        error,
        datetime.fromisoformat(created),
        datetime.fromisoformat(finished) if finished else None,
    )
