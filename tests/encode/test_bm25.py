"""leanrank's BM25 analysis: normalisation, per-word language, code terms, blobs, and the weight formula."""

from __future__ import annotations

import pytest
import qdrant_edge

from leanrank.encode.bm25 import Bm25Encoder, code_term_id, normalise


def ids(bm25: Bm25Encoder, text: str) -> set[int]:
    return set(bm25.embed_query(text).indices)


def test_normalise_folds_yo_stress_soft_hyphens_and_compatibility_forms() -> None:
    assert normalise("Объём ёлки на\u00adсос объ\u0301ём ﬁt") == "Объем елки насос объем fit"
    assert normalise("zero\u200bwidth\ufeff") == "zerowidth"


@pytest.mark.parametrize("variant", ["объем", "ОБЪЁМ", "объ\u0301ём", "Объём"])
def test_yo_and_stress_marks_match_both_ways(bm25: Bm25Encoder, variant: str) -> None:
    assert ids(bm25, variant) == ids(bm25, "объём") == {1906514434}
    document = bm25.embed_documents([f"Считаем {variant} выборки."])[0]
    assert 1906514434 in document.indices


def test_each_word_is_stemmed_in_its_own_language(bm25: Bm25Encoder) -> None:
    """A chunk that is mostly English (code) still stems its Russian words as Russian."""
    english_only = qdrant_edge.Bm25(qdrant_edge.Bm25Config(language="english"))
    russian_only = qdrant_edge.Bm25(qdrant_edge.Bm25Config(language="russian"))
    stem = russian_only.embed_query("модель").indices[0]
    assert english_only.embed_query("модели").indices != [stem]  # one label per chunk got this wrong
    doc = bm25.embed_documents(["Метод fit обучает модель: model.fit(X, y)"])[0]
    assert ids(bm25, "модели") == {stem} <= set(doc.indices)
    assert ids(bm25, "fitting") <= set(doc.indices)  # the English word, English stemmer


def test_operators_are_terms(bm25: Bm25Encoder) -> None:
    assert code_term_id("===") == 778679666
    assert code_term_id("$@") == 795569116
    assert ids(bm25, "===") == {778679666}
    assert ids(bm25, "$@") == {795569116}
    doc = set(bm25.embed_documents(['if (a === b) { echo "$@"; }'])[0].indices)
    assert {778679666, 795569116} <= doc
    assert code_term_id("==") not in doc  # `===` is one operator, not `==` plus `=`
    assert ids(bm25, "a -> b != c") == {code_term_id("->"), code_term_id("!="), *ids(bm25, "a b c")}


def test_identifiers_are_kept_whole_and_split(bm25: Bm25Encoder) -> None:
    assert code_term_id("pd.crosstab") == 379656969
    crosstab = ids(bm25, "pd.crosstab")
    assert crosstab == {379656969, *ids(bm25, "pd"), *ids(bm25, "crosstab")}
    assert ids(bm25, "n_estimators") == {code_term_id("n_estimators"), *ids(bm25, "n estimators")}
    camel = ids(bm25, "KNeighborsClassifier")
    assert ids(bm25, "neighbors classifier") <= camel
    assert ids(bm25, "kneighborsclassifier") <= camel


def test_base64_and_data_uris_are_never_terms(bm25: Bm25Encoder) -> None:
    blob = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    assert ids(bm25, f"data:image/png;base64,{blob} hello") == ids(bm25, "hello")
    assert ids(bm25, f'<img src="{blob}"> hello') == ids(bm25, "img src hello")
    assert ids(bm25, "sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08") == ids(
        bm25, "sha"
    )


def test_document_weights_are_okapi_term_frequency(bm25: Bm25Encoder) -> None:
    """tf·(k+1) / (tf + k·(1 − b + b·|d|/avg_len)) with k = 1.2, b = 0.75, avg_len = 64, |d| = 4."""
    doc = bm25.embed_documents(["running running fast dog"])[0]
    norm = 1.2 * (1 - 0.75 + 0.75 * 4 / 64)
    weights = dict(zip(doc.indices, doc.values, strict=True))
    assert weights[bm25.embed_query("running").indices[0]] == pytest.approx(2 * 2.2 / (2 + norm))
    assert weights[bm25.embed_query("dog").indices[0]] == pytest.approx(2.2 / (1 + norm))
    assert bm25.embed_query("the running of the dogs").values == (1.0, 1.0)  # stopwords dropped
