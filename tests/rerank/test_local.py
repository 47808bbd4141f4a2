"""Local cross-encoders against tiny random-weight checkpoints loaded through the real models' code path.

Reference numbers are the tiny models' own; the Qwen3 expectation is recomputed with the model card's code.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from leanrank.errors import ConfigError, DependencyError
from leanrank.rerank import torch_backend
from leanrank.rerank.base import Reranker
from leanrank.rerank.local import QWEN3_DEFAULT_INSTRUCTION, LocalReranker, local_reranker
from leanrank.rerank.quality import LOWER_PRECISION, RUNTIME_PARITY, Request, compare, xquad_requests

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

QUERY_RU = "Что такое градиентный спуск?"
QUERY_EN = "What is gradient descent?"
DOCS = [  # sentences of the tiny models' corpus (tests/models.py), of very different lengths
    "Градиентный спуск — это метод оптимизации функции потерь.",
    "Кошка спит на тёплом подоконнике.",
    "",
    "Gradient descent is a method for optimising a loss function.",
    "Нейронная сеть состоит из слоёв нейронов. A neural network is made of layers of neurons. "
    "Домашнее задание нужно сдать до пятницы. The homework is due on Friday. "
    "Переобучение возникает, когда модель запоминает данные.",
    "Hello, world! How are you?",
    "Регуляризация помогает модели лучше обобщать.",
]
# Thousands of tokens, far beyond the tiny models' positions.
LONG = "Нейронная сеть состоит из слоёв нейронов. The lecture starts at ten in the morning. " * 100

XQUAD = Path(__file__).resolve().parents[3] / "shared" / "data" / "xquad"

# Recorded from the tiny models (tests/models.py, seed 0) for QUERY_RU over DOCS.
XLMR_SCORES = [0.2186522, 0.2994185, 0.2030036, 0.2519063, 0.2360289, 0.2073015, 0.259136]
QWEN3_SCORES = [0.5231571, 0.4907427, 0.3876639, 0.4680795, 0.0645428, 0.4771469, 0.4385638]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The tiny models are 32 wide: handing such matrices between threads costs more than the math."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def xlmr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.models import build_tiny_xlmr

    return build_tiny_xlmr(tmp_path_factory.mktemp("tiny-xlmr-reranker"), with_classification_head=True)


@pytest.fixture(scope="session")
def xlmr_onnx_dir(xlmr_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the cross-encoder with onnx/model.onnx beside it, as exported checkpoints ship."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = tmp_path_factory.mktemp("tiny-xlmr-onnx") / "model"
    shutil.copytree(xlmr_dir, path)
    assert torch_backend.export_onnx(path) == path / "onnx" / "model.onnx"
    return path


@pytest.fixture(scope="session")
def xlmr_int8_dir(xlmr_onnx_dir: Path) -> Path:
    """The exported copy with onnx/model_int8.onnx added beside model.onnx."""
    from leanrank.rerank.onnx_backend import quantize_onnx

    assert quantize_onnx(xlmr_onnx_dir) == xlmr_onnx_dir / "onnx" / "model_int8.onnx"
    return xlmr_onnx_dir


@pytest.fixture(scope="session")
def xquad() -> list[Request]:
    """Real Russian and English questions over paragraphs, for the quality guard."""
    if not XQUAD.is_dir():
        pytest.skip(f"XQuAD not found at {XQUAD} (../shared beside the repository)")
    return xquad_requests(XQUAD, queries=16, candidates=10)


@pytest.fixture(scope="session")
def qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.models import build_tiny_qwen3

    return build_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3-reranker"))


@pytest.fixture(scope="module")
def xlmr_torch(xlmr_dir: Path) -> LocalReranker:
    return local_reranker(xlmr_dir, runtime="torch", device="cpu", batch_size=3)


@pytest.fixture(scope="module")
def xlmr_onnx(xlmr_onnx_dir: Path) -> LocalReranker:
    return local_reranker(xlmr_onnx_dir, runtime="onnx", device="cpu", batch_size=3, intra_op_num_threads=1)


@pytest.fixture(scope="module")
def qwen3(qwen3_dir: Path) -> LocalReranker:
    return local_reranker(qwen3_dir, device="cpu", batch_size=3)


@pytest.fixture(params=["xlmr_torch", "xlmr_onnx", "qwen3"])
def any_local(request: pytest.FixtureRequest) -> LocalReranker:
    reranker: LocalReranker = request.getfixturevalue(request.param)
    return reranker


async def test_satisfies_the_reranker_contract(any_local: LocalReranker) -> None:
    assert isinstance(any_local, Reranker)
    assert any_local.name == f"local:{any_local.config.model_dir}"
    response = await any_local.rerank(QUERY_RU, DOCS)
    assert len(response.scores) == len(DOCS)
    assert all(math.isfinite(score) for score in response.scores)
    usage = response.usage
    assert (usage.billed_unit, usage.count_source, usage.documents) == ("tokens", "tokenizer", len(DOCS))
    assert usage.latency_s >= 0
    assert usage.cost_usd is None


async def test_xlmr_reference_scores(xlmr_torch: LocalReranker) -> None:
    response = await xlmr_torch.rerank(QUERY_RU, DOCS)
    np.testing.assert_allclose(response.scores, XLMR_SCORES, atol=1e-5)


async def test_qwen3_reference_scores_are_probabilities(qwen3: LocalReranker) -> None:
    response = await qwen3.rerank(QUERY_RU, DOCS)
    np.testing.assert_allclose(response.scores, QWEN3_SCORES, atol=1e-5)
    assert all(0.0 <= score <= 1.0 for score in response.scores)


@pytest.mark.parametrize("query", [QUERY_RU, QUERY_EN])
async def test_onnx_agrees_with_torch(
    xlmr_torch: LocalReranker, xlmr_onnx: LocalReranker, query: str
) -> None:
    by_torch = await xlmr_torch.rerank(query, DOCS)
    by_onnx = await xlmr_onnx.rerank(query, DOCS)
    np.testing.assert_allclose(by_onnx.scores, by_torch.scores, atol=1e-4)
    assert by_onnx.usage.billed_units == by_torch.usage.billed_units


def test_auto_runtime_is_onnx_only_where_the_export_exists(
    xlmr_dir: Path, xlmr_onnx_dir: Path, qwen3_dir: Path
) -> None:
    assert local_reranker(xlmr_onnx_dir).config.runtime == "onnx"
    assert local_reranker(xlmr_dir).config.runtime == "torch"
    assert local_reranker(qwen3_dir).config.runtime == "torch"
    assert local_reranker(xlmr_dir).config.family == "xlmr"
    assert local_reranker(qwen3_dir).config.family == "qwen3"


async def test_onnx_fp32_ranks_real_text_as_torch_does(
    xlmr_torch: LocalReranker, xlmr_onnx: LocalReranker, xquad: list[Request]
) -> None:
    agreement = await compare(xlmr_torch, xlmr_onnx, xquad)
    agreement.check(RUNTIME_PARITY, "ONNX fp32 vs torch fp32")
    assert agreement.pairs == 160
    assert agreement.top_k_overlap == 1.0


async def test_int8_loads_and_passes_the_guard(xlmr_int8_dir: Path, xquad: list[Request]) -> None:
    from leanrank.rerank.onnx_backend import load_onnx_scorer

    int8 = local_reranker(xlmr_int8_dir, precision="int8", intra_op_num_threads=1)
    fp32 = local_reranker(xlmr_int8_dir, runtime="onnx", intra_op_num_threads=1)
    assert (int8.config.runtime, int8.config.device) == ("onnx", "cpu")
    assert load_onnx_scorer(xlmr_int8_dir / "onnx" / "model_int8.onnx", "auto").device == "cpu"

    agreement = await compare(fp32, int8, xquad)

    agreement.check(LOWER_PRECISION, "int8 vs fp32")
    # Quantised for real: the scores move, by far less than the spread that ranks them.
    assert 1e-3 < agreement.max_abs_diff < 0.1
    onnx = xlmr_int8_dir / "onnx"
    assert (onnx / "model_int8.onnx.data").stat().st_size < (onnx / "model.onnx.data").stat().st_size / 3


def test_quantize_stores_the_weights_asked_for(
    xlmr_onnx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    onnx = pytest.importorskip("onnx")
    from leanrank.rerank import onnx_backend

    model_dir = tmp_path / "model"
    shutil.copytree(xlmr_onnx_dir, model_dir, ignore=shutil.ignore_patterns("model_int8.onnx*"))

    def weight_types(**options: Any) -> set[int]:
        """The element types of the MatMuls' weights (the embedding tables are stored as u8 either way)."""
        path = onnx_backend.quantize_onnx(model_dir, **options)
        graph = onnx.load(path, load_external_data=False).graph
        weights = {node.input[1] for node in graph.node if node.op_type == "MatMulInteger"}
        return {i.data_type for i in graph.initializer if i.name in weights}

    signed, unsigned = {onnx.TensorProto.INT8}, {onnx.TensorProto.UINT8}
    assert weight_types(weights="int8") == signed
    assert weight_types(weights="uint8", per_channel=False) == unsigned
    # "auto": signed only where the CPU multiplies u8 × s8 without saturating.
    monkeypatch.setattr(onnx_backend, "cpu_has_vnni", lambda: True)
    assert weight_types() == signed
    monkeypatch.setattr(onnx_backend, "cpu_has_vnni", lambda: False)
    assert weight_types() == unsigned


