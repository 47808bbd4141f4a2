"""Word and PowerPoint loaders on files built here with python-docx/python-pptx as Office writes them."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import docx
import pptx
import pytest
from docx.oxml import parse_xml
from docx.oxml.ns import nsdecls
from msoffcrypto.format.ooxml import OOXMLFile
from pptx.enum.shapes import PP_PLACEHOLDER
from pptx.slide import Slide
from pptx.util import Inches

from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.errors import DocumentError, EmptyDocumentError
from leanrank.ingest.loaders import load_file
from leanrank.types import SourceText
from tests.conftest import make_pipeline
from tests.ingest.conftest import assert_sections_located

MB = 1_000_000
Builder = Callable[[], bytes]


def load(path: Path) -> SourceText:
    source = load_file(path, max_bytes=MB)
    assert_sections_located(source)
    return source


def saved(document: docx.document.Document | pptx.presentation.Presentation) -> bytes:
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


# --- Word ------------------------------------------------------------------------------------------


def lesson_docx() -> bytes:
    """A preamble, Title > Heading 1 > Heading 2, bullets (nested, switched off), a table, tracked changes."""
    doc = docx.Document()
    doc.add_paragraph("Черновик v2")
    doc.add_heading("Основы Python", level=0)
    doc.add_paragraph("Курс для начинающих.")
    doc.add_heading("Циклы", level=1)
    doc.add_paragraph("Цикл while повторяет блок, пока условие истинно.")
    doc.add_paragraph("for перебирает последовательность", style="List Bullet")
    bullets = doc.styles["List Bullet"].element.xpath("string(./w:pPr/w:numPr/w:numId/@w:val)")
    # Word writes a nested item as the list's numbering at level 1 on the paragraph itself.
    nested = doc.add_paragraph("range(n) даёт числа от 0 до n-1", style="List Bullet")
    num_pr = nested._p.get_or_add_pPr().get_or_add_numPr()
    num_pr.get_or_add_ilvl().val = 1
    num_pr.get_or_add_numId().val = int(bullets)
    doc.add_paragraph("")  # an empty paragraph is layout, not text
    # Switching bullets off on a "List Bullet" paragraph writes numId 0.
    plain = doc.add_paragraph("Без маркера: список закончился.", style="List Bullet")
    plain._p.get_or_add_pPr().get_or_add_numPr().get_or_add_numId().val = 0
    doc.add_heading("Loops in English", level=2)
    broken = doc.add_paragraph("A for loop walks a sequence.")
    broken.add_run().add_break()
    broken.add_run("One item per pass.")
    table = doc.add_table(rows=3, cols=3)
    for row, cells in zip(
        table.rows, [["Оператор", "Meaning", "Пример"], ["==", "", "1 == 1"]], strict=False
    ):
        for cell, text in zip(row.cells, cells, strict=True):
            cell.text = text
    table.cell(2, 0).text = "!="
    table.cell(2, 1).merge(table.cell(2, 2)).text = "not equal"
    doc.add_heading("Функции", level=1)
    doc.add_paragraph("def объявляет функцию.")
    edited = doc.add_paragraph("Правка: ")
    edited._p.extend(parse_xml(f'<w:p {nsdecls("w")} xmlns:v="urn:schemas-microsoft-com:vml">{EDITS}</w:p>'))
    return saved(doc)


# As Word writes them: a tracked insertion and deletion, a field, and a text box anchored in the paragraph.
TRACKED = 'w:author="A" w:date="2026-11-01T00:00:00Z"'
EDITS = (
    f'<w:ins w:id="1" {TRACKED}><w:r><w:t>вставлено</w:t></w:r></w:ins>'
    f'<w:del w:id="2" {TRACKED}><w:r><w:delText>, удалено</w:delText></w:r></w:del>'
    '<w:r><w:t xml:space="preserve">, страница </w:t></w:r>'
    '<w:fldSimple w:instr=" PAGE "><w:r><w:t>7</w:t></w:r></w:fldSimple>'
    "<w:r><w:pict><v:shape><v:textbox><w:txbxContent><w:p><w:r><w:t>в рамке</w:t></w:r></w:p></w:txbxContent>"
    "</v:textbox></v:shape></w:pict></w:r>"
)


DOCX_TEXT = """Черновик v2

