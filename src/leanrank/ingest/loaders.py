"""Turn one course file into a `SourceText`: its plain text plus structural sections located by offsets.

Every loader keeps one invariant the chunker and the search results rely on: for each section `s`,
`source.text[s.start : s.start + len(s.text)] == s.text`. Formats whose bytes are not the text a reader sees
(HTML, PDF, transcripts) build their plain text first and locate sections in it.

This is the only module that imports the format parsers; each failure becomes a typed `DocumentError` with a
one-line reason, so one bad file is reported and the rest of a course still ingests.
"""

from __future__ import annotations

import html
import io
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import charset_normalizer
import srt
import webvtt
from markdown_it import MarkdownIt
from markdown_it.token import Token
from pypdf import PdfReader
from selectolax.lexbor import LexborHTMLParser, LexborNode

from leanrank.errors import (
    BinaryDocumentError,
    DocumentError,
    EmptyDocumentError,
    EncodingError,
    FileTooLargeError,
    UnsupportedFileTypeError,
)
from leanrank.ingest.lang import script_counts
from leanrank.types import Section, SourceText

# pypdf logs recoverable damage to stderr; a file it cannot read is reported as a DocumentError instead.
logging.getLogger("pypdf").setLevel(logging.ERROR)

# Bytes that never occur in text (tab, LF, VT, FF and CR are allowed); NUL alone already means binary.
_CONTROL_BYTES = bytes([*range(0x00, 0x09), *range(0x0E, 0x20), 0x7F])
_MAX_CONTROL_SHARE = 0.01
# Legacy encodings of Russian text that are still common in old course material.
_LEGACY_RUSSIAN = frozenset({"cp1251", "koi8_r"})
_MAX_CHAOS = 0.1
_MIN_LETTER_SHARE = 0.5
_REASON_CHARS = 300

_Loader = Callable[[bytes, str], tuple[str, list[Section]]]


def load_file(path: Path, *, max_bytes: int) -> SourceText:
    """Load one file; raises a `DocumentError` subclass saying in one line why it cannot be used."""
    return parse_file(path, read_file(path, max_bytes=max_bytes))


def read_file(path: Path, *, max_bytes: int) -> bytes:
    """The bytes of a regular file of a supported type and size, read once for both hashing and parsing.

    The type and the reported size are checked before reading, so an unsupported or oversized file costs
    nothing; the limit also holds while reading, since a size can lie (a file growing, `/proc`). The file
    is opened without blocking and read only if it is a regular file: a FIFO would wait for a writer
    forever, a device (`/dev/zero`) never ends.
    """
    name = str(path)
    suffix = path.suffix.lower()
    if suffix not in _LOADERS:
        what = f"unsupported file type {suffix!r}" if suffix else "no file extension"
        raise UnsupportedFileTypeError(name, f"{what}; supported: {' '.join(sorted(SUPPORTED_SUFFIXES))}")
    try:
        with open(path, "rb", opener=_open_nonblocking) as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise DocumentError(name, "not a regular file (a FIFO, device or socket)")
            if info.st_size > max_bytes:
                raise FileTooLargeError(name, f"{info.st_size} bytes is over the limit of {max_bytes} bytes")
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise DocumentError(name, f"cannot read: {exc.strerror or _one_line(exc)}") from None
    if len(data) > max_bytes:
        raise FileTooLargeError(name, f"more than the limit of {max_bytes} bytes")
    return data


def _open_nonblocking(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NONBLOCK)


def parse_file(path: Path, data: bytes) -> SourceText:
    """Parse bytes read by `read_file` with the loader of the file's type."""
    name = str(path)
    kind, loader = _LOADERS[path.suffix.lower()]
    text, sections = loader(data, name)
    if not sections:
        raise EmptyDocumentError(name, "no text in the file")
    return SourceText(path=name, text=text, sections=tuple(sections), kind=kind)


# --- text decoding --------------------------------------------------------------------------------


