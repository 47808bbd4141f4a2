"""The cascade for client-sent documents: what is forwarded, what is held back, and the merged scores."""

from __future__ import annotations

import asyncio
import math
import random
import threading
from collections.abc import Callable, Sequence

import pytest

from leanrank.cascade.dedup import DedupConfig, collapse, collapse_groups
from leanrank.cascade.plan import gate_reranker
from leanrank.cascade.request import (
    OFF_LOOP_DOCUMENTS,
    ClientCascade,
    ClientPlan,
    DocumentMemo,
    bm25_scores,
    merge,
    term_weights,
)
from leanrank.encode.base import SparseVec
from leanrank.encode.bm25 import Bm25Encoder
from leanrank.rerank.base import UNSCORED, RerankResponse, Usage, as_probabilities, rank_order
from leanrank.settings import ClientCascadeSettings, GatewaySettings
from tests.cascade.test_dedup import A_OVERLAP, EN, TIMEOUT, A, B

QUERY = "How does a for loop iterate over a list?"
ON_TOPIC = [
    "A for loop iterates over a list one element at a time.",
    "The for loop takes each item of the list in order and runs its body.",
]
FILLER = [
    f"Paragraph {i} about {topic} and nothing else: {topic} {topic} {i}."
    for i, topic in enumerate(["databases", "networks", "graphs", "compilers", "sorting"] * 6)
]


def words(text: str) -> int:
    return len(text.split())


def cascade(bm25: Bm25Encoder, **knobs: object) -> ClientCascade:
    settings = ClientCascadeSettings.model_validate(
        {"preset": "off", "enabled": True, "min_documents": 2, **knobs}
    )
    return ClientCascade(settings, count=words, memo=DocumentMemo(bm25))


def plan(c: ClientCascade, documents: list[str], billed_as: Callable[[str], int] | None = None) -> ClientPlan:
    return asyncio.run(c.plan(QUERY, documents, billed_as=billed_as))


def each(n: int) -> Callable[[str], int]:
    """Every text billed as `n` documents (its windows or chunks)."""
    return lambda _: n


MANY = [
    f"Note {i} on {topic}, only {topic}: {topic} number {i}."
    for i, topic in enumerate(["queues", "stacks", "heaps", "tries", "hashing"] * 30)
]


def test_bm25_idf_is_counted_over_the_request(bm25: Bm25Encoder) -> None:
    docs = ["loop list python", "loop list", "loop", "lunch"]  # "loop" is in 3 of 4: a low IDF
    terms = set(bm25.embed_query("python loop list").indices)
    weights = [term_weights(v) for v in bm25.embed_documents(docs)]
    scores = bm25_scores(terms, weights)
    assert scores[0] > scores[1] > scores[2] > scores[3] == 0
    idf_loop = math.log(1 + (4 - 3 + 0.5) / (3 + 0.5))
    assert scores[2] == pytest.approx(idf_loop * bm25.embed_documents(["loop"])[0].values[0])
    assert bm25_scores(set(), weights) == [0.0] * 4


def test_bm25_scores_are_the_textbook_sum_on_random_requests() -> None:
    rng = random.Random(5)
    for _ in range(300):
        n = rng.randint(1, 30)
        documents = [
            {rng.randrange(12): rng.uniform(0.1, 2.0) for _ in range(rng.randint(0, 6))} for _ in range(n)
        ]
        terms = {rng.randrange(14) for _ in range(rng.randint(1, 5))}
        df = {t: sum(t in doc for doc in documents) for t in terms}
        idf = {t: math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in terms if df[t]}
        textbook = [sum(w * doc[t] for t, w in idf.items() if t in doc) for doc in documents]
        assert bm25_scores(terms, documents) == textbook  # to the last bit: the terms are added in one order


def test_the_request_s_own_evidence_pulls_buried_passages_forward(bm25: Bm25Encoder) -> None:
    docs = [*FILLER[:12], ON_TOPIC[0], *FILLER[12:], ON_TOPIC[1]]
    p = plan(cascade(bm25, keep_ratio=0.5, min_depth=3), docs)
    assert len(p.forward) < len(docs)
    assert p.received == len(docs)
    assert {docs[i] for i in p.forward} >= set(ON_TOPIC)
    assert p.texts == [docs[i] for i in p.forward]
    assert sorted(p.forward + p.rest) == list(range(len(docs)))


