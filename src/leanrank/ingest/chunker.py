"""Split a `SourceText` into token-budgeted `Chunk`s that follow the document's structure.

A chunk never spans two sections (a heading's body, a PDF page), so its heading path and page are exact.
Transcripts are the exception: cues are a few words each, so consecutive cues are packed together and the
chunk keeps the start time of its first cue and the end time of its last.

Notebook cells are packed like cues: a run of cells under one heading shares chunks, and a cell that fits
the budget is never cut, so a code cell stays whole with the prose around it. A source file's blocks are
packed the same way.

Inside a section the text is cut into paragraphs (blank lines), then sentences (razdel, which knows Russian
abbreviations such as "т. е." and "г."), and sentences are packed greedily while the chunk's exact token count
stays within the budget. Code — a code cell, or a fenced block (``` or ~~~) in Markdown — is one unit when it
fits, else cut at blank lines, then lines, never at "sentences". A sentence or line over the budget is cut
between words, and a word over the budget (a run of text without spaces) into the longest slices that fit:
no chunk exceeds the budget. Every chunk is a slice of the source text, so its offsets point back into
the file.

Embedded binary data — a data URI (`![chart](data:image/png;base64,…)`, `<img src="data:…">`, a bare
`data:…;base64,…`) or a long base64 run — is in no chunk: it is a boundary no chunk crosses, like a section's
end. A Markdown image keeps its `![alt]`, the words saying what the picture shows; only its `(data:…)` goes.

Text that is one thing repeated (it deflates to under a tenth of its size: `repetitive`) is left out too,
and no chunk crosses where it was: a sentence or slice that is (a word pasted thousands of times, a run of
zeros), and the copies of a sentence or paragraph pasted one after another that together are (a sentence
pasted 200 times: each copy alone is too short to tell).

Each chunk also gets a `context` (see `Chunk`): the file's name as words and the heading path, and for a
chunk that is only code, the end of the prose before it — the words that say what the code is about.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from razdel import sentenize

from leanrank.errors import ConfigError
from leanrank.ingest.lang import contained_langs, detect_lang
from leanrank.types import BLOCK_CODE_KEY, BLOCK_KEY, CELL_KEY, CODE_KEY, Chunk, Section, SourceText

_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")
_WORD = re.compile(r"\S+")
_CUE_KEYS = ("t_start", "t_end")
_HASH_CHARS = 32
_FENCE = re.compile(
    r"^[ \t]{0,3}(`{3,}|~{3,})[^\n]*\n.*?(?:^[ \t]{0,3}\1[ \t]*$|\Z)", re.DOTALL | re.MULTILINE
)
_LINE = re.compile(r"[^\n]+")
DATA_URI = r"data:[\w/+.-]+(?:;[\w.+-]+=[\w.+-]*)*;base64,[A-Za-z0-9+/=]*"
"""A base64 data URI (`data:image/png;base64,…`): embedded binary data, in no chunk and no BM25 term."""
# Embedded binary data. Of a Markdown image only the group `uri`, `(data:…)`, is a blob; an <img> goes whole.
# Linear time on hostile text: no scan runs past the next bracket or tag, and each alternative matches once
# it has reached `data:`, so a payload is scanned once.
_BLOB = re.compile(
    r"!\[[^\[\]\n]*\](?P<uri>\(\s*<?data:[^\s)]*(?:\s+\"[^\"\n]*\")?\s*\)?)"
    r"|<img\b[^<>]*?\ssrc\s*=\s*[\"']?\s*data:[^\s\"'<>]*[^<>]*>?"
    rf"|{DATA_URI}"
    r"|(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{256,}={0,2}",
    re.IGNORECASE,
)
_NAME_SEPARATORS = re.compile(r"[\s_\-.]+")
# How much of the prose before a code-only chunk its context repeats: about one sentence.
PROSE_CONTEXT_CHARS = 240
# A sentence or slice whose UTF-8 text deflates to under this share of its size is one thing repeated (a
# word pasted 2,000 times, a run of zeros): nothing to find in it, and the multilingual encoder places such
# text close to every question (a file of `'слово' * 2000` ranked first for "xyzzy"). The real course's
# notebooks deflate to 0.34 at least (1,491 chunks of 200 bytes or more); such text deflates to 0.02.
MIN_DEFLATE_RATIO = 0.1
# The longest passage, in units (sentences, cells, lines), whose copies pasted one after another are tested
# as one text: a paragraph. A longer one is a chunk or more per copy, which the encoder sees as any text.
MAX_PASTED_UNITS = 8
_FIRST_PROBE = 64  # characters: where the search for an over-long word's slice starts
_MIN_REPEAT_BYTES = 200


@dataclass(frozen=True)
class ChunkerConfig:
    """`max_tokens`: the budget per chunk, in the tokens of the counter passed to `chunk_source`.

    `overlap_sentences`: trailing sentences (cues, for transcripts) of a chunk repeated at the start of the
    next chunk of the same section, so an answer cut at a boundary is still whole in one chunk.
    `min_tokens`: a section's last chunk below this takes sentences over from the chunk before it, as far as
    the budget allows; a fragment that small retrieves noise.
    """

    max_tokens: int = 160
    overlap_sentences: int = 0
    min_tokens: int = 8

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.overlap_sentences < 0:
            raise ConfigError(f"overlap_sentences must be 0 or more, got {self.overlap_sentences}")
        if not 0 <= self.min_tokens <= self.max_tokens:
            raise ConfigError(f"min_tokens must be between 0 and max_tokens, got {self.min_tokens}")


@dataclass(frozen=True, slots=True)
class _Unit:
    """What chunks are packed from: a sentence, a whole cue, or a word run or word slice of an over-long
    sentence."""

    start: int
    end: int
    section: int
    code: bool = False


class _Measure:
    """Exact token counts of slices of the source text, memoised because packing asks for some twice."""

    def __init__(self, text: str, count_tokens: Callable[[str], int], max_tokens: int) -> None:
        self._text = text
        self._count = count_tokens
        self._max = max_tokens
        self._memo: dict[tuple[int, int], int] = {}

    def tokens(self, start: int, end: int) -> int:
        key = (start, end)
        if key not in self._memo:
            self._memo[key] = self._count(self._text[start:end])
        return self._memo[key]

    def fits(self, start: int, end: int) -> bool:
        return self.tokens(start, end) <= self._max


def chunk_source(
    source: SourceText,
    *,
    course: str,
    file_hash: str,
    count_tokens: Callable[[str], int],
    config: ChunkerConfig,
) -> list[Chunk]:
    """The chunks of one file in file order; deterministic for the same input and counter."""
    measure = _Measure(source.text, count_tokens, config.max_tokens)
    blobs = [_blob_spans(source.text, s.start, s.start + len(s.text)) for s in source.sections]
    blob_starts = [start for spans in blobs for start, _ in spans]
    file_lang = detect_lang(_without(source.text, [span for spans in blobs for span in spans]))
    title = file_title(source.path)
    chunks: list[Chunk] = []
    prose = ""  # the last prose unit seen, for the context of code-only chunks
    for group in _groups(source.sections):
        grouped = [u for i in group for u in _units(source.text, source.sections[i], i, blobs[i], measure)]
        for units, (first, stop) in (
            (run, span)
            for pieces in _split_at_blobs(grouped, blob_starts)
            for run in _without_repeats(source.text, pieces)
            for span in _pack(run, measure, config)
        ):
            start, end = units[first].start, units[stop - 1].end
            text = source.text[start:end]
            head = source.sections[units[first].section]
            meta = dict(head.meta)
            if _is_cue(head):
                meta["t_end"] = source.sections[units[stop - 1].section].meta["t_end"]
            code_only = all(u.code for u in units[first:stop])
            context = " > ".join(part for part in (title, *head.heading) if part)
            if code_only and prose:
                context = f"{context}\n{prose}"
            chunks.append(
                Chunk(
                    course=course,
                    source=source.path,
                    index=len(chunks),
                    text=text,
                    start=start,
                    end=end,
                    heading=head.heading,
                    lang=detect_lang(text, default=file_lang),
                    content_hash=hashlib.sha256(text.encode()).hexdigest()[:_HASH_CHARS],
                    file_hash=file_hash,
                    tokens=measure.tokens(start, end),
                    meta=meta,
                    context=context,
                    langs=contained_langs(text, also=(file_lang,) if code_only else ()),
                )
            )
            prose = next((_tail(source.text, u) for u in reversed(units[first:stop]) if not u.code), prose)
    return chunks


def repetitive(text: str) -> bool:
    """Whether `text` is one thing repeated, by how well it deflates (`MIN_DEFLATE_RATIO`); such a unit is
    left out of the index like embedded binary data."""
    data = text.encode()
    return len(data) >= _MIN_REPEAT_BYTES and len(zlib.compress(data)) < MIN_DEFLATE_RATIO * len(data)


def file_title(path: str) -> str:
    """A file's name as words (`topic3_trees_knn.ipynb` → `topic3 trees knn`): course files are named
    for their topic, and chunks whose heading path is empty have no other words saying what they are about."""
    stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return " ".join(_NAME_SEPARATORS.split(stem)).strip()


def _tail(text: str, unit: _Unit) -> str:
    """The last `PROSE_CONTEXT_CHARS` of a unit, from a word boundary."""
    body = text[unit.start : unit.end]
    if len(body) <= PROSE_CONTEXT_CHARS:
        return " ".join(body.split())
    cut = body[-PROSE_CONTEXT_CHARS:]
    return " ".join(cut.split()[1:])


def _is_cue(section: Section) -> bool:
    return all(key in section.meta for key in _CUE_KEYS)


def _packed(section: Section) -> bool:
    """A notebook cell or a source file's block: packed with its neighbours, never cut when it fits."""
    return CELL_KEY in section.meta or BLOCK_KEY in section.meta