Основы Python

Курс для начинающих.

Циклы

Цикл while повторяет блок, пока условие истинно.

- for перебирает последовательность
  - range(n) даёт числа от 0 до n-1

Без маркера: список закончился.

Loops in English

A for loop walks a sequence.
One item per pass.

Оператор | Meaning | Пример
== |  | 1 == 1
!= | not equal

Функции

def объявляет функцию.

Правка: вставлено, страница 7"""


def test_docx_headings_lists_and_tables(tmp_path: Path) -> None:
    path = tmp_path / "lesson.docx"
    path.write_bytes(lesson_docx())
    source = load(path)
    assert source.kind == "docx"
    assert source.text == DOCX_TEXT
    assert [(s.heading, s.text, s.start, s.meta) for s in source.sections] == [
        ((), "Черновик v2", 0, {}),
        (("Основы Python",), "Курс для начинающих.", 28, {}),
        (
            ("Основы Python", "Циклы"),
            "Цикл while повторяет блок, пока условие истинно.\n\n"
            "- for перебирает последовательность\n  - range(n) даёт числа от 0 до n-1\n\n"
            "Без маркера: список закончился.",
            57,
            {},
        ),
        (
            ("Основы Python", "Циклы", "Loops in English"),
            "A for loop walks a sequence.\nOne item per pass.\n\n"
            "Оператор | Meaning | Пример\n== |  | 1 == 1\n!= | not equal",
            231,
            {},
        ),
        (("Основы Python", "Функции"), "def объявляет функцию.\n\nПравка: вставлено, страница 7", 348, {}),
    ]


# --- PowerPoint ------------------------------------------------------------------------------------


def add_textbox(
    shapes: pptx.shapes.shapetree.SlideShapes | pptx.shapes.shapetree.GroupShapes, text: str
) -> None:
    shapes.add_textbox(Inches(1), Inches(1), Inches(4), Inches(1)).text_frame.text = text


def lecture_pptx() -> bytes:
    """A title slide, a busy one (footer, nested groups, a table with a merged row), untitled, notes only."""
    prs = pptx.Presentation()
    title_slide, _, _, _, _, title_only, blank, *_ = prs.slide_layouts

    first = prs.slides.add_slide(title_slide)
    first.shapes.title.text = "Введение в Python"
    first.placeholders[1].text = "Лекция 1 · Lecture 1"
    first.notes_slide.notes_text_frame.text = "Поприветствуйте студентов и спросите, кто уже писал код."

    busy = prs.slides.add_slide(title_only)
    busy.shapes.title.text = "Lists and loops"
    add_footer(busy, "Курс ML · 2026")
    add_textbox(busy.shapes, "Списки хранят элементы по порядку.\nfor x in items:\vprint(x)")
    group = busy.shapes.add_group_shape()
    add_textbox(group.shapes, "Группа: шаг 1")
    add_textbox(group.shapes.add_group_shape().shapes, "Группа: шаг 2")
    table = busy.shapes.add_table(3, 2, Inches(1), Inches(3), Inches(4), Inches(1)).table
    for cell, text in zip(
        [table.cell(0, 0), table.cell(0, 1), table.cell(1, 0), table.cell(1, 1)],
        ["Тип", "Type", "list", "список"],
        strict=True,
    ):
        cell.text = text
    table.cell(2, 0).merge(table.cell(2, 1))
    table.cell(2, 0).text = "Итого: 2 типа"
    busy.notes_slide.notes_text_frame.text = "Mention list comprehensions: [x * 2 for x in items]."

    untitled = prs.slides.add_slide(blank)
    add_textbox(untitled.shapes, "Вопросы?")

    notes_only = prs.slides.add_slide(title_only)
    notes_only.shapes.title.text = "Пустой слайд"
    notes_only.notes_slide.notes_text_frame.text = "Only notes here."
    return saved(prs)


def add_footer(slide: Slide, text: str) -> None:
    """The footer placeholder PowerPoint copies onto each slide when "Footer" is ticked."""
    layout_footer = next(
        p for p in slide.slide_layout.placeholders if p.placeholder_format.type == PP_PLACEHOLDER.FOOTER
    )
    slide.shapes.clone_placeholder(layout_footer)
    footer = next(s for s in slide.placeholders if s.placeholder_format.type == PP_PLACEHOLDER.FOOTER)
    footer.text_frame.text = text


PPTX_TEXT = """Введение в Python

