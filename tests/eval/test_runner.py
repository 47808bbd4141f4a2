"""End to end through the real embedded pipeline (e5 + BM25 + Qdrant Edge) on a 24-document dataset."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr

from leanrank.cost.ledger import Ledger
from leanrank.cost.period import Period
from leanrank.encode.bm25 import Bm25Encoder
from leanrank.encode.e5 import E5SmallEncoder
from leanrank.errors import ConfigError
from leanrank.eval.configs import PRESETS, resolve_configs
from leanrank.eval.datasets import Answer, Dataset, Doc, Query, load_dataset
from leanrank.eval.report import summarise, write_report
from leanrank.eval.runner import EvalResult, answer_survives, doc_chunks, lesson_context, run_eval
from leanrank.index.edge import point_id
from leanrank.retrieve.steering import Steering
from leanrank.settings import CascadeSettings, JudgeSettings, RetrieveSettings, Settings
from tests.eval.conftest import QUERIES, PerMillion, words, write_beir
from tests.rerank.chat_server import CHAT_MODEL, FakeChat
from tests.rerank.servers import API_KEY, MODEL, FakeProvider

NAIVE = {"mode": "dense", "depth": 100, "dedup": False, "max_per_source": 0}
PRICE = PerMillion("jina:jina-reranker-v2-base-multilingual", usd_per_million=0.02)
CHAT_PRICE = f"""provider = "chat"
[[price]]
model = "{CHAT_MODEL}"
unit = "per_million_tokens"
price = 1.0
output_price = 4.0
currency = "USD"
as_of = 2026-11-29
source = "https://example.test/pricing"
verified = true
"""
RECORDED_JUDGE_USD_PER_1K = 0.2728333333333333
# One of the six questions ranks its gold passage second (MRR 1 - (1 - 1/2)/6) since the other language's
# dense list weighs 0.3: every passage of the tiny pool has an exact translation. The judge keeps that order.
RECORDED_MRR = (11 / 12, 11 / 12)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    folder = write_beir(tmp_path_factory.mktemp("beir"))
    return load_dataset(f"beir:{folder}", count_tokens=words)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("index")


@pytest.fixture(scope="module")
def result(tiny: Dataset, data_dir: Path, e5: E5SmallEncoder, bm25: Bm25Encoder) -> EvalResult:
    configs = resolve_configs("naive,default")
    return run_eval(tiny, configs, dense=e5, sparse=bm25, data_dir=data_dir, reference="identity")


def test_presets_are_data_and_resolve_by_name() -> None:
    assert list(PRESETS)[:4] == ["naive", "default", "cheap", "best"]
    naive = PRESETS["naive"].retrieve
    assert naive.model_dump() == {**RetrieveSettings().model_dump(), **NAIVE}
    assert PRESETS["default"].retrieve == RetrieveSettings()  # the project's defaults, whatever the env says
    assert PRESETS["default"].cascade == Settings().cascade
    assert PRESETS["naive"].cascade == CascadeSettings(preset="off")  # off: every candidate sent whole
    settings = PRESETS["naive"].settings(Settings(data_dir=Path("x")))
    assert settings.retrieve.depth == 100
    assert settings.rerank.backend == "identity"
    assert settings.data_dir == Path("x")
    assert [c.name for c in resolve_configs("dense-20, naive")] == ["dense-20", "naive"]
    with pytest.raises(ConfigError, match="unknown configuration 'fast'; known: naive, default"):
        resolve_configs("naive,fast")


def test_naive_sends_the_pure_dense_order_of_the_whole_pool(
    result: EvalResult, tiny: Dataset, e5: E5SmallEncoder
) -> None:
    naive = result.runs[0]
    vectors = e5.embed_passages([d.text for d in tiny.docs])
    for outcome, query in zip(naive.outcomes, tiny.queries, strict=True):
        order = np.argsort(-(vectors @ e5.embed_query(query.text)), kind="stable")
        assert list(outcome.ranking) == [tiny.docs[i].doc_id for i in order]
        assert [s.tokens for s in outcome.sent] == [
            e5.token_count(t) for t in (tiny.docs[i].text for i in order)
        ]
    assert result.encoded_docs == len(tiny.docs)


def test_summary_counts_what_reached_the_reranker_and_prices_it(
    result: EvalResult, e5: E5SmallEncoder
) -> None:
    report = summarise(result, [PRICE])
    naive, default = report.configs
    assert naive.candidate_recall == 1.0  # the whole pool reaches the reranker
    assert naive.docs_per_query == 24.0
    # The balanced cascade's adaptive cut (fused ≥ 0.35 × the top, at least 8): in the tiny pool 5 or 6
    # candidates of each query pass the ratio (32 in all), so every query is sent the floor's 8.
    assert default.docs_per_query == 8.0
    assert [len(o.sent) for o in result.runs[1].outcomes] == [8] * 6
    pool_tokens = sum(s.tokens for s in result.runs[0].outcomes[0].sent)
    query_tokens = [e5.token_count(text) for text, _ in QUERIES.values()]
    expected = 1000 * sum(0.02 * (24 * q + pool_tokens) / 1e6 for q in query_tokens) / len(query_tokens)
    assert naive.cost_per_1k[PRICE.key] == pytest.approx(expected)
    assert naive.tokens_per_query == pytest.approx(sum(query_tokens) / 6 + pool_tokens)
    assert naive.silver == {"overlap@5": 1.0, "overlap@10": 1.0, "ndcg@10": 1.0}  # the reference is naive
    assert set(naive.latency_ms) == {"retrieve", "cascade", "rerank", "total"}
    assert 0 < naive.latency_ms["total"]["p50"] <= naive.latency_ms["total"]["p95"]
    assert set(report.p_values["naive"]["default"]) == {"ndcg@10", "mrr@10", "recall@10"}


def test_report_files(result: EvalResult, tmp_path: Path) -> None:
    report = summarise(result, [PRICE])
    written = write_report(report, result, tmp_path, [PRICE])
    assert all(p.exists() for p in written)
    assert (tmp_path / "cost_quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert [c["name"] for c in saved["configs"]] == ["naive", "default"]
    assert saved["frontier"]
    lines = (tmp_path / "runs" / "naive.trec").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 6 * 24
    qid, q0, doc, rank, _score, name = lines[0].split()
    assert (q0, rank, name) == ("Q0", "1", "naive")
    assert doc == result.runs[0].rankings()[qid][0]
    assert (tmp_path / "runs" / "qrels.trec").read_text(encoding="utf-8").count("\n") >= 5
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "| naive | dense | 100 | identity |" in md
    assert "## $ per 1,000 queries" in md
    assert "![cost vs quality](cost_quality.png)" in md


def test_a_report_that_cannot_land_whole_leaves_the_folder_as_it_was(
    result: EvalResult, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    (out / "report.md").mkdir(parents=True)  # the last file to move in: the runs before it must not
    with pytest.raises(IsADirectoryError):
        write_report(summarise(result), result, out)
    assert [p.name for p in out.iterdir()] == ["report.md"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # the staging folder is gone


def test_a_second_run_reuses_the_encoded_pool(
    result: EvalResult, tiny: Dataset, data_dir: Path, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> None:
    again = run_eval(tiny.limit(2), [PRESETS["default"]], dense=e5, sparse=bm25, data_dir=data_dir)
    assert again.encoded_docs == 0
    assert [o.qid for o in again.runs[0].outcomes] == [q.qid for q in tiny.limit(2).queries]
    assert again.reference is None


def test_trimmed_configuration_sends_windows_and_checks_the_answer(
    tiny: Dataset, data_dir: Path, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> None:
    trimmed = dataclasses.replace(
        PRESETS["default"], name="trimmed", cascade=CascadeSettings(preset="off", trim_tokens=12)
    )
    run = run_eval(tiny, [trimmed], dense=e5, sparse=bm25, data_dir=data_dir).runs[0]
    sent = [s for o in run.outcomes for s in o.sent]
    assert sent
    assert all(s.tokens <= 12 for s in sent)
    # A window that misses the answer span no longer counts the relevant chunk as a candidate.
    lost = [s for s in sent if not s.answer_survives]
    for o in run.outcomes:
        kept = run.candidates()[o.qid]
        assert kept == [s.doc_id for s in o.sent if s.answer_survives]
    assert all(s.doc_id in {a.doc_id for a in tiny.answers.values()} for s in lost)


async def test_run_eval_works_inside_a_running_event_loop(
    tiny: Dataset, data_dir: Path, e5: E5SmallEncoder, bm25: Bm25Encoder
) -> None:
    """Issue 16, item 3: the runner's sync entry point called from an `async def` (a notebook)."""
    run = run_eval(tiny.limit(2), [PRESETS["default"]], dense=e5, sparse=bm25, data_dir=data_dir).runs[0]
    assert len(run.outcomes) == 2


