"""Turn one course file into a `SourceText`: its plain text plus structural sections located by offsets.

Every loader keeps one invariant the chunker and the search results rely on: for each section `s`,
`source.text[s.start : s.start + len(s.text)] == s.text`. Formats whose bytes are not the text a reader sees
(HTML, PDF, transcripts) build their plain text first and locate sections in it. A text file's plain text is
the file decoded with a UTF-8 BOM dropped and CRLF and CR turned into LF (`_decode`): chunk offsets index
that, not the raw bytes.

This is the only module that imports the format parsers; each failure becomes a typed `DocumentError` with a
one-line reason, so one bad file is reported and the rest of a course still ingests.
"""

from __future__ import annotations

import html
import io
import json
import logging
import os
import re
import stat
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from pathlib import Path

import charset_normalizer
import docx
import pptx
import srt
import webvtt
from docx.document import Document as DocxDocument
from docx.table import Table as DocxTable
from docx.table import _Row as DocxRow
from docx.text.paragraph import Paragraph
from markdown_it import MarkdownIt
from markdown_it.token import Token
from pptx.enum.shapes import PP_PLACEHOLDER
from pptx.presentation import Presentation as PptxPresentation
from pptx.shapes.autoshape import Shape
from pptx.shapes.base import BaseShape
from pptx.shapes.graphfrm import GraphicFrame
from pptx.shapes.group import GroupShape
from pptx.text.text import TextFrame
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.token import Comment, Keyword, Name, String
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
from leanrank.types import BLOCK_CODE_KEY, BLOCK_KEY, CELL_KEY, CODE_KEY, Section, SourceText

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


def _without_line_end_space(text: str) -> str:
    """`text` without the whitespace that ends its lines: it means nothing in code or plain text, and an
    editor that adds or strips it would otherwise change every chunk it touches, each embedded again.
    Markdown keeps it (two spaces end a line there). Linear: a regex anchored at line ends would retry
    every start of a long run of spaces that is not at one."""
    return "\n".join(line.rstrip() for line in text.split("\n"))


def _one_line(exc: BaseException) -> str:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return reason[:_REASON_CHARS]


def _collapse(text: str) -> str:
    return " ".join(text.split())


# --- plain text and Markdown ----------------------------------------------------------------------


def _load_text(data: bytes, name: str) -> tuple[str, list[Section]]:
    """The file's text less the spaces at its lines' ends (`_without_line_end_space`): one section."""
    text = _without_line_end_space(_decode(data, name))
    section = _section(text, 0, len(text))
    return text, [section] if section else []


_MARKDOWN = MarkdownIt("commonmark")
_FRONT_MATTER = re.compile(r"\A---\n.*?\n(?:---|\.\.\.)[^\S\n]*(?:\n|\Z)", re.DOTALL)


def _load_markdown(data: bytes, name: str) -> tuple[str, list[Section]]:
    """Sections run between top-level headings; heading lines themselves are not section text.

    YAML front matter is metadata, and its closing `---` would read as a setext heading: no section
    includes it.
    """
    text = _decode(data, name)
    front = _FRONT_MATTER.match(text)
    return text, _markdown_sections(text, front.end() if front else 0, len(text), [])


def _markdown_sections(
    text: str, start: int, end: int, stack: list[tuple[int, str]], meta: dict[str, str] | None = None
) -> list[Section]:
    """The sections of the Markdown in `text[start:end]`, split at its headings.

    markdown-it finds the headings (ATX and setext, never a `#` line inside a code fence); its line maps
    are turned into offsets into `text`. `stack` is the heading path open before `start` (levels, titles)
    and is updated in place, so a notebook's heading path carries across its cells.
    """
    part = text[start:end]
    line_starts = [start, *(start + m.end() for m in re.finditer("\n", part))]

    def offset(line: int) -> int:
        return line_starts[line] if line < len(line_starts) else end

    tokens = _MARKDOWN.parse(part)
    found: list[Section | None] = []
    body_start = start
    for i, tok in enumerate(tokens):
        if tok.type != "heading_open" or tok.level != 0 or tok.map is None:
            continue
        first_line, after_line = tok.map
        found.append(_section(text, body_start, offset(first_line), _path(stack), meta))
        level = int(tok.tag[1])
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, _inline_text(tokens[i + 1])))
        body_start = offset(after_line)
    found.append(_section(text, body_start, end, _path(stack), meta))
    return [s for s in found if s]


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


# --- Jupyter notebooks ----------------------------------------------------------------------------

_CELL_SEPARATOR = "\n\n"