Лекция 1 · Lecture 1

Поприветствуйте студентов и спросите, кто уже писал код.

Lists and loops

Списки хранят элементы по порядку.
for x in items:
print(x)

Группа: шаг 1

Группа: шаг 2

Тип | Type
list | список
Итого: 2 типа

Mention list comprehensions: [x * 2 for x in items].

Вопросы?

Пустой слайд

Only notes here."""


def test_pptx_slides_titles_groups_tables_and_notes(tmp_path: Path) -> None:
    path = tmp_path / "lecture.pptx"
    path.write_bytes(lecture_pptx())
    source = load(path)
    assert source.kind == "pptx"
    assert source.text == PPTX_TEXT
    assert [(s.heading, s.text, s.start, s.meta) for s in source.sections] == [
        (("Введение в Python",), "Лекция 1 · Lecture 1", 19, {"slide": "1"}),
        (
            ("Введение в Python",),
            "Поприветствуйте студентов и спросите, кто уже писал код.",
            41,
            {"slide": "1", "part": "notes"},
        ),
        (
            ("Lists and loops",),
            "Списки хранят элементы по порядку.\nfor x in items:\nprint(x)\n\n"
            "Группа: шаг 1\n\nГруппа: шаг 2\n\n"
            "Тип | Type\nlist | список\nИтого: 2 типа",
            116,
            {"slide": "2"},
        ),
        (
            ("Lists and loops",),
            "Mention list comprehensions: [x * 2 for x in items].",
            247,
            {"slide": "2", "part": "notes"},
        ),
        (("Slide 3",), "Вопросы?", 301, {"slide": "3"}),
        (("Пустой слайд",), "Only notes here.", 325, {"slide": "4", "part": "notes"}),
    ]


def test_a_title_only_slide_is_its_title(tmp_path: Path) -> None:
    """A section divider has no text but its title; the title is then the slide's text, not lost."""
    prs = pptx.Presentation()
    title_only = prs.slide_layouts[5]
    prs.slides.add_slide(title_only).shapes.title.text = "Часть 2. Деревья решений"
    body = prs.slides.add_slide(title_only)
    body.shapes.title.text = "Энтропия"
    add_textbox(body.shapes, "Мера неопределённости.")
    path = tmp_path / "divider.pptx"
    path.write_bytes(saved(prs))
    source = load(path)
    assert source.text == "Часть 2. Деревья решений\n\nЭнтропия\n\nМера неопределённости."
    assert [(s.heading, s.text, s.meta) for s in source.sections] == [
        (("Часть 2. Деревья решений",), "Часть 2. Деревья решений", {"slide": "1"}),
        (("Энтропия",), "Мера неопределённости.", {"slide": "2"}),
    ]


# --- bad files -------------------------------------------------------------------------------------


def encrypted(data: bytes) -> bytes:
    out = io.BytesIO()
    OOXMLFile(io.BytesIO(data)).encrypt("пароль", out)
    return out.getvalue()


