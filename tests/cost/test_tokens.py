from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from leanrank.cost.tokens import (
    CYRILLIC_CHARS_PER_TOKEN,
    LATIN_CHARS_PER_TOKEN,
    CharEstimate,
    counter_for,
    family_of,
)
from leanrank.encode.e5 import xlmr_token_count
from leanrank.errors import ConfigError

XQUAD = Path(__file__).resolve().parents[3] / "shared" / "data" / "xquad"


@pytest.mark.parametrize(
    ("backend", "family"),
    [
        ("local:BAAI/bge-reranker-v2-m3", "xlmr"),
        ("tei:http://gpu:8080", "estimate"),  # TEI reports its own tokens; its name holds no model
        ("infinity:BAAI/bge-reranker-v2-m3", "xlmr"),
        ("local:/models/BGE-M3", "xlmr"),
        ("jina:jina-reranker-v2-base-multilingual?timeout_s=5", "xlmr"),
        ("siliconflow:Qwen/Qwen3-Reranker-0.6B", "qwen"),
        ("deepinfra:Qwen/Qwen3-Reranker-8B", "qwen"),
        ("fireworks:accounts/fireworks/models/qwen3-reranker-8b", "qwen"),
        ("mixedbread:mxbai-rerank-large-v2", "qwen"),
        ("cohere:rerank-v3.5", "estimate"),
        ("voyage:rerank-2.5-lite", "estimate"),
        ("local:/models/my-finetune?family=qwen3", "qwen"),
        ("local:/models/my-finetune?family=xlmr", "xlmr"),
        ("local:/models/my-finetune", "estimate"),
        ("local:BAAI/bge-reranker-v2-gemma", "estimate"),  # not XLM-R despite the bge-reranker name
    ],
)
def test_family_table(backend: str, family: str) -> None:
    assert family_of(backend) == family


def test_chains_are_refused() -> None:
    with pytest.raises(ConfigError, match="fallback chain"):
        counter_for("cohere:rerank-v3.5 | local:x")


def test_counters_say_where_counts_come_from() -> None:
    xlmr = counter_for("local:BAAI/bge-reranker-v2-m3")
    qwen = counter_for("siliconflow:Qwen/Qwen3-Reranker-0.6B")
    guess = counter_for("cohere:rerank-v3.5")
    assert (xlmr.name, xlmr.source) == ("xlm-roberta", "tokenizer")
    assert (qwen.name, qwen.source) == ("qwen2.5-bpe", "tokenizer")
    assert (guess.name, guess.source) == ("chars-estimate", "estimate")


def test_tokenizer_counts_are_pinned() -> None:
    xlmr = counter_for("local:BAAI/bge-reranker-v2-m3")
    qwen = counter_for("siliconflow:Qwen/Qwen3-Reranker-0.6B")
    # XLM-R: ▁Привет , ▁мир ! ; Qwen spends one more token on the Cyrillic word.
    assert [xlmr.count(t) for t in ("Привет, мир!", "Hello world", "")] == [5, 2, 0]
    assert [qwen.count(t) for t in ("Привет, мир!", "Hello world", "")] == [6, 2, 0]
    # Special-token text in a document is plain text to a billing API, not one control token.
    assert qwen.count("<|endoftext|>") == 7


def test_char_estimate_by_hand() -> None:
    est = CharEstimate()
    assert est.count("Привет, мир!") == round(12 / CYRILLIC_CHARS_PER_TOKEN)
    assert est.count("Hello world") == round(11 / LATIN_CHARS_PER_TOKEN)
    # 15 Cyrillic and 6 Latin letters in 26 characters: the rates mix by letter share.
    mixed = "Что такое список в Python?"
    share = 15 / 21
    assert est.count(mixed) == round(
        26 * (share / CYRILLIC_CHARS_PER_TOKEN + (1 - share) / LATIN_CHARS_PER_TOKEN)
    )
    assert est.count("   ") == 0
    assert est.count("!") == 1


def _xquad_texts(lang: str, half: int) -> list[str]:
    articles = json.loads((XQUAD / f"xquad.{lang}.json").read_text(encoding="utf-8"))["data"]
    return [
        text
        for i, article in enumerate(articles)
        if i % 2 == half
        for paragraph in article["paragraphs"]
        for text in (paragraph["context"], *(qa["question"] for qa in paragraph["qas"]))
    ]


@pytest.mark.skipif(not XQUAD.is_dir(), reason=f"calibration data not found at {XQUAD}")
@pytest.mark.parametrize(("lang", "ratio"), [("ru", CYRILLIC_CHARS_PER_TOKEN), ("en", LATIN_CHARS_PER_TOKEN)])
def test_calibration(lang: str, ratio: float) -> None:
    """The constants are chars/token on the even articles; on the odd ones the total is within 3 %."""
    tune = _xquad_texts(lang, 0)
    tune_ratio = sum(map(len, tune)) / sum(map(xlmr_token_count, tune))
    assert tune_ratio == pytest.approx(ratio, abs=0.01)

    check = _xquad_texts(lang, 1)
    exact = [xlmr_token_count(t) for t in check]
    estimate = [CharEstimate().count(t) for t in check]
    assert sum(estimate) / sum(exact) == pytest.approx(1.0, abs=0.03)
    assert statistics.median(abs(e - x) / x for e, x in zip(estimate, exact, strict=True)) < 0.15


def test_xlmr_counts_of_passages_are_remembered_and_equal_the_model_s() -> None:
    """A passage counted twice is counted by the model once; a text over `REMEMBERED_CHARS` is not kept, nor
    is a word (windowing a long document counts each of its words)."""
    from leanrank.encode import e5

    passage = "Градиентный бустинг строит ансамбль деревьев решений последовательно, one tree at a time."
    long_text = "слово " * (e5.REMEMBERED_CHARS.stop // 6 + 1)
    exact = e5.E5SmallEncoder().token_count
    before = e5._remembered_count.cache_info()
    assert [xlmr_token_count(passage), xlmr_token_count(passage)] == [exact(passage)] * 2
    assert xlmr_token_count(long_text) == exact(long_text)
    assert [xlmr_token_count("бустинг")] * 2 == [exact("бустинг")] * 2
    after = e5._remembered_count.cache_info()
    assert (after.hits - before.hits, after.misses - before.misses) == (1, 1)