def test_exact_and_near_duplicates_stand_for_one_representative(bm25: Bm25Encoder) -> None:
    docs = [ON_TOPIC[0], *FILLER[:5], "  " + ON_TOPIC[0].upper(), ON_TOPIC[1] + " Indeed.", ON_TOPIC[1]]
    p = plan(cascade(bm25, keep_ratio=0.1, min_depth=20, near_dup=0.8), docs)
    assert p.stands_for[6] == 0
    assert p.collapsed == 2
    assert p.stands_for[7] == p.stands_for[8] in (7, 8)  # one passage inside the other: near-duplicates
    kept = {i for i, s in enumerate(p.stands_for) if s == i}
    assert sorted(p.forward + p.rest) == sorted(kept)


def test_a_version_stating_other_numbers_is_forwarded_not_collapsed(bm25: Bm25Encoder) -> None:
    old, new = TIMEOUT.format(n=10, v=2), TIMEOUT.format(n=30, v=3)
    reworded = old.replace("changed per call", "overridden for one call")
    p = plan(cascade(bm25, keep_ratio=0.1, min_depth=20, near_dup=0.8), [old, new, reworded, *FILLER[:3]])
    assert p.stands_for == [0, 1, 0, 3, 4, 5]  # the other wording is the old one's duplicate, not the new one
    assert 1 in p.forward
    assert p.collapsed == 1


def test_a_cap_moves_the_overflow_to_the_front_of_the_rest(bm25: Bm25Encoder) -> None:
    docs = FILLER + ON_TOPIC
    whole = plan(cascade(bm25), docs)  # keep_ratio 0: no cut
    capped = plan(cascade(bm25), docs, billed_as=each(10))  # 10 windows each: 10 documents fill a unit
    assert len(whole.forward) == len(docs)
    assert capped.forward == whole.forward[:10]
    assert capped.rest == whole.forward[10:]


def test_a_search_unit_backend_is_sent_whole_units_filled_in_pre_ranking_order(bm25: Bm25Encoder) -> None:
    docs = [*ON_TOPIC, *MANY[:148]]  # 150 distinct documents
    c = cascade(bm25, keep_ratio=0.3, min_depth=10)
    cut = plan(c, docs)  # token billing: the cut as it is
    assert 10 <= len(cut.forward) < 30
    units = plan(c, docs, billed_as=each(1))
    k = len(cut.forward)
    assert units.forward == cut.forward + cut.rest[: 100 - k]  # the cut, then the next in pre-ranking order
    assert units.texts == [docs[i] for i in units.forward]
    assert units.rest == cut.rest[100 - k :]  # 150 received: 100 forwarded (1 unit instead of 2), 50 held
    assert len(units.rest) == 50
    whole = plan(c, docs[:100], billed_as=each(1))  # one unit holds them all: nothing is held back
    assert sorted(whole.forward) == list(range(100))
    assert whole.rest == []
    windows = plan(c, docs, billed_as=each(10))  # ten windows each: ten documents fill the unit
    assert windows.forward == (cut.forward + cut.rest)[:10]
    assert windows.rest == (cut.forward + cut.rest)[10:]
    dup = plan(c, [*docs[:99], "  " + docs[0].upper()], billed_as=each(1))  # a duplicate adds nothing
    assert (len(dup.forward), dup.rest, dup.stands_for[99]) == (99, [], 0)


def test_the_first_document_goes_whatever_it_costs_and_one_that_does_not_fit_is_passed_over(
    bm25: Bm25Encoder,
) -> None:
    docs = [*ON_TOPIC, *MANY[:148]]
    c = cascade(bm25, keep_ratio=0.3, min_depth=10)
    cut = plan(c, docs)
    first, second = (docs[i] for i in cut.forward[:2])
    huge = plan(c, docs, billed_as=lambda t: 150 if t == first else 1)
    assert huge.forward[0] == cut.forward[0]  # 150 chunks: 2 units, so 50 more documents ride along
    assert len(huge.forward) == 51
    assert huge.forward[1:] == (cut.forward + cut.rest)[1:51]
    sizes = {first: 50, second: 60}
    over = plan(c, docs, billed_as=lambda t: sizes.get(t, 1))
    assert cut.forward[1] not in over.forward  # 50 + 60 > 100: passed over for the smaller ones after it
    assert over.rest[0] == cut.forward[1]
    assert over.forward == [cut.forward[0], *(cut.forward + cut.rest)[2:52]]  # 50 + 50 × 1 = 100


