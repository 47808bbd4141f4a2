"""A realistic question stream: a few questions asked again and again, in slightly different words.

Caches are only worth what the traffic lets them save, and a dataset's question list asks everything once.
Real students ask a few popular questions very often and most rarely: topics are drawn from a Zipf law
(probability ∝ 1/rank^s over a seeded random order of the dataset's topics), and each ask is the same
question again, a cheap rewording, or — for XQuAD, whose Russian and English questions are translations
of each other (`ru:ID` / `en:ID`) — the same question in the other language. Every ask keeps the qid whose
judgements apply, so the harness scores a cached answer like a fresh one.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Literal

from leanrank.eval.datasets import Dataset, DatasetError, Query
from leanrank.types import Lang

StreamKind = Literal["first", "repeat", "reworded", "translated"]
KINDS: tuple[StreamKind, ...] = ("first", "repeat", "reworded", "translated")

_LEAD_INS: dict[Lang, tuple[str, ...]] = {
    "ru": ("Скажите, ", "Подскажите, пожалуйста, ", "Вопрос: ", "А ", "Не понял, "),
    "en": ("Tell me, ", "Quick question: ", "So ", "Sorry, ", "Can you remind me: "),
}
_END_PUNCT = "?!.…"
_TRIES = 5


@dataclass(frozen=True, slots=True)
class StreamQuery:
    """One ask: `qid` is the dataset query (in the language asked) whose judgements apply.

    `kind`: "first" — the topic's first ask in any wording; "repeat" — a text asked before for the topic;
    "reworded" — a new surface form in a language already asked; "translated" — the topic's first ask in
    another language. `topic` is the id translations share (the qid without `ru:`/`en:`).
    """

    qid: str
    text: str
    lang: Lang
    course: str
    kind: StreamKind
    topic: str


def topic_of(qid: str) -> str:
    """XQuAD's `ru:ID` and `en:ID` are one question in two languages; other ids are their own topic."""
    prefix, sep, rest = qid.partition(":")
    return rest if sep and prefix in ("ru", "en") else qid


def reword(text: str, lang: Lang, rng: random.Random) -> str:
    """A surface rewording a student produces: lead-in, case, end punctuation, spacing; words unchanged.

    One to three of the four edits are applied; content words are never touched (a lead-in only adds
    words), so the judgements of the original still apply.
    """
    for _ in range(_TRIES):
        edits = rng.sample(range(4), rng.randint(1, 3))
        out = text
        if 0 in edits:
            lead = rng.choice(_LEAD_INS.get(lang, _LEAD_INS["en"]))
            out = lead + (out if lead.endswith(": ") else out[:1].lower() + out[1:])
        if 1 in edits:
            out = out.lower() if out != out.lower() else out[:1].upper() + out[1:]
        if 2 in edits:
            stripped = out.rstrip(_END_PUNCT)
            out = stripped if stripped != out else out + "?"
        if 3 in edits:
            spaces = [i for i, c in enumerate(out) if c == " "]
            at = rng.choice(spaces) if spaces else len(out)
            out = out[:at] + " " + out[at:]
        if out != text:
            return out
    return rng.choice(_LEAD_INS.get(lang, _LEAD_INS["en"])) + text


def question_stream(
    dataset: Dataset,
    n: int,
    *,
    zipf_s: float = 1.1,
    reword_share: float = 0.3,
    translate_share: float = 0.1,
    seed: int = 0,
) -> list[StreamQuery]:
    """`n` asks over the dataset's judged questions with Zipf popularity; the same seed, the same stream.

    A topic is asked in the language of its first ask (uniform over its languages), except with
    probability `translate_share` in another language it has; the text is reworded with probability
    `reword_share`. Kinds follow from what the stream asked before.
    """
    by_topic: dict[str, dict[Lang, Query]] = {}
    for q in dataset.queries:
        if q.qid in dataset.qrels:
            by_topic.setdefault(topic_of(q.qid), {}).setdefault(q.lang, q)
    if n > 0 and not by_topic:
        raise DatasetError(f"{dataset.name}: no judged questions to build a stream from")
    rng = random.Random(seed)
    topics = sorted(by_topic)
    rng.shuffle(topics)
    cum = list(accumulate(1 / rank**zipf_s for rank in range(1, len(topics) + 1)))
    home: dict[str, Lang] = {}
    asked: dict[str, set[str]] = {}
    langs_asked: dict[str, set[Lang]] = {}
    stream: list[StreamQuery] = []
    for _ in range(n):
        topic = rng.choices(topics, cum_weights=cum)[0]
        langs = sorted(by_topic[topic])
        lang = home.setdefault(topic, rng.choice(langs))
        others = [other for other in langs if other != lang]
        if others and topic in asked and rng.random() < translate_share:
            lang = rng.choice(others)
        query = by_topic[topic][lang]
        text = reword(query.text, lang, rng) if rng.random() < reword_share else query.text
        if topic not in asked:
            kind: StreamKind = "first"
        elif text in asked[topic]:
            kind = "repeat"
        elif lang not in langs_asked[topic]:
            kind = "translated"
        else:
            kind = "reworded"
        asked.setdefault(topic, set()).add(text)
        langs_asked.setdefault(topic, set()).add(lang)
        stream.append(StreamQuery(query.qid, text, lang, query.course, kind, topic))
    return stream


def stream_stats(stream: Sequence[StreamQuery]) -> dict[str, float]:
    """Asks per kind, distinct topics, and the share of asks whose exact text the course saw before."""
    kinds = Counter(q.kind for q in stream)
    seen: set[tuple[str, str]] = set()
    exact = 0
    for q in stream:
        exact += (q.course, q.text) in seen
        seen.add((q.course, q.text))
    return {
        "requests": float(len(stream)),
        **{kind: float(kinds[kind]) for kind in KINDS},
        "topics": float(len({q.topic for q in stream})),
        "exact_repeat_share": exact / len(stream) if stream else 0.0,
    }
