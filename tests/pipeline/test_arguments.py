"""`Pipeline.search` checks its arguments as `POST /v1/search` and `leanrank search` do (`leanrank.checks`),
the language filter's `mixed` keeps chunks containing both languages, and a closed pipeline says it is closed.

A course of three one-paragraph files (Russian, English, both), so the real encoder embeds it in a moment."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import leanrank
from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.errors import InputError, StoreError
from leanrank.pipeline import Pipeline
from tests.conftest import make_pipeline

FILES = {
    "ru.md": "# Циклы\n\nЦикл повторяет тело, пока условие истинно. Каждый проход называется итерацией.\n",
    "en.md": "# Loops\n\nA loop repeats its body while the condition holds. Each pass is an iteration.\n",
    "both.md": "# Списки\n\nСписок хранит элементы по порядку: a list keeps its items in order.\n",
}
QUERY = "цикл loop list список"


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny")
    for name, text in FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def pipe(
    tmp_path_factory: pytest.TempPathFactory, course: Path, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> Iterator[Pipeline]:
    with make_pipeline(tmp_path_factory.mktemp("data"), e5, bm25) as p:
        report = p.ingest(str(course), "tiny")  # a str path, as `Path` is
        assert (report.count("added"), report.root) == (3, course.resolve())
        yield p


def sources(pipe: Pipeline, **kwargs: Any) -> dict[str, tuple[str, ...]]:
    return {h.chunk.source: h.chunk.langs for h in pipe.search(QUERY, "tiny", k=10, **kwargs).hits}


def test_the_course_has_one_chunk_of_each_language(pipe: Pipeline) -> None:
    assert sources(pipe) == {"ru.md": ("ru",), "en.md": ("en",), "both.md": ("ru", "en")}


@pytest.mark.parametrize(
    ("langs", "expected"),
    [
        (["mixed"], {"both.md"}),  # matched nothing: no chunk's `langs` holds "mixed"
        (["ru"], {"ru.md", "both.md"}),
        (["en"], {"en.md", "both.md"}),
        (["ru", "mixed"], {"ru.md", "both.md"}),  # a chunk containing both contains ru
        (["en", "ru"], {"ru.md", "en.md", "both.md"}),
        ((), {"ru.md", "en.md", "both.md"}),
    ],
)
def test_the_language_filter_keeps_chunks_containing_a_language_and_mixed_both(
    pipe: Pipeline, langs: list[str], expected: set[str]
) -> None:
    assert set(sources(pipe, langs=langs)) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": -1}, "k must be a whole number from 1 to 1000, not -1"),  # returned 7 hits (a negative slice)
        ({"k": 0}, "k must be a whole number from 1 to 1000, not 0"),  # meant rerank.top_k
        ({"k": 1001}, "k must be a whole number from 1 to 1000, not 1001"),
        ({"k": 2.5}, "k must be a whole number from 1 to 1000, not 2.5"),  # TypeError
        ({"k": True}, "k must be a whole number from 1 to 1000, not True"),
        ({"depth": -5}, "depth must be a whole number from 1 to 1000, not -5"),  # the engine's OverflowError
        ({"depth": 0}, "depth must be a whole number from 1 to 1000, not 0"),  # meant retrieve.depth
        ({"langs": "ru"}, "langs must be a list of strings, not 'ru'"),  # filtered on 'r' and 'u'
        ({"langs": ["de"]}, "unknown language 'de'; use ru, en or mixed"),
        ({"langs": ["ru", "en", "mixed", "ru"]}, "langs has 4 items, the limit is 3"),
        ({"heading_prefix": "Циклы"}, "heading_prefix must be a list of strings, not 'Циклы'"),
        ({"heading_prefix": ["Циклы", 1]}, "heading_prefix[1] must be a string, not 1"),
        ({"heading_prefix": ["x"] * 17}, "heading_prefix has 17 items, the limit is 16"),
        (
            {"min_relevance": float("nan")},
            "min_relevance must be a number from 0 to 1, not nan",
        ),  # dropped all
        ({"min_relevance": 1.5}, "min_relevance must be a number from 0 to 1, not 1.5"),
        ({"min_relevance": -0.2}, "min_relevance must be a number from 0 to 1, not -0.2"),
        ({"judge": "no"}, "judge must be True, False or None, not 'no'"),  # truthy: ran the judge
    ],
)
def test_arguments_the_service_refuses_are_input_errors(
    pipe: Pipeline, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError) as caught:
        pipe.search(QUERY, "tiny", **kwargs)
    assert str(caught.value) == message


def test_the_bounds_themselves_are_accepted(pipe: Pipeline) -> None:
    assert len(pipe.search(QUERY, "tiny", k=1, depth=1).hits) == 1
    assert len(pipe.search(QUERY, "tiny", k=1000, depth=1000).hits) == 3  # the whole course
    assert len(pipe.search(QUERY, "tiny", langs=("ru", "en", "mixed"), heading_prefix=["циклы"]).hits) == 1


@pytest.mark.parametrize(
    ("query", "course_id", "message"),
    [
        # A JSON "\ud800" escape; a byte of the command line that is not UTF-8 (Python reads it as U+DCFF).
        (
            "loop \ud800",
            "tiny",
            "the query holds a lone UTF-16 surrogate (U+D800 at character 5), which is not text",
        ),
        (
            "loop \udcff",
            "tiny",
            "the query holds a lone UTF-16 surrogate (U+DCFF at character 5), which is not text",
        ),
        (
            "loop",
            "tiny\udcff",
            "the course id holds a lone UTF-16 surrogate (U+DCFF at character 4), which is not text",
        ),
        (b"loop", "tiny", "the query must be a string, not bytes"),
    ],
)
def test_text_that_is_not_utf8_is_an_input_error_not_the_encoders(
    pipe: Pipeline, query: Any, course_id: str, message: str
) -> None:
    """The encoder raised `UnicodeEncodeError` (the engine a `StoreError` for the course)."""
    with pytest.raises(InputError) as caught:
        pipe.search(query, course_id)
    assert str(caught.value) == message
    with pytest.raises(InputError, match=r"^heading_prefix\[0\] holds a lone UTF-16 surrogate \(U\+DCFF at"):
        pipe.search("loop", "tiny", heading_prefix=["Ц\udcff"])


def test_a_reused_request_id_is_the_exported_conflict_error(pipe: Pipeline) -> None:
    pipe.search(QUERY, "tiny", request_id="args-once")
    with pytest.raises(leanrank.RequestConflictError, match="'args-once' was already billed"):
        pipe.search(QUERY, "tiny", request_id="args-once")


def test_every_method_of_a_closed_pipeline_says_it_is_closed(
    tmp_path: Path, course: Path, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> None:
    with make_pipeline(tmp_path, e5, bm25) as pipe:
        pipe.ingest(course / "en.md", "tiny")
    pipe.close()  # again: nothing happens
    calls: dict[str, Callable[[], object]] = {
        "search": lambda: pipe.search("loop", "tiny"),
        "ingest": lambda: pipe.ingest(course, "tiny"),
        "ingest_plan": lambda: pipe.ingest_plan(course),
        "courses": pipe.courses,
        "delete_course": lambda: pipe.delete_course("tiny"),
        "check_query": lambda: pipe.check_query("loop"),
        "check_course": lambda: pipe.check_course("tiny"),
        "heading_path": lambda: pipe.heading_path("tiny", ["loops"]),
        "calibrations": pipe.calibrations,
    }
    for name, call in calls.items():
        with pytest.raises(StoreError) as caught:
            call()
        assert str(caught.value) == "the pipeline is closed: open a new Pipeline to go on", name
    with make_pipeline(tmp_path, e5, bm25) as again:  # the index itself was closed cleanly
        assert again.courses() == {"tiny": 1}
