"""QdrantStore: parity with the embedded store on the real pipeline, and what it does facing a server.

qdrant-client's local mode stands in for a Qdrant server (none runs here); a tiny HTTP server stands in for a
failing one, to check which errors are retried and what the user is told.
"""

from __future__ import annotations

import importlib
import json
import sys
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr
from qdrant_client import QdrantClient

from leanrank.encode.base import Matrix
from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.errors import ConfigError, DependencyError, StoreError
from leanrank.index.base import HybridQuery
from leanrank.index.edge import EdgeStore
from leanrank.index.factory import open_store, parse_location
from leanrank.index.migrate import rankings_agree
from leanrank.index.qdrant import QdrantStore
from leanrank.pipeline import Pipeline
from leanrank.settings import Settings, StoreSettings
from leanrank.types import Lang
from tests.conftest import SAMPLE_COURSE
from tests.index.test_edge import chunk, vec, write

# Russian and English, with language (`mixed`: containing both) and heading filters (headings of the bundled
# sample course).
QUERIES: list[tuple[str, tuple[Lang, ...], tuple[str, ...]]] = [
    ("Чем цикл while отличается от цикла for?", (), ()),
    ("как открыть файл", ("ru",), ()),
    ("цикл for и range", ("mixed",), ()),
    ("How does pytest find tests?", ("en",), ()),
    ("keyword arguments", (), ("Lesson 3. Functions",)),
    ("default values", ("en",), ("Lesson 3. Functions", "Parameters and arguments")),
    ("break и continue", (), ("Урок 2. Условия и циклы",)),
    ("Python", (), ()),
]


class CachedEncoder:
    """The real e5 encoder with passages cached by text, so the course is encoded once for both stores."""

    def __init__(self, inner: E5SmallEncoder) -> None:
        self._inner = inner
        self._cache: dict[str, Matrix] = {}

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def dim(self) -> int:
        return self._inner.dim

    def embed_passages(self, texts: Sequence[str]) -> Matrix:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            self._cache.update(zip(missing, self._inner.embed_passages(missing), strict=True))
        return np.stack([self._cache[t] for t in texts])

    def embed_query(self, text: str) -> Matrix:
        return self._inner.embed_query(text)

    def token_count(self, text: str) -> int:
        return self._inner.token_count(text)