def _is_code(section: Section) -> bool:
    return "code" in (section.meta.get(CODE_KEY), section.meta.get(BLOCK_CODE_KEY))


def _joinable(a: Section, b: Section) -> bool:
    """Consecutive cues, or consecutive notebook cells (source file blocks) under the same heading, may
    share a chunk."""
    if _is_cue(a) and _is_cue(b):
        return True
    return _packed(a) and _packed(b) and a.heading == b.heading


def _groups(sections: Sequence[Section]) -> Iterator[list[int]]:
    """Section indices that may share chunks: a run of joinable sections, or one other section alone."""
    run: list[int] = []
    for i, section in enumerate(sections):
        if run and not _joinable(sections[run[-1]], section):
            yield run
            run = []
        run.append(i)
    if run:
        yield run


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    """`(start, end)` narrowed to exclude surrounding whitespace; None when nothing else is left."""
    body = text[start:end]
    stripped = body.strip()
    if not stripped:
        return None
    lead = len(body) - len(body.lstrip())
    return start + lead, start + lead + len(stripped)


def _blob_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """`(start, end)` of each piece of embedded binary data in `text[start:end]`, in order."""
    return [m.span("uri") if m["uri"] else m.span() for m in _BLOB.finditer(text, start, end)]


def _without(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """`text` with the sorted, disjoint `spans` left out."""
    kept: list[str] = []
    cut = 0
    for start, end in spans:
        kept.append(text[cut:start])
        cut = end
    kept.append(text[cut:])
    return " ".join(kept)


def _split_at_blobs(units: list[_Unit], blob_starts: Sequence[int]) -> Iterator[list[_Unit]]:
    """`units` as runs no blob interrupts: a chunk is a slice of the text, so none may span a blob."""
    run: list[_Unit] = []
    for unit in units:
        if run and bisect_left(blob_starts, run[-1].end) != bisect_left(blob_starts, unit.start):
            yield run
            run = []
        run.append(unit)
    if run:
        yield run


def _without_repeats(text: str, units: list[_Unit]) -> Iterator[list[_Unit]]:
    """`units` less what is one thing repeated (`repetitive`), as runs between the gaps it leaves: like a
    blob, a gap is a boundary no chunk crosses. What goes is a unit that is, and a stretch of a passage
    pasted again and again that is (`_pasted`)."""
    pasted = _pasted(text, units)
    run: list[_Unit] = []
    for i, unit in enumerate(units):
        if i in pasted or repetitive(text[unit.start : unit.end]):
            if run:
                yield run
            run = []
        else:
            run.append(unit)
    if run:
        yield run


def _pasted(text: str, units: Sequence[_Unit]) -> set[int]:
    """Indices of the units in stretches that repeat a passage of up to `MAX_PASTED_UNITS` units over and
    over and are, as one text, `repetitive`: every copy goes, as every copy of a word pasted into one unit
    does.

    A copy alone is too short to tell (a 57-byte sentence pasted 200 times was 13 chunks), and so is a
    chunk of a few copies of a two-sentence paragraph; the whole stretch is not. A stretch of period `p` is
    a maximal run of units each the same text as the unit `p` before it, with the `p` units it copies, and
    holds two whole copies at least: one unit said again a few sentences later is no paste. The real
    course has no such stretch at all; a 57-byte sentence pasted 13 times deflates to under 0.1.
    """
    texts = [text[u.start : u.end] for u in units]
    found: set[int] = set()
    for period in range(1, MAX_PASTED_UNITS + 1):
        i = period
        while i < len(texts):
            if texts[i] != texts[i - period]:
                i += 1
                continue
            stop = i + 1
            while stop < len(texts) and texts[stop] == texts[stop - period]:
                stop += 1
            first = i - period
            if stop - first >= 2 * period and repetitive(text[units[first].start : units[stop - 1].end]):
                found.update(range(first, stop))
            i = stop
    return found


def _units(
    text: str, section: Section, index: int, blobs: Sequence[tuple[int, int]], measure: _Measure
) -> Iterator[_Unit]:
    """The units of a section's pieces between its blobs."""
    cut = section.start
    for blob_start, blob_end in blobs:
        if span := _trim(text, cut, blob_start):
            yield from _piece_units(text, *span, section, index, measure)
        cut = blob_end
    if span := _trim(text, cut, section.start + len(section.text)):
        yield from _piece_units(text, *span, section, index, measure)


def _piece_units(
    text: str, start: int, end: int, section: Section, index: int, measure: _Measure
) -> Iterator[_Unit]:
    """A cue or a cell that fits stays whole (a cue's times stay exact, a cell's code uncut); code goes down
    to blank-line blocks and lines, other text to sentences, then words."""
    code = _is_code(section)
    if (_is_cue(section) or _packed(section)) and measure.fits(start, end):
        yield _Unit(start, end, index, code)
        return
    if code:
        yield from _code_units(text, start, end, index, measure)
        return
    cut = start
    for fence in _FENCE.finditer(text[start:end]):
        yield from _prose_units(text, cut, start + fence.start(), index, measure)
        if span := _trim(text, start + fence.start(), start + fence.end()):
            yield from _code_units(text, *span, index, measure)
        cut = start + fence.end()
    yield from _prose_units(text, cut, end, index, measure)


def _prose_units(text: str, start: int, end: int, index: int, measure: _Measure) -> Iterator[_Unit]:
    for block in _paragraphs(text, start, end):
        for sentence in _sentences(text, *block):
            if measure.fits(*sentence):
                yield _Unit(*sentence, index)
            else:
                yield from (_Unit(*run, index) for run in _word_runs(text, *sentence, measure))


def _code_units(text: str, start: int, end: int, index: int, measure: _Measure) -> Iterator[_Unit]:
    """Whole when it fits, else blocks between blank lines, else lines, else runs of words."""
    if measure.fits(start, end):
        yield _Unit(start, end, index, code=True)
        return
    for block in _paragraphs(text, start, end):
        if measure.fits(*block):
            yield _Unit(*block, index, code=True)
            continue
        for line in _LINE.finditer(text, *block):
            if not (span := _trim(text, *line.span())):
                continue
            if measure.fits(*span):
                yield _Unit(*span, index, code=True)
            else:
                yield from (_Unit(*run, index, code=True) for run in _word_runs(text, *span, measure))


def _paragraphs(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    cut = start
    for blank in _BLANK_LINE.finditer(text, start, end):
        if span := _trim(text, cut, blank.start()):
            yield span
        cut = blank.end()
    if span := _trim(text, cut, end):
        yield span


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """`(start, end)` of each sentence of `text` (razdel), whitespace excluded; the trimming step uses it."""
    return [s for block in _paragraphs(text, 0, len(text)) for s in _sentences(text, *block)]


def _sentences(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    for sentence in sentenize(text[start:end]):
        if span := _trim(text, start + sentence.start, start + sentence.stop):
            yield span


def _word_runs(text: str, start: int, end: int, measure: _Measure) -> Iterator[tuple[int, int]]:
    """An over-long sentence as greedy runs of whole words; a single word over the budget as `_slices`."""
    run: tuple[int, int] | None = None
    for word in _WORD.finditer(text, start, end):
        if run and measure.fits(run[0], word.end()):
            run = run[0], word.end()
            continue
        if run:
            yield run
        run = word.span()
        if not measure.fits(*run):
            yield from _slices(*run, measure)
            run = None
    if run:
        yield run


def _slices(start: int, end: int, measure: _Measure) -> Iterator[tuple[int, int]]:
    """`[start, end)` as consecutive slices, each the longest character prefix of the rest that fits.

    The counter gives counts, not offsets, so the cut is found by bisection over characters; a prefix
    that grows by one character into the next token gains that token, so the longest prefix that fits
    ends where the budget's last token ends. A character that alone exceeds the budget is a slice alone.
    The prefixes tried grow from `_FIRST_PROBE` characters by doubling, so a slice costs counting a few
    times its own length, never the rest of the word (a 320,000-character minified line counted 217 M
    characters when every slice started from the whole rest).
    """
    while True:
        fits, probe = start + 1, start + _FIRST_PROBE
        while probe < end and measure.fits(start, probe):
            fits, probe = probe, start + 2 * (probe - start)
        if probe >= end and measure.fits(start, end):
            yield start, end
            return
        over = min(probe, end)
        while over - fits > 1:
            mid = (fits + over) // 2
            if measure.fits(start, mid):
                fits = mid
            else:
                over = mid
        yield start, fits
        start = fits


def _pack(units: Sequence[_Unit], measure: _Measure, config: ChunkerConfig) -> list[tuple[int, int]]:
    """Greedy `[first, stop)` unit ranges within the budget, with the configured overlap and tail fix-up."""
    ranges: list[tuple[int, int]] = []
    i = 0
    while i < len(units):
        first = i
        if ranges and config.overlap_sentences:
            # Repeat up to N trailing units, never all of the previous chunk, as far as the budget allows.
            first = max(i - config.overlap_sentences, ranges[-1][0] + 1)
            while first < i and not measure.fits(units[first].start, units[i].end):
                first += 1
        stop = i + 1
        while stop < len(units) and measure.fits(units[first].start, units[stop].end):
            stop += 1
        ranges.append((first, stop))
        i = stop
    _settle_tail(ranges, units, measure, config)
    return ranges


def _settle_tail(
    ranges: list[tuple[int, int]], units: Sequence[_Unit], measure: _Measure, config: ChunkerConfig
) -> None:
    """Grow a last chunk below `min_tokens` backwards over the previous chunk's units while the budget allows.

    Merging the two whole never fits: greedy packing already found that the previous chunk could not take
    even the tail's first unit. Without overlap the previous chunk gives up the units it lends; it always
    keeps its first one.
    """
    if len(ranges) < 2:
        return
    (prev_first, _), (first, stop) = ranges[-2:]
    end = units[stop - 1].end
    while (
        first > prev_first + 1
        and measure.tokens(units[first].start, end) < config.min_tokens
        and measure.fits(units[first - 1].start, end)
    ):
        first -= 1
    ranges[-1] = (first, stop)
    if not config.overlap_sentences:
        ranges[-2] = (prev_first, first)