def test_quantize_needs_the_fp32_export(xlmr_dir: Path) -> None:
    from leanrank.rerank.onnx_backend import quantize_onnx

    with pytest.raises(ConfigError, match="export_onnx"):
        quantize_onnx(xlmr_dir)


def test_runtime_follows_precision(xlmr_dir: Path, xlmr_int8_dir: Path) -> None:
    assert local_reranker(xlmr_int8_dir, precision="int8").config.runtime == "onnx"
    assert local_reranker(xlmr_int8_dir, precision="fp16").config.runtime == "torch"
    assert local_reranker(xlmr_int8_dir, precision="fp32").config.runtime == "onnx"
    assert local_reranker(xlmr_dir, precision="fp32").config.runtime == "torch"
    with pytest.raises(ConfigError, match=r"model_int8\.onnx.*quantize_onnx"):
        local_reranker(xlmr_dir, precision="int8")


async def test_int8_serves_without_the_fp32_weights(xlmr_int8_dir: Path, tmp_path: Path) -> None:
    shipped = tmp_path / "int8-only"
    shutil.copytree(xlmr_int8_dir, shipped, ignore=shutil.ignore_patterns("model.onnx*", "*.safetensors"))
    assert sorted(path.name for path in (shipped / "onnx").iterdir()) == [
        "model_int8.onnx",
        "model_int8.onnx.data",
    ]
    response = await local_reranker(shipped, precision="int8").rerank(QUERY_EN, DOCS)
    assert len(response.scores) == len(DOCS)