def test_off_forwards_everything_as_sent_and_small_requests_pass_through(bm25: Bm25Encoder) -> None:
    docs = FILLER + ON_TOPIC
    off = asyncio.run(
        ClientCascade(ClientCascadeSettings(preset="off"), count=words, memo=DocumentMemo(bm25)).plan(
            QUERY, docs, billed_as=each(50)
        )
    )
    assert off.forward == list(range(len(docs)))
    assert off.texts == docs
    small = asyncio.run(
        ClientCascade(ClientCascadeSettings(preset="balanced"), count=words, memo=DocumentMemo(bm25)).plan(
            QUERY, docs[:5]
        )
    )
    assert small.forward == list(range(5))


def test_below_min_documents_the_cut_is_skipped_but_not_the_cap_of_one_search_unit(bm25: Bm25Encoder) -> None:
    """`min_documents`: fewer are forwarded whole, in the client's order, except that a backend billed per
    search unit is still sent at most 100 billed documents a request."""
    docs = [*FILLER[:5], *ON_TOPIC]  # 7 documents, the answers last
    cut = plan(cascade(bm25, keep_ratio=0.9, min_depth=1), docs)
    assert len(cut.forward) < 7  # with min_documents 2, the cut holds the filler back
    small = cascade(bm25, keep_ratio=0.9, min_depth=1, min_documents=20)
    whole = plan(small, docs, billed_as=each(1))  # 7 billed documents: 1 unit holds them all
    assert (whole.forward, whole.texts, whole.rest) == (list(range(7)), docs, [])
    capped = plan(small, docs, billed_as=each(30))  # 30 + 30 + 30 = 90; a fourth would make 120
    assert (capped.forward, capped.texts, capped.rest) == ([0, 1, 2], docs[:3], [3, 4, 5, 6])


def test_trimming_forwards_best_windows(bm25: Bm25Encoder) -> None:
    long = " ".join(f"Sentence {i} is about the weather." for i in range(20)) + " " + ON_TOPIC[0]
    p = plan(cascade(bm25, trim_tokens=16), [long, *FILLER])
    at = p.forward.index(0)
    assert p.texts[at] in long
    assert len(p.texts[at]) < len(long)
    assert "for loop" in p.texts[at]


def test_the_first_documents_in_the_query_s_other_language_pass_the_cut(bm25: Bm25Encoder) -> None:
    query = "Как цикл for обходит список?"
    russian = [f"Абзац {i} о погоде, дорогах и садах: {i}." for i in range(30)]
    english = ["A for loop iterates over a list one element at a time.", "English filler about gardens."]
    docs = [*russian[:25], english[0], *russian[25:], english[1]]  # the client's order: English far down
    without = asyncio.run(cascade(bm25, keep_ratio=0.5, min_depth=3).plan(query, docs))
    pinned = asyncio.run(cascade(bm25, keep_ratio=0.5, min_depth=3, cross_lang_keep=1).plan(query, docs))
    assert 25 not in without.forward  # BM25 cannot match it and its client rank is 25: cut
    assert pinned.forward == [*without.forward, 25]  # kept, at the cut line; the second English one is not
    both = "погода в садах weather forecast"
    mixed = asyncio.run(cascade(bm25, keep_ratio=0.5, min_depth=3, cross_lang_keep=1).plan(both, docs))
    assert 25 not in mixed.forward  # a query in both languages has no other language


def _response(scores: tuple[float, ...], scale: str = "probabilities") -> RerankResponse:
    return RerankResponse(scores, Usage.free(len(scores), 0.0), scale=scale)  # type: ignore[arg-type]


def test_merge_ranks_held_back_documents_strictly_below_the_forwarded_in_pre_ranking_order() -> None:
    p = ClientPlan(6, forward=[4, 1], texts=["e", "b"], rest=[0, 5, 2], stands_for=[0, 1, 2, 1, 4, 5])
    merged = merge(p, _response((0.9, 0.4)))
    s = merged.scores
    assert (s[4], s[1], s[3]) == (0.9, 0.4, 0.4)  # 3 duplicates 1
    assert 0.4 > s[0] > s[5] > s[2] > 0
    logits = merge(p, _response((2.0, -3.0), "logits")).scores
    assert (logits[0], logits[5], logits[2]) == (-4.0, -5.0, -6.0)
    unscored = merge(p, _response((UNSCORED, UNSCORED))).scores
    assert all(math.isinf(x) for x in unscored)
    # Positive scores on another scale (the identity reranker's fusion scores) shrink towards 0: a 0-1 wire
    # such as Cohere's relevance_score never carries a negative one. 0.4 × (3, 2, 1) / 4:
    positive = merge(p, _response((0.9, 0.4), "scores")).scores
    assert (positive[0], positive[5], positive[2]) == pytest.approx((0.3, 0.2, 0.1))


