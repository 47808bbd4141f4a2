"""Dataset loaders on tiny files written here, and the XQuAD conversion on the real shared copy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leanrank.encode.e5 import E5SmallEncoder
from leanrank.eval.datasets import (
    NTREX_LINES_PER_SOURCE,
    Chunking,
    Dataset,
    DatasetError,
    DatasetSpec,
    Doc,
    Query,
    add_distractors,
    load_dataset,
    ntrex_docs,
    parse_spec,
)
from leanrank.ingest.chunker import ChunkerConfig
from tests.eval.conftest import CORPUS, QUERIES, words, write_jsonl

SMALL = ChunkerConfig(max_tokens=8, min_tokens=0)


def squad_file(path: Path) -> Path:
    """Four articles of two paragraphs; the first context starts with a BOM that answer offsets count."""
    articles = []
    for a in range(4):
        paragraphs = []
        for p in range(2):
            context = (
                f"Article {a} paragraph {p} opens here. It has a second sentence too. "
                f"The answer is number {a}{p} in this one. Then the paragraph ends."
            )
            if a == p == 0:
                context = "\ufeff" + context
            start = context.index(f"number {a}{p}")
            qa = {"id": f"a{a}p{p}", "question": f"Which number is in {a} {p}?"}
            qa["answers"] = [{"answer_start": start, "text": f"number {a}{p}"}]
            paragraphs.append({"context": context, "qas": [qa]})
        articles.append({"title": f"Topic {a}", "paragraphs": paragraphs})
    path.write_text(json.dumps({"version": "1.1", "data": articles}), encoding="utf-8")
    return path


def test_spec_strings_parse_in_one_place() -> None:
    assert parse_spec("xquad:ru+en+ntrex:test") == DatasetSpec("xquad", "ru+en", ntrex=True, split="test")
    assert parse_spec("xquad:cross") == DatasetSpec("xquad", "cross")
    assert parse_spec("squad:/d/dev.json:tune") == DatasetSpec("squad", "/d/dev.json", split="tune")
    assert parse_spec("beir:/d/scifact") == DatasetSpec("beir", "/d/scifact")
    assert parse_spec("own:course@q.jsonl") == DatasetSpec("own", "course", queries="q.jsonl")
    for bad in ("xquad:de", "xquad", "beir:/d:test", "own:course", "msmarco:x", "xquad:ru+ntrex+en"):
        with pytest.raises(DatasetError, match="unknown dataset"):
            parse_spec(bad)


def test_beir_loads_documents_queries_and_judgements(beir_dir: Path) -> None:
    data = load_dataset(f"beir:{beir_dir}", count_tokens=words)
    assert len(data.docs) == len(CORPUS)
    assert len(data.queries) == len(QUERIES)
    assert data.qrels["q1"] == {"exc-ru": 1}
    assert {q.lang for q in data.queries} == {"ru", "en"}
    assert data.courses == ["beir-tiny-beir"]


@pytest.mark.parametrize(
    ("target", "content", "where"),
    [
        ("corpus.jsonl", '{"_id": "a", "text": "ok"}\nnot json\n', "corpus.jsonl:2: not valid JSON"),
        (
            "corpus.jsonl",
            '{"_id": "a", "text": "ok"}\n{"_id": "b"}\n',
            'corpus.jsonl:2: "text" must be a non-empty string or integer',
        ),
        ("queries.jsonl", '["a list"]\n', "queries.jsonl:1: expected a JSON object"),
        ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\texc-ru\tone\n", "test.tsv:2: expected query-id"),
        ("qrels/test.tsv", "q1\tnope\t1\n", "test.tsv:1: unknown document 'nope'"),
    ],
)
def test_malformed_beir_files_name_the_file_and_line(
    beir_dir: Path, target: str, content: str, where: str
) -> None:
    (beir_dir / target).write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=where):
        load_dataset(f"beir:{beir_dir}", count_tokens=words)


def test_squad_relevant_chunk_holds_the_answer_and_the_split_is_by_article(tmp_path: Path) -> None:
    path = squad_file(tmp_path / "dev.json")
    data = load_dataset(f"squad:{path}", count_tokens=words, chunker=SMALL)
    docs = {d.doc_id: d for d in data.docs}
    assert len(docs) > 8  # paragraphs are cut into several chunks
    for q in data.queries:
        answer = data.answers[q.qid]
        assert data.qrels[q.qid] == {answer.doc_id: 1}
        assert docs[answer.doc_id].text[answer.start :].startswith(answer.text), q.qid
    assert [q.split for q in data.queries] == ["tune"] * 4 + ["test"] * 4
    test = load_dataset(f"squad:{path}:test", count_tokens=words, chunker=SMALL)
    assert [q.qid for q in test.queries] == ["a2p0", "a2p1", "a3p0", "a3p1"]
    assert test.docs == data.docs  # a split selects queries, never the pool


def test_malformed_squad_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [\n  {"title": "x",}\n]}', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad\.json:2: not valid JSON"):
        load_dataset(f"squad:{bad}", count_tokens=words)
    bad.write_text('{"data": [{"title": "x", "paragraphs": [{"context": "c"}]}]}', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad\.json: article 0: expected"):
        load_dataset(f"squad:{bad}", count_tokens=words)


def test_own_course_folder_with_queries_and_relevant_ids(tmp_path: Path) -> None:
    course = tmp_path / "course"
    course.mkdir()
    (course / "loops.md").write_text("# Loops\n\nA for loop repeats code.\n", encoding="utf-8")
    (course / "photo.png").write_bytes(b"\x89PNG")
    queries = write_jsonl(
        tmp_path / "q.jsonl",
        [
            {"id": "1", "query": "What repeats code?", "relevant": ["loops.md#0"]},
            {"id": "2", "query": "Loops?"},
        ],
    )
    data = load_dataset(f"own:{course}@{queries}", count_tokens=words)
    assert [d.doc_id for d in data.docs] == ["loops.md#0"]
    assert data.qrels == {"1": {"loops.md#0": 1}}  # query 2 is unlabelled: silver mode scores it
    assert len(data.notes) == 2
    assert "photo.png" in data.notes[0]
    assert data.notes[1] == (
        "1 question(s) with no gold_files + answer or relevant ids, scored only against a --silver "
        "reference: 2"
    )
    write_jsonl(queries, [{"id": "1", "query": "x"}, {"id": "2", "query": "y", "relevant": ["loops.md#7"]}])
    with pytest.raises(DatasetError, match=r"q\.jsonl:2: unknown doc id 'loops\.md#7'"):
        load_dataset(f"own:{course}@{queries}", count_tokens=words)


def own_course(tmp_path: Path) -> Path:
    course = tmp_path / "course"
    course.mkdir()
    (course / "loops.md").write_text("# Loops\n\nA for loop repeats code.\n", encoding="utf-8")
    (course / "dicts.md").write_text("# Dicts\n\nA dict maps keys to values.\n", encoding="utf-8")
    return course


def test_own_questions_judged_by_gold_file_and_answer(tmp_path: Path) -> None:
    course = own_course(tmp_path)
    rows = [
        {"id": "a", "query": "What repeats code?", "gold_files": ["loops.md"], "answer": "FOR  loop"},
        {"id": "b", "query": "Что хранит словарь?", "gold_files": ["dicts.md"], "answer": ["maps keys"]}
        | {"lang": "ru", "cross_lingual": True},
        {"id": "c", "query": "Where is the exam?", "gold_files": ["dicts.md"], "answer": "exam room"},
    ]
    queries = write_jsonl(tmp_path / "q.jsonl", rows)
    data = load_dataset(f"own:{course}@{queries}", count_tokens=words, max_query_chars=19)
    assert data.qrels == {"a": {"loops.md#0": 1}, "b": {"dicts.md#0": 1}}
    assert [(q.qid, q.lang, q.group) for q in data.queries] == [
        ("a", "en", "en"),
        ("b", "ru", "cross-lingual"),
        ("c", "en", "en"),
    ]
    assert data.notes == ("1 question(s) left unjudged, no chunk holds their answer whole: c",)


GOOD = {"id": "q1", "query": "What repeats code?", "gold_files": ["loops.md"], "answer": "for loop"}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [GOOD, {"id": "q2", "query": "Loops?", "gold_file": ["loops.md"], "answer": "for"}],
            'q.jsonl:2: unknown key "gold_file"; a question has id, query, lang, cross_lingual and '
            "gold_files \\+ answer or relevant",
        ),
        (
            [{"id": "q2", "query": "Loops?", "answer": "for"}],
            'q.jsonl:1: "gold_files" must be a non-empty list',
        ),
        ([GOOD | {"cross_lingual": "yes"}], 'q.jsonl:1: "cross_lingual" must be true or false'),
        ([GOOD | {"id": True}], 'q.jsonl:1: "id" must be a non-empty string$'),
        ([GOOD | {"id": 1}], 'q.jsonl:1: "id" must be a non-empty string$'),
        ([GOOD | {"query": "\u200b "}], 'q.jsonl:1: "query" must be a non-empty string$'),
        ([GOOD, GOOD | {"id": "q2"}, GOOD], "q.jsonl:3: id 'q1' is already used on .*q.jsonl:1$"),
        (
            [GOOD | {"relevant": ["loops.md#0"]}],
            'q.jsonl:1: judge by "gold_files" \\+ "answer" or by "relevant", not both',
        ),
        (
            [GOOD | {"query": "x" * 21}],
            "q.jsonl:1: the query has 21 characters, the limit is 20 \\(LEANRANK_MAX_QUERY_CHARS\\)",
        ),
    ],
)
def test_own_questions_refuse_what_would_be_dropped_or_misread(
    tmp_path: Path, rows: list[dict[str, object]], message: str
) -> None:
    """A misspelt key would leave its question unjudged without a word; a string `cross_lingual` would
    read as false; an id `true` would be written to runs as `True`: each is the file's line, refused."""
    queries = write_jsonl(tmp_path / "q.jsonl", rows)
    with pytest.raises(DatasetError, match=message):
        load_dataset(f"own:{own_course(tmp_path)}@{queries}", count_tokens=words, max_query_chars=20)


