"""BgeM3Encoder against a tiny XLM-R checkpoint loaded through the same code path as the real bge-m3, with
hand-set sparse heads for its learned sparse vectors."""

from __future__ import annotations

import shutil
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from leanrank.encode.base import DenseEncoder, SparseEncoder, SparseVec
from leanrank.encode.bge_m3 import BgeM3Encoder, BgeM3Lexical
from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.cached import QueryCache
from leanrank.encode.catalog import sparse_encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.errors import ConfigError, DependencyError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TEXTS = [
    "Градиентный спуск — это метод оптимизации.",
    "Hi",
    "The lecture starts at ten in the morning in the main hall, and the seminar was moved to next week.",
    "Кошка спит.",
    "",
    "Vector search finds similar documents.",
]


@pytest.fixture(scope="module")
def encoder(tiny_xlmr_dir: Path) -> BgeM3Encoder:
    return BgeM3Encoder(tiny_xlmr_dir, device="cpu", batch_size=2)


def reference_embeddings(model_dir: Path, texts: list[str]) -> np.ndarray[Any, Any]:
    """bge-m3's definition, computed with transformers directly: CLS of the last hidden state, normalised."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModel.from_pretrained(model_dir).eval()
    inputs = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**inputs).last_hidden_state
    return np.asarray(torch.nn.functional.normalize(hidden[:, 0], dim=-1).numpy())


def test_satisfies_the_dense_encoder_protocol(encoder: BgeM3Encoder, tiny_xlmr_dir: Path) -> None:
    assert isinstance(encoder, DenseEncoder)
    assert encoder.name == str(tiny_xlmr_dir)
    assert encoder.dim == 32


def test_passages_are_unit_float32_rows(encoder: BgeM3Encoder) -> None:
    out = encoder.embed_passages(TEXTS)
    assert out.shape == (len(TEXTS), 32)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_matches_cls_pooling_computed_by_hand(encoder: BgeM3Encoder, tiny_xlmr_dir: Path) -> None:
    np.testing.assert_allclose(
        encoder.embed_passages(TEXTS), reference_embeddings(tiny_xlmr_dir, TEXTS), atol=1e-5
    )


def test_is_deterministic_across_calls_and_instances(encoder: BgeM3Encoder, tiny_xlmr_dir: Path) -> None:
    first = encoder.embed_passages(TEXTS)
    np.testing.assert_array_equal(first, encoder.embed_passages(TEXTS))
    fresh = BgeM3Encoder(tiny_xlmr_dir, device="cpu")
    np.testing.assert_allclose(first, fresh.embed_passages(TEXTS), atol=1e-6)


def test_length_sorted_batches_come_back_in_input_order(encoder: BgeM3Encoder) -> None:
    one_by_one = np.stack([encoder.embed_query(text) for text in TEXTS])
    np.testing.assert_allclose(encoder.embed_passages(TEXTS), one_by_one, atol=1e-5)
    np.testing.assert_allclose(encoder.embed_passages(TEXTS[::-1]), one_by_one[::-1], atol=1e-5)


def test_query_is_a_single_unit_vector_without_prefix(encoder: BgeM3Encoder) -> None:
    query = encoder.embed_query(TEXTS[0])
    assert query.shape == (32,)
    np.testing.assert_allclose(query, encoder.embed_passages([TEXTS[0]])[0])


def test_empty_batch_has_zero_rows(encoder: BgeM3Encoder) -> None:
    assert encoder.embed_passages([]).shape == (0, 32)


def test_inputs_longer_than_the_model_are_truncated(encoder: BgeM3Encoder) -> None:
    long_text = "Нейронная сеть состоит из слоёв нейронов. " * 200
    assert encoder.token_count(long_text) > 1000  # far beyond the 128 positions of the tiny model
    vectors = encoder.embed_passages([long_text, long_text + " и ещё"])
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)  # the tail was cut off


def test_max_length_truncates_earlier(tiny_xlmr_dir: Path) -> None:
    short = BgeM3Encoder(tiny_xlmr_dir, device="cpu", max_length=4)
    np.testing.assert_allclose(short.embed_query("hello world"), short.embed_query("hello world again"))


def test_token_count_matches_the_tokenizer_without_special_tokens(
    encoder: BgeM3Encoder, tiny_xlmr_dir: Path
) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_xlmr_dir)
    for text in TEXTS:
        assert encoder.token_count(text) == len(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert encoder.token_count("") == 0


def test_concurrent_first_use_loads_once_and_agrees(
    encoder: BgeM3Encoder, tiny_xlmr_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = encoder.embed_passages(TEXTS)
    loads: list[object] = []
    load = transformers.AutoModel.from_pretrained

    def counting_load(*args: Any, **kwargs: Any) -> Any:
        loads.append(args)
        return load(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", counting_load)
    cold = BgeM3Encoder(tiny_xlmr_dir, device="cpu", batch_size=2)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: cold.embed_passages(TEXTS), range(8)))
    assert len(loads) == 1
    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-6)


def test_loading_waits_for_first_use(tmp_path: Path) -> None:
    encoder = BgeM3Encoder(tmp_path / "not-there")  # no error yet: nothing is read in __init__
    with pytest.raises(ConfigError, match="does not exist"):
        encoder.embed_query("hello")


@pytest.mark.parametrize(
    ("make_source", "message"),
    [
        (lambda tmp: tmp / "missing", "does not exist"),
        (lambda tmp: str(tmp / "missing" / "model"), "does not exist"),
        (lambda tmp: tmp, "cannot load model"),
        (lambda tmp: (tmp / "weights.bin").resolve(), "is a file"),
    ],
    ids=["missing-path", "missing-str", "empty-dir", "file"],
)
def test_bad_local_sources_raise_config_error(tmp_path: Path, make_source: Any, message: str) -> None:
    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(ConfigError, match=message) as info:
        _ = BgeM3Encoder(make_source(tmp_path)).dim
    assert "\n" not in str(info.value)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Refuses every outgoing connection and records the attempts."""
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def test_uncached_hub_id_fails_fast_without_network(tmp_path: Path, no_network: list[object]) -> None:
    started = time.monotonic()
    with pytest.raises(ConfigError, match="not in the local Hugging Face cache") as info:
        _ = BgeM3Encoder("leanrank-tests/not-cached", cache_dir=tmp_path).dim
    assert time.monotonic() - started < 1
    assert no_network == []
    assert "\n" not in str(info.value)


