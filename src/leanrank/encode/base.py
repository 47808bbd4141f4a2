"""Encoder contracts: the index needs dense and sparse vectors, cost accounting needs token counts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class SparseVec:
    """A sparse vector as parallel index/value tuples (engine-neutral)."""

    indices: tuple[int, ...]
    values: tuple[float, ...]


@runtime_checkable
class DenseEncoder(Protocol):
    """Embeds passages and queries into one L2-normalised space (cosine = dot product)."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed_passages(self, texts: Sequence[str]) -> Matrix:
        """Shape (len(texts), dim), float32, rows L2-normalised."""
        ...

    def embed_query(self, text: str) -> Matrix:
        """Shape (dim,), float32, L2-normalised."""
        ...

    def token_count(self, text: str) -> int:
        """Tokens of `text` alone, without special tokens or instruction prefixes."""
        ...


@runtime_checkable
class SparseEncoder(Protocol):
    """Lexical vectors; the encoder decides each word's language itself (course text mixes languages)."""

    @property
    def name(self) -> str: ...

    def embed_documents(self, texts: Sequence[str]) -> list[SparseVec]: ...

    def embed_query(self, text: str) -> SparseVec: ...

    def token_count(self, text: str) -> int:
        """Index terms `text` yields after analysis."""
        ...