def _load_notebook(data: bytes, name: str) -> tuple[str, list[Section]]:
    """The text rendering is every cell's source in cell order, joined by one blank line; outputs,
    attachments and metadata are left out (they are results and images, not what a lesson says).

    Markdown cells split at their headings like a Markdown file, and the heading path carries on across
    cells; a code cell is one section with `meta["cell_type"] == "code"`, a raw cell one plain section.
    Every section has `meta["cell"]`, the cell's 0-based index, so the chunker can pack a run of small
    cells together.

    Reading is lenient: hand-made and converted notebooks often lack cell `metadata` and `id`, and only what
    the rendering needs is checked — a JSON object whose cells are objects with text sources. Notebooks
    before nbformat 4 are converted by nbformat.
    """
    try:
        notebook = json.loads(_decode(data, name))
    except ValueError as exc:
        raise DocumentError(name, f"cannot parse notebook: not JSON: {_one_line(exc)}") from None
    if not isinstance(notebook, dict):
        raise DocumentError(name, "not a Jupyter notebook: top level is not an object")
    if notebook.get("nbformat", 4) != 4:
        notebook = _upgrade_notebook(notebook, name)
    cells = notebook.get("cells")
    if not isinstance(cells, list):
        raise DocumentError(name, "not a Jupyter notebook: no list of cells")
    parts: list[str] = []
    spans: list[tuple[int, int, int, str]] = []
    length = 0
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict):
            raise DocumentError(name, f"not a Jupyter notebook: cell {index} is not an object")
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(line, str) for line in source):
            source = "".join(source)
        if not isinstance(source, str):
            raise DocumentError(name, f"not a Jupyter notebook: the source of cell {index} is not text")
        body = source.replace("\r\n", "\n")
        if not body.strip():
            continue
        if parts:
            parts.append(_CELL_SEPARATOR)
            length += len(_CELL_SEPARATOR)
        spans.append((length, length + len(body), index, str(cell.get("cell_type", ""))))
        parts.append(body)
        length += len(body)
    rendered = "".join(parts)
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    for start, end, index, kind in spans:
        meta = {CELL_KEY: str(index)}
        if kind == "markdown":
            sections.extend(_markdown_sections(rendered, start, end, stack, meta))
        elif section := _section(
            rendered, start, end, _path(stack), meta | {CODE_KEY: "code"} if kind == "code" else meta
        ):
            sections.append(section)  # raw cells (rare: nbconvert directives) are plain text
    return rendered, sections


def _upgrade_notebook(notebook: dict[str, object], name: str) -> dict[str, object]:
    """An nbformat 1–3 notebook as nbformat 4, by nbformat; a missing top-level `metadata` is no reason to
    refuse it."""
    import nbformat

    major = notebook.get("nbformat")
    if major not in (1, 2, 3):
        raise DocumentError(name, f"cannot parse notebook: unsupported nbformat version {major!r}")
    notebook.setdefault("metadata", {})
    try:
        node = nbformat.versions[major].to_notebook_json(notebook, minor=notebook.get("nbformat_minor", 0))
        converted: dict[str, object] = nbformat.convert(node, 4)  # type: ignore[no-untyped-call]
    except Exception as exc:  # nbformat raises schema and conversion errors of many types
        raise DocumentError(name, f"cannot parse notebook: {_one_line(exc)}") from None
    return converted


# --- source code ----------------------------------------------------------------------------------

# Pygments' lexer per file suffix, named explicitly: guessing from the name reads `.r` as REBOL, `.pl` as
# Prolog. Languages a course teaches in; `.m` (MATLAB or Objective-C) is left out as ambiguous.
_CODE_LEXERS = {
    ".py": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "jsx",
    ".ts": "typescript",
    ".tsx": "tsx",
    ".java": "java",
    ".kt": "kotlin",
    ".scala": "scala",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".hpp": "cpp",
    ".cs": "csharp",
    ".go": "go",
    ".rs": "rust",
    ".rb": "ruby",
    ".php": "php",
    ".swift": "swift",
    ".sql": "sql",
    ".sh": "bash",
    ".bash": "bash",
    ".r": "r",
    ".jl": "julia",
    ".lua": "lua",
    ".hs": "haskell",
    ".dart": "dart",
}
# Keywords that name what follows them: the next name is a definition, the heading of its code.
_DEFINING = frozenset(
    {
        "def",
        "class",
        "function",
        "func",
        "fn",
        "fun",
        "struct",
        "interface",
        "trait",
        "impl",
        "enum",
        "module",
    }
)


