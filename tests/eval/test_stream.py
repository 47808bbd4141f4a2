"""The question stream: seeded, Zipf-skewed, kinds that follow from history, rewordings that keep words."""

from __future__ import annotations

import math
import random
import re
from collections import Counter

import pytest

from leanrank.eval.datasets import Dataset, Doc, Query
from leanrank.eval.stream import StreamQuery, question_stream, reword, stream_stats, topic_of
from tests.eval.conftest import CORPUS, QUERIES

# One question per passage topic of CORPUS in both languages (XQuAD-style `ru:ID` / `en:ID` pairs).
QUESTIONS = {
    "loops": ("Что делает цикл for?", "What does a for loop do?"),
    "while": ("Когда останавливается цикл while?", "When does a while loop stop?"),
    "func": ("Как объявить функцию?", "How do I declare a function?"),
    "dict": ("Что хранит словарь?", "What does a dictionary store?"),
    "exc": ("Как перехватить исключение?", "How do I catch an exception?"),
    "class": ("Что описывает класс?", "What does a class describe?"),
    "file": ("Как открыть файл?", "How do I open a file?"),
    "test": ("Как назвать тест на pytest?", "How should a pytest test be named?"),
    "mod": ("Как подключить модуль?", "How do I bring in a module?"),
    "exam": ("Сколько длится экзамен?", "How long is the exam?"),
    "hw": ("Когда сдавать домашнее задание?", "When is the homework due?"),
    "cat": ("Где спит кошка?", "Where does the cat sleep?"),
}
UNJUDGED = "en:cat"  # so topic `cat` can only be asked in Russian


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    docs = tuple(Doc(k, t, "py", f"{k}.md", "ru" if k.endswith("-ru") else "en") for k, t in CORPUS.items())
    queries: list[Query] = []
    qrels: dict[str, dict[str, int]] = {}
    for topic, (ru, en) in QUESTIONS.items():
        for lang, text in (("ru", ru), ("en", en)):
            qid = f"{lang}:{topic}"
            queries.append(Query(qid, text, lang, "py"))  # type: ignore[arg-type]
            if qid != UNJUDGED:
                qrels[qid] = {f"{topic}-{lang}": 1}
    return Dataset("bilingual", docs, tuple(queries), qrels)


def words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.casefold()))


def harmonic(n: int, s: float) -> float:
    return sum(1 / k**s for k in range(1, n + 1))


def test_topics_pair_translations() -> None:
    assert topic_of("ru:56be85543aeaaa14008c9063") == topic_of("en:56be85543aeaaa14008c9063")
    assert topic_of("q1") == "q1"
    assert topic_of("de:1") == "de:1"


def test_the_same_seed_gives_the_same_stream(dataset: Dataset) -> None:
    assert question_stream(dataset, 300, seed=7) == question_stream(dataset, 300, seed=7)
    assert question_stream(dataset, 300, seed=7) != question_stream(dataset, 300, seed=8)


def test_kinds_follow_from_what_was_asked_before(dataset: Dataset) -> None:
    stream = question_stream(dataset, 2_000, reword_share=0.4, translate_share=0.3, seed=1)
    texts: dict[str, set[str]] = {}
    langs: dict[str, set[str]] = {}
    for q in stream:
        if q.topic not in texts:
            assert q.kind == "first"
        elif q.text in texts[q.topic]:
            assert q.kind == "repeat"
        elif q.lang not in langs[q.topic]:
            assert q.kind == "translated"
        else:
            assert q.kind == "reworded"
        texts.setdefault(q.topic, set()).add(q.text)
        langs.setdefault(q.topic, set()).add(q.lang)
    assert set(Counter(q.kind for q in stream)) == {"first", "repeat", "reworded", "translated"}


def test_without_rewording_or_translation_every_ask_is_a_first_or_a_repeat(dataset: Dataset) -> None:
    stream = question_stream(dataset, 500, reword_share=0, translate_share=0, seed=3)
    text = {q.qid: q.text for q in dataset.queries}
    assert {q.kind for q in stream} == {"first", "repeat"}
    assert all(q.text == text[q.qid] for q in stream)
    assert all(len({q.lang for q in stream if q.topic == t}) == 1 for t in {q.topic for q in stream})
    stats = stream_stats(stream)
    assert stats["first"] == stats["topics"] == len({q.topic for q in stream})
    assert stats["repeat"] == 500 - stats["first"]
    assert stats["exact_repeat_share"] == stats["repeat"] / 500
    assert stats["translated"] == stats["reworded"] == 0


