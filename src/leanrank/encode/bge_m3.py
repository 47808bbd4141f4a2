"""BAAI/bge-m3 dense embeddings and learned sparse vectors in-process through torch + transformers (the
`torch` extra).

bge-m3's dense vector is the CLS token of the last hidden state, L2-normalised; unlike e5 it takes no
query/passage prefixes. Its lexical weights come from the same forward pass: the model directory's
`sparse_linear.pt` is a `Linear(hidden_size, 1)`, each token weighs `relu(w·h + b)` of its last hidden
state `h`, a token id seen several times keeps its largest weight, and the special tokens (cls, eos, pad,
unk) and zero weights are dropped; a query matches a passage by the dot product of their weights (Chen et
al. 2024, "BGE M3-Embedding", arXiv:2402.03216; FlagEmbedding's `BGEM3FlagModel`). Only this module imports
torch and transformers, and only on first use, so the rest of leanrank runs without the extra installed.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from leanrank.encode.base import Matrix, SparseVec
from leanrank.errors import BackendError, ConfigError, DependencyError

if TYPE_CHECKING:
    import torch

_DEVICE_RE = re.compile(r"auto|cpu|cuda(:\d+)?")
# XLM-RoBERTa numbers positions from pad_token_id + 1, so that many position embeddings are unusable.
_OFFSET_POSITION_MODELS = frozenset({"xlm-roberta", "roberta", "camembert"})
SPARSE_HEAD = "sparse_linear.pt"
# Passages whose lexical weights were computed with their dense vectors and not yet asked for (by text).
_MEMO_TEXTS = 4096


@dataclass(frozen=True, slots=True)
class _Loaded:
    tokenizer: Any
    model: Any
    device: torch.device
    max_length: int
    dim: int
    sparse_head: torch.nn.Linear | None  # None: the model directory has no sparse_linear.pt
    special_ids: frozenset[int]


class BgeM3Encoder:
    """bge-m3 (or an XLM-R fine-tune of it) loaded lazily from a local directory or a Hugging Face hub id.

    `local_files_only=True` (the default) never touches the network: a hub id must already be in the local
    Hugging Face cache (`cache_dir`, else huggingface_hub's default). `fp16` halves memory and doubles
    speed on CUDA and is ignored on CPU, where half precision is slow. Inference is serialised by a lock:
    the tokenizer is stateful and one model instance saturates its device anyway.

    `lexical()` turns on the learned sparse side: from then on every forward pass also computes the lexical
    weights, and those of passages just embedded are kept (up to 4,096 texts) until the sparse side asks
    for them, so ingesting (dense vectors, then sparse ones of the same texts) runs the model once.
    """

    def __init__(
        self,
        model: str | Path = "BAAI/bge-m3",
        *,
        local_files_only: bool = True,
        device: str = "auto",
        max_length: int = 8192,
        batch_size: int = 16,
        fp16: bool = True,
        cache_dir: str | Path | None = None,
    ) -> None:
        if not _DEVICE_RE.fullmatch(device):
            raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
        if max_length < 1:
            raise ConfigError(f"max_length must be positive, got {max_length}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        self._source = model
        self._local_files_only = local_files_only
        self._device = device
        self._max_length = max_length
        self._batch_size = batch_size
        self._fp16 = fp16
        self._cache_dir = cache_dir
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._memo: OrderedDict[str, SparseVec] | None = None  # set by `lexical()`

    @property
    def name(self) -> str:
        return str(self._source)

    @property
    def dim(self) -> int:
        return self._state().dim

    def embed_passages(self, texts: Sequence[str]) -> Matrix:
        memo = self._memo
        dense, sparse = self._encode(texts, lexical=memo is not None)
        if memo is not None:
            with self._lock:
                memo.update(zip(texts, sparse, strict=True))
                while len(memo) > _MEMO_TEXTS:
                    memo.popitem(last=False)
        return dense

    def embed_query(self, text: str) -> Matrix:
        row: Matrix = self.embed_passages([text])[0]
        return row

    def token_count(self, text: str) -> int:
        state = self._state()
        with self._lock:
            encoded = state.tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)
        return len(encoded["input_ids"])

    def lexical(self) -> BgeM3Lexical:
        """This model's learned sparse vectors as a `SparseEncoder`; loads the model.

        Raises ConfigError when the model directory has no `sparse_linear.pt` (bge-m3's sparse head).
        """
        state = self._state()
        if state.sparse_head is None:
            raise ConfigError(
                f"model {self.name!r} has no {SPARSE_HEAD} (bge-m3's sparse head): learned sparse vectors "
                f"(sparse = 'bge-m3') need the full bge-m3 checkpoint, or use sparse = 'bm25'"
            )
        with self._lock:
            if self._memo is None:
                self._memo = OrderedDict()
        return BgeM3Lexical(self)

    def _embed_lexical(self, texts: Sequence[str]) -> list[SparseVec]:
        """The lexical weights of `texts` (indices: token ids, ascending), reusing those computed with the
        texts' dense vectors; the others cost a forward pass. Only after `lexical()` found the head."""
        with self._lock:
            memo = self._memo or OrderedDict()
            found = {t: memo.pop(t) for t in set(texts) if t in memo}
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            found.update(zip(missing, self._encode(missing, lexical=True)[1], strict=True))
        return [found[t] for t in texts]

    def _encode(self, texts: Sequence[str], *, lexical: bool) -> tuple[Matrix, list[SparseVec]]:
        """Dense rows (shape (len(texts), dim)) and, with `lexical`, the texts' lexical weights (else [])."""
        state = self._state()
        out = np.empty((len(texts), state.dim), dtype=np.float32)
        sparse: list[SparseVec] = [_NO_WEIGHTS] * len(texts) if lexical else []
        # Longest first: batches hold texts of similar length, so little compute is spent on padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        for start in range(0, len(order), self._batch_size):
            rows = order[start : start + self._batch_size]
            with self._lock:  # per batch, so a query can cut in on a long ingestion
                out[rows], weights = self._forward(state, [texts[i] for i in rows], lexical=lexical)
            for i, vec in zip(rows, weights, strict=lexical):  # weights: [] without `lexical`
                sparse[i] = vec
        return out, sparse

    def _state(self) -> _Loaded:
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()
            return self._loaded

    def _forward(self, state: _Loaded, texts: list[str], *, lexical: bool) -> tuple[Matrix, list[SparseVec]]:
        """One batch: the L2-normalised CLS rows and, with `lexical` (and a sparse head), the lexical
        weights of each text (else [])."""
        import torch

        batch = state.tokenizer(
            texts, padding=True, truncation=True, max_length=state.max_length, return_tensors="pt"
        ).to(state.device)
        head = state.sparse_head if lexical else None
        try:
            with torch.inference_mode():
                hidden = state.model(**batch).last_hidden_state
                weights = None if head is None else torch.relu(head(hidden)).squeeze(-1).float()
        except RuntimeError as exc:  # CUDA out of memory, device lost, …
            raise BackendError(f"bge-m3 inference failed on {state.device}: {exc}") from exc
        cls = torch.nn.functional.normalize(hidden[:, 0].float(), p=2, dim=-1)
        dense = np.asarray(cls.cpu().numpy(), dtype=np.float32)
        if weights is None:
            return dense, []
        ids, values = batch["input_ids"].tolist(), weights.cpu().tolist()
        return dense, [_lexical_weights(i, v, state.special_ids) for i, v in zip(ids, values, strict=True)]

    def _load(self) -> _Loaded:
        try:
            import torch
            import transformers
        except ImportError as exc:
            raise DependencyError("torch", "torch") from exc

        device = self._resolve_device()
        dtype = torch.float16 if self._fp16 and device.type == "cuda" else torch.float32
        source = self._checked_source()
        try:
            options = {"local_files_only": self._local_files_only, "cache_dir": self._cache_dir}
            tokenizer = transformers.AutoTokenizer.from_pretrained(source, **options)
            model = transformers.AutoModel.from_pretrained(source, dtype=dtype, **options)
        except (OSError, ValueError) as exc:
            reason = next(iter(str(exc).strip().splitlines()), type(exc).__name__)
            raise ConfigError(f"cannot load model {self.name!r}: {reason}") from exc
        model.to(device).eval()
        config = model.config
        head = _sparse_head(Path(source), int(config.hidden_size))
        special = (
            tokenizer.cls_token_id,
            tokenizer.eos_token_id,
            tokenizer.pad_token_id,
            tokenizer.unk_token_id,
        )
        return _Loaded(
            tokenizer=tokenizer,
            model=model,
            device=device,
            max_length=min(self._max_length, tokenizer.model_max_length, _position_limit(config)),
            dim=int(config.hidden_size),
            sparse_head=None if head is None else head.to(device=device, dtype=dtype).eval(),
            special_ids=frozenset(i for i in special if i is not None),
        )

    def _resolve_device(self) -> torch.device:
        import torch

        if self._device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(self._device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {self._device!r} requested but CUDA is not available")
        return device

    def _checked_source(self) -> str:
        """A model directory (a hub id if downloads are allowed); plainer errors than transformers'."""
        source = str(self._source)
        path = Path(source).expanduser()
        if path.exists():
            if not path.is_dir():
                raise ConfigError(f"model path {source!r} is a file, expected a model directory")
            return str(path)
        if isinstance(self._source, Path) or _looks_like_path(source):
            raise ConfigError(f"model directory {source!r} does not exist")
        return source if not self._local_files_only else self._cached_snapshot(source)

    def _cached_snapshot(self, repo_id: str) -> str:
        """The hub id's snapshot directory in the local cache, found by reading the filesystem only.

        transformers' own `local_files_only` lookup still builds hub request headers, and huggingface_hub
        fetches its agent registry from huggingface.co while doing so: a network call (up to 3 s) that an
        offline deployment must not make.
        """
        from huggingface_hub import try_to_load_from_cache

        try:
            config = try_to_load_from_cache(repo_id, "config.json", cache_dir=self._cache_dir)
        except ValueError as exc:
            raise ConfigError(f"model {repo_id!r} is neither an existing directory nor a hub id") from exc
        if not isinstance(config, str):
            raise ConfigError(
                f"model {repo_id!r} is not in the local Hugging Face cache and local_files_only=True forbids "
                f"downloading it: run `hf download {repo_id}` or pass local_files_only=False"
            )
        return str(Path(config).parent)


class BgeM3Lexical:
    """bge-m3's learned sparse vectors as a `SparseEncoder`, over a `BgeM3Encoder`'s model (`lexical()`).

    Queries and passages go through the same head without prefixes; the index stores the weights as they
    are and matches them by dot product, with no IDF (`leanrank.index.base.SPARSE_VECTOR`).
    """

    def __init__(self, model: BgeM3Encoder) -> None:
        self.model = model

    @property
    def name(self) -> str:
        return f"bge-m3-lexical({self.model.name})"

    def embed_documents(self, texts: Sequence[str]) -> list[SparseVec]:
        return self.model._embed_lexical(texts)

    def embed_query(self, text: str) -> SparseVec:
        return self.model._embed_lexical([text])[0]

    def token_count(self, text: str) -> int:
        """Distinct tokens of `text` with a positive weight: its index terms."""
        return len(self.embed_query(text).indices)


_NO_WEIGHTS = SparseVec((), ())


def _lexical_weights(ids: list[int], weights: list[float], special: frozenset[int]) -> SparseVec:
    """Per token id its largest weight over the text's tokens, special tokens and zeros left out."""
    best: dict[int, float] = {}
    for token, weight in zip(ids, weights, strict=True):
        if weight > 0 and token not in special and weight > best.get(token, 0.0):
            best[token] = weight
    ordered = sorted(best.items())
    return SparseVec(tuple(i for i, _ in ordered), tuple(w for _, w in ordered))


def _sparse_head(model_dir: Path, hidden_size: int) -> torch.nn.Linear | None:
    """bge-m3's `sparse_linear.pt` (a `Linear(hidden_size, 1)` state dict) from `model_dir`, or None when
    the directory has none; ConfigError when the file cannot be read as one."""
    import torch

    path = model_dir / SPARSE_HEAD
    if not path.is_file():
        return None
    head = torch.nn.Linear(hidden_size, 1)
    try:
        head.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (OSError, RuntimeError, ValueError, TypeError, AttributeError) as exc:
        reason = next(iter(str(exc).strip().splitlines()), type(exc).__name__)
        raise ConfigError(f"cannot load {path} as Linear({hidden_size}, 1): {reason}") from exc
    return head


def _looks_like_path(source: str) -> bool:
    """Hub ids are `name` or `namespace/name`; anything else with a separator is a filesystem path."""
    return (
        os.path.isabs(source)
        or source.startswith((".", "~"))
        or source.count("/") > 1
        or (os.sep != "/" and os.sep in source)
    )


def _position_limit(config: Any) -> int:
    """Longest input the position embeddings allow; longer ones crash the embedding lookup."""
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int):
        return 2**31
    if config.model_type in _OFFSET_POSITION_MODELS:
        return positions - int(config.pad_token_id) - 1
    return positions