def _code_loader(language: str) -> _Loader:
    def load(data: bytes, name: str) -> tuple[str, list[Section]]:
        text = _without_line_end_space(_decode(data, name))
        return _code_sections(text, get_lexer_by_name(language, startinline=True))

    return load


def _code_sections(text: str, lexer: Lexer) -> tuple[str, list[Section]]:
    """A source file as blocks between blank lines (`meta["block"]`, the 0-based index), which the chunker
    packs like notebook cells (with their neighbours under one heading, never cut when they fit): a block of
    comments and docstrings only is prose, any other block code (`meta["block_type"] == "code"`).

    The heading is the name a top-level block defines (`def`, `class`, `function`, `fn`…, by Pygments'
    tokens; `startinline` so PHP needs no `<?php`), and a comment block right before it takes that heading
    too: its words say what the definition is about. Any other unindented block clears the heading. The
    text is the file's own less the spaces at its lines' ends (`_without_line_end_space`), and offsets point
    into it.
    """
    spoken: list[tuple[int, int]] = []  # spans of comments and docstrings
    docstrings: list[int] = []  # where each docstring starts
    defined: dict[int, str] = {}  # line start offset -> the name its defining keyword introduces
    expect_name = False
    for start, token, value in lexer.get_tokens_unprocessed(text):
        if token in Comment or token in String.Doc:
            spoken.append((start, start + len(value)))
            if token in String.Doc:
                docstrings.append(start)
        elif token in Keyword and value in _DEFINING:
            expect_name = True
        elif expect_name and token in Name:
            line = text.rfind("\n", 0, start) + 1
            if not text[line].isspace():
                defined.setdefault(line, value)
            expect_name = False
        elif not value.isspace():
            expect_name = False
    code_only = _without_spans(text, spoken)  # the text with its comments blanked out
    blocks: list[tuple[int, int, bool, str | None]] = []  # start, end, prose?, the name it defines
    for begin, end in _blocks(text):
        lines = (m.start() for m in _LINE_START.finditer(text, begin, end))
        blocks.append(
            (begin, end, not code_only[begin:end].strip(), next(filter(None, map(defined.get, lines)), None))
        )
    sections: list[Section] = []
    heading: tuple[str, ...] = ()
    for index, (begin, end, prose, defines) in enumerate(blocks):
        # Comments right before a definition are about it; a module's docstring is about the module.
        comment = prose and bisect_left(docstrings, begin) == bisect_left(docstrings, end)
        following = blocks[index + 1][3] if comment and index + 1 < len(blocks) else None
        if name := defines or following:
            heading = (name,)
        elif not text[begin].isspace():
            heading = ()  # an unindented block that defines nothing: the definition above has ended
        meta = {BLOCK_KEY: str(index)} | ({} if prose else {BLOCK_CODE_KEY: "code"})
        if section := _section(text, begin, end, heading, meta):
            sections.append(section)
    return text, sections


_LINE_START = re.compile(r"^", re.MULTILINE)


