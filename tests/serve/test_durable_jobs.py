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
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from leanrank.encode.base import SparseVec
from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.pipeline import Pipeline
from leanrank.serve import create_app
from leanrank.serve.errors import NotFoundError
from leanrank.serve.ingest import IngestJobs
from leanrank.settings import Settings
from tests.conftest import make_pipeline
from tests.serve.conftest import ADMIN_ENTRY, ADMIN_KEY, auth, settings_for
from tests.serve.live import LiveServer

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


def _finished(client: httpx.Client, url: str) -> dict[str, object]:
    for _ in range(1200):
        reply = client.get(url)
        assert reply.status_code == 200, reply.text
        body: dict[str, object] = reply.json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"job {url} did not finish")


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
        job = _finished(client, f"/v1/courses/durable/jobs/{job_id}")
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


class HeldBm25(Bm25Encoder):
    """BM25 that waits for `go` before analysing its second file, as a long second file holds an ingest."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.second_started = threading.Event()
        self.go = threading.Event()

    def embed_documents(self, texts: Sequence[str]) -> list[SparseVec]:
        self.calls += 1
        if self.calls == 2:
            self.second_started.set()
            assert self.go.wait(60), "the test never let the ingest go on"
        return super().embed_documents(texts)


LESSONS = [
    ("files", ("a.md", "# A\n\nЦикл while повторяет блок.\n".encode())),
    ("files", ("b.md", "# B\n\nЦикл for перебирает элементы.\n".encode())),
]


def test_a_running_job_reports_each_file_as_it_is_done(tmp_path: Path, e5: E5SmallEncoder) -> None:
    """An operator polling a long background upload sees its files one by one, not `[]` until the end."""
    settings = settings_for(tmp_path / "data", background_ingest_bytes=0)
    held = HeldBm25()
    pipe = Pipeline(settings, dense=e5, sparse=held)
    server = LiveServer(create_app(settings, pipeline=pipe))
    try:
        with server.client(ADMIN_KEY) as http:
            url = http.post("/v1/courses/held/documents", files=LESSONS).headers["location"]
            assert held.second_started.wait(60)
            deadline = time.monotonic() + 10
            while not (running := http.get(url).json())["files"] and time.monotonic() < deadline:
                time.sleep(0.02)  # the row is written on the event loop just after the file is done
            held.go.set()
            done = _finished(http, url)
    finally:
        held.go.set()
        server.close()
        pipe.close()
    first = {"source": "a.md", "status": "added", "chunks": 1, "reason": "", "kept": 0}
    assert (running["status"], running["files"], running["finished_at"]) == ("running", [first], None)
    assert done["status"] == "done"
    assert done["files"] == [first, {**first, "source": "b.md"}]


def test_a_resumed_job_keeps_the_results_saved_before_the_stop(
    tmp_path: Path, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> None:
    """Stopped after two of its three files, the job resumes in a new process and reports each file once, as
    done the first time (`added`), not as the rerun finds it (`unchanged`)."""
    jobs_dir = tmp_path / "jobs"
    held = HeldBm25()
    held_pipe = Pipeline(Settings(data_dir=tmp_path / "data"), dense=e5, sparse=held)
    stopped = IngestJobs(jobs_dir)
    job = stopped.accept(stopped.new_id(), "c", 60)
    for _, (name, content) in [
        *LESSONS,
        ("files", ("c.md", "# C\n\nФункция возвращает значение.\n".encode())),
    ]:
        (stopped.files_of(job.id) / name).parent.mkdir(parents=True, exist_ok=True)
        (stopped.files_of(job.id) / name).write_bytes(content)

    async def stop_after_the_second_file() -> None:
        stopped.start(held_pipe, job)
        assert await asyncio.to_thread(held.second_started.wait, 60)
        assert not await stopped.drain(0)  # stops once the file in flight (b.md) is done
        held.go.set()
        assert await stopped.drain(60)

    try:
        asyncio.run(stop_after_the_second_file())
    finally:
        held.go.set()
        held_pipe.close()
    saved = IngestJobs(jobs_dir).get("c", job.id)
    assert saved.status == "queued"
    assert [(f.source, f.status) for f in saved.files] == [("a.md", "added"), ("b.md", "added")]
    pipe = make_pipeline(tmp_path / "data", e5, bm25)

    async def restart() -> None:
        after = IngestJobs(jobs_dir)
        after.resume(pipe)
        while after.get("c", job.id).status != "done":
            await asyncio.sleep(0.05)
        assert await after.drain(60)

    try:
        asyncio.run(restart())
    finally:
        pipe.close()
    resumed = IngestJobs(jobs_dir).get("c", job.id)
    assert resumed.status == "done"
    assert [(f.source, f.status) for f in resumed.files] == [
        ("a.md", "added"),
        ("b.md", "added"),
        ("c.md", "added"),
    ]