@pytest.fixture(scope="module")
def pipes(
    tmp_path_factory: pytest.TempPathFactory, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> Iterator[tuple[Pipeline, Pipeline]]:
    tmp = tmp_path_factory.mktemp("parity")
    other = tmp / "cooking"
    other.mkdir()
    (other / "soup.md").write_text(
        "# Борщ\n\nСвёклу варят отдельно.\n\n# Pasta\n\nBoil water, add salt.\n", "utf-8"
    )
    dense = CachedEncoder(e5)
    edge = Pipeline(Settings(data_dir=tmp / "edge"), dense=dense, sparse=bm25)
    local = Settings(data_dir=tmp / "q", store=StoreSettings(url=f"qdrant:{tmp / 'qdrant'}"))
    qdrant = Pipeline(local, dense=dense, sparse=bm25)
    assert isinstance(qdrant.store, QdrantStore)
    for pipe in (edge, qdrant):
        pipe.ingest(SAMPLE_COURSE, "demo")
        pipe.ingest(other, "cooking")
    yield edge, qdrant
    edge.close()
    qdrant.close()


def test_same_top_k_and_scores_as_the_embedded_store(
    pipes: tuple[Pipeline, Pipeline], e5: E5SmallEncoder, bm25: Bm25Encoder
) -> None:
    edge, qdrant = pipes
    same_ranks = total = 0
    for text, langs, heading in QUERIES:
        dense, sparse = e5.embed_query(text), bm25.embed_query(text)
        for weights in ((1.0, 0.5), (1.0, 1.0), (1.0, 0.0), (0.0, 1.0)):
            query = HybridQuery(
                course="demo",
                dense=dense,
                sparse=sparse,
                limit=200,
                prefetch=100,
                rrf_k=30,
                weights=weights,
                langs=langs,
                heading_prefix=heading,
            )
            a, b = edge.store.hybrid(query), qdrant.store.hybrid(query)
            assert a, text
            assert {c.chunk_id for c in a} == {c.chunk_id for c in b}, text
            assert rankings_agree(a, b, k=10, rrf_k=30, weights=weights), (text, weights)
            twins = {c.chunk_id: c for c in b}
            total += len(a)
            for hit in a:
                twin = twins[hit.chunk_id]
                assert twin.chunk == hit.chunk
                if langs == ("mixed",):
                    assert hit.chunk.langs == ("ru", "en")  # containing both
                else:
                    assert not langs or set(langs) & set(hit.chunk.langs)
                assert hit.chunk.heading[: len(heading)] == heading
                # Where both engines ranked a hit alike in each list, server-side fusion gave the same score.
                if (hit.dense_rank, hit.bm25_rank) == (twin.dense_rank, twin.bm25_rank):
                    same_ranks += 1
                    assert twin.fused == pytest.approx(hit.fused, rel=1e-6), text
    assert same_ranks > 0.8 * total, (same_ranks, total)


def test_benchmark_questions_and_listings_match(
    pipes: tuple[Pipeline, Pipeline], sample_questions: list[dict[str, Any]]
) -> None:
    edge, qdrant = pipes
    for q in sample_questions:
        assert qdrant.search(q["query"], "demo", k=3).hits[0].chunk.source == q["expect_source"], q["query"]
    assert qdrant.courses() == edge.courses()
    assert qdrant.store.sources("demo") == edge.store.sources("demo")
    source = "03-functions.en.md"
    assert qdrant.store.source_file_hashes("demo", source) == edge.store.source_file_hashes("demo", source)
    assert {h.chunk.course for h in qdrant.search("борщ", "cooking", k=10).hits} == {"cooking"}
    again = qdrant.ingest(SAMPLE_COURSE, "demo")
    assert again.chunks == 0


def test_reopen_keeps_data_and_checks_the_encoder(tmp_path: Path) -> None:
    where = str(tmp_path / "q")
    s = QdrantStore(where, dim=4, encoder="test")
    write(s, [chunk("a", "x.md", 0, "kept")], [vec(1, 0, 0, 0)], [[1]])
    with pytest.raises(StoreError, match="opening Qdrant"):
        QdrantStore(where, dim=4, encoder="test")
    s.close()
    s = QdrantStore(where, dim=4, encoder="test")
    assert s.courses() == {"a": 1}
    s.close()
    with pytest.raises(ConfigError, match="was built with"):
        QdrantStore(where, dim=8, encoder="other")
    client = QdrantClient(path=where)  # the failed open released the folder's lock
    client.create_collection("foreign")
    client.close()
    with pytest.raises(ConfigError, match="not created by leanrank"):
        QdrantStore(where, dim=4, encoder="test", settings=StoreSettings(collection="foreign"))


def test_a_large_source_is_written_in_batches_then_replaced() -> None:
    s = QdrantStore(":memory:", dim=4, encoder="test")
    rng = np.random.default_rng(0)
    n = 600
    chunks = [chunk("c", "big.pdf", i, f"page {i}", "v1") for i in range(n)]
    dense = [vec(*rng.random(4)) for _ in range(n)]
    write(s, chunks, dense, [[i % 50] for i in range(n)])
    assert s.sources("c") == {"big.pdf": n}
    write(s, [chunk("c", "big.pdf", 0, "page 0", "v2")], [dense[0]], [[0]])
    assert s.sources("c") == {"big.pdf": 1}
    assert s.source_file_hashes("c", "big.pdf") == {"v2"}
    s.close()


class FakeQdrant:
    """An HTTP server answering each request with the next canned (status, body); records the requests."""

    def __init__(self, answers: list[tuple[int, dict[str, Any]]]) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.bodies: list[Any] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.requests.append((self.command, self.path, dict(self.headers)))
                length = int(self.headers.get("Content-Length") or 0)
                fake.bodies.append(json.loads(self.rfile.read(length)) if length else None)
                status, body = answers[min(len(fake.requests), len(answers)) - 1]
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                self.do_GET()

            def do_POST(self) -> None:
                self.do_GET()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[Any]:
    servers: list[FakeQdrant] = []

    def start(answers: list[tuple[int, dict[str, Any]]]) -> FakeQdrant:
        servers.append(FakeQdrant(answers))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_5xx_is_retried_and_4xx_is_not(fake: Any) -> None:
    unavailable = (503, {"status": {"error": "overloaded"}})
    server = fake([unavailable, unavailable, (400, {"status": {"error": "Wrong input: bad collection"}})])
    settings = StoreSettings(retries=3, api_key=SecretStr("s3cret"), collection="lr")
    with (
        pytest.warns(UserWarning, match="insecure"),
        pytest.raises(StoreError, match="HTTP 400: Wrong input: bad collection"),
    ):
        QdrantStore(server.url, dim=4, encoder="test", settings=settings, backoff_s=0.001)
    assert [path for _, path, _ in server.requests] == ["/collections/lr/exists"] * 3
    assert {headers["api-key"] for _, _, headers in server.requests} == {"s3cret"}


def test_a_new_collection_is_created_as_configured(fake: Any) -> None:
    ok: dict[str, Any] = {"status": "ok", "time": 0.0}
    indexed = {**ok, "result": {"operation_id": 1, "status": "completed"}}
    server = fake(
        [(200, {**ok, "result": {"exists": False}}), (200, {**ok, "result": True})]
        + [(200, indexed)] * 6
        + [(404, {"status": {"error": "stop here"}})]
    )
    settings = StoreSettings(shard_number=3, replication_factor=2, write_consistency_factor=2)
    with pytest.raises(StoreError, match="stop here"):
        QdrantStore(server.url, dim=384, encoder="e5", settings=settings, backoff_s=0.001)
    calls = [(method, path.split("?")[0]) for method, path, _ in server.requests]
    assert calls[:2] == [("GET", "/collections/leanrank/exists"), ("PUT", "/collections/leanrank")]
    create = server.bodies[1]
    assert create["vectors"] == {"dense": {"size": 384, "distance": "Cosine"}}
    assert create["sparse_vectors"] == {"bm25": {"modifier": "idf"}}
    assert (create["shard_number"], create["replication_factor"], create["write_consistency_factor"]) == (
        3,
        2,
        2,
    )
    assert create["hnsw_config"] == {"m": 0, "payload_m": 16}
    assert create["metadata"] == {"leanrank": {"schema": 2, "dim": 384, "encoder": "e5"}}
    indexes = {b["field_name"]: b["field_schema"] for b in server.bodies[2:8]}
    assert set(indexes) == {"course", "lang", "langs", "source", "file_hash", "heading_prefixes"}
    assert indexes["course"] == {"type": "keyword", "is_tenant": True, "enable_hnsw": True}
    assert indexes["source"] == {"type": "keyword", "is_tenant": False, "enable_hnsw": False}


def test_retries_stop_after_the_configured_count(fake: Any) -> None:
    server = fake([(503, {"status": {"error": "overloaded"}})])
    with pytest.raises(StoreError, match="opening the collection failed: HTTP 503: overloaded"):
        QdrantStore(server.url, dim=4, encoder="test", settings=StoreSettings(retries=2), backoff_s=0.001)
    assert len(server.requests) == 3


def test_an_unreachable_server_is_one_clear_error(fake: Any) -> None:
    server = fake([])
    url = server.url
    server.close()
    with pytest.raises(StoreError, match="cannot reach Qdrant"):
        QdrantStore(url, dim=4, encoder="test", settings=StoreSettings(retries=1), backoff_s=0.001)


def test_store_url_forms() -> None:
    assert parse_location("edge:") == parse_location("  edge:")
    assert parse_location("edge:/srv/idx").where == "/srv/idx"
    assert parse_location("http://qdrant:6333").kind == "server"
    assert parse_location("qdrant:https://q.example:6333") == parse_location("https://q.example:6333")
    assert parse_location("qdrant::memory:") == parse_location(":memory:")
    assert parse_location("qdrant:/data/q").kind == "local"
    with pytest.raises(ConfigError, match="after 'qdrant:'"):
        parse_location("qdrant:")


def test_open_store_follows_the_setting(tmp_path: Path) -> None:
    edge = open_store(Settings(data_dir=tmp_path), 4, "test")
    assert isinstance(edge, EdgeStore)
    assert edge.path == tmp_path / "index"
    edge.close()
    local = open_store(Settings(data_dir=tmp_path, store=StoreSettings(url=":memory:")), 4, "test")
    assert isinstance(local, QdrantStore)
    local.close()


def test_a_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "qdrant_client", None)
    monkeypatch.delitem(sys.modules, "leanrank.index.qdrant")
    with pytest.raises(DependencyError, match=r"leanrank\[qdrant\]"):
        importlib.import_module("leanrank.index.qdrant")
    with pytest.raises(DependencyError, match=r"leanrank\[qdrant\]"):
        open_store(Settings(data_dir=tmp_path, store=StoreSettings(url=":memory:")), 4, "test")


def test_the_deployment_example_parses_and_points_at_its_services() -> None:
    yaml = pytest.importorskip("yaml")
    deploy = Path(__file__).parents[2] / "deploy"
    compose = yaml.safe_load((deploy / "compose.yaml").read_text("utf-8"))
    services = compose["services"]
    assert {"qdrant", "reranker", "leanrank", "postgres", "redis"} <= set(services)
    for name, service in services.items():
        image = service["image"]
        assert ":" in image, name
        assert not image.endswith(":latest"), name
    env = services["leanrank"]["environment"]
    assert parse_location(env["LEANRANK_STORE__URL"]).kind == "server"
    assert env["LEANRANK_RERANK__BACKEND"].startswith("tei:http://reranker")
    assert "@postgres:5432/" in env["LEANRANK_COST__LEDGER_URL"]
    assert services["leanrank"]["deploy"]["replicas"] >= 2
    assert "BAAI/bge-reranker-v2-m3" in " ".join(services["reranker"]["command"])
    assert yaml.safe_load((deploy / "qdrant.yaml").read_text("utf-8"))["storage"]["snapshots_path"]