def test_torch_attention_is_sdpa(xlmr_dir: Path) -> None:
    scorer = torch_backend.load_cross_encoder_scorer(xlmr_dir, "cpu")
    assert scorer.device == "cpu"
    assert scorer._model.config._attn_implementation == "sdpa"
    assert scorer._model.dtype == torch.float32


async def test_scores_come_back_in_input_order(any_local: LocalReranker) -> None:
    batched = (await any_local.rerank(QUERY_RU, DOCS)).scores
    one_by_one = [(await any_local.rerank(QUERY_RU, [doc])).scores[0] for doc in DOCS]
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    reversed_ = (await any_local.rerank(QUERY_RU, DOCS[::-1])).scores
    np.testing.assert_allclose(reversed_, batched[::-1], atol=1e-5)


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray[Any, Any]]:
    """The id matrices the torch models receive, recorded on their way in."""
    seen: list[np.ndarray[Any, Any]] = []
    for scorer in (torch_backend.CrossEncoderScorer, torch_backend.YesNoScorer):
        score = scorer.__call__

        def spy(self: Any, input_ids: Any, attention_mask: Any, score: Any = score) -> Any:
            seen.append(input_ids.copy())
            return score(self, input_ids, attention_mask)

        monkeypatch.setattr(scorer, "__call__", spy)
    return seen


async def test_xlmr_pair_budget_follows_flagembedding(
    xlmr_dir: Path, batches: list[np.ndarray[Any, Any]]
) -> None:
    """query ≤ 3/4 · max_length, then the document fills the rest; specials are never cut."""
    reranker = local_reranker(xlmr_dir, device="cpu", max_length=32)
    await reranker.load()
    batches.clear()  # the warm-up batch
    tokenizer = transformers.AutoTokenizer.from_pretrained(xlmr_dir)
    query, short = QUERY_RU + " Нейронная сеть состоит из слоёв нейронов." * 3, "Hello"
    q = tokenizer(query, add_special_tokens=False)["input_ids"]
    d = tokenizer(LONG, add_special_tokens=False)["input_ids"]
    assert len(q) > 24
    assert reranker.token_count(short) < 32 - 24 - 4  # fits whole

    usage = (await reranker.rerank(query, [LONG, short])).usage

    expected = [0, *q[:24], 2, 2, *d[: 32 - 24 - 4], 2]
    assert batches[0][0].tolist() == expected
    assert batches[0].shape[1] == 32
    assert usage.query_tokens == 24
    assert usage.document_tokens == 4 + reranker.token_count(short)
    assert usage.billed_units == 32 + (24 + 4 + reranker.token_count(short))


