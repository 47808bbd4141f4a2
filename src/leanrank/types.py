"""Domain types shared along the data flow (ingest → encode → index → retrieve → rerank).

Wire formats (HTTP, JSON lines) are converted at the edges; these are the only shapes the core passes around.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Lang = Literal["ru", "en", "mixed"]


@dataclass(frozen=True, slots=True)
class Section:
    """A run of source text under one heading path, located by character offsets into the source text."""

    text: str
    start: int
    heading: tuple[str, ...] = ()
    meta: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SourceText:
    """A loaded file: its full plain text (offsets refer to it) split into structural sections."""

    path: str
    text: str
    sections: tuple[Section, ...]
    kind: str


@dataclass(frozen=True, slots=True)
class Chunk:
    """The unit that is indexed, retrieved and reranked.

    `start`/`end` are character offsets into the source file's plain text:
    `source_text[start:end] == text`.
    `meta` holds format-specific facts (e.g. transcript timestamps `t_start`/`t_end`, PDF `page`).
    """

    course: str
    source: str
    index: int
    text: str
    start: int
    end: int
    heading: tuple[str, ...]
    lang: Lang
    content_hash: str
    file_hash: str
    tokens: int
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def heading_path(self) -> str:
        return " > ".join(self.heading)


@dataclass(frozen=True, slots=True)
class Hit:
    """A retrieved chunk with its final score and the score each stage gave it.

    `window` is the part of `chunk.text` the reranker saw (start, end) when the cascade trimmed it.
    """

    chunk_id: str
    chunk: Chunk
    score: float
    stage_scores: dict[str, float]
    window: tuple[int, int] | None = None