def test_every_ask_is_judged_in_the_language_it_is_asked(dataset: Dataset) -> None:
    stream = question_stream(dataset, 2_000, reword_share=0.5, translate_share=0.5, seed=2)
    asked = {q.qid: q for q in dataset.queries}
    for q in stream:
        assert q.qid in dataset.qrels
        source = asked[q.qid]
        assert (q.lang, q.course, q.topic) == (source.lang, source.course, topic_of(q.qid))
        assert words(source.text) <= words(q.text)
    assert UNJUDGED not in {q.qid for q in stream}
    assert {q.lang for q in stream if q.topic == "cat"} <= {"ru"}
    translated = [q for q in stream if q.kind == "translated"]
    assert translated
    assert all(q.topic != "cat" for q in translated)


def test_no_translation_share_means_no_translations(dataset: Dataset) -> None:
    stream = question_stream(dataset, 2_000, reword_share=0.5, translate_share=0, seed=4)
    assert stream_stats(stream)["translated"] == 0
    assert all(len({q.lang for q in stream if q.topic == t}) == 1 for t in {q.topic for q in stream})


def test_popularity_follows_zipf(dataset: Dataset) -> None:
    """The top topic's share is 1/H(N, s) and the second's 1/(2^s H); binomial σ = √(p(1−p)/n).

    Five standard deviations is a false alarm once in ~1.7 million seeds; the stream is seeded, so the
    test is deterministic anyway and the tolerance says how far from the law a correct sampler may land.
    """
    n, s = 20_000, 1.1
    stream = question_stream(dataset, n, zipf_s=s, seed=5)
    shares = sorted(Counter(q.topic for q in stream).values(), reverse=True)
    topics = len({topic_of(qid) for qid in dataset.qrels})
    assert topics == len(QUESTIONS)
    for rank in (1, 2):
        p = 1 / (rank**s * harmonic(topics, s))
        sigma = math.sqrt(p * (1 - p) / n)
        assert shares[rank - 1] / n == pytest.approx(p, abs=5 * sigma)
    tops = {
        Counter(q.topic for q in question_stream(dataset, 200, seed=seed)).most_common(1)[0][0]
        for seed in range(8)
    }
    assert len(tops) > 1  # the popular topic is drawn from a seeded permutation, not the file order


def reworded_pairs() -> list[tuple[str, str]]:
    texts = [*(t for pair in QUESTIONS.values() for t in pair), *(t for t, _ in QUERIES.values())]
    texts += ["x", "", "123", "Что такое ЁЛКА?!", "what is a loop", "  spaced  out  "]
    return [(t, "ru" if re.search("[а-яё]", t, re.IGNORECASE) else "en") for t in texts]


@pytest.mark.parametrize(("text", "lang"), reworded_pairs())
def test_reword_keeps_every_word_and_always_changes_the_text(text: str, lang: str) -> None:
    rng = random.Random(0)
    for _ in range(200):
        out = reword(text, lang, rng)  # type: ignore[arg-type]
        assert out != text
        assert words(text) <= words(out)


def test_reword_produces_the_usual_student_variants() -> None:
    outs = {reword("Как открыть файл?", "ru", random.Random(seed)) for seed in range(200)}
    assert "как открыть файл?" in outs
    assert "Как открыть файл" in outs
    assert any(o.startswith("Подскажите, пожалуйста, как") for o in outs)
    assert any("  " in o for o in outs)


def test_stats_count_exact_repeats_per_course() -> None:
    def ask(text: str, course: str, kind: str) -> StreamQuery:
        return StreamQuery("q", text, "en", course, kind, "q")  # type: ignore[arg-type]

    stream = [
        ask("a", "c1", "first"),
        ask("a", "c2", "first"),
        ask("a", "c1", "repeat"),
        ask("A", "c1", "reworded"),
    ]
    stats = stream_stats(stream)
    assert stats["exact_repeat_share"] == 1 / 4
    assert (stats["first"], stats["repeat"], stats["reworded"], stats["requests"]) == (2, 1, 1, 4)
    assert stream_stats([])["exact_repeat_share"] == 0.0
