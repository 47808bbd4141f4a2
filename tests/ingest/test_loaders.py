"""Loaders: sections are located exactly in the plain text, structure is kept, bad input fails typed."""

from __future__ import annotations

from pathlib import Path

import charset_normalizer
import pytest

from leanrank.errors import (
    BinaryDocumentError,
    DocumentError,
    EmptyDocumentError,
    EncodingError,
    FileTooLargeError,
    UnsupportedFileTypeError,
)
from leanrank.ingest.loaders import CODE_SUFFIXES, SUPPORTED_SUFFIXES, load_file
from leanrank.types import SourceText
from tests.ingest.conftest import MakePdf, assert_sections_located

MB = 1_000_000


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def load(path: Path) -> SourceText:
    source = load_file(path, max_bytes=MB)
    assert_sections_located(source)
    return source


def headings_and_texts(source: SourceText) -> list[tuple[tuple[str, ...], str]]:
    return [(s.heading, s.text) for s in source.sections]


def test_supported_suffixes() -> None:
    plain_and_media = {".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".vtt", ".srt"}
    code = {".py", ".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".java", ".kt", ".scala", ".c", ".h", ".cc"}
    code |= {
        ".cpp",
        ".hpp",
        ".cs",
        ".go",
        ".rs",
        ".rb",
        ".php",
        ".swift",
        ".sql",
        ".sh",
        ".bash",
        ".r",
        ".jl",
    }
    code |= {".lua", ".hs", ".dart"}
    assert code == CODE_SUFFIXES
    assert plain_and_media | {".ipynb", ".docx", ".pptx"} | code == SUPPORTED_SUFFIXES


# --- Markdown and text -----------------------------------------------------------------------------


MARKDOWN = """Preamble before any heading.

# Intro to **Python**

Python is a language.

```python
# a comment, not a heading
x = 1
```

## Install `pip` from [PyPI](https://pypi.org)
Run the installer.

> # A quoted heading
> stays in the text.

Setext chapter
==============

Chapter text.
### Deep
Deep text.
## Sibling
Sibling text.
"""


def test_markdown_heading_paths_and_bodies(tmp_path: Path) -> None:
    source = load(write(tmp_path / "lesson.md", MARKDOWN))
    assert source.kind == "markdown"
    assert source.text == MARKDOWN
    assert headings_and_texts(source) == [
        ((), "Preamble before any heading."),
        (("Intro to Python",), "Python is a language.\n\n```python\n# a comment, not a heading\nx = 1\n```"),
        (
            ("Intro to Python", "Install pip from PyPI"),
            "Run the installer.\n\n> # A quoted heading\n> stays in the text.",
        ),
        (("Setext chapter",), "Chapter text."),
        (("Setext chapter", "Deep"), "Deep text."),
        (("Setext chapter", "Sibling"), "Sibling text."),
    ]


def test_markdown_front_matter_is_not_a_heading_or_text(tmp_path: Path) -> None:
    text = "---\ntitle: Loops\ntags: [python]\n---\nIntro line.\n\n# Loops\n\nA loop repeats.\n"
    source = load(write(tmp_path / "hugo.md", text))
    assert headings_and_texts(source) == [((), "Intro line."), (("Loops",), "A loop repeats.")]


def test_markdown_crlf_and_bom_are_normalised(tmp_path: Path) -> None:
    path = tmp_path / "win.markdown"
    path.write_bytes(b"\xef\xbb\xbf" + "# Заголовок\r\n\r\nТекст урока.\r\n".encode())
    source = load(path)
    assert source.text == "# Заголовок\n\nТекст урока.\n"
    assert headings_and_texts(source) == [(("Заголовок",), "Текст урока.")]
    # What chunk offsets index, as the docs tell a client to read it; the raw bytes decoded are not it.
    with open(path, encoding="utf-8-sig") as f:
        assert f.read() == source.text
    assert path.read_bytes().decode() != source.text


def test_markdown_with_only_headings_is_empty(tmp_path: Path) -> None:
    with pytest.raises(EmptyDocumentError):
        load_file(write(tmp_path / "toc.md", "# One\n\n## Two\n"), max_bytes=MB)


def test_plain_text_is_one_trimmed_section(tmp_path: Path) -> None:
    source = load(write(tmp_path / "notes.txt", "\n\n  Первая строка.\n\nВторая строка.  \n\n"))
    assert source.kind == "text"
    assert headings_and_texts(source) == [((), "Первая строка.\n\nВторая строка.")]


# --- HTML ------------------------------------------------------------------------------------------

HTML = """<!DOCTYPE html><html><head><title>Page title</title><style>p { color: red }</style></head>
<body><nav><a href="/">Home</a> | <a href="/next">Next</a></nav>
<p>Intro   before <b>headings</b>.</p>
<h1>Loops &amp; <em>conditions</em></h1>
<p>A <code>for</code> loop
repeats.</p><script>var hidden = "script text";</script>
<h2>While</h2><ul><li>first</li><li>second</li></ul>
<pre>while x:
    x -= 1</pre>
<h3>Break</h3><table><tr><td>a</td><td>b</td></tr></table>
<h2>Else</h2><p>Runs when no break happened.</p>
</body></html>"""


@pytest.mark.parametrize("suffix", [".html", ".htm"])
def test_html_visible_text_and_heading_paths(tmp_path: Path, suffix: str) -> None:
    source = load(write(tmp_path / f"page{suffix}", HTML))
    assert source.kind == "html"
    for hidden in ("Home", "script text", "color: red", "Page title"):
        assert hidden not in source.text
    assert headings_and_texts(source) == [
        ((), "Intro before headings."),
        (("Loops & conditions",), "A for loop repeats."),
        (("Loops & conditions", "While"), "first\nsecond\n\nwhile x:\n    x -= 1"),
        (("Loops & conditions", "While", "Break"), "a b"),
        (("Loops & conditions", "Else"), "Runs when no break happened."),
    ]
    assert "Loops & conditions" in source.text  # headings are part of the text, not of any section


def test_html_with_only_scripts_is_empty(tmp_path: Path) -> None:
    with pytest.raises(EmptyDocumentError):
        load_file(write(tmp_path / "app.html", "<body><script>x()</script></body>"), max_bytes=MB)


# --- PDF -------------------------------------------------------------------------------------------


def test_pdf_one_section_per_page_with_page_meta(make_pdf: MakePdf) -> None:
    source = load(make_pdf(["First page about loops.", "", "Third page about functions."]))
    assert source.kind == "pdf"
    assert [(s.meta, s.text) for s in source.sections] == [
        ({"page": "1"}, "First page about loops."),
        ({"page": "3"}, "Third page about functions."),
    ]


def test_pdf_cyrillic_text_layer(make_pdf: MakePdf) -> None:
    source = load(make_pdf(["Исключение FileNotFoundError.", "Цикл while."], cyrillic=True))
    assert [s.text for s in source.sections] == ["Исключение FileNotFoundError.", "Цикл while."]


def test_pdf_without_text_layer(make_pdf: MakePdf) -> None:
    with pytest.raises(EmptyDocumentError, match=r"no text layer \(scanned\?\)"):
        load_file(make_pdf(["", ""]), max_bytes=MB)


@pytest.mark.parametrize("data", [b"%PDF-1.4 this is not a pdf", b"", b"\x89PNG\r\n\x1a\n" + bytes(100)])
def test_corrupt_pdf(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(data)
    with pytest.raises(DocumentError, match="cannot parse PDF") as info:
        load_file(path, max_bytes=MB)
    assert "\n" not in str(info.value)


def test_truncated_pdf_is_rejected(make_pdf: MakePdf) -> None:
    path = make_pdf(["Some text on a page."])
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DocumentError):
        load_file(path, max_bytes=MB)


# --- transcripts -----------------------------------------------------------------------------------

VTT = """WEBVTT - lecture

NOTE speaker notes are not text

intro
00:00:01.000 --> 00:00:04.500 align:start
<v Lecturer>Hello &amp; welcome
to the <b>lecture</b>.

00:05.250 --> 01:02:03.004
Second cue.
"""


def test_vtt_cues_with_timestamps(tmp_path: Path) -> None:
    source = load(write(tmp_path / "lecture.vtt", VTT))
    assert source.kind == "vtt"
    assert source.text == "Hello & welcome to the lecture.\nSecond cue."
    assert [(s.text, s.meta) for s in source.sections] == [
        ("Hello & welcome to the lecture.", {"t_start": "00:00:01.000", "t_end": "00:00:04.500"}),
        ("Second cue.", {"t_start": "00:00:05.250", "t_end": "01:02:03.004"}),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "not a transcript at all",
        "WEBVTT\n\n00:00:01.000 --> later\nbad cue\n",
        "WEBVTT\n\n00:00:01.000 --> 00:00:99.000\nbad seconds\n",
    ],
)
def test_malformed_vtt(tmp_path: Path, text: str) -> None:
    with pytest.raises(DocumentError, match="cannot parse WebVTT") as info:
        load_file(write(tmp_path / "bad.vtt", text), max_bytes=MB)
    assert "\n" not in info.value.reason


def test_vtt_without_cues_is_empty(tmp_path: Path) -> None:
    with pytest.raises(EmptyDocumentError):
        load_file(write(tmp_path / "empty.vtt", "WEBVTT\n\nNOTE nothing said yet\n"), max_bytes=MB)


SRT = """1
00:00:00,500 --> 00:00:04,000
{\\an8}<i>Класс</i> — это чертёж.

2
00:00:04,000 --> 01:00:09,250
Объект — экземпляр
класса.
"""


def test_srt_cues_with_timestamps(tmp_path: Path) -> None:
    source = load(write(tmp_path / "lecture.srt", SRT))
    assert source.kind == "srt"
    assert [(s.text, s.meta) for s in source.sections] == [
        ("Класс — это чертёж.", {"t_start": "00:00:00.500", "t_end": "00:00:04.000"}),
        ("Объект — экземпляр класса.", {"t_start": "00:00:04.000", "t_end": "01:00:09.250"}),
    ]


@pytest.mark.parametrize("text", ["just some words", "1\n00:00:01,000 --> soon\ntext\n"])
def test_malformed_srt(tmp_path: Path, text: str) -> None:
    with pytest.raises(DocumentError, match="cannot parse SRT") as info:
        load_file(write(tmp_path / "bad.srt", text), max_bytes=MB)
    assert "\n" not in info.value.reason


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["slides.key", "README", "archive.tar.gz"])
def test_unsupported_type_lists_supported_suffixes(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, "text")
    with pytest.raises(UnsupportedFileTypeError, match=r"supported: .*\.md .*\.vtt"):
        load_file(path, max_bytes=MB)


