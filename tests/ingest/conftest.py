"""Ingest fixtures: files are written at test time, PDFs drawn with fpdf2."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from fpdf import FPDF

from leanrank.types import SourceText

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
MakePdf = Callable[..., Path]


def notebook_json(cells: list[tuple[str, str]], *, outputs: bool = True) -> str:
    """A real nbformat-4 notebook of (cell type, source) pairs; code cells get an image output and a
    stream output, which the loader must leave out."""
    nb = nbformat.v4.new_notebook()
    for kind, source in cells:
        if kind == "code":
            cell = nbformat.v4.new_code_cell(source)
            if outputs:
                cell.outputs = [
                    nbformat.v4.new_output("stream", name="stdout", text="printed output\n"),
                    nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgoAAAANSUhEUg=="}),
                ]
        elif kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(source)
        else:
            cell = nbformat.v4.new_raw_cell(source)
        nb.cells.append(cell)
    return str(nbformat.writes(nb))


def words(text: str) -> int:
    """A transparent token counter: budgets in tests are easy to reason about in words."""
    return len(text.split())


def assert_sections_located(source: SourceText) -> None:
    """The loader invariant: each section is the slice of the plain text its offset points at."""
    assert source.sections
    previous_end = 0
    for s in source.sections:
        assert source.text[s.start : s.start + len(s.text)] == s.text
        assert s.text
        assert s.text == s.text.strip()
        assert s.start >= previous_end
        previous_end = s.start + len(s.text)


@pytest.fixture
def make_pdf(tmp_path: Path) -> MakePdf:
    """Write a PDF with one page per string ("" = a page with a drawing and no text layer)."""

    def make(pages: list[str], name: str = "doc.pdf", *, cyrillic: bool = False) -> Path:
        pdf = FPDF()
        if cyrillic:
            if not DEJAVU.exists():
                pytest.skip("DejaVu Sans is needed to draw Cyrillic")
            pdf.add_font("DejaVu", fname=DEJAVU)
            pdf.set_font("DejaVu", size=12)
        else:
            pdf.set_font("Helvetica", size=12)
        for text in pages:
            pdf.add_page()
            if text:
                pdf.multi_cell(0, 8, text, align="L")
            else:
                pdf.rect(20, 20, 80, 40)
        path = tmp_path / name
        pdf.output(str(path))
        return path

    return make