def broken_main_part(data: bytes) -> bytes:
    """The same package with its main XML part cut in half: a valid ZIP whose document cannot be parsed."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            body = src.read(item)
            if item.filename in ("word/document.xml", "ppt/slides/slide1.xml"):
                body = body[: len(body) // 2]
            dst.writestr(item, body)
    return out.getvalue()


BUILD = {".docx": lesson_docx, ".pptx": lecture_pptx}
OTHER = {".docx": ".pptx", ".pptx": ".docx"}
WHAT = {".docx": "Word document", ".pptx": "PowerPoint presentation"}
KIND = {".docx": "Word", ".pptx": "PowerPoint"}
MAIN_PART = {
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml",
}


@pytest.mark.parametrize("suffix", [".docx", ".pptx"])
@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda data, _: data[: len(data) // 2], "cannot parse {what}: File is not a zip file"),
        (lambda data, _: b"just text, not a package", "cannot parse {what}: File is not a zip file"),
        (lambda _, other: other, "cannot parse {what}: not a {kind} file, content type is '{other_part}'"),
        (lambda data, _: broken_main_part(data), "cannot parse {what}: "),
        (lambda data, _: encrypted(data), "the {what} is password-protected"),
        (
            lambda data, _: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504),
            "an old binary Office file, not a {what}; save it in the current format",
        ),
    ],
    ids=["truncated", "not-a-zip", "other-office-kind", "broken-xml", "encrypted", "legacy-binary"],
)
def test_bad_office_files_fail_in_one_line(
    tmp_path: Path, suffix: str, damage: Callable[[bytes, bytes], bytes], reason: str
) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(damage(BUILD[suffix](), BUILD[OTHER[suffix]]()))
    with pytest.raises(DocumentError) as info:
        load_file(path, max_bytes=MB)
    expected = reason.format(what=WHAT[suffix], kind=KIND[suffix], other_part=MAIN_PART[OTHER[suffix]])
    assert info.value.reason.startswith(expected)
    assert "\n" not in info.value.reason
    assert "BytesIO" not in info.value.reason


def empty_pptx() -> bytes:
    prs = pptx.Presentation()
    prs.slides.add_slide(prs.slide_layouts[6])  # a blank slide with no shapes
    return saved(prs)


@pytest.mark.parametrize(
    ("name", "build"),
    [("empty.docx", lambda: saved(docx.Document())), ("empty.pptx", empty_pptx)],
)
def test_empty_office_files(tmp_path: Path, name: str, build: Builder) -> None:
    path = tmp_path / name
    path.write_bytes(build())
    with pytest.raises(EmptyDocumentError, match="no text in the file"):
        load_file(path, max_bytes=MB)


# --- end to end ------------------------------------------------------------------------------------


def test_pipeline_ingests_office_files_and_finds_a_speaker_note(
    tmp_path: Path, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> None:
    course = tmp_path / "course"
    course.mkdir()
    (course / "lesson.docx").write_bytes(lesson_docx())
    (course / "lecture.pptx").write_bytes(lecture_pptx())
    (course / "broken.pptx").write_bytes(lecture_pptx()[:1000])
    with make_pipeline(tmp_path / "data", e5, bm25) as p:
        report = p.ingest(course, "office")
        status = {f.source: f.status for f in report.files}
        assert status == {"lesson.docx": "added", "lecture.pptx": "added", "broken.pptx": "skipped"}
        hit = p.search("list comprehensions", "office", k=3).hits[0]
        assert hit.chunk.source == "lecture.pptx"
        assert hit.chunk.text == "Mention list comprehensions: [x * 2 for x in items]."
        assert hit.chunk.heading == ("Lists and loops",)
        assert hit.chunk.meta == {"slide": "2", "part": "notes"}
        assert (hit.chunk.start, hit.chunk.end) == (247, 299)
        ru = p.search("что даёт range(n)", "office", k=3).hits[0]
        assert ru.chunk.source == "lesson.docx"
        assert ru.chunk.heading == ("Основы Python", "Циклы")