def test_answer_survives_only_when_the_window_holds_the_span() -> None:
    text = "First sentence. The answer is forty two. Last one."
    answer = Answer("d", text.index("forty"), "forty two")
    n = len(text)
    assert answer_survives(answer, "d", (16, 40), n)  # "The answer is forty two."
    assert not answer_survives(answer, "d", (0, 15), n)  # "First sentence."
    assert not answer_survives(answer, "d", (16, 35), n)  # cuts "two"
    assert answer_survives(answer, "other", (0, 15), n)  # another chunk cannot lose it
    assert answer_survives(None, "d", (0, 15), n)  # unjudged query
    running_on = Answer("d", text.index("Last"), "Last one. And more in the next chunk")
    assert answer_survives(running_on, "d", (41, n), n)  # the part inside the chunk is kept


def test_the_judge_configuration_is_measured_with_its_cost(
    tiny: Dataset, data_dir: Path, e5: E5SmallEncoder, bm25: Bm25Encoder, tmp_path: Path
) -> None:
    # The fake judge says yes to the passages that hold each question's answer and no to everything else.
    chat = FakeChat(yes_words=("try", "open", "два часа", "key-value", "def", "Friday"))
    prices = tmp_path / "chat.toml"
    prices.write_text(CHAT_PRICE, encoding="utf-8")
    judge = JudgeSettings(model=CHAT_MODEL, base_url=chat.url, api_key=SecretStr(API_KEY))
    base = Settings(data_dir=tmp_path, judge=judge, cost={"pricing_files": [prices]})
    try:
        result = run_eval(
            tiny, resolve_configs("default,judge"), dense=e5, sparse=bm25, data_dir=data_dir, base=base
        )
    finally:
        chat.close()
    default, judged = summarise(result).configs
    assert (default.judged_per_query, default.judge_usd_per_1k) == (0.0, None)
    assert judged.judged_per_query == 3.0
    assert judged.judge_usd_per_1k == pytest.approx(RECORDED_JUDGE_USD_PER_1K)
    assert (default.quality["mrr@10"], judged.quality["mrr@10"]) == pytest.approx(RECORDED_MRR)
    with pytest.raises(ConfigError, match="runs the LLM judge"):
        PRESETS["judge"].settings(Settings(data_dir=tmp_path))