def test_too_large_is_refused_by_its_size(tmp_path: Path) -> None:
    path = tmp_path / "huge.txt"
    with path.open("wb") as f:
        f.truncate(5 * MB)
    with pytest.raises(FileTooLargeError, match="5000000 bytes"):
        load_file(path, max_bytes=MB)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="cannot read"):
        load_file(tmp_path / "gone.md", max_bytes=MB)


@pytest.mark.parametrize("name", ["a.txt", "a.md", "a.html", "a.vtt", "a.srt"])
@pytest.mark.parametrize("data", [b"\x00\x01\x02PNG\x00" * 50, b"ELF\x01\x02\x03\x04\x05\x06\x07\x08" * 20])
def test_binary_in_text_formats(tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(BinaryDocumentError):
        load_file(path, max_bytes=MB)


@pytest.mark.parametrize("encoding", ["cp1251", "koi8_r"])
def test_legacy_russian_encodings_are_decoded(tmp_path: Path, encoding: str) -> None:
    text = "# Циклы\n\nЦикл for перебирает элементы списка по очереди.\nОператор break прерывает цикл.\n"
    source = load(write(tmp_path / "old.md", text, encoding))
    assert headings_and_texts(source) == [
        (("Циклы",), "Цикл for перебирает элементы списка по очереди.\nОператор break прерывает цикл.")
    ]


class _Guess:
    """A stand-in for charset-normalizer's answer, to test what is done with a confident guess."""

    encoding = "cp1251"
    chaos = 0.0

    def best(self) -> _Guess:
        return self


def test_a_confident_guess_must_be_mostly_letters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(charset_normalizer, "from_bytes", lambda data: _Guess())
    symbols = write(tmp_path / "symbols.txt", "— « » № ± • … ‰ † ‡ — « » Да", "cp1251")
    with pytest.raises(EncodingError):
        load_file(symbols, max_bytes=MB)
    words = write(tmp_path / "words.txt", "Строки — «неизменяемые» объекты.", "cp1251")
    assert load(words).text == "Строки — «неизменяемые» объекты."


@pytest.mark.parametrize(
    "data",
    [
        "Ceci est un café très spécial, naïve façade, œuvre".encode("cp1252"),
        bytes(range(0x80, 0x100)) * 4,
        "Привет мир".encode("cp1251"),  # too short to be sure
    ],
)
def test_undecodable_text(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "odd.txt"
    path.write_bytes(data)
    with pytest.raises(EncodingError, match="save it as UTF-8"):
        load_file(path, max_bytes=MB)


@pytest.mark.parametrize("name", ["a.txt", "a.md", "a.html", "a.vtt", "a.srt"])
@pytest.mark.parametrize("text", ["", "  \n\n\t \n", "\ufeff"])
def test_empty_documents(tmp_path: Path, name: str, text: str) -> None:
    with pytest.raises(EmptyDocumentError):
        load_file(write(tmp_path / name, text), max_bytes=MB)


def test_error_carries_path_and_one_line_reason(tmp_path: Path) -> None:
    path = write(tmp_path / "x.vtt", "WEBVTT\n\n00:00:01.000 --> oops\nline one\nline two\n")
    with pytest.raises(DocumentError) as info:
        load_file(path, max_bytes=MB)
    assert info.value.path == str(path)
    assert str(info.value) == f"{path}: {info.value.reason}"
    assert "\n" not in info.value.reason


def test_html_nested_too_deep_is_refused_before_parsing(tmp_path: Path) -> None:
    """50,000 nested `<div>` took the parser ~10 s (quadratic in depth); counted first, it is one line."""
    n = 50_000
    path = write(tmp_path / "deep.html", "<div>" * n + "x" + "</div>" * n)
    with pytest.raises(DocumentError, match=f"HTML nested {n} elements deep, over the limit of 1000$"):
        load_file(path, max_bytes=MB)


def test_html_depth_counts_only_elements_that_nest(tmp_path: Path) -> None:
    """Unclosed `<li>`, `<p>`, `<td>` and void elements close themselves: 5,000 of each stay shallow."""
    items = "".join(f"<li>item {i}<p>para {i}<br><img src=x>" for i in range(5000))
    path = write(tmp_path / "list.html", f"<html><body><div><ul>{items}</ul></div></body></html>")
    source = load_file(path, max_bytes=MB)
    assert "item 4999" in source.text
    nested = write(tmp_path / "nested.html", "<div>" * 1000 + "deep" + "</div>" * 1000)
    assert load_file(nested, max_bytes=MB).text == "deep"


# --- source code -----------------------------------------------------------------------------------

PYTHON = '''"""Модуль: сортировка."""

import sys

# Сравниваем соседние элементы
def bubble_sort(xs):
    """Sorts in place."""
    for i in range(len(xs)):
        pass

    return xs

@cache
class Foo:
    x = 1

if __name__ == "__main__":
    print(bubble_sort(sys.argv))
'''
JAVASCRIPT = """// Проверка строгого равенства

function isEqual(a, b) {
  return a === b;
}

/* Стрелочная функция:
   короче, чем function. */

const twice = (x) => x * 2;
"""


def code_sections(source: SourceText) -> list[tuple[tuple[str, ...], bool, str]]:
    return [(s.heading, s.meta.get("block_type") == "code", s.text.split("\n")[0]) for s in source.sections]


def test_a_python_file_is_blocks_of_code_and_prose_under_the_name_they_define(tmp_path: Path) -> None:
    source = load(write(tmp_path / "sort.py", PYTHON))
    assert source.kind == "code"
    assert source.text == PYTHON  # the file's own text: offsets are exact
    assert code_sections(source) == [
        ((), False, '"""Модуль: сортировка."""'),  # the module docstring is prose
        ((), True, "import sys"),
        (("bubble_sort",), True, "# Сравниваем соседние элементы"),
        (("bubble_sort",), True, "return xs"),  # indented: still inside the function
        (("Foo",), True, "@cache"),
        ((), True, 'if __name__ == "__main__":'),  # unindented code that defines nothing
    ]
    # A source file's blocks, named apart from notebook cells: `cell` and `cell_type` never appear.
    assert [s.meta for s in source.sections] == [
        {"block": "0"},
        *({"block": str(i), "block_type": "code"} for i in range(1, 6)),
    ]


def test_a_comment_block_before_a_definition_is_prose_under_its_name_and_one_after_is_not(
    tmp_path: Path,
) -> None:
    source = load(write(tmp_path / "eq.js", JAVASCRIPT))
    assert code_sections(source) == [
        (("isEqual",), False, "// Проверка строгого равенства"),
        (("isEqual",), True, "function isEqual(a, b) {"),
        ((), False, "/* Стрелочная функция:"),  # unindented, defines nothing: isEqual has ended
        ((), True, "const twice = (x) => x * 2;"),
    ]


def test_two_blank_lines_end_a_definition_as_one_does(tmp_path: Path) -> None:
    """PEP 8 puts two blank lines between top-level blocks: the constant after the function is not in it."""
    text = "def train(model):\n    return model.fit()\n\n\nTHRESHOLD = 0.5\n"
    source = load(write(tmp_path / "m.py", text))
    assert code_sections(source) == [(("train",), True, "def train(model):"), ((), True, "THRESHOLD = 0.5")]


def test_a_module_docstring_before_a_function_is_not_under_its_name(tmp_path: Path) -> None:
    text = '"""Обучение модели."""\n\ndef train(model):\n    return model.fit()\n\n\n'
    text += "# Шаг\n\ndef step(x):\n    return x\n"
    source = load(write(tmp_path / "m.py", text))
    assert code_sections(source) == [
        ((), False, '"""Обучение модели."""'),  # about the module
        (("train",), True, "def train(model):"),
        (("step",), False, "# Шаг"),  # a comment right before a definition is about it
        (("step",), True, "def step(x):"),
    ]


def test_spaces_at_line_ends_of_code_and_plain_text_are_not_part_of_the_text(tmp_path: Path) -> None:
    code = load(write(tmp_path / "m.py", "def train(model):  \n\t\n    return model.fit()\t\n\n\nX = 1 \n"))
    assert code.text == "def train(model):\n\n    return model.fit()\n\n\nX = 1\n"
    assert [(s.start, s.text, s.heading) for s in code.sections] == [
        (0, "def train(model):", ("train",)),
        (23, "return model.fit()", ("train",)),  # the line of a tab was blank before too
        (44, "X = 1", ()),
    ]
    assert all(code.text[s.start : s.start + len(s.text)] == s.text for s in code.sections)
    plain = load(write(tmp_path / "notes.txt", "Первая строка.   \nВторая строка.\u00a0\n"))
    assert plain.text == "Первая строка.\nВторая строка.\n"
    markdown = load(write(tmp_path / "notes.md", "Первая строка.  \nВторая строка.\n"))
    assert markdown.text == "Первая строка.  \nВторая строка.\n"  # two spaces: a line break in Markdown


def test_code_suffixes_use_their_own_language_not_a_guess(tmp_path: Path) -> None:
    """Pygments would read `.r` as REBOL: R's `#` comment must be prose, not code."""
    source = load(write(tmp_path / "model.r", "# Линейная регрессия\n# по методу МНК\n\nfit <- lm(y ~ x)\n"))
    assert code_sections(source) == [((), False, "# Линейная регрессия"), ((), True, "fit <- lm(y ~ x)")]


@pytest.mark.parametrize(
    ("name", "data", "error"),
    [("empty.py", b"  \n", EmptyDocumentError), ("bin.js", b"\x00\x01", BinaryDocumentError)],
)
def test_bad_code_files_fail_typed(
    tmp_path: Path, name: str, data: bytes, error: type[DocumentError]
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(error):
        load_file(path, max_bytes=MB)