def _without_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with each of the sorted, disjoint `spans` replaced by as many spaces (offsets unchanged)."""
    parts: list[str] = []
    cut = 0
    for start, end in spans:
        parts.extend((text[cut:start], " " * (end - start)))
        cut = end
    parts.append(text[cut:])
    return "".join(parts)


_BLANK_LINES = re.compile(r"\n(?:[^\S\n]*\n)+")


def _blocks(text: str) -> Iterator[tuple[int, int]]:
    """`(start, end)` of each run of lines between blank lines."""
    cut = 0
    for blank in _BLANK_LINES.finditer(text):
        if text[cut : blank.start()].strip():
            yield cut, blank.start()
        cut = blank.end()
    if text[cut:].strip():
        yield cut, len(text)


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


# --- Word and PowerPoint ---------------------------------------------------------------------------

# Encrypted Office files and the old binary formats (.doc, .ppt) are OLE compound files, not ZIP packages.
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")
# python-docx and python-pptx name the stream in their "wrong kind of file" message.
_STREAM_REPR = re.compile(r"^file '<[^']*>' is ")
_DOCX_HEADING = re.compile(r"Heading ([1-9])")
# A paragraph's runs wherever Word nests them (tracked insertions, fields, content controls, hyperlinks), but
# not the paragraphs of a text box anchored in it. Deleted text (w:delText) is not run text.
_DOCX_RUNS = ".//w:r[not(ancestor::w:txbxContent)]"
_PPTX_FURNITURE = frozenset(
    {PP_PLACEHOLDER.DATE, PP_PLACEHOLDER.FOOTER, PP_PLACEHOLDER.HEADER, PP_PLACEHOLDER.SLIDE_NUMBER}
)


def _load_office(
    data: bytes, name: str, what: str, render: Callable[[io.BytesIO], tuple[str, list[Section]]]
) -> tuple[str, list[Section]]:
    """Run `render` on an Office Open XML package; every way that fails becomes one `DocumentError` line.

    Parts are parsed lazily, so damage can surface while rendering, not only while opening.
    """
    if data.startswith(_OLE_MAGIC):
        if _ENCRYPTED_PACKAGE in data:
            raise DocumentError(name, f"the {what} is password-protected")
        raise DocumentError(name, f"an old binary Office file, not a {what}; save it in the current format")
    try:
        return render(io.BytesIO(data))
    except Exception as exc:  # zipfile, lxml and the libraries raise many unrelated types on damaged input
        raise DocumentError(name, f"cannot parse {what}: {_STREAM_REPR.sub('', _one_line(exc))}") from None


def _table_row(cells: list[str]) -> str:
    """One table row as one line, cells joined by " | " (empty cells kept so columns stay aligned)."""
    return " | ".join(cells) if any(cells) else ""


def _load_docx(data: bytes, name: str) -> tuple[str, list[Section]]:
    """Body paragraphs and tables in document order, as text; Word headings open sections as in Markdown.

    Rendering: blocks are separated by a blank line; a list item is a `- item` line (indented two spaces per
    nesting level) and consecutive items have no blank line between them; a table is one line per row with
    its cells joined by " | " (merged cells once). Paragraphs styled Title or Heading 1–9 (the names Word
    stores whatever its UI language) build the heading path, Title above Heading 1; heading lines are in the
    text but in no section. Tracked insertions are text, deletions are not. Headers, footers, footnotes,
    comments, text boxes and body-level content controls (a table of contents) are not read.
    """
    return _load_office(data, name, "Word document", lambda stream: _docx_source(docx.Document(stream)))


def _docx_source(document: DocxDocument) -> tuple[str, list[Section]]:
    out = _TextBuilder()
    spans: list[tuple[int, int, tuple[str, ...]]] = []
    stack: list[tuple[int, str]] = []
    body_start = 0
    in_list = False
    for block in document.iter_inner_content():
        if isinstance(block, DocxTable):
            out.request(_PARAGRAPH)
            for row in block.rows:
                out.request(_NEWLINE)
                out.add(_table_row(_docx_row_cells(row)), preformatted=True)
            in_list = False
            continue
        text = _docx_text(block).strip()
        if not text:
            continue
        level = _docx_heading_level(block)
        depth = None if level is not None else _docx_list_depth(block)
        out.request(_NEWLINE if in_list and depth is not None else _PARAGRAPH)
        in_list = depth is not None
        if level is None:
            out.add(text if depth is None else f"{'  ' * depth}- {text}", preformatted=True)
            continue
        spans.append((body_start, out.length, _path(stack)))
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, _collapse(text)))
        out.add(text, preformatted=True)
        body_start = out.length
    text = "".join(out.parts)
    spans.append((body_start, len(text), _path(stack)))
    found = (_section(text, start, end, heading) for start, end, heading in spans)
    return text, [s for s in found if s]


def _docx_text(paragraph: Paragraph) -> str:
    """Unlike python-docx's `Paragraph.text` (top-level runs and links only), keeps tracked insertions."""
    return "".join(run.text for run in paragraph._p.xpath(_DOCX_RUNS))


def _docx_heading_level(paragraph: Paragraph) -> int | None:
    name = paragraph.style.name if paragraph.style is not None else None
    if name == "Title":
        return 0
    match = _DOCX_HEADING.fullmatch(name or "")
    return int(match[1]) if match else None


def _docx_list_depth(paragraph: Paragraph) -> int | None:
    """The nesting level (0-based) of a bulleted or numbered paragraph, else None.

    Numbering is set on the paragraph or inherited from its style chain ("List Bullet"); numId 0 switches
    it off.
    """
    elements = [paragraph._p]
    style = paragraph.style
    while style is not None:
        elements.append(style.element)
        style = style.base_style
    for element in elements:
        if element.xpath("./w:pPr/w:numPr"):
            if element.xpath("string(./w:pPr/w:numPr/w:numId/@w:val)") == "0":
                return None
            level: str = element.xpath("string(./w:pPr/w:numPr/w:ilvl/@w:val)")
            return int(level) if level.isdigit() else 0
    return None