async def test_qwen3_pair_budget(qwen3: LocalReranker, batches: list[np.ndarray[Any, Any]]) -> None:
    await qwen3.load()
    batches.clear()  # the warm-up batch, if this loaded the model
    usage = (await qwen3.rerank(LONG, [LONG, ""])).usage
    assert usage.query_tokens == 512 * 3 // 4
    assert batches[0].shape[1] == 512  # the long document filled the rest of the budget exactly
    assert usage.document_tokens > 0
    assert usage.billed_units < 2 * 512


async def test_long_documents_are_truncated_to_the_models_positions(any_local: LocalReranker) -> None:
    assert any_local.token_count(LONG) > 1000
    scores = (await any_local.rerank(QUERY_RU, [LONG, LONG + " Кошка"])).scores
    assert scores[0] == pytest.approx(scores[1], abs=1e-5)  # the tail was cut off


def test_max_length_is_clamped_to_the_position_embeddings(xlmr_dir: Path) -> None:
    assert local_reranker(xlmr_dir, max_length=4096).config.max_length == 128
    assert local_reranker(xlmr_dir, max_length=64).config.max_length == 64


async def test_normalize_is_the_sigmoid_of_the_logit(xlmr_dir: Path, xlmr_torch: LocalReranker) -> None:
    raw = (await xlmr_torch.rerank(QUERY_RU, DOCS)).scores
    normalized = (await local_reranker(xlmr_dir, device="cpu", normalize=True).rerank(QUERY_RU, DOCS)).scores
    np.testing.assert_allclose(normalized, [1 / (1 + math.exp(-x)) for x in raw], atol=1e-6)


async def test_normalize_leaves_qwen3_probabilities_alone(qwen3_dir: Path, qwen3: LocalReranker) -> None:
    raw = (await qwen3.rerank(QUERY_RU, DOCS)).scores
    normalized = (await local_reranker(qwen3_dir, device="cpu", normalize=True).rerank(QUERY_RU, DOCS)).scores
    np.testing.assert_allclose(normalized, raw, atol=1e-6)


@pytest.mark.parametrize("model", ["xlmr_dir", "qwen3_dir"])
async def test_token_counts_are_the_tokenizers_own(request: pytest.FixtureRequest, model: str) -> None:
    path: Path = request.getfixturevalue(model)
    reranker = local_reranker(path, device="cpu")
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    for text in [QUERY_RU, QUERY_EN, *DOCS]:
        assert reranker.token_count(text) == count(text)
    usage = (await reranker.rerank(QUERY_EN, DOCS)).usage
    assert usage.query_tokens == count(QUERY_EN)
    assert usage.document_tokens == sum(count(doc) for doc in DOCS)
    assert usage.total_tokens == usage.query_tokens + usage.document_tokens


async def test_xlmr_billed_tokens_are_every_pair_with_its_specials(xlmr_torch: LocalReranker) -> None:
    usage = (await xlmr_torch.rerank(QUERY_EN, DOCS)).usage
    pair_specials = 4  # <s> q </s></s> d </s>
    assert usage.billed_units == len(DOCS) * (usage.query_tokens + pair_specials) + usage.document_tokens


def model_card_inputs(tokenizer: Any, pairs: list[tuple[str, str]], max_length: int = 512) -> Any:
    """Qwen3-Reranker-0.6B's model card: `format_instruction` + `process_inputs`, verbatim in effect."""
    prefix = (
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
        'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
    )
    suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    prefix_tokens = tokenizer.encode(prefix, add_special_tokens=False)
    suffix_tokens = tokenizer.encode(suffix, add_special_tokens=False)
    texts = [f"<Instruct>: {QWEN3_DEFAULT_INSTRUCTION}\n<Query>: {q}\n<Document>: {d}" for q, d in pairs]
    inputs = tokenizer(
        texts,
        padding=False,
        truncation="longest_first",
        return_attention_mask=False,
        max_length=max_length - len(prefix_tokens) - len(suffix_tokens),
    )
    inputs["input_ids"] = [prefix_tokens + ids + suffix_tokens for ids in inputs["input_ids"]]
    return tokenizer.pad(inputs, padding=True, return_tensors="pt")


