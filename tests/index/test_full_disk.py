"""A full disk under the index: writes are refused with a clear error before they start, reads go on.

Uses a real small tmpfs (mounted here; skipped where the machine does not allow it), no seam: on a full
tmpfs the engine's memory-mapped writes used to kill the process with SIGBUS. Filling runs in a child
process, so a regression fails the test instead of killing the test run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.serve import create_app
from leanrank.storage import MIN_FREE_BYTES
from tests.conftest import make_pipeline
from tests.serve.conftest import ADMIN_KEY, COURSES, settings_for
from tests.serve.live import LiveServer

FILL = """
import sys
from pathlib import Path
import numpy as np
from leanrank.encode.base import SparseVec
from leanrank.errors import StorageFullError
from leanrank.index.edge import EdgeStore
from leanrank.types import Chunk

store = EdgeStore(Path(sys.argv[1]), dim=384, encoder="test")
rng = np.random.default_rng(0)
written = 0
for f in range(100_000):
    chunks = [
        Chunk("c", f"f{f}.md", i, "text " * 100, 0, 500, (), "en", f"h{f}-{i}", f"fh{f}", 100)
        for i in range(50)
    ]
    dense = rng.standard_normal((50, 384)).astype(np.float32)
    try:
        store.replace_source("c", f"f{f}.md", chunks, dense, [SparseVec((1, 2), (1.0, 1.0))] * 50)
    except StorageFullError as exc:
        print(exc)
        break
    written += 50
print(written, store.count("c"), len(store.sources("c")))
store.close()
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100m", "tmpfs", str(disk)], check=False)
    if mounted.returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def test_the_store_refuses_writes_on_a_full_disk_and_keeps_reading(small_disk: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run(
        [sys.executable, "-c", FILL, str(small_disk / "idx")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr  # -7 (SIGBUS) before
    refusal, counts = run.stdout.strip().splitlines()
    assert refusal.startswith("writing c/f")
    assert refusal.endswith("MiB kept free; writes are refused until space is freed")
    written, counted, sources = map(int, counts.split())
    assert written > 0
    assert (counted, sources) == (written, written // 50)


def test_uploads_get_507_and_searches_go_on(
    small_disk: Path, e5: E5SmallEncoder, bm25: Bm25Encoder, tmp_path: Path
) -> None:
    pipe = make_pipeline(small_disk / "data", e5, bm25)
    name, text = COURSES["demo"]
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / name).write_text(text, encoding="utf-8")
    pipe.ingest(tmp_path / "demo", "demo")
    server = LiveServer(create_app(settings_for(small_disk / "data"), pipeline=pipe))
    ballast = small_disk / "ballast"
    try:
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        ballast.write_bytes(b"\0" * (free - MIN_FREE_BYTES + 2**20))  # leaves less than the reserve
        with server.client(ADMIN_KEY) as http:
            files = [("files", ("new.md", b"# New\n\nA new lesson about loops.\n"))]
            refused = http.post("/v1/courses/demo/documents", files=files)
            assert (refused.status_code, refused.json()["error_type"]) == (507, "storage_full")
            search = http.post("/v1/search", json={"query": "цикл for", "course": "demo"})
            assert search.status_code == 200
            assert search.json()["hits"][0]["source"] == name
            ballast.unlink()
            assert http.post("/v1/courses/demo/documents", files=files).status_code == 200
            documents = http.get("/v1/courses/demo/documents").json()["documents"]
            assert [d["source"] for d in documents] == [name, "new.md"]
    finally:
        server.close()
        pipe.close()
