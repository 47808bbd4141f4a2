"""Jupyter notebooks: the loader's text rendering and sections, and how the chunker packs cells and code."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from leanrank.errors import DocumentError
from leanrank.ingest.chunker import ChunkerConfig, chunk_source, file_title
from leanrank.ingest.loaders import load_file
from leanrank.types import SourceText
from tests.ingest.conftest import assert_sections_located, notebook_json, words

CELLS = [
    ("markdown", "# Тема 1. Pandas\n\nБиблиотека pandas читает таблицы."),
    ("code", "import pandas as pd\ndf = pd.read_csv('data.csv')"),
    ("markdown", "   "),
    ("markdown", "## Индексация\n\nМетод `loc` выбирает строки по меткам."),
    ("code", "df.loc[0:5]"),
    ("raw", "Сырая ячейка."),
]


def write(tmp_path: Path, cells: list[tuple[str, str]], name: str = "topic1_pandas.ipynb") -> Path:
    path = tmp_path / name
    path.write_text(notebook_json(cells), encoding="utf-8")
    return path


def test_text_rendering_is_cell_sources_joined_by_blank_lines(tmp_path: Path) -> None:
    source = load_file(write(tmp_path, CELLS), max_bytes=100_000)
    non_blank = [body for _, body in CELLS if body.strip()]
    assert source.text == "\n\n".join(non_blank)
    assert source.kind == "notebook"
    assert "printed output" not in source.text  # outputs are skipped
    assert "iVBOR" not in source.text
    assert_sections_located(source)
    assert [(s.heading, s.meta, s.text) for s in source.sections] == [
        (("Тема 1. Pandas",), {"cell": "0"}, "Библиотека pandas читает таблицы."),
        (
            ("Тема 1. Pandas",),
            {"cell": "1", "cell_type": "code"},
            "import pandas as pd\ndf = pd.read_csv('data.csv')",
        ),
        (("Тема 1. Pandas", "Индексация"), {"cell": "3"}, "Метод `loc` выбирает строки по меткам."),
        (("Тема 1. Pandas", "Индексация"), {"cell": "4", "cell_type": "code"}, "df.loc[0:5]"),
        (("Тема 1. Pandas", "Индексация"), {"cell": "5"}, "Сырая ячейка."),
    ]


def test_list_sources_and_windows_newlines(tmp_path: Path) -> None:
    nb = json.loads(notebook_json([("markdown", "x")]))
    nb["cells"][0]["source"] = ["# Title\r\n", "\r\n", "Body line one.\r\n", "Body line two."]
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    source = load_file(path, max_bytes=100_000)
    assert [(s.heading, s.text) for s in source.sections] == [(("Title",), "Body line one.\nBody line two.")]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"cells": [', "cannot parse notebook: not JSON"),
        ('{"nbformat": 4, "nbformat_minor": 5, "cells": "nope", "metadata": {}}', "no list of cells"),
        ("[1, 2, 3]", "not a Jupyter notebook: top level is not an object$"),
        ('"text"', "not a Jupyter notebook: top level is not an object$"),
        ('{"nbformat": 4, "cells": [[]]}', "not a Jupyter notebook: cell 0 is not an object$"),
        ('{"nbformat": 4, "cells": [{"source": [1]}]}', "the source of cell 0 is not text$"),
        ('{"nbformat": 5, "cells": []}', "unsupported nbformat version 5$"),
    ],
)
def test_broken_notebooks_are_one_line_errors(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "broken.ipynb"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DocumentError, match=reason) as caught:
        load_file(path, max_bytes=100_000)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("markdown_metadata", [{}, None], ids=["no ids", "no metadata"])
def test_cells_without_metadata_or_ids_load_quietly(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], markdown_metadata: dict[str, str] | None
) -> None:
    """Hand-made and converted notebooks often lack both; nbformat refused the second and warned about the
    first (nbformat_minor 5) with a multi-line message naming a site-packages path."""
    markdown: dict[str, object] = {"cell_type": "markdown", "source": "# Title\n\nNo metadata here."}
    if markdown_metadata is not None:
        markdown["metadata"] = markdown_metadata
    nb = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            markdown,
            {"cell_type": "code", "metadata": {}, "source": ["x = 1"], "outputs": []},
        ],
    }
    path = tmp_path / "handmade.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        source = load_file(path, max_bytes=100_000)
    assert [(s.heading, s.text) for s in source.sections] == [
        (("Title",), "No metadata here."),
        (("Title",), "x = 1"),
    ]
    assert capfd.readouterr() == ("", "")


def test_nbformat_3_is_converted_without_warnings(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    nb = {
        "nbformat": 3,
        "nbformat_minor": 0,
        "metadata": {},
        "worksheets": [
            {
                "cells": [
                    {"cell_type": "heading", "level": 1, "source": "Old lesson", "metadata": {}},
                    {
                        "cell_type": "code",
                        "input": "x = 1",
                        "outputs": [],
                        "language": "python",
                        "metadata": {},
                    },
                ]
            }
        ],
    }
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        source = load_file(path, max_bytes=100_000)
    assert [(s.heading, s.text, s.meta) for s in source.sections] == [
        (("Old lesson",), "x = 1", {"cell": "1", "cell_type": "code"})
    ]
    assert capfd.readouterr() == ("", "")


def test_a_notebook_of_empty_cells_is_empty(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="no text"):
        load_file(write(tmp_path, [("markdown", " "), ("code", "")]), max_bytes=100_000)


def chunk(source: SourceText, max_tokens: int) -> list[tuple[str, str]]:
    config = ChunkerConfig(max_tokens=max_tokens, min_tokens=0)
    chunks = chunk_source(source, course="c", file_hash="h", count_tokens=words, config=config)
    for c in chunks:
        assert source.text[c.start : c.end] == c.text
    return [(c.text, c.context) for c in chunks]


def test_cells_under_one_heading_share_chunks_and_code_is_never_cut(tmp_path: Path) -> None:
    source = load_file(write(tmp_path, CELLS), max_bytes=100_000)
    assert chunk(source, 40) == [
        (
            "Библиотека pandas читает таблицы.\n\nimport pandas as pd\ndf = pd.read_csv('data.csv')",
            "topic1 pandas > Тема 1. Pandas",
        ),
        (
            "Метод `loc` выбирает строки по меткам.\n\ndf.loc[0:5]\n\nСырая ячейка.",
            "topic1 pandas > Тема 1. Pandas > Индексация",
        ),
    ]
    # A budget the prose and the code do not fit together: the code cell is a chunk of its own, whole, and
    # its context carries the prose before it, since code alone does not say what it is about.
    assert chunk(source, 8)[:2] == [
        ("Библиотека pandas читает таблицы.", "topic1 pandas > Тема 1. Pandas"),
        (
            "import pandas as pd\ndf = pd.read_csv('data.csv')",
            "topic1 pandas > Тема 1. Pandas\nБиблиотека pandas читает таблицы.",
        ),
    ]


def test_code_over_the_budget_is_cut_at_blank_lines_then_lines(tmp_path: Path) -> None:
    code = "a = 1\nb = 2\n\nc = 3\nd = 4 + c\ne = 5"
    source = load_file(write(tmp_path, [("code", code)]), max_bytes=100_000)
    assert [text for text, _ in chunk(source, 6)] == ["a = 1\nb = 2", "c = 3", "d = 4 + c", "e = 5"]


def test_fenced_code_in_markdown_stays_whole(tmp_path: Path) -> None:
    md = (
        "# JS\n\nStrict equality compares types. It never converts.\n\n"
        "```js\nif (a === b) {\n\n  return true;\n}\n```\n\nLoose equality converts."
    )
    path = tmp_path / "equality.md"
    path.write_text(md, encoding="utf-8")
    texts = [text for text, _ in chunk(load_file(path, max_bytes=10_000), 12)]
    assert "```js\nif (a === b) {\n\n  return true;\n}\n```" in texts


def test_file_title_is_the_name_as_words() -> None:
    assert file_title("jupyter_russian/topic03/topic3_trees_knn.ipynb") == "topic3 trees knn"
    assert file_title("01-variables-and-types.ru.md") == "01 variables and types ru"
