"""Background ingest jobs survive the process: `leanrank serve` in a real subprocess is stopped (SIGTERM,
with a short shutdown deadline) and killed (SIGKILL) while jobs run; after each restart the job ids are
known and every uploaded document ends up indexed. No seam: real signals, real restarts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.serve.errors import NotFoundError
from leanrank.serve.ingest import IngestJobs
from tests.conftest import make_pipeline
from tests.serve.conftest import ADMIN_ENTRY, ADMIN_KEY, auth

FILES = 24


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Served:
    """`leanrank serve` on `data_dir`, every upload in the background, one second to shut down."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> httpx.Client:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(sys.path),
            "LEANRANK_DATA_DIR": str(self.data_dir),
            "LEANRANK_SERVE__API_KEYS": json.dumps([ADMIN_ENTRY]),
            "LEANRANK_SERVE__BACKGROUND_INGEST_BYTES": "0",
            "LEANRANK_SERVE__SHUTDOWN_TIMEOUT_S": "1",
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "leanrank.cli",
                "serve",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            env=env,
        )
        client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", headers=auth(ADMIN_KEY), timeout=30)
        for _ in range(600):  # up to a minute to load the encoder on a busy machine
            try:
                if client.get("/readyz").status_code == 200:
                    return client
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None, "the server exited while starting"
            time.sleep(0.1)
        raise AssertionError("the server did not become ready")

    def signal(self, sig: signal.Signals) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=120)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=60)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = Served(tmp_path / "data")
    yield server
    server.stop()


def _upload(client: httpx.Client, prefix: str) -> str:
    files = [
        (
            "files",
            (f"{prefix}-{i:02d}.md", f"# {prefix} {i}\n\nУрок {i}: цикл while, часть {prefix}.\n".encode()),
        )
        for i in range(FILES)
    ]
    reply = client.post("/v1/courses/durable/documents", files=files)
    assert reply.status_code == 202, reply.text
    job_id: str = reply.json()["id"]
    return job_id


def _finished(client: httpx.Client, job_id: str) -> dict[str, object]:
    for _ in range(1200):
        reply = client.get(f"/v1/courses/durable/jobs/{job_id}")
        assert reply.status_code == 200, reply.text
        body: dict[str, object] = reply.json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


@pytest.mark.slow
def test_jobs_resume_after_sigterm_and_sigkill(served: Served) -> None:
    client = served.start()
    first = _upload(client, "a")
    # uvicorn re-raises the signal once shut down; `wait` would time out if the stop waited for the job.
    assert served.signal(signal.SIGTERM) == -signal.SIGTERM
    client = served.start()
    second = _upload(client, "b")
    assert served.signal(signal.SIGKILL) == -signal.SIGKILL
    client = served.start()
    for job_id in (first, second):
        job = _finished(client, job_id)
        assert job["status"] == "done", job
        assert len(job["files"]) == FILES  # type: ignore[arg-type]
    documents = client.get("/v1/courses/durable/documents").json()["documents"]
    assert len(documents) == 2 * FILES
    assert {d["chunks"] for d in documents} == {1}
    assert list((served.data_dir / "jobs").rglob("*.md")) == []  # uploaded files removed when done


def test_a_new_process_resumes_recorded_jobs(tmp_path: Path, e5: E5SmallEncoder, bm25: Bm25Encoder) -> None:
    """What the next start finds after a crash: a recorded job with its files is run, one whose files are
    gone is reported failed, files no job owns are removed, a live replica's job is left alone; job ids
    stay known. The crashed process is one whose lock is released (as the kernel does at its exit)."""
    jobs_dir = tmp_path / "jobs"
    crashed = IngestJobs(jobs_dir)
    kept = crashed.new_id()
    crashed.files_of(kept).mkdir(parents=True)
    (crashed.files_of(kept) / "a.md").write_text("# A\n\nЦикл while повторяет блок.\n", encoding="utf-8")
    kept_job = crashed.accept(kept, "c", 30)
    lost = crashed.accept(crashed.new_id(), "c", 10)
    orphan = crashed.files_of(crashed.new_id())
    orphan.mkdir(parents=True)
    assert asyncio.run(crashed.drain(1))  # releases its lock: from here on it is a dead process
    replica = IngestJobs(jobs_dir)  # alive, busy receiving an upload
    busy = replica.new_id()
    replica.files_of(busy).mkdir(parents=True)
    replica.accept(busy, "c", 5)
    pipe = make_pipeline(tmp_path / "data", e5, bm25)

    async def restart() -> IngestJobs:
        after = IngestJobs(jobs_dir)
        after.resume(pipe)
        while after.get("c", kept).status != "done":
            await asyncio.sleep(0.05)
        assert await after.drain(600)
        return after

    try:
        asyncio.run(restart())
        assert pipe.store.sources("c") == {"a.md": 1}
    finally:
        pipe.close()
    reread = IngestJobs(jobs_dir)
    done = reread.get("c", kept)
    assert (done.status, [f.source for f in done.files]) == ("done", ["a.md"])
    assert done.created_at == kept_job.created_at
    failed = reread.get("c", lost.id)
    assert failed.status == "failed"
    assert failed.error == "the uploaded files were lost in a restart; upload them again"
    assert not any((jobs_dir / crashed.owner).iterdir())  # the kept job's files and the orphan are gone
    assert reread.get("c", busy).status == "queued"
    assert replica.files_of(busy).is_dir()
    with pytest.raises(NotFoundError):
        reread.get("other-course", kept)
