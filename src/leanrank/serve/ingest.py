"""Uploads: the files of a multipart request become a folder that `Pipeline.ingest` reads.

Small uploads are ingested before the answer; large ones in a background task whose state a status
endpoint reports, so a client never holds a connection open for minutes of embedding. Ingests (and
deletions) take one writer lock: the index has one writer, readers carry on meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from leanrank.errors import InputError
from leanrank.pipeline import FileReport, Pipeline
from leanrank.serve.errors import NotFoundError, status_of

JobStatus = Literal["queued", "running", "done", "failed"]
_log = logging.getLogger("leanrank.serve")
_MAX_NAME_BYTES = 255  # NAME_MAX of Linux, macOS and Windows file systems


def source_name(filename: str | None) -> str:
    """A multipart file name as the source id it will have: a relative POSIX path inside the upload.

    Absolute paths, `..` and hidden parts are refused rather than rewritten: ingestion skips hidden files
    silently, and a rewritten name would not match the source the client later deletes. Each part must
    be a name a file system takes: UTF-8 text without NUL, at most 255 bytes.
    """
    raw = (filename or "").replace("\\", "/").strip("/")
    parts = raw.split("/")
    if not raw or len(raw) > 512 or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise InputError(
            f"files: file name {filename!r}: give a relative path of at most 512 characters without '..' "
            "or parts starting with '.'"
        )
    try:
        too_long = any(len(p.encode("utf-8")) > _MAX_NAME_BYTES for p in parts)
    except UnicodeEncodeError:
        raise InputError(f"files: file name {filename!r} is not valid UTF-8 text") from None
    if too_long or "\x00" in raw:
        raise InputError(
            f"files: file name {filename!r}: each part of the path must be at most {_MAX_NAME_BYTES} "
            "bytes of UTF-8, without NUL"
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


class IngestJobs:
    """Runs ingests one at a time and remembers the last `keep` jobs for their status endpoint."""

    def __init__(self, keep: int = 1000) -> None:
        self.writer = asyncio.Lock()
        self._keep = keep
        self._jobs: OrderedDict[str, IngestJob] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    def new(self, course: str, nbytes: int) -> IngestJob:
        job = IngestJob(uuid.uuid4().hex, course, nbytes)
        self._jobs[job.id] = job
        while len(self._jobs) > self._keep:
            self._jobs.popitem(last=False)
        return job

    def get(self, course: str, job_id: str) -> IngestJob:
        """The job, if it belongs to `course`: a key of another course cannot even learn that it exists."""
        job = self._jobs.get(job_id)
        if job is None or job.course != course:
            raise NotFoundError(f"no ingest job {job_id!r} in course {course!r}")
        return job

    async def run(self, pipeline: Pipeline, job: IngestJob, folder: Path) -> None:
        """Ingest `folder` into the job's course now; the folder is removed afterwards, errors re-raised."""
        try:
            async with self.writer:
                job.status = "running"
                report = await asyncio.to_thread(pipeline.ingest, folder, job.course)
            job.files = report.files
            job.status = "done"
        except Exception as exc:
            job.status = "failed"
            if status_of(exc).code < 500:
                job.error = str(exc)
            else:
                job.error = f"ingestion failed; quote job {job.id} to the operator"
                _log.error("ingest job %s failed: %s: %s", job.id, type(exc).__name__, exc)
            raise
        finally:
            job.finished_at = datetime.now(UTC)
            shutil.rmtree(folder, ignore_errors=True)

    def start(self, pipeline: Pipeline, job: IngestJob, folder: Path) -> None:
        """Run the job in the background; its outcome is read from the status endpoint."""
        task = asyncio.get_running_loop().create_task(self._background(pipeline, job, folder))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _background(self, pipeline: Pipeline, job: IngestJob, folder: Path) -> None:
        try:
            await self.run(pipeline, job, folder)
        except Exception:  # recorded on the job by `run`
            return

    async def drain(self) -> None:
        """Wait for background ingests: closing the index under a writer would lose its work."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