def test_held_back_documents_rank_strictly_below_a_lowest_forwarded_score_of_0_or_below() -> None:
    """Forwarded 3 and 2, held back 4, 0, 1 in that pre-ranking order: below the lowest, 1 apart."""
    p = ClientPlan(5, forward=[3, 2], texts=["d", "c"], rest=[4, 0, 1], stands_for=list(range(5)))
    for scale in ("probabilities", "logits", "rank"):
        zero = merge(p, _response((0.7, 0.0), scale)).scores
        assert (zero[4], zero[0], zero[1]) == (-1.0, -2.0, -3.0)
        assert rank_order(zero) == [3, 2, 4, 0, 1]  # tied at 0, 0 and 1 came before the forwarded 2
        negative = merge(p, _response((-2.5, -7.25), scale)).scores  # TEI's raw logits, say
        assert (negative[4], negative[0], negative[1]) == (-8.25, -9.25, -10.25)
        assert rank_order(negative) == [3, 2, 4, 0, 1]
    # A 0-1 wire cannot go below the forwarded 0: the held-back show 0, after it in the results' order.
    zero = merge(p, _response((0.7, 0.0))).scores
    assert as_probabilities(zero, "probabilities") == [0.0, 0.0, 0.0, 0.7, 0.0]


def test_blank_documents_are_set_aside_ranked_last_and_never_counted_as_sent(bm25: Bm25Encoder) -> None:
    docs = [ON_TOPIC[0], "", *FILLER[:10], "  \n\t", ON_TOPIC[1], "\u200b", "\ufeff\u00ad"]
    p = plan(cascade(bm25, keep_ratio=0.5, min_depth=2), docs)
    units = plan(cascade(bm25, keep_ratio=0.5, min_depth=2), docs, billed_as=each(1))
    assert (sorted(units.forward), units.rest, units.blank) == ([0, *range(2, 12), 13], [], [1, 12, 14, 15])
    assert p.blank == [1, 12, 14, 15]
    assert not {1, 12, 14, 15} & {*p.forward, *p.rest}
    assert sorted([*p.forward, *p.rest, *p.blank]) == list(range(len(docs)))
    assert {docs[i] for i in p.forward} == set(p.texts)
    assert p.sent == len(p.forward)
    merged = merge(p, _response(tuple(0.9 - 0.1 * i for i in range(len(p.forward)))))
    assert all(math.isinf(merged.scores[i]) for i in (1, 12, 14, 15))
    assert all(math.isfinite(x) for i, x in enumerate(merged.scores) if i not in (1, 12, 14, 15))
    assert merged.usage.warnings == ("4 blank documents ranked last, not sent",)
    # Passed through, blank documents are forwarded but the guard keeps them back: not counted as sent.
    assert plan(cascade(bm25, enabled=False), docs).sent == len(docs) - 4


def test_collapse_groups_agrees_with_collapse() -> None:
    texts = [ON_TOPIC[0] + " More.", "Другой текст о циклах", ON_TOPIC[0], FILLER[0]]
    langs = ["en", "ru", "en", "en"]
    kept, stands_for = collapse_groups(texts, langs, DedupConfig())  # type: ignore[arg-type]
    assert kept == collapse(texts, langs, DedupConfig()) == [0, 1, 3]  # type: ignore[arg-type]
    assert stands_for == [0, 1, 0, 3]


def test_a_key_s_policy_wins_over_its_course_s_over_the_default() -> None:
    off, best = ClientCascadeSettings(preset="off"), ClientCascadeSettings(preset="best")
    gateway = GatewaySettings(keys={"k": off}, courses={"c": best})
    assert gateway.policy("k", "c") is off
    assert gateway.policy("other", "c") is best
    assert gateway.policy("other", None) is gateway.cascade
    assert gateway.cascade.enabled
    assert not off.enabled