def test_a_lone_surrogate_escape_is_refused_at_its_line(tmp_path: Path) -> None:
    queries = tmp_path / "q.jsonl"
    line = '{"id": "q1", "query": "for \\ud800 loop", "gold_files": ["loops.md"], "answer": "for"}'
    queries.write_text(json.dumps(GOOD) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DatasetError) as caught:
        load_dataset(f"own:{own_course(tmp_path)}@{queries}", count_tokens=words)
    assert str(caught.value) == (
        f"{queries}:2: query holds a lone UTF-16 surrogate (U+D800 at character 4), which is not text"
    )


def test_distractors_join_every_course(tmp_path: Path) -> None:
    docs = (Doc("a", "alpha", "c1", "a.md", "en"), Doc("b", "beta", "c2", "b.md", "en"))
    data = Dataset("two", docs, (Query("q", "alpha?", "en", "c1"),), {"q": {"a": 1}})
    (tmp_path / "news.txt").write_text("One sentence here. Another one there.", encoding="utf-8")
    more = add_distractors(data, [tmp_path], count_tokens=words)
    extra = more.docs[2:]
    assert {d.course for d in extra} == {"c1", "c2"}
    assert all(d.source == "distractors/news.txt" for d in extra)


def test_dataset_refuses_inconsistent_judgements() -> None:
    doc = Doc("a", "alpha", "c", "a.md", "en")
    with pytest.raises(DatasetError, match="unknown ids"):
        Dataset("x", (doc,), (Query("q", "alpha?", "en", "c"),), {"q": {"zzz": 1}})
    with pytest.raises(DatasetError, match="whitespace"):
        Dataset("x", (Doc("a b", "alpha", "c", "a.md", "en"),), ())
    with pytest.raises(DatasetError, match="no docs"):
        Dataset("x", (doc,), (Query("q", "alpha?", "en", "other"),))
    with pytest.raises(DatasetError, match=r"^x: query id 'q' is repeated$"):
        Dataset(
            "x",
            (doc,),
            (Query("p", "a?", "en", "c"), Query("q", "a?", "en", "c"), Query("q", "b", "en", "c")),
        )
    with pytest.raises(DatasetError, match=r"^x: document id 'a' is repeated$"):
        Dataset("x", (doc, doc), ())