def test_lesson_context_is_the_answers_neighbours_without_the_answer() -> None:
    lesson = [Doc(f"l{i}", f"text {i}", "c", "lesson.md", "en") for i in range(9)]
    other = [Doc("o0", "other", "c", "other.md", "en")]
    queries = (Query("q1", "?", "en", "c"), Query("q2", "?", "en", "c"), Query("q3", "?", "en", "c"))
    data = Dataset("t", (*lesson, *other), queries, {"q1": {"l4": 1, "l5": 1}, "q2": {"o0": 1}})
    contexts = lesson_context(data)
    ids = {d.doc_id: point_id(c) for d, c in zip(lesson, doc_chunks(lesson, words), strict=True)}
    # Three on each side of l4, the relevant l4 and l5 left out; o0 is alone in its source; q3 is unjudged.
    assert contexts == {"q1": Steering(positive_chunks=tuple(ids[f"l{i}"] for i in (1, 2, 3, 6, 7)))}


def test_the_warm_up_calls_no_paid_backend_and_records_nothing(
    tiny: Dataset,
    data_dir: Path,
    e5: E5SmallEncoder,
    bm25: Bm25Encoder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The warm-up search was a real call: one more paid request per configuration, billed and recorded."""
    provider = FakeProvider("cohere")
    monkeypatch.setenv("LEANRANK_COHERE_BASE_URL", provider.url)
    monkeypatch.setenv("LEANRANK_COHERE_API_KEY", API_KEY)
    paid = dataclasses.replace(PRESETS["default"], name="paid", reranker=f"cohere:{MODEL}")
    base = Settings(data_dir=tmp_path)
    try:
        result = run_eval(tiny, [paid], dense=e5, sparse=bm25, data_dir=data_dir, base=base)
    finally:
        provider.close()
    (run,) = result.runs
    assert len(run.outcomes) == len(tiny.queries) == len(provider.requests) == 6
    ledger = Ledger.from_settings(base)
    try:
        [total] = ledger.totals("course", Period.month_of(datetime.now(UTC)))
    finally:
        ledger.close()
    assert (total.key, total.calls) == (tiny.queries[0].course, 6)