def _decode(data: bytes, name: str) -> str:
    """UTF-8 (BOM or not), else cp1251/koi8-r Russian when detection is sure; newlines become `\\n`.

    A blank file is refused here, before a format parser can call it malformed instead.
    """
    controls = len(data) - len(data.translate(None, _CONTROL_BYTES))
    if b"\x00" in data or controls > _MAX_CONTROL_SHARE * len(data):
        raise BinaryDocumentError(name, "holds NUL or control bytes: binary data, not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = _decode_legacy_russian(data, name)
    if not text.strip():
        raise EmptyDocumentError(name, "the file is empty")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _decode_legacy_russian(data: bytes, name: str) -> str:
    """A wrong guess would index mojibake, so only a confident, letter-rich Russian guess passes."""
    fail = EncodingError(name, "not UTF-8, and not recognisably cp1251/koi8-r Russian; save it as UTF-8")
    match = charset_normalizer.from_bytes(data).best()
    if match is None or match.encoding not in _LEGACY_RUSSIAN or match.chaos > _MAX_CHAOS:
        raise fail
    text = data.decode(match.encoding)
    visible = [ch for ch in text if not ch.isspace()]
    letters = sum(ch.isalpha() for ch in visible)
    cyrillic, _ = script_counts(text)
    if not cyrillic or letters < _MIN_LETTER_SHARE * len(visible):
        raise fail
    return text


# --- shared helpers -------------------------------------------------------------------------------


def _section(
    text: str, start: int, end: int, heading: tuple[str, ...] = (), meta: dict[str, str] | None = None
) -> Section | None:
    """The whitespace-trimmed section `text[start:end]`, or None when it holds no text."""
    body = text[start:end]
    stripped = body.strip()
    if not stripped:
        return None
    lead = len(body) - len(body.lstrip())
    return Section(stripped, start + lead, heading, meta or {})


def _one_line(exc: BaseException) -> str:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return reason[:_REASON_CHARS]


def _collapse(text: str) -> str:
    return " ".join(text.split())


# --- plain text and Markdown ----------------------------------------------------------------------


def _load_text(data: bytes, name: str) -> tuple[str, list[Section]]:
    text = _decode(data, name)
    section = _section(text, 0, len(text))
    return text, [section] if section else []


_MARKDOWN = MarkdownIt("commonmark")
_FRONT_MATTER = re.compile(r"\A---\n.*?\n(?:---|\.\.\.)[^\S\n]*(?:\n|\Z)", re.DOTALL)


def _load_markdown(data: bytes, name: str) -> tuple[str, list[Section]]:
    """Sections run between top-level headings; heading lines themselves are not section text.

    markdown-it finds the headings (ATX and setext, never a `#` line inside a code fence); its line maps are
    turned into offsets into the decoded text.
    """
    text = _decode(data, name)
    line_starts = [0, *(m.end() for m in re.finditer("\n", text))]

    def offset(line: int) -> int:
        return line_starts[line] if line < len(line_starts) else len(text)

    # YAML front matter is metadata, and its closing `---` would read as a setext heading: the parser sees
    # blank lines in its place (line numbers stay true) and no section includes it.
    front = _FRONT_MATTER.match(text)
    body_start = front.end() if front else 0
    tokens = _MARKDOWN.parse("\n" * text.count("\n", 0, body_start) + text[body_start:])
    found: list[Section | None] = []
    stack: list[tuple[int, str]] = []
    for i, tok in enumerate(tokens):
        if tok.type != "heading_open" or tok.level != 0 or tok.map is None:
            continue
        first_line, after_line = tok.map
        found.append(_section(text, body_start, offset(first_line), _path(stack)))
        level = int(tok.tag[1])
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, _inline_text(tokens[i + 1])))
        body_start = offset(after_line)
    found.append(_section(text, body_start, len(text), _path(stack)))
    return text, [s for s in found if s]


def _path(stack: list[tuple[int, str]]) -> tuple[str, ...]:
    return tuple(title for _, title in stack if title)


def _inline_text(inline: Token) -> str:
    """A heading's words without Markdown markup (`**x**`, `` `x` ``, links)."""
    parts = [
        " " if child.type in ("softbreak", "hardbreak") else child.content
        for child in inline.children or []
        if child.type in ("text", "code_inline", "softbreak", "hardbreak")
    ]
    return _collapse("".join(parts))


# --- HTML -----------------------------------------------------------------------------------------

