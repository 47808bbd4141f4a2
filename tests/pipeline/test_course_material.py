"""End to end on course material as it really is: notebooks, code, mixed Russian/English, cross-lingual
questions — the real engine, the real encoder, the sample course as the rest of the course."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.encode.lexicon import Lexicon
from leanrank.pipeline import Pipeline
from tests.conftest import SAMPLE_COURSE, make_pipeline
from tests.ingest.conftest import notebook_json

BOOSTING = [
    (
        "markdown",
        "# Topic 10. Gradient Boosting\n\n## History\n\n"
        "In 1999, Jerome Friedman came up with a generalisation of boosting: gradient boosting machines. "
        "Each new tree is fitted to the residuals of the ensemble built so far.",
    ),
    (
        "code",
        "from sklearn.ensemble import GradientBoostingClassifier\n"
        "model = GradientBoostingClassifier(n_estimators=200, learning_rate=0.05)\n"
        "model.fit(X_train, y_train)",
    ),
    (
        "markdown",
        "## Loss functions\n\nFor regression the Huber loss is robust to outliers; "
        "for classification the logistic loss is used.",
    ),
]
EQUALITY = (
    "# Сравнение в JavaScript\n\n"
    "Оператор строгого равенства не приводит типы, а нестрогий приводит их перед сравнением.\n\n"
    "```js\nconsole.log(1 === '1'); // false\nconsole.log(1 == '1');  // true\n```\n\n"
    "# Переменные окружения в bash\n\n"
    'Все аргументы скрипта доступны как "$@", их число — как $#.\n'
)

BUBBLE = '''"""Урок 4. Сортировка пузырьком: соседние элементы меняются местами, пока список не упорядочен."""

import random


def bubble_sort(items: list[int]) -> list[int]:
    for end in range(len(items) - 1, 0, -1):
        for i in range(end):
            if items[i] > items[i + 1]:
                items[i], items[i + 1] = items[i + 1], items[i]
    return items


if __name__ == "__main__":
    print(bubble_sort(random.sample(range(100), 10)))
'''


@pytest.fixture(scope="module")
def pipe(
    tmp_path_factory: pytest.TempPathFactory, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> Iterator[Pipeline]:
    course = tmp_path_factory.mktemp("course")
    shutil.copytree(SAMPLE_COURSE, course, dirs_exist_ok=True)
    (course / "topic10_gradient_boosting.ipynb").write_text(notebook_json(BOOSTING), encoding="utf-8")
    (course / "09-js-and-bash.ru.md").write_text(EQUALITY, encoding="utf-8")
    (course / "examples" / "node_modules" / "lodash").mkdir(parents=True)  # a tool's folder: not indexed
    (course / "examples" / "node_modules" / "lodash" / "sort.js").write_text("function sort(a) {}\n")
    (course / "examples" / "bubble_sort.py").write_text(BUBBLE, encoding="utf-8")
    # The translated list is opt-in (see the README's course benchmark); on here, as a course would set it.
    with make_pipeline(tmp_path_factory.mktemp("data"), e5, bm25, retrieve={"translate_weight": 0.5}) as p:
        report = p.ingest(course, "mixed")
        assert report.count("skipped") == 0
        yield p


def test_a_russian_question_finds_the_english_only_notebook(pipe: Pipeline) -> None:
    hits = pipe.search("кто и когда придумал градиентный бустинг", "mixed", k=3).hits
    assert hits[0].chunk.source == "topic10_gradient_boosting.ipynb"
    assert "Jerome Friedman" in hits[0].chunk.text


def test_an_english_question_finds_the_russian_only_lesson(pipe: Pipeline) -> None:
    hits = pipe.search("strict equality operator in JavaScript", "mixed", k=3).hits
    assert hits[0].chunk.source == "09-js-and-bash.ru.md"


@pytest.mark.parametrize(("query", "needle"), [("===", "1 === '1'"), ('"$@"', '"$@"')])
def test_code_operators_are_searchable(pipe: Pipeline, query: str, needle: str) -> None:
    hits = pipe.search(query, "mixed", k=3).hits
    assert needle in hits[0].chunk.text


def test_a_code_cell_shares_its_chunk_with_the_prose_before_it(pipe: Pipeline) -> None:
    hits = pipe.search("GradientBoostingClassifier n_estimators", "mixed", k=3).hits
    chunk = hits[0].chunk
    assert "Jerome Friedman" in chunk.text
    assert "GradientBoostingClassifier(n_estimators=200" in chunk.text
    assert chunk.context == "topic10 gradient boosting > Topic 10. Gradient Boosting > History"


def test_a_code_example_is_found_by_what_its_docstring_says_and_by_its_names(pipe: Pipeline) -> None:
    """A source file's code is not cut from its definition's name, and its docstring is prose: a Russian
    question finds the Python example, and so does the function's name."""
    for query in ("как работает сортировка пузырьком", "bubble_sort"):
        top = pipe.search(query, "mixed", k=3).hits[0].chunk
        assert top.source == "examples/bubble_sort.py"
    hits = pipe.search("bubble_sort", "mixed", k=10).hits
    code = next(h.chunk for h in hits if "def bubble_sort" in h.chunk.text)
    assert "return items" in code.text  # the whole function, one chunk
    assert code.context.startswith("bubble sort > bubble_sort")
    assert "Сортировка пузырьком" in code.context  # the docstring: the prose before the code
    assert not any("node_modules" in source for source in pipe.store.sources("mixed"))


def test_language_filter_keeps_chunks_that_contain_the_language(pipe: Pipeline) -> None:
    """The JS chunk is mostly code (Latin letters) but holds a Russian sentence: `ru` keeps it."""
    hits = pipe.search("строгое равенство", "mixed", langs=["ru"], k=10).hits
    js = [h for h in hits if "===" in h.chunk.text]
    assert js
    assert set(js[0].chunk.langs) == {"ru", "en"}
    assert all("ru" in h.chunk.langs for h in hits)
    english = pipe.search("gradient boosting", "mixed", langs=["en"], k=10).hits
    assert all("en" in h.chunk.langs for h in english)


def test_ingest_builds_and_saves_the_course_lexicon(pipe: Pipeline) -> None:
    """Built from the indexed chunks after the ingest, so the first search does not wait for it."""
    saved = Lexicon.load(pipe.settings.data_dir / "lexicon" / "mixed.npz")
    assert saved is not None
    assert {"boosting", "loss"} <= set(saved.sides["en"].words)
    assert {"цикл", "переменные"} <= set(saved.sides["ru"].words)
    assert pipe.retriever.lexicons is not None
    assert pipe.retriever.lexicons.get("mixed").fingerprint == saved.fingerprint


def test_a_russian_query_is_translated_into_the_english_only_notebooks_terms(pipe: Pipeline) -> None:
    """«бустинг» has no Russian passage to match; its translation finds the English notebook in BM25."""
    lexicons = pipe.retriever.lexicons
    assert lexicons is not None
    s = pipe.settings.retrieve
    found = lexicons.get("mixed").translate(
        "функция потерь бустинга",
        lexicons.sparse,
        pipe.dense,
        threshold=s.translate_threshold,
        per_word=s.translate_per_word,
        margin=s.translate_margin,
    )
    assert set(pipe.sparse.embed_query("boosting loss").indices) <= set(found.indices)
    hits = pipe.search("функция потерь бустинга", "mixed", k=3).hits
    assert hits[0].chunk.source == "topic10_gradient_boosting.ipynb"
    assert "Huber loss" in hits[0].chunk.text
