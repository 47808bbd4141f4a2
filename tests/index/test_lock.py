"""One process at a time holds an embedded index; an index whose creation was cut short is completed on open.

Real processes: a holder opens the index in a child interpreter and keeps it open until told to write; the
second opener is another child (the store, or the `leanrank` command itself).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import qdrant_edge as qe

from leanrank.index.edge import KEYWORD_FIELDS, META_FILE, EdgeStore
from tests.cli.test_cli import leanrank
from tests.conftest import SAMPLE_COURSE
from tests.index.test_edge import chunk, vec, write

HOLDER = """
import sys
from pathlib import Path
from tests.index.test_edge import chunk, vec, write
from leanrank.index.edge import EdgeStore

store = EdgeStore(Path(sys.argv[1]), dim=4, encoder="test")
print("open", flush=True)
for line in sys.stdin:  # one write per line, then the course counts
    i = int(line)
    write(store, [chunk("a", f"{i}.md", 0, f"text {i}")], [vec(1, 0, 0, i)], [[1]])
    print(store.courses()["a"], flush=True)
store.close()
"""

OPENER = """
import sys
from pathlib import Path
from leanrank.errors import StoreError
from leanrank.index.edge import EdgeStore
try:
    EdgeStore(Path(sys.argv[1]), dim=4, encoder="test")
except StoreError as exc:
    print(exc)
"""


def _python(code: str, *args: str, **kw: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-c", code, *args], text=True, env=env, stdout=subprocess.PIPE, **kw
    )


def _holder(path: Path) -> subprocess.Popen[str]:
    proc = _python(HOLDER, str(path), stdin=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "open\n"
    return proc


def _write(proc: subprocess.Popen[str], i: int) -> str:
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(f"{i}\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


def _files(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*") if p.is_file()}


def test_a_second_process_is_refused_and_the_holder_keeps_writing(tmp_path: Path) -> None:
    """The failed open touches no file, and every later write of the holder succeeds."""
    idx = tmp_path / "idx"
    holder = _holder(idx)
    try:
        assert _write(holder, 1) == "1"
        before = _files(idx)
        out, _ = _python(OPENER, str(idx)).communicate(timeout=60)
        assert "open in another process" in out
        assert _files(idx) == before
        assert [_write(holder, i) for i in (2, 3)] == ["2", "3"]
    finally:
        holder.communicate(timeout=60)
    assert holder.returncode == 0
    store = EdgeStore(idx, dim=4, encoder="test")
    assert store.courses() == {"a": 3}
    store.close()


def test_the_command_fails_cleanly_while_the_index_is_held(tmp_path: Path) -> None:
    """`leanrank courses` on a held data dir: one line, status 2 (the user stops the holder or picks another
    data dir, as `--help` says of status 2); the holder writes on."""
    holder = _holder(tmp_path / "index")
    try:
        r = leanrank(tmp_path, "courses")
        assert r.returncode == 2
        assert "open in another process" in r.stderr
        assert "Traceback" not in r.stderr
        assert _write(holder, 1) == "1"
    finally:
        holder.communicate(timeout=60)
    assert holder.returncode == 0


@pytest.mark.slow
def test_two_ingests_started_together_one_wins_and_a_rerun_completes(tmp_path: Path) -> None:
    """Both start on a new data dir: each exits 0 or fails cleanly (1), at least one wins, and the index
    opens afterwards; a re-run reports every file unchanged or added."""
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "leanrank.cli", "ingest", str(SAMPLE_COURSE), "--course", "py101"],
            env={**os.environ, "LEANRANK_DATA_DIR": str(tmp_path), "PYTHONPATH": os.pathsep.join(sys.path)},
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = [(p.wait(timeout=600), p.stderr.read() if p.stderr else "") for p in runs]
    assert {code for code, _ in outcomes} <= {0, 1}
    assert 0 in {code for code, _ in outcomes}
    for code, err in outcomes:
        assert "Traceback" not in err
        if code == 1:
            assert "open in another process" in err
    rerun = leanrank(tmp_path, "ingest", str(SAMPLE_COURSE), "--course", "py101")
    assert rerun.returncode == 0, rerun.stderr
    assert "8 unchanged" in rerun.stderr
    assert "py101" in leanrank(tmp_path, "courses").stdout


def test_an_index_without_payload_indexes_is_repaired_on_open(tmp_path: Path) -> None:
    """The state two racing ingests used to leave: a shard without payload indexes and no metadata file.

    Faceting needs the keyword indexes ("No appropriate index for faceting"); the next open creates them.
    """
    idx = tmp_path / "idx"
    (idx / "shard").mkdir(parents=True)
    config = qe.EdgeConfig(
        vectors={"dense": qe.EdgeVectorParams(size=4, distance=qe.Distance.Cosine)},
        sparse_vectors={"bm25": qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
    )
    qe.EdgeShard.create(str(idx / "shard"), config).close()
    store = EdgeStore(idx, dim=4, encoder="test")
    write(store, [chunk("a", "x.md", 0, "kept")], [vec(1, 0, 0, 0)], [[1]])
    assert store.courses() == {"a": 1}
    assert store.sources("a") == {"x.md": 1}
    store.close()
    assert (idx / META_FILE).exists()
    shard = qe.EdgeShard.load(str(idx / "shard"))
    assert set(shard.info().payload_schema) == set(KEYWORD_FIELDS)
    shard.close()


def test_a_shard_cut_short_before_its_config_is_made_afresh(tmp_path: Path) -> None:
    """A shard folder the engine had not finished (no `edge_config.json`, so no data) is replaced."""
    (tmp_path / "idx" / "shard" / "wal").mkdir(parents=True)
    (tmp_path / "idx" / "shard" / "wal" / "open-1").write_bytes(b"\0" * 64)
    store = EdgeStore(tmp_path / "idx", dim=4, encoder="test")
    write(store, [chunk("a", "x.md", 0, "kept")], [vec(1, 0, 0, 0)], [[1]])
    assert store.courses() == {"a": 1}
    store.close()