_DROP_TAGS = frozenset({"script", "style", "nav", "noscript", "template", "head"})
# The parser's time grows with the square of the nesting depth (50,000 nested <div> take ~10 s); real
# pages stay under a few dozen levels.
MAX_HTML_DEPTH = 1000
# Elements that never hold children, and those a sibling of the same kind closes (`<li>a<li>b`), are
# left out of the count.
_NOT_NESTING = (
    "area base br col embed hr img input link meta param source track wbr "
    "p li dt dd option optgroup tr td th thead tbody tfoot rb rt rp colgroup caption"
)
_NESTING_TAG = re.compile(rf"<(/?)(?!(?:{'|'.join(_NOT_NESTING.split())})[\s/>])[a-z]", re.IGNORECASE)
_HEADING_LEVEL = {f"h{n}": n for n in range(1, 7)}
_SPACE, _NEWLINE, _PARAGRAPH = 1, 2, 3
_SEPARATORS = {_SPACE: " ", _NEWLINE: "\n", _PARAGRAPH: "\n\n"}
_PARAGRAPH_TAGS = frozenset(
    {
        *("address", "article", "aside", "blockquote", "body", "details", "dialog", "div", "dl", "fieldset"),
        *("figcaption", "figure", "footer", "form", "header", "hgroup", "hr", "main", "ol", "p", "pre"),
        *("section", "summary", "table", "ul", *_HEADING_LEVEL),
    }
)
_BREAK_AROUND = {
    **dict.fromkeys(_PARAGRAPH_TAGS, _PARAGRAPH),
    **dict.fromkeys(("br", "li", "dt", "dd", "tr", "caption"), _NEWLINE),
    **dict.fromkeys(("td", "th"), _SPACE),
}


class _TextBuilder:
    """Appends visible text the way a browser lays it out: whitespace collapsed, blocks on their own lines.

    Separators are held back until the next text, so the result has no leading, trailing or doubled breaks.
    """

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self._pending = 0

    def request(self, separator: int) -> None:
        self._pending = max(self._pending, separator)

    def add(self, raw: str, *, preformatted: bool) -> None:
        text = raw if preformatted else _collapse(raw)
        if not preformatted and raw[:1].isspace():
            self.request(_SPACE)
        if text:
            if self.length and self._pending:
                self._emit(_SEPARATORS[self._pending])
            self._pending = 0
            self._emit(text)
        if not preformatted and raw[-1:].isspace():
            self.request(_SPACE)

    def _emit(self, text: str) -> None:
        self.parts.append(text)
        self.length += len(text)


def _load_html(data: bytes, name: str) -> tuple[str, list[Section]]:
    """Visible text of the page; h1–h6 open sections whose heading path is the stack of enclosing headings."""
    markup = _decode(data, name)
    depth = _nesting(markup)
    if depth > MAX_HTML_DEPTH:
        raise DocumentError(name, f"HTML nested {depth} elements deep, over the limit of {MAX_HTML_DEPTH}")
    tree = LexborHTMLParser(markup)
    root = tree.body or tree.root
    if root is None:
        return "", []
    out = _TextBuilder()
    spans: list[tuple[int, int, tuple[str, ...]]] = []
    stack: list[tuple[int, str]] = []
    body_start = heading_part = 0
    pre_depth = 0
    for node, closing in _walk(root):
        tag = node.tag or ""
        if node.is_text_node:
            out.add(node.text_content or "", preformatted=pre_depth > 0)
            continue
        out.request(_BREAK_AROUND.get(tag, 0))
        if tag == "pre":
            pre_depth += -1 if closing else 1
        level = _HEADING_LEVEL.get(tag)
        if level is None:
            continue
        if not closing:
            spans.append((body_start, out.length, _path(stack)))
            heading_part = len(out.parts)
            continue
        title = _collapse("".join(out.parts[heading_part:]))
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        body_start = out.length
    text = "".join(out.parts)
    spans.append((body_start, len(text), _path(stack)))
    found = (_section(text, start, end, heading) for start, end, heading in spans)
    return text, [s for s in found if s]


def _nesting(markup: str) -> int:
    """How deep the tags of `markup` nest, counted in linear time before parsing: an unclosed tag counts as
    open to the end, which only overestimates."""
    depth = deepest = 0
    for match in _NESTING_TAG.finditer(markup):
        if match[1]:
            depth = max(depth - 1, 0)
        else:
            depth += 1
            deepest = max(deepest, depth)
    return deepest


