"""Domain types shared along the data flow (ingest → encode → index → retrieve → rerank).

Wire formats (HTTP, JSON lines) are converted at the edges; these are the only shapes the core passes around.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Lang = Literal["ru", "en", "mixed"]

# Section meta keys shared by the loaders and the chunker: a notebook cell's index, and its type when it is
# code; a source file's block (the lines between blank lines) likewise. Cells, and blocks, under one heading
# share chunks, one that fits is never cut, and code is cut at blank lines and lines, never sentences.
CELL_KEY = "cell"
CODE_KEY = "cell_type"
BLOCK_KEY = "block"
BLOCK_CODE_KEY = "block_type"


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

    `start`/`end` are offsets in characters (code points, Python string indices) into the source file's
    text as its loader renders it (`SourceText.text`), `source_text[start:end] == text`. For a text file
    (Markdown, plain text, source code) that is the file decoded, a UTF-8 BOM dropped and CRLF and CR turned
    into LF: what `open(path, encoding="utf-8-sig").read()` returns (a cp1251 or koi8-r file in its
    encoding), not its raw bytes. A notebook's is its cells' sources joined by blank lines; an HTML page's,
    PDF's, transcript's, Word or PowerPoint file's the text its loader extracts (`leanrank.ingest.loaders`).
    `meta` holds format-specific facts (e.g. transcript timestamps `t_start`/`t_end`, PDF `page`).
    `context` is what the chunk is about but does not say itself — the file's name and the heading path,
    and for a chunk of code the prose just before it. It is indexed with the text (dense and BM25 both
    read `indexed_text`) but never shown, sent to a reranker or billed: that is always `text`.
    `langs` are the languages the chunk contains (`leanrank.ingest.lang.contained_langs`), what a search's
    language filter matches; `lang` is its dominant one.
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
    context: str = ""
    langs: tuple[Lang, ...] = ()

    @property
    def heading_path(self) -> str:
        return " > ".join(self.heading)

    @property
    def indexed_text(self) -> str:
        """What the first stage indexes: the context, a blank line, then the text."""
        return f"{self.context}\n\n{self.text}" if self.context else self.text


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