def test_cached_hub_id_loads_from_the_cache_without_network(
    encoder: BgeM3Encoder, tiny_xlmr_dir: Path, tmp_path: Path, no_network: list[object]
) -> None:
    commit = "0" * 40  # huggingface_hub's cache layout: refs/main names the snapshot to use
    repo = tmp_path / "models--leanrank-tests--tiny-xlmr"
    shutil.copytree(tiny_xlmr_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    cached = BgeM3Encoder("leanrank-tests/tiny-xlmr", cache_dir=tmp_path, device="cpu")
    np.testing.assert_allclose(cached.embed_passages(TEXTS), encoder.embed_passages(TEXTS), atol=1e-6)
    assert cached.name == "leanrank-tests/tiny-xlmr"
    assert no_network == []


def test_invalid_hub_id_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="neither an existing directory nor a hub id"):
        _ = BgeM3Encoder("not a model!").dim


@pytest.mark.parametrize("module", ["torch", "transformers"])
def test_missing_extra_raises_dependency_error(
    tiny_xlmr_dir: Path, monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(DependencyError, match=r"leanrank\[torch\]"):
        _ = BgeM3Encoder(tiny_xlmr_dir).dim


@pytest.mark.parametrize(
    "kwargs", [{"device": "gpu"}, {"device": "cuda:x"}, {"batch_size": 0}, {"max_length": 0}]
)
def test_invalid_settings_raise_config_error(tiny_xlmr_dir: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        BgeM3Encoder(tiny_xlmr_dir, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_raises_config_error(tiny_xlmr_dir: Path) -> None:
    with pytest.raises(ConfigError, match="CUDA is not available"):
        _ = BgeM3Encoder(tiny_xlmr_dir, device="cuda").dim


# Learned sparse vectors (issue 20) ------------------------------------------------------------------------

E0 = [1.0] + [0.0] * 31  # a sparse head reading the first hidden unit: token weight relu(h[0])
SPECIAL_IDS = {0, 1, 2, 3}  # <s>, <pad>, </s>, <unk>
# Recorded from the tiny checkpoint with the E0 head (seeded build, CPU float32); ids of `unigram_vocab`:
# ▁cat 114, ▁sleeps 160, ▁windowsill 174. The other tokens' first hidden unit is negative: dropped.
RECORDED = {
    "The cat sleeps on the warm windowsill.": {114: 0.7536, 160: 0.5452, 174: 0.2014},
    "cat cat cat": {114: 0.7498},  # the largest of the three positions' weights
}


@pytest.fixture(scope="module")
def e0_model(tiny_xlmr_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.models import add_sparse_head

    path = tmp_path_factory.mktemp("e0") / "model"
    shutil.copytree(tiny_xlmr_dir, path)
    return add_sparse_head(path, E0, 0.0)


def reference_token_weights(
    model_dir: Path, text: str, weight: list[float], bias: float
) -> list[tuple[int, float]]:
    """(token id, relu(weight·h + bias)) per position of `text`, special tokens included, by transformers."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModel.from_pretrained(model_dir).eval()
    inputs = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        hidden = model(**inputs).last_hidden_state[0]
    values = torch.relu(hidden @ torch.tensor(weight) + bias)
    return list(zip(inputs["input_ids"][0].tolist(), values.tolist(), strict=True))


def as_dict(vec: SparseVec) -> dict[int, float]:
    assert list(vec.indices) == sorted(vec.indices)
    return dict(zip(vec.indices, vec.values, strict=True))


def test_lexical_weights_are_the_heads_relu_max_over_repeats(e0_model: Path) -> None:
    lexical = BgeM3Encoder(e0_model, device="cpu").lexical()
    assert isinstance(lexical, SparseEncoder)
    for text, recorded in RECORDED.items():
        got = as_dict(lexical.embed_query(text))
        assert got == pytest.approx(recorded, abs=1e-4)
        expected: dict[int, float] = {}
        for token, weight in reference_token_weights(e0_model, text, E0, 0.0):
            if token not in SPECIAL_IDS and weight > 0:
                expected[token] = max(expected.get(token, 0.0), weight)
        assert got == pytest.approx(expected, abs=1e-5)
    positions = [w for t, w in reference_token_weights(e0_model, "cat cat cat", E0, 0.0) if t == 114]
    assert len(set(positions)) == len(positions) == 3  # three different weights, the largest kept


def test_a_constant_head_weighs_each_distinct_ordinary_token_once(tiny_bge_m3_dir: Path) -> None:
    lexical = BgeM3Encoder(tiny_bge_m3_dir, device="cpu").lexical()
    # <s> ▁Hello , ▁world ! ▁Hello </s>: the special tokens go, the repeated ▁Hello counts once.
    assert lexical.embed_query("Hello, world! Hello") == SparseVec((60, 69, 105, 176), (1.0, 1.0, 1.0, 1.0))
    assert lexical.token_count("Hello, world! Hello") == 4
    assert lexical.embed_query("") == SparseVec((), ())
    assert lexical.name == f"bge-m3-lexical({tiny_bge_m3_dir})"


def test_zero_weights_are_dropped(tiny_xlmr_dir: Path, tmp_path: Path) -> None:
    from tests.models import add_sparse_head

    shutil.copytree(tiny_xlmr_dir, tmp_path / "m")
    negative = add_sparse_head(tmp_path / "m", [0.0] * 32, -1.0)
    lexical = BgeM3Encoder(negative, device="cpu").lexical()
    assert lexical.embed_documents(TEXTS) == [SparseVec((), ())] * len(TEXTS)


def test_dense_vectors_are_unchanged_by_the_sparse_head(e0_model: Path, tiny_xlmr_dir: Path) -> None:
    encoder = BgeM3Encoder(e0_model, device="cpu", batch_size=2)
    encoder.lexical()  # from now on each pass computes both
    np.testing.assert_allclose(
        encoder.embed_passages(TEXTS), reference_embeddings(tiny_xlmr_dir, TEXTS), atol=1e-5
    )


def test_passages_and_queries_share_one_head_and_batches_keep_order(e0_model: Path) -> None:
    lexical = BgeM3Encoder(e0_model, device="cpu", batch_size=2).lexical()
    one_by_one = [lexical.embed_query(text) for text in TEXTS]
    batched = lexical.embed_documents(TEXTS)
    for a, b in zip(batched, one_by_one, strict=True):
        assert a.indices == b.indices
        np.testing.assert_allclose(a.values, b.values, atol=1e-5)


def test_one_forward_pass_gives_dense_and_sparse(e0_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forwarded: list[str] = []
    forward = BgeM3Encoder._forward

    def counting(self: BgeM3Encoder, state: Any, texts: list[str], *, lexical: bool) -> Any:
        forwarded.extend(texts)
        return forward(self, state, texts, lexical=lexical)

    monkeypatch.setattr(BgeM3Encoder, "_forward", counting)
    encoder = BgeM3Encoder(e0_model, device="cpu", batch_size=2)
    lexical = encoder.lexical()
    encoder.embed_passages(TEXTS)  # ingest: dense vectors, then the same texts' sparse ones
    kept = lexical.embed_documents(TEXTS)
    assert sorted(forwarded) == sorted(TEXTS)
    assert kept == lexical.embed_documents(TEXTS)  # taken once: asked again, they are computed again
    assert len(forwarded) == 2 * len(TEXTS)
    forwarded.clear()
    encoder.embed_query("cat cat cat")  # search: the query's dense vector, then its sparse one
    assert as_dict(lexical.embed_query("cat cat cat")) == pytest.approx(RECORDED["cat cat cat"], abs=1e-4)
    assert forwarded == ["cat cat cat"]


def test_learned_sparse_needs_the_sparse_head(tiny_xlmr_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"has no sparse_linear\.pt"):
        BgeM3Encoder(tiny_xlmr_dir, device="cpu").lexical()
    from tests.models import add_sparse_head

    shutil.copytree(tiny_xlmr_dir, tmp_path / "m")
    add_sparse_head(tmp_path / "m", [1.0] * 8, 0.0)  # made for another hidden size
    with pytest.raises(ConfigError, match=r"cannot load .*sparse_linear.pt as Linear\(32, 1\)") as info:
        _ = BgeM3Encoder(tmp_path / "m", device="cpu").dim
    assert "\n" not in str(info.value)


def test_the_catalog_pairs_learned_sparse_with_its_bge_m3_encoder(
    tiny_bge_m3_dir: Path, e5: E5SmallEncoder
) -> None:
    assert isinstance(sparse_encoder("bm25", QueryCache(BgeM3Encoder(tiny_bge_m3_dir))), Bm25Encoder)
    dense = BgeM3Encoder(tiny_bge_m3_dir, device="cpu")
    lexical = sparse_encoder("bge-m3", QueryCache(dense))
    assert isinstance(lexical, BgeM3Lexical)
    assert lexical.model is dense
    with pytest.raises(ConfigError, match="set encoder = 'bge-m3:PATH_OR_HUB_ID'"):
        sparse_encoder("bge-m3", e5)