async def test_qwen3_is_p_yes_as_the_model_card_computes_it(qwen3: LocalReranker, qwen3_dir: Path) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(qwen3_dir, padding_side="left")
    model = transformers.AutoModelForCausalLM.from_pretrained(qwen3_dir).eval()
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    inputs = model_card_inputs(tokenizer, [(QUERY_EN, DOCS[3])])
    with torch.no_grad():
        last = model(**inputs).logits[0, -1]
    p_yes = math.exp(last[yes]) / (math.exp(last[no]) + math.exp(last[yes]))

    response = await qwen3.rerank(QUERY_EN, [DOCS[3]])

    assert response.scores[0] == pytest.approx(p_yes, abs=1e-6)
    assert 0 < response.scores[0] < 1
    assert response.usage.billed_units == inputs["input_ids"].shape[1]


async def test_qwen3_instruction_is_part_of_the_prompt(qwen3_dir: Path, qwen3: LocalReranker) -> None:
    default = await qwen3.rerank(QUERY_EN, DOCS[:2])
    custom = await local_reranker(qwen3_dir, device="cpu", instruction="Find course materials").rerank(
        QUERY_EN, DOCS[:2]
    )
    assert custom.usage.billed_units != default.usage.billed_units
    assert custom.scores != pytest.approx(default.scores, abs=1e-6)