def _docx_row_cells(row: DocxRow) -> list[str]:
    """python-docx repeats a merged cell for every grid column it spans; it is read once."""
    cells: list[str] = []
    previous = None
    for cell in row.cells:
        if cell._tc is not previous:
            cells.append(_collapse(" ".join(_docx_text(p) for p in cell.paragraphs)))
        previous = cell._tc
    return cells


def _load_pptx(data: bytes, name: str) -> tuple[str, list[Section]]:
    """One section per slide in slide order, `meta={"slide": "N"}` (1-based); speaker notes are another.

    A slide's heading is its title placeholder (else "Slide N"); the notes section has the same heading and
    `meta={"slide": "N", "part": "notes"}`. Rendering per slide: the title line, then the text of every other
    shape in PowerPoint's reading order (the order of its selection pane; grouped shapes in place), each shape
    a block after a blank line, its paragraphs on their own lines, a table one line per row with cells joined
    by " | "; then the notes after a blank line. Slides are separated by a blank line. Date, footer and slide
    number placeholders, pictures, charts and SmartArt are not read. The title line is in no section, except
    on a slide with no other text, body or notes (a section divider): there it is the slide's text.
    """
    return _load_office(
        data, name, "PowerPoint presentation", lambda stream: _pptx_source(pptx.Presentation(stream))
    )


def _pptx_source(presentation: PptxPresentation) -> tuple[str, list[Section]]:
    out = _TextBuilder()
    spans: list[tuple[int, int, tuple[str, ...], dict[str, str]]] = []
    for number, slide in enumerate(presentation.slides, start=1):
        title_shape = slide.shapes.title
        title = _collapse(title_shape.text_frame.text) if title_shape is not None else ""
        heading = (title or f"Slide {number}",)
        out.request(_PARAGRAPH)
        title_start = out.length
        out.add(title, preformatted=True)
        start = out.length
        skip = title_shape.shape_id if title_shape is not None else None
        for block in _pptx_blocks(slide.shapes, skip):
            out.request(_PARAGRAPH)
            out.add(block, preformatted=True)
        frame = slide.notes_slide.notes_text_frame if slide.has_notes_slide else None
        notes = _pptx_frame_text(frame) if frame is not None else ""
        if out.length == start and not notes:
            start = title_start
        spans.append((start, out.length, heading, {"slide": str(number)}))
        if notes:
            out.request(_PARAGRAPH)
            start = out.length
            out.add(notes, preformatted=True)
            spans.append((start, out.length, heading, {"slide": str(number), "part": "notes"}))
    text = "".join(out.parts)
    found = (_section(text, start, end, heading, meta) for start, end, heading, meta in spans)
    return text, [s for s in found if s]


def _pptx_blocks(shapes: Iterable[BaseShape], skip: int | None) -> Iterator[str]:
    """The text of each shape in shape-tree order, groups walked in place."""
    for shape in shapes:
        if shape.shape_id == skip or (
            shape.is_placeholder and shape.placeholder_format.type in _PPTX_FURNITURE
        ):
            continue
        if isinstance(shape, GroupShape):
            yield from _pptx_blocks(shape.shapes, skip)
        elif isinstance(shape, GraphicFrame) and shape.has_table:
            rows = (
                _table_row([_collapse(c.text) for c in row.cells if not c.is_spanned])
                for row in shape.table.rows
            )
            yield "\n".join(r for r in rows if r)
        elif isinstance(shape, Shape) and shape.has_text_frame:
            yield _pptx_frame_text(shape.text_frame)


def _pptx_frame_text(frame: TextFrame) -> str:
    """Paragraphs on their own lines; a line break inside one (python-pptx's "\\v") is a newline too."""
    lines = (p.text.replace("\v", "\n").strip() for p in frame.paragraphs)
    return "\n".join(line for line in lines if line)


_LOADERS: dict[str, tuple[str, _Loader]] = {
    ".md": ("markdown", _load_markdown),
    ".markdown": ("markdown", _load_markdown),
    ".txt": ("text", _load_text),
    ".html": ("html", _load_html),
    ".htm": ("html", _load_html),
    ".pdf": ("pdf", _load_pdf),
    ".vtt": ("vtt", _load_vtt),
    ".srt": ("srt", _load_srt),
    ".ipynb": ("notebook", _load_notebook),
    ".docx": ("docx", _load_docx),
    ".pptx": ("pptx", _load_pptx),
} | {suffix: ("code", _code_loader(language)) for suffix, language in _CODE_LEXERS.items()}

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_LOADERS)
CODE_SUFFIXES: frozenset[str] = frozenset(_CODE_LEXERS)
"""Source files, loaded as blocks of code and of comments (`_code_sections`)."""