@pytest.mark.parametrize("preset", ["off", "cheap", "balanced", "best"])
def test_explicit_knobs_win_over_a_preset(preset: str) -> None:
    assert ClientCascadeSettings(preset=preset, min_depth=42).min_depth == 42  # type: ignore[arg-type]


class _SpyBm25(Bm25Encoder):
    """Records which texts each analysis call got, and on which thread it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[list[str], bool]] = []

    def embed_documents(self, texts: Sequence[str]) -> list[SparseVec]:
        self.calls.append((list(texts), threading.current_thread() is threading.main_thread()))
        return super().embed_documents(texts)


def test_the_memo_forgets_the_least_recently_used_beyond_its_size() -> None:
    memo = DocumentMemo(Bm25Encoder(), size=2)
    assert memo.recall(["a loop"]) == [None]
    first = memo.analyse(["a loop", "a list"])
    assert memo.recall(["a loop"]) == [first[0]]  # now the most recently used: "a list" goes first
    memo.analyse(["a dict"])
    assert memo.recall(["a list", "a loop"]) == [None, first[0]]
    assert memo.recall(["a dict", "a dict"])[1] is not None
    nothing = DocumentMemo(Bm25Encoder(), size=0)
    nothing.analyse(["a loop"])
    assert nothing.recall(["a loop"]) == [None]


def test_many_new_documents_are_analysed_off_the_event_loop_once_each() -> None:
    spy = _SpyBm25()
    settings = ClientCascadeSettings.model_validate({"preset": "off", "enabled": True, "min_documents": 2})
    c = ClientCascade(settings, count=words, memo=DocumentMemo(spy))
    many = [*FILLER[: OFF_LOOP_DOCUMENTS - 1], ON_TOPIC[0], ON_TOPIC[0]]  # 16 new texts, one sent twice
    cold = plan(c, many)
    assert spy.calls == [(list(dict.fromkeys(many)), False)]  # one batch, in a worker thread
    spy.calls.clear()
    assert plan(c, many) == cold  # remembered: nothing analysed again, the same plan
    assert spy.calls == []
    few = [ON_TOPIC[1], FILLER[0], FILLER[1]]  # one new text: analysed on the loop, no thread hop
    plan(c, few)
    assert spy.calls == [([ON_TOPIC[1]], True)]


@pytest.mark.parametrize("seed", range(3))
def test_a_warm_memo_plans_every_request_as_a_memo_remembering_nothing(bm25: Bm25Encoder, seed: int) -> None:
    """What the memo remembers (analyses, fingerprints, near-duplicate pairs, cascade units, queries) is
    shared by requests of every policy, their documents in ever other orders: no plan may depend on it."""
    rng = random.Random(seed)
    texts = [*ON_TOPIC, *FILLER[:8], *MANY[:8], A, A_OVERLAP, B, EN, TIMEOUT.format(n=10, v=2)]
    pool = [
        *texts,
        *(t.upper() for t in texts[:6]),  # exact duplicates up to case
        *(" ".join(t.split()[2:]) for t in texts),  # mostly inside another
        TIMEOUT.format(n=30, v=3),
        " ",
    ]
    queries = [QUERY, "Как работает цикл while?", "timeout retries", "numbers 3"]
    warm, nothing = DocumentMemo(bm25), DocumentMemo(bm25, size=0)
    for _ in range(40):
        knobs = {
            "keep_ratio": rng.choice([0.0, 0.3, 0.6]),
            "min_depth": rng.choice([1, 5, 20]),
            "near_dup": rng.choice([None, 0.5, 0.8]),
            "cross_lang_keep": rng.choice([0, 1, 2]),
            "trim_tokens": rng.choice([0, 0, 8]),
            "client_weight": rng.choice([0.0, 1.0]),
            "gate_keep": rng.choice([3, 50]),
        }
        settings = ClientCascadeSettings.model_validate({"preset": "off", "enabled": True, **knobs})
        gate = gate_reranker(rng.choice(["off", "identity"]), lambda _: False)
        documents = rng.choices(pool, k=rng.randint(1, 60))
        query = rng.choice(queries)
        billed_as = rng.choice([None, each(1), each(7), lambda text: 1 + len(text) // 40])
        warm_plan, cold_plan = (
            asyncio.run(
                ClientCascade(settings, count=words, memo=m, gate=gate).plan(
                    query, documents, billed_as=billed_as
                )
            )
            for m in (warm, nothing)
        )
        assert warm_plan == cold_plan