def _walk(root: LexborNode) -> Iterator[tuple[LexborNode, bool]]:
    """Depth-first (node, closing) events without recursion (pages can nest deeper than Python's stack)."""
    todo: list[tuple[LexborNode, bool]] = [(root, False)]
    while todo:
        node, closing = todo.pop()
        if node.is_element_node and node.tag in _DROP_TAGS:
            continue
        yield node, closing
        if closing or not node.is_element_node:
            continue
        todo.append((node, True))
        todo.extend((child, False) for child in reversed(list(node.iter(include_text=True))))


# --- PDF ------------------------------------------------------------------------------------------

_PDF_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _load_pdf(data: bytes, name: str) -> tuple[str, list[Section]]:
    """One section per page of the text layer, `meta={"page": "N"}` (1-based)."""
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(name, "the PDF is password-protected")
        pages = [page.extract_text() for page in reader.pages]
    except DocumentError:
        raise
    except Exception as exc:  # pypdf raises many unrelated types on damaged input; all mean "cannot parse"
        raise DocumentError(name, f"cannot parse PDF: {_one_line(exc)}") from None
    parts: list[str] = []
    spans: list[tuple[int, int, int]] = []
    length = 0
    for number, raw in enumerate(pages, start=1):
        page = _PDF_CONTROL.sub(" ", raw.replace("\r\n", "\n").replace("\r", "\n"))
        if parts:
            parts.append("\n\n")
            length += 2
        spans.append((length, length + len(page), number))
        parts.append(page)
        length += len(page)
    text = "".join(parts)
    found = (_section(text, start, end, meta={"page": str(number)}) for start, end, number in spans)
    sections = [s for s in found if s]
    if not sections:
        raise EmptyDocumentError(name, "the PDF has no text layer (scanned?)")
    return text, sections


# --- transcripts ----------------------------------------------------------------------------------

_SRT_MARKUP = re.compile(r"<[^>]*>|\{\\[^}]*\}")


def _clock(ms: int) -> str:
    """`HH:MM:SS.mmm`, the same for WebVTT and SRT cues."""
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    seconds, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{ms:03d}"


def _cues_to_source(cues: list[tuple[str, int, int]]) -> tuple[str, list[Section]]:
    """Cue texts on consecutive lines; each cue is a section carrying `t_start`/`t_end`."""
    parts: list[str] = []
    sections: list[Section] = []
    length = 0
    for raw, start_ms, end_ms in cues:
        cue = _collapse(raw)
        if not cue:
            continue
        if parts:
            parts.append("\n")
            length += 1
        sections.append(Section(cue, length, (), {"t_start": _clock(start_ms), "t_end": _clock(end_ms)}))
        parts.append(cue)
        length += len(cue)
    return "".join(parts), sections


def _load_vtt(data: bytes, name: str) -> tuple[str, list[Section]]:
    """Strict parsing: a malformed cue fails the file rather than silently dropping part of the lecture."""
    text = _decode(data, name)
    try:
        captions = webvtt.from_string(text, strict=True).captions
    except (webvtt.errors.MalformedFileError, webvtt.errors.MalformedCaptionError, ValueError) as exc:
        raise DocumentError(name, f"cannot parse WebVTT: {_one_line(exc)}") from None
    return _cues_to_source(
        [
            (html.unescape(c.text), c.start_time.in_milliseconds(), c.end_time.in_milliseconds())
            for c in captions
        ]
    )


def _load_srt(data: bytes, name: str) -> tuple[str, list[Section]]:
    """Styling tags (`<i>`, `{\\an8}`) are dropped; they are not words anyone searches for."""
    text = _decode(data, name)
    try:
        subtitles = list(srt.parse(text))
    except (srt.SRTParseError, ValueError) as exc:
        raise DocumentError(name, f"cannot parse SRT: {_one_line(exc)}") from None
    ms = timedelta(milliseconds=1)
    return _cues_to_source([(_SRT_MARKUP.sub("", s.content), s.start // ms, s.end // ms) for s in subtitles])


_LOADERS: dict[str, tuple[str, _Loader]] = {
    ".md": ("markdown", _load_markdown),
    ".markdown": ("markdown", _load_markdown),
    ".txt": ("text", _load_text),
    ".html": ("html", _load_html),
    ".htm": ("html", _load_html),
    ".pdf": ("pdf", _load_pdf),
    ".vtt": ("vtt", _load_vtt),
    ".srt": ("srt", _load_srt),
}

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_LOADERS)
