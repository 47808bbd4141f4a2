"""Rerankers run in-process: XLM-R cross-encoders (bge-reranker-v2-m3 and kin) and Qwen3-Reranker.

Tokenisation happens here, with the `tokenizers` library, whichever runtime scores: token counts (what the
cost ledger bills) are then identical under torch and ONNX Runtime, and the ONNX path needs neither torch
nor transformers. A runtime (`torch_backend`, `onnx_backend`) only turns padded id matrices into scores.

Usage of one call: `query_tokens` is the (trimmed) query once, `document_tokens` the documents' tokens as
sent (after truncation), `billed_units` every token the model processed, specials and prompt template
included, the query once per pair. Local compute has no per-call price, so `cost_usd` is None: the cost
module prices GPU hours separately.

Batching: the pairs of a call, or of many calls at once (`rerank_batch`), are tokenised once, sorted by
length and packed under a token budget, `max_batch_tokens` (rows × the batch's longest pair), with
`batch_size`, if set, capping the rows. Each batch pads only to its own longest pair, and the model's
working memory stays within one budget whatever the number of candidates. The default budget depends on
where the model runs: small on a CPU, where a few hundred rows of matrix already keep the cores busy and
smaller batches span a narrower range of lengths, so they pad less; large on a GPU, which needs wide
batches to be busy at all.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from leanrank.errors import ConfigError, DependencyError
from leanrank.rerank.base import RerankResponse, Scale, Usage

if TYPE_CHECKING:
    from tokenizers import Tokenizer

Family = Literal["xlmr", "qwen3"]
Runtime = Literal["torch", "onnx"]
Precision = Literal["auto", "fp32", "fp16", "bf16", "int8"]
IdMatrix = npt.NDArray[np.int64]
Scores = npt.NDArray[np.float64]

ONNX_FILE = Path("onnx") / "model.onnx"  # Hugging Face's convention, which exporters and hub repos follow
ONNX_INT8_FILE = Path("onnx") / "model_int8.onnx"  # what onnx_backend.quantize_onnx writes
# Default token budgets of one batch (rows × longest pair), by where the model runs. On two CPU cores an
# int8 XLM-R base scored ~6.3 pairs/s with 512 to 2,048 tokens a batch, 4.9 with 4,096 and 4.0 with
# 16,384 (TEI's default, made for GPUs): smaller batches pad less and stay in cache. A GPU needs wide ones.
CPU_BATCH_TOKENS = 2048
GPU_BATCH_TOKENS = 32768
QWEN3_DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
# Qwen3-Reranker's model card: the answer to a yes/no question is the relevance.
_QWEN3_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
    'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
_QWEN3_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"

_FAMILIES: dict[str, Family] = {"xlm-roberta": "xlmr", "qwen3": "qwen3"}
_DEVICE_RE = re.compile(r"auto|cpu|cuda(:\d+)?")
_DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", "onnx/*"]


class Scorer(Protocol):
    """What a runtime provides: one raw score per row of a padded batch, computed on `device` ("cpu",
    "cuda:0"), which is where the runtime ended up when asked for "auto"."""

    @property
    def device(self) -> str: ...

    def __call__(self, input_ids: IdMatrix, attention_mask: IdMatrix) -> Scores: ...


@dataclass(frozen=True, slots=True)
class LocalConfig:
    """A resolved local reranker: what `local_reranker` decided, for logs and tests.

    `max_length` is the pair budget after clamping to the model's position embeddings. `precision` "auto"
    is left to the runtime: fp16 on CUDA and fp32 on the CPU under torch, fp32 under ONNX Runtime.
    `max_batch_tokens` None is decided at load by the device (`CPU_BATCH_TOKENS`, `GPU_BATCH_TOKENS`);
    `batch_size` None caps rows by the token budget alone.
    """

    model_dir: Path
    family: Family
    runtime: Runtime
    precision: Precision
    device: str
    max_length: int
    normalize: bool
    batch_size: int | None
    max_batch_tokens: int | None
    instruction: str
    pad_id: int
    intra_op_num_threads: int | None = None


@dataclass(frozen=True, slots=True)
class _Pair:
    ids: list[int]
    document_tokens: int


@dataclass(frozen=True, slots=True)
class _Encoded:
    query_tokens: int
    pairs: list[_Pair]


class _XlmrPrompt:
    """FlagEmbedding's `compute_score` budget: the query cut to 3/4 of `max_length`, the document filling
    the rest, joined by the tokenizer's own pair template (`<s> q </s></s> d </s>`) so specials are never cut.
    """

    padding_side: Literal["left", "right"] = "right"

    def __init__(self, tokenizer: Tokenizer, max_length: int) -> None:
        specials = tokenizer.num_special_tokens_to_add(is_pair=True)
        if max_length < specials + 2:
            raise ConfigError(f"max_length {max_length} leaves no room for a query and a document")
        self._tokenizer = tokenizer
        self._max_length = max_length
        self._specials = specials
        self._query_budget = min(max_length * 3 // 4, max_length - specials - 1)

    def encode(self, query: str, documents: Sequence[str]) -> _Encoded:
        tokenizer = self._tokenizer
        question = tokenizer.encode(query, add_special_tokens=False)
        question.truncate(self._query_budget)
        room = self._max_length - len(question.ids) - self._specials
        pairs = []
        for document in tokenizer.encode_batch(list(documents), add_special_tokens=False):
            document.truncate(room)
            pair = tokenizer.post_process(question, document, add_special_tokens=True)
            pairs.append(_Pair(pair.ids, len(document.ids)))
        return _Encoded(len(question.ids), pairs)


class _Qwen3Prompt:
    """Qwen3-Reranker's model card: prefix + `<Instruct>: …\\n<Query>: …\\n<Document>: …` + suffix, the middle
    tokenised as one string (as the card does) and cut from the right, which cuts the document. The query is
    first cut to 3/4 of `max_length` at a token boundary, so a long query cannot crowd the document out.
    """

    padding_side: Literal["left", "right"] = "left"

    def __init__(self, tokenizer: Tokenizer, max_length: int, instruction: str) -> None:
        self._tokenizer = tokenizer
        self._prefix = tokenizer.encode(_QWEN3_PREFIX, add_special_tokens=False).ids
        self._suffix = tokenizer.encode(_QWEN3_SUFFIX, add_special_tokens=False).ids
        self._head = f"<Instruct>: {instruction}\n<Query>: "
        self._middle = "\n<Document>: "
        fixed = len(tokenizer.encode(self._head + self._middle, add_special_tokens=False).ids)
        self._content_budget = max_length - len(self._prefix) - len(self._suffix)
        self._query_budget = min(max_length * 3 // 4, self._content_budget - fixed - 1)
        if self._query_budget < 1:
            raise ConfigError(
                f"max_length {max_length} leaves no room for a query and a document after Qwen3's prompt "
                f"({len(self._prefix) + len(self._suffix) + fixed} tokens with this instruction)"
            )

    def encode(self, query: str, documents: Sequence[str]) -> _Encoded:
        tokenizer = self._tokenizer
        query = _trim(tokenizer, query, self._query_budget)
        lead = self._head + query + self._middle
        contents = [lead + document for document in documents]
        pairs, sent = [], []
        for content, encoding in zip(
            contents, tokenizer.encode_batch(contents, add_special_tokens=False), strict=True
        ):
            ids = encoding.ids[: self._content_budget]
            end = encoding.offsets[len(ids) - 1][1] if len(ids) < len(encoding.ids) else len(content)
            sent.append(content[len(lead) : end])
            pairs.append(self._prefix + ids + self._suffix)
        counts = [len(e.ids) for e in tokenizer.encode_batch(sent, add_special_tokens=False)]
        return _Encoded(
            _count(tokenizer, query), [_Pair(ids, n) for ids, n in zip(pairs, counts, strict=True)]
        )


def _count(tokenizer: Tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def _trim(tokenizer: Tokenizer, text: str, budget: int) -> str:
    """`text` cut before its (budget+1)-th token, again if the cut re-tokenises longer (byte-level BPE can).

    Cutting at the start of the first dropped token always shortens the text, so the loop ends.
    """
    encoding = tokenizer.encode(text, add_special_tokens=False)
    while len(encoding.ids) > budget:
        text = text[: min(encoding.offsets[budget][0], len(text) - 1)]
        encoding = tokenizer.encode(text, add_special_tokens=False)
    return text


def length_sorted_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int) -> list[list[int]]:
    """Indices of the pairs, longest first, packed into batches of at most `batch_size` rows and at most
    `max_batch_tokens` padded tokens (rows × the batch's first, longest pair).

    Sorting makes each batch pad only to its own longest pair; the budget bounds the model's working
    memory (activations grow with rows × length) whatever the number of pairs, and lets batches of short
    pairs hold more rows than batches of long ones. Longest first, running out of memory shows on the
    first batch instead of after minutes of work. A pair longer than the budget goes alone.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        batch = batches[-1] if batches else []
        if not batch or len(batch) == batch_size or (len(batch) + 1) * lengths[batch[0]] > max_batch_tokens:
            batches.append([i])
        else:
            batch.append(i)
    return batches


def _pad(rows: Sequence[list[int]], pad_id: int, side: Literal["left", "right"]) -> tuple[IdMatrix, IdMatrix]:
    width = max(len(row) for row in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, row in enumerate(rows):
        cols = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        ids[r, cols] = row
        mask[r, cols] = 1
    return ids, mask


_Prompt = _XlmrPrompt | _Qwen3Prompt
_Request = tuple[str, list[str]]
_WARM_UP = "warm-up"


@dataclass(frozen=True, slots=True)
class _Loaded:
    prompt: _Prompt
    scorer: Scorer
    max_batch_tokens: int
    max_rows: int


class LocalReranker:
    """A `Reranker` over a cross-encoder in this process; build it with `local_reranker`.

    The tokenizer and model load on first use, or at `load()`, and one small warm-up batch runs right
    after, so lazy set-up (ONNX Runtime's memory arena, CUDA kernels) is never charged to a request.
    Scoring runs in a worker thread so the event loop keeps serving. Concurrent calls are safe: a lock
    lets one batch at a time onto the model, which saturates its device anyway and keeps the working
    memory of all callers together within one `max_batch_tokens`; calls interleave batch by batch, so a
    short request does not wait for a long one to finish. `rerank_batch` goes further and merges many
    requests into one pass (the service's micro-batcher calls it).

    XLM-R scores are the model's logit (`normalize=True`: its sigmoid); Qwen3 scores are P(yes), already
    in [0, 1], so `normalize` leaves them as they are. A `scorer` given here replaces the runtime, and the
    model is never loaded: the seam for tests and benchmarks of the batching.
    """

    def __init__(self, name: str, config: LocalConfig, *, scorer: Scorer | None = None) -> None:
        self._name = name
        self.config = config
        self._scorer = scorer
        self._load_lock = threading.Lock()
        self._infer_lock = threading.Lock()
        self._tokenizer: Tokenizer | None = None
        self._loaded: _Loaded | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def scale(self) -> Scale:
        """What the scores are: Qwen3's P(yes) and normalised XLM-R scores are probabilities, else logits."""
        normalized = self.config.normalize or self.config.family == "qwen3"
        return "probabilities" if normalized else "logits"

    async def load(self) -> None:
        """Load the tokenizer and model and warm up now (at service start) rather than on the first call."""
        await asyncio.to_thread(self._state)

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        (response,) = await self.rerank_batch([(query, documents)])
        return response

    async def rerank_batch(self, requests: Sequence[tuple[str, Sequence[str]]]) -> list[RerankResponse]:
        """One response per (query, documents) request, in order, each with its own usage, from one pass
        in which the pairs of all requests are sorted and batched together.

        Every response's `latency_s` is the whole pass. Requests without documents load nothing and bill
        nothing.
        """
        t0 = time.perf_counter()
        work = [(query, list(documents)) for query, documents in requests if documents]
        scored = iter(await asyncio.to_thread(self._score, work) if work else [])
        latency = time.perf_counter() - t0
        responses = []
        for _, documents in requests:
            if not documents:
                responses.append(RerankResponse((), Usage(0, 0, 0.0, "tokens", "none", latency, 0)))
                continue
            encoded, scores = next(scored)
            usage = Usage(
                query_tokens=encoded.query_tokens,
                document_tokens=sum(pair.document_tokens for pair in encoded.pairs),
                billed_units=float(sum(len(pair.ids) for pair in encoded.pairs)),
                billed_unit="tokens",
                count_source="tokenizer",
                latency_s=latency,
                documents=len(documents),
            )
            responses.append(RerankResponse(tuple(float(s) for s in scores), usage, scale=self.scale))
        return responses

    def token_count(self, text: str) -> int:
        """Tokens of `text` alone, without specials: what cost accounting and window splitting count."""
        return _count(self._tokenizer_loaded(), text)

    def _score(self, work: list[_Request]) -> list[tuple[_Encoded, Scores]]:
        loaded = self._state()
        config = self.config
        encoded = [loaded.prompt.encode(query, documents) for query, documents in work]
        rows = [pair.ids for request in encoded for pair in request.pairs]
        scores = np.empty(len(rows), dtype=np.float64)
        lengths = [len(row) for row in rows]
        for batch in length_sorted_batches(lengths, loaded.max_rows, loaded.max_batch_tokens):
            ids, mask = _pad([rows[i] for i in batch], config.pad_id, loaded.prompt.padding_side)
            with self._infer_lock:
                scores[batch] = loaded.scorer(ids, mask)
        if config.normalize and config.family == "xlmr":
            scores = 1.0 / (1.0 + np.exp(-scores))
        starts = np.cumsum([0, *(len(request.pairs) for request in encoded)])
        return [
            (request, scores[start : start + len(request.pairs)])
            for request, start in zip(encoded, starts[:-1], strict=True)
        ]

    def _tokenizer_loaded(self) -> Tokenizer:
        with self._load_lock:
            if self._tokenizer is None:
                self._tokenizer = _read_tokenizer(self.config.model_dir)
            return self._tokenizer

    def _state(self) -> _Loaded:
        tokenizer = self._tokenizer_loaded()
        with self._load_lock:
            if self._loaded is None:
                self._loaded = self._load(tokenizer)
            return self._loaded

    def _load(self, tokenizer: Tokenizer) -> _Loaded:
        config = self.config
        prompt: _Prompt
        if config.family == "qwen3":
            prompt = _Qwen3Prompt(tokenizer, config.max_length, config.instruction)
            scorer = self._scorer or _yes_no_scorer(config, tokenizer)
        else:
            prompt = _XlmrPrompt(tokenizer, config.max_length)
            scorer = self._scorer or _cross_encoder_scorer(config)
        warm_up = prompt.encode(_WARM_UP, [_WARM_UP, _WARM_UP])
        scorer(*_pad([pair.ids for pair in warm_up.pairs], config.pad_id, prompt.padding_side))
        default = GPU_BATCH_TOKENS if scorer.device.startswith("cuda") else CPU_BATCH_TOKENS
        budget = config.max_batch_tokens or max(default, config.max_length)
        return _Loaded(prompt, scorer, budget, config.batch_size or budget)


def _yes_no_scorer(config: LocalConfig, tokenizer: Tokenizer) -> Scorer:
    yes, no = tokenizer.token_to_id("yes"), tokenizer.token_to_id("no")
    if yes is None or no is None:
        raise ConfigError(f"{config.model_dir}: the tokenizer has no 'yes'/'no' tokens to score with")
    from leanrank.rerank.torch_backend import load_yes_no_scorer

    return load_yes_no_scorer(config.model_dir, config.device, config.precision, yes_id=yes, no_id=no)


def _cross_encoder_scorer(config: LocalConfig) -> Scorer:
    if config.runtime == "onnx":
        from leanrank.rerank.onnx_backend import load_onnx_scorer

        path = config.model_dir / (ONNX_INT8_FILE if config.precision == "int8" else ONNX_FILE)
        return load_onnx_scorer(path, config.device, config.intra_op_num_threads)
    from leanrank.rerank.torch_backend import load_cross_encoder_scorer

    return load_cross_encoder_scorer(config.model_dir, config.device, config.precision)


def local_reranker(
    model: str | Path,
    *,
    runtime: Literal["auto", "torch", "onnx"] = "auto",
    precision: Precision = "auto",
    device: str = "auto",
    max_length: int = 512,
    normalize: bool = False,
    batch_size: int | None = None,
    max_batch_tokens: int | None = None,
    local_files_only: bool = True,
    cache_dir: str | Path | None = None,
    family: Literal["auto", "xlmr", "qwen3"] = "auto",
    instruction: str | None = None,
    intra_op_num_threads: int | None = None,
) -> LocalReranker:
    """A reranker over the cross-encoder in `model`: a local directory, or a Hugging Face hub id.

    With `local_files_only` (the default) a hub id must already be in the local cache (`cache_dir`, else
    huggingface_hub's default) and nothing touches the network. The directory and its config.json are
    checked here, so a wrong name fails at startup; weights load on first use (or at `load()`, which a
    service calls at start-up). `family="auto"` reads
    config.json's `model_type`. `runtime="auto"` is ONNX Runtime when `<model>/onnx/model.onnx` exists and
    onnxruntime is installed, else torch; Qwen3 runs on torch only. `precision`: "fp32"; "fp16" or "bf16"
    (torch on CUDA); "int8" (ONNX Runtime on the CPU, from `onnx_backend.quantize_onnx`, which "auto"
    runtime then picks); "auto" is fp16 on CUDA, fp32 elsewhere. `max_length` bounds every pair, template
    included, and is clamped to the model's position embeddings. `max_batch_tokens` bounds every batch
    (rows × longest pair; default `CPU_BATCH_TOKENS` or `GPU_BATCH_TOKENS` by the device the model lands
    on), `batch_size` its rows (default: no cap but the budget). `instruction` is Qwen3's task
    line; `intra_op_num_threads` sizes ONNX Runtime's thread pool (torch's is process-wide and left alone).
    """
    if not _DEVICE_RE.fullmatch(device):
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    for option, value in (("max_length", max_length), ("batch_size", batch_size)):
        if value is not None and value < 1:
            raise ConfigError(f"{option} must be positive, got {value}")
    if intra_op_num_threads is not None and intra_op_num_threads < 0:
        raise ConfigError(f"intra_op_num_threads must be 0 (all cores) or more, got {intra_op_num_threads}")
    model_dir = _model_dir(model, local_files_only, cache_dir)
    model_config = _read_config(model_dir)
    chosen = _family(model_dir, model_config) if family == "auto" else family
    if chosen == "xlmr" and instruction is not None:
        raise ConfigError("instruction applies to Qwen3 rerankers only; XLM-R cross-encoders take none")
    max_length = min(max_length, _position_limit(model_config))
    if max_batch_tokens is not None and max_batch_tokens < max_length:
        raise ConfigError(
            f"max_batch_tokens ({max_batch_tokens}) must hold one pair of max_length ({max_length}) tokens"
        )
    config = LocalConfig(
        model_dir=model_dir,
        family=chosen,
        runtime=_runtime(model_dir, chosen, runtime, precision),
        precision=precision,
        device=_device(device, precision),
        max_length=max_length,
        normalize=normalize,
        batch_size=batch_size,
        max_batch_tokens=max_batch_tokens,
        instruction=QWEN3_DEFAULT_INSTRUCTION if instruction is None else instruction,
        pad_id=_pad_id(model_config),
        intra_op_num_threads=intra_op_num_threads,
    )
    return LocalReranker(f"local:{model}", config)


def _runtime(
    model_dir: Path, family: Family, runtime: Literal["auto", "torch", "onnx"], precision: Precision
) -> Runtime:
    """The runtime asked for, or the one that can run `precision` ("auto"), checked against the files."""
    if runtime == "auto":
        if precision == "int8":
            runtime = "onnx"
        elif precision in ("fp16", "bf16") or family == "qwen3":
            return "torch"
        else:
            from leanrank.rerank.onnx_backend import onnxruntime_available

            usable = (model_dir / ONNX_FILE).is_file() and onnxruntime_available()
            return "onnx" if usable else "torch"
    if runtime == "torch":
        if precision == "int8":
            raise ConfigError("precision='int8' is ONNX Runtime's dynamic quantisation; use runtime='onnx'")
        return runtime
    if family == "qwen3":
        raise ConfigError("Qwen3 rerankers do not run on ONNX Runtime here; use runtime='torch'")
    if precision in ("fp16", "bf16"):
        raise ConfigError(f"precision={precision!r} runs on torch; ONNX Runtime here runs fp32 or int8")
    if precision == "int8":
        if not (model_dir / ONNX_INT8_FILE).is_file():
            raise ConfigError(
                f"precision='int8' needs {model_dir / ONNX_INT8_FILE}: write it with "
                "leanrank.rerank.onnx_backend.quantize_onnx(model_dir) after export_onnx"
            )
    elif not (model_dir / ONNX_FILE).is_file():
        raise ConfigError(
            f"runtime='onnx' needs {model_dir / ONNX_FILE}: export it with "
            "leanrank.rerank.torch_backend.export_onnx(model_dir), or use runtime='torch'"
        )
    return runtime


def _device(device: str, precision: Precision) -> str:
    """int8 kernels exist on the CPU only, half precision is for GPUs: reject the mismatches up front."""
    if precision == "int8":
        if device.startswith("cuda"):
            raise ConfigError("precision='int8' runs on the CPU; use fp16 or bf16 on CUDA")
        return "cpu"
    if precision in ("fp16", "bf16") and device == "cpu":
        raise ConfigError(f"precision={precision!r} needs a CUDA device; on the CPU use fp32 or int8")
    return device


def _family(model_dir: Path, config: dict[str, Any]) -> Family:
    model_type = config.get("model_type")
    if model_type not in _FAMILIES:
        raise ConfigError(
            f"{model_dir}: model_type {model_type!r} is not a known reranker family "
            f"({', '.join(_FAMILIES)}); pass family='xlmr' or 'qwen3' if it is one of them"
        )
    return _FAMILIES[model_type]


def _position_limit(config: dict[str, Any]) -> int:
    """Longest input the position embeddings allow; longer ones crash the embedding lookup.

    XLM-R numbers positions from pad_token_id + 1, so that many embeddings are unusable.
    """
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int):
        return 2**31
    if config.get("model_type") == "xlm-roberta":
        return positions - int(config.get("pad_token_id", 1)) - 1
    return positions


def _pad_id(config: dict[str, Any]) -> int:
    """XLM-R derives positions from the pad id, so it must be the model's; Qwen3 checkpoints name none,
    and pad on the left under a zero mask, where the id is never attended."""
    pad = config.get("pad_token_id")
    return pad if isinstance(pad, int) else 0


def _read_config(model_dir: Path) -> dict[str, Any]:
    try:
        config = json.loads((model_dir / "config.json").read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{model_dir} has no config.json: not a Hugging Face model directory") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {model_dir / 'config.json'}: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"{model_dir / 'config.json'} is not a JSON object")
    return config


def _read_tokenizer(model_dir: Path) -> Tokenizer:
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise DependencyError("tokenizers", "onnx") from exc

    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise ConfigError(
            f"{model_dir} has no tokenizer.json; save the tokenizer with transformers' save_pretrained"
        )
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust core raises bare Exception on malformed files
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    # Budgets are applied here, pair by pair; a length or padding saved in the file would undo them.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def _model_dir(model: str | Path, local_files_only: bool, cache_dir: str | Path | None) -> Path:
    """A model directory from a path or hub id; plainer errors than transformers' and no network unless
    `local_files_only` is False."""
    source = str(model)
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"model path {source!r} is a file, expected a model directory")
        return path
    if isinstance(model, Path) or _looks_like_path(source):
        raise ConfigError(f"model directory {source!r} does not exist")
    try:
        import huggingface_hub
    except ImportError as exc:
        raise DependencyError("huggingface_hub", "onnx") from exc
    if local_files_only:
        return _cached_snapshot(source, cache_dir)
    try:
        return Path(
            huggingface_hub.snapshot_download(source, cache_dir=cache_dir, allow_patterns=_DOWNLOAD_PATTERNS)
        )
    except (OSError, ValueError) as exc:
        reason = next(iter(str(exc).strip().splitlines()), type(exc).__name__)
        raise ConfigError(f"cannot download model {source!r}: {reason}") from exc


def _cached_snapshot(repo_id: str, cache_dir: str | Path | None) -> Path:
    """The hub id's snapshot directory in the local cache, found by reading the filesystem only."""
    from huggingface_hub import try_to_load_from_cache

    try:
        config = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir)
    except ValueError as exc:
        raise ConfigError(f"model {repo_id!r} is neither an existing directory nor a hub id") from exc
    if not isinstance(config, str):
        raise ConfigError(
            f"model {repo_id!r} is not in the local Hugging Face cache and local_files_only=True forbids "
            f"downloading it: run `hf download {repo_id}` or pass local_files_only=False"
        )
    return Path(config).parent


def _looks_like_path(source: str) -> bool:
    """Hub ids are `name` or `namespace/name`; anything else with a separator is a filesystem path."""
    return (
        os.path.isabs(source)
        or source.startswith((".", "~"))
        or source.count("/") > 1
        or (os.sep != "/" and os.sep in source)
    )