# --- the real XQuAD copy --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xquad_ru(shared_data: Path, e5: E5SmallEncoder) -> Dataset:
    return load_dataset("xquad:ru", count_tokens=e5.token_count, data_root=shared_data)


def test_xquad_relevant_chunk_contains_the_answer_start(xquad_ru: Dataset) -> None:
    docs = {d.doc_id: d for d in xquad_ru.docs}
    assert len(xquad_ru.queries) == 816
    for q in xquad_ru.queries:
        answer = xquad_ru.answers[q.qid]
        text = docs[answer.doc_id].text
        assert 0 <= answer.start < len(text)
        # The answer may run past a chunk boundary; what the chunk holds is the answer's beginning.
        held = text[answer.start : answer.start + len(answer.text)]
        assert answer.text.startswith(held), q.qid
    first = xquad_ru.queries[0]
    assert first.qid == "ru:56beb4343aeaaa14008c925b"
    assert first.lang == "ru"
    answer = xquad_ru.answers[first.qid]
    assert answer.text == "308"
    assert docs[answer.doc_id].text.startswith("Защита Пэнтерс")


def test_xquad_split_is_deterministic_and_by_article(
    xquad_ru: Dataset, shared_data: Path, e5: E5SmallEncoder
) -> None:
    test = xquad_ru.split("test")
    tune = xquad_ru.split("tune")
    assert len(test.queries) + len(tune.queries) == len(xquad_ru.queries)
    articles = {
        name: {d.answers[q.qid].doc_id.split("#")[0] for q in d.queries}
        for name, d in (("t", tune), ("T", test))
    }
    assert not articles["t"] & articles["T"]
    assert len(articles["t"]) == len(articles["T"]) == 16
    again = load_dataset("xquad:ru:test", count_tokens=e5.token_count, data_root=shared_data)
    assert [q.qid for q in again.queries] == [q.qid for q in test.queries]
    assert again.limit(25).queries == test.limit(25).queries
    assert len(test.limit(25).queries) == 25


def test_xquad_cross_asks_each_language_over_the_other_pool(shared_data: Path, e5: E5SmallEncoder) -> None:
    data = load_dataset("xquad:cross", count_tokens=e5.token_count, data_root=shared_data)
    assert data.courses == ["xquad-en", "xquad-ru"]
    for q in data.queries[:: len(data.queries) // 20]:
        pool = "en" if q.lang == "ru" else "ru"
        assert q.course == f"xquad-{pool}"
        assert all(doc.startswith(f"{pool}/") for doc in data.qrels[q.qid])


def test_ntrex_blocks_become_sources(shared_data: Path, tmp_path: Path) -> None:
    lines = (shared_data / "ntrex" / "newstest2019-src.eng.txt").read_text(encoding="utf-8").splitlines()
    sample = tmp_path / "news.txt"
    sample.write_text("\n".join(lines[: 2 * NTREX_LINES_PER_SOURCE + 5]), encoding="utf-8")
    docs = ntrex_docs(sample, "en", Chunking(words, ChunkerConfig(max_tokens=60)), "pool")
    assert sorted({d.source for d in docs}) == ["ntrex/en/000", "ntrex/en/001", "ntrex/en/002"]
    assert all(d.course == "pool" and d.lang == "en" for d in docs)