async def test_empty_input_loads_and_calls_nothing(xlmr_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(torch_backend, "load_cross_encoder_scorer", fail)
    response = await local_reranker(xlmr_dir, device="cpu").rerank(QUERY_EN, [])
    assert response.scores == ()
    assert (response.usage.billed_units, response.usage.total_tokens, response.usage.documents) == (0, 0, 0)


async def test_concurrent_calls_agree_with_sequential_ones(xlmr_torch: LocalReranker) -> None:
    queries = [QUERY_RU, QUERY_EN, DOCS[1], DOCS[5]]
    sequential = [(await xlmr_torch.rerank(q, DOCS)).scores for q in queries]
    concurrent = await asyncio.gather(*(xlmr_torch.rerank(q, DOCS) for q in queries))
    for expected, got in zip(sequential, concurrent, strict=True):
        np.testing.assert_allclose(got.scores, expected, atol=1e-6)


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


def test_uncached_hub_id_is_a_config_error_without_network(tmp_path: Path, no_network: list[object]) -> None:
    with pytest.raises(ConfigError, match="local_files_only") as info:
        local_reranker("leanrank-tests/not-cached", cache_dir=tmp_path)
    assert "\n" not in str(info.value)
    assert no_network == []


async def test_cached_hub_id_loads_from_the_cache(
    xlmr_dir: Path, xlmr_torch: LocalReranker, tmp_path: Path, no_network: list[object]
) -> None:
    commit = "0" * 40  # huggingface_hub's cache layout: refs/main names the snapshot to use
    repo = tmp_path / "models--leanrank-tests--tiny-reranker"
    shutil.copytree(xlmr_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    cached = local_reranker("leanrank-tests/tiny-reranker", cache_dir=tmp_path, device="cpu")
    assert cached.name == "local:leanrank-tests/tiny-reranker"
    expected = (await xlmr_torch.rerank(QUERY_EN, DOCS)).scores
    np.testing.assert_allclose((await cached.rerank(QUERY_EN, DOCS)).scores, expected, atol=1e-6)
    assert no_network == []


def test_downloads_only_when_local_files_only_is_false(
    xlmr_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    calls: list[tuple[str, Any]] = []

    def download(repo_id: str, **kwargs: Any) -> str:
        calls.append((repo_id, kwargs["cache_dir"]))
        return str(xlmr_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", download)
    with pytest.raises(ConfigError):
        local_reranker("leanrank-tests/remote", cache_dir=tmp_path)
    assert calls == []
    reranker = local_reranker("leanrank-tests/remote", cache_dir=tmp_path, local_files_only=False)
    assert calls == [("leanrank-tests/remote", tmp_path)]
    assert reranker.config.model_dir == xlmr_dir


def test_runtime_onnx_without_the_export_says_how_to_make_it(xlmr_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"onnx/model\.onnx.*export_onnx"):
        local_reranker(xlmr_dir, runtime="onnx")


def test_qwen3_on_onnx_points_to_torch(qwen3_dir: Path) -> None:
    with pytest.raises(ConfigError, match="runtime='torch'"):
        local_reranker(qwen3_dir, runtime="onnx")


def write_model_dir(tmp: Path, config: str | None) -> Path:
    tmp.mkdir(exist_ok=True)
    if config is not None:
        (tmp / "config.json").write_text(config)
    return tmp


@pytest.mark.parametrize(
    ("make_source", "message"),
    [
        (lambda tmp: tmp / "missing", "does not exist"),
        (lambda tmp: str(tmp / "missing" / "model"), "does not exist"),
        (lambda tmp: write_model_dir(tmp / "m", None), "no config.json"),
        (lambda tmp: write_model_dir(tmp / "m", "{not json"), "cannot read"),
        (lambda tmp: write_model_dir(tmp / "m", '{"model_type": "bert"}'), "not a known reranker family"),
        (lambda tmp: write_model_dir(tmp / "m", "{}") / "config.json", "is a file"),
        (lambda tmp: "not a model!", "neither an existing directory nor a hub id"),
    ],
    ids=["missing-path", "missing-str", "no-config", "bad-config", "bert", "file", "bad-hub-id"],
)
def test_bad_sources_raise_config_error(tmp_path: Path, make_source: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        local_reranker(make_source(tmp_path))


async def test_missing_tokenizer_is_a_config_error_on_first_use(tmp_path: Path) -> None:
    reranker = local_reranker(write_model_dir(tmp_path, '{"model_type": "xlm-roberta"}'))
    with pytest.raises(ConfigError, match=r"no tokenizer\.json"):
        await reranker.rerank(QUERY_EN, DOCS)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"device": "gpu"},
        {"device": "cuda:x"},
        {"batch_size": 0},
        {"max_length": 0},
        {"intra_op_num_threads": -1},
        {"instruction": "Find course materials"},  # XLM-R cross-encoders take no instruction
        {"precision": "fp16", "device": "cpu"},
        {"precision": "bf16", "runtime": "onnx"},
        {"precision": "int8", "runtime": "torch"},
        {"precision": "int8", "device": "cuda"},
        {"max_batch_tokens": 100},  # less than one pair of max_length 128
    ],
)
def test_invalid_settings_raise_config_error(xlmr_dir: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        local_reranker(xlmr_dir, **kwargs)


async def test_max_length_too_small_for_a_pair_is_a_config_error(xlmr_dir: Path, qwen3_dir: Path) -> None:
    with pytest.raises(ConfigError, match="no room"):
        await local_reranker(xlmr_dir, device="cpu", max_length=5).rerank(QUERY_EN, DOCS)
    with pytest.raises(ConfigError, match="no room"):
        await local_reranker(qwen3_dir, device="cpu", max_length=40).rerank(QUERY_EN, DOCS)


@pytest.mark.parametrize("module", ["torch", "transformers"])
async def test_missing_torch_extra_raises_dependency_error(
    xlmr_dir: Path, monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(DependencyError, match=r"leanrank\[torch\]"):
        await local_reranker(xlmr_dir, runtime="torch").rerank(QUERY_EN, DOCS)


async def test_missing_onnx_extra(xlmr_onnx_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert local_reranker(xlmr_onnx_dir).config.runtime == "torch"  # auto falls back
    with pytest.raises(DependencyError, match=r"leanrank\[onnx\]"):
        await local_reranker(xlmr_onnx_dir, runtime="onnx").rerank(QUERY_EN, DOCS)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
async def test_half_precision_without_a_gpu_raises_config_error(xlmr_dir: Path) -> None:
    with pytest.raises(ConfigError, match="CUDA"):
        await local_reranker(xlmr_dir, precision="bf16").rerank(QUERY_EN, DOCS)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("runtime", ["torch", "onnx"])
async def test_cuda_without_a_gpu_raises_config_error(xlmr_onnx_dir: Path, runtime: Any) -> None:
    with pytest.raises(ConfigError, match="CUDA"):
        await local_reranker(xlmr_onnx_dir, runtime=runtime, device="cuda").rerank(QUERY_EN, DOCS)
