"""An LLM judge after the reranker: does this passage *answer* the question, yes or no?

A cross-encoder scores topicality; a passage on the right topic that does not answer ("loops are covered
in lesson 3") can still rank first. The judge asks an OpenAI-compatible chat model, one request per passage
for the top few hits, and demotes (or drops) the ones it answers "no" for.

Wire: `POST {base_url}/chat/completions` with `model`, `messages`, `temperature` 0 and `max_tokens`
(the OpenAI chat-completions API, which vLLM, llama.cpp, Ollama, DeepSeek, OpenRouter and others serve);
the answer is `choices[0].message.content`, the usage `usage.prompt_tokens` / `usage.completion_tokens`.
Transport, retries (429/5xx with backoff and `Retry-After`) and typed errors are `rerank.http`'s.

The judge is a `Reranker` whose scores are 1.0 (yes) and 0.0 (no), so the score cache, the guard, the
meter (budget hold, price, ledger record under the stage `judge`) apply to it unchanged. Its price entry
is `chat:MODEL` (`cost/prices/chat.toml`): input tokens at `price`, output tokens at `output_price`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from leanrank.cost.budget import BudgetExceededError
from leanrank.cost.pricing import CHAT_PROVIDER
from leanrank.errors import BackendError, ConfigError
from leanrank.rerank.base import Reranker, RerankResponse, Usage
from leanrank.rerank.http import BadResponseError, JsonClient, LoopClients, check_endpoint
from leanrank.rerank.providers import estimate_tokens
from leanrank.retry import RetryPolicy
from leanrank.types import Hit

if TYPE_CHECKING:
    from leanrank.cost.meter import Meter
    from leanrank.settings import JudgeSettings

_log = logging.getLogger(__name__)

JUDGE_STAGE = "judge"
"""The stage name of judge calls in the cost ledger (the reranker's is `rerank`)."""
KIND = CHAT_PROVIDER
"""Backend kind of the judge: its name is `chat:MODEL`, its price entry `chat:MODEL`."""

SYSTEM_PROMPT = (
    "You check search results for students of a course. Given a question and a passage from the course "
    "material, answer `yes` if the passage answers the question (fully or in a part a student can use), "
    "`no` if it is only on the same topic or unrelated. The passage may be in Russian or English. "
    "Answer with one word: yes or no."
)
_YES = frozenset({"yes", "да"})
_NO = frozenset({"no", "нет"})
_WORD = re.compile(r"\w+", re.UNICODE)


def user_prompt(question: str, passage: str) -> str:
    return f"Question: {question}\n\nPassage:\n{passage}\n\nDoes the passage answer the question?"


def parse_verdict(content: Any) -> float:
    """1.0 for yes, 0.0 for no (English or Russian, any case, punctuation ignored); else BadResponseError."""
    if isinstance(content, str):
        words = _WORD.findall(content.casefold())
        if words and words[0] in _YES:
            return 1.0
        if words and words[0] in _NO:
            return 0.0
    text = repr(content)
    raise BadResponseError(f"judge answer is not yes or no: {text[:80]}")


class ChatJudge:
    """A `Reranker` over one chat model: `rerank(question, passages)` scores each passage 1.0 or 0.0.

    Passages are judged concurrently, one request each (a model asked about several at once may let one
    answer colour the next). Any request that fails after its retries fails the whole call: the meter then
    records it as possibly billed (timeouts, unusable answers) and the `JudgeStage` keeps the reranker's
    order. Usage: `document_tokens` and `billed_units` are the reported prompt tokens, `output_tokens` the
    completion tokens; a server that reports no usage is counted at about four characters a token.
    """

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 20.0,
        retry: RetryPolicy | None = None,
        max_tokens: int = 3,
    ) -> None:
        if not model:
            raise ConfigError("the judge needs a model name (judge.model)")
        self._model = model
        self._retry = retry or RetryPolicy()
        self._max_tokens = max_tokens
        check_endpoint(KIND, base_url, timeout_s)
        # One pooled client per event loop for the process's life, as the rerank adapters keep theirs.
        self._clients = LoopClients(
            lambda: JsonClient(KIND, base_url, api_key=api_key, timeout_s=timeout_s, retry=self._retry)
        )

    @property
    def name(self) -> str:
        return f"{KIND}:{self._model}"

    async def rerank(self, query: str, documents: Sequence[str]) -> RerankResponse:
        t0 = time.perf_counter()
        client = await self._clients.get()
        answers = await asyncio.gather(*(self._ask(client, query, doc) for doc in documents))
        prompt = sum(a.prompt_tokens for a in answers)
        completion = sum(a.completion_tokens for a in answers)
        reported = all(a.reported for a in answers)
        usage = Usage(
            query_tokens=0,
            document_tokens=prompt,
            billed_units=float(prompt),
            billed_unit="tokens",
            count_source="reported" if reported else "estimate",
            latency_s=time.perf_counter() - t0,
            documents=len(documents),
            output_tokens=completion,
        )
        return RerankResponse(tuple(a.verdict for a in answers), usage)

    async def _ask(self, client: JsonClient, query: str, passage: str) -> _Answer:
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": user_prompt(query, passage)},
        ]
        payload = {
            "model": self._model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": self._max_tokens,
        }
        body = (await client.post("/chat/completions", payload)).body
        try:
            content = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise BadResponseError(f"judge answer has no choices[0].message.content: {body!r:.120}") from None
        verdict = parse_verdict(content)
        usage = body.get("usage") if isinstance(body, dict) else None
        prompt, completion = _count(usage, "prompt_tokens"), _count(usage, "completion_tokens")
        if prompt is None or completion is None:
            text = SYSTEM_PROMPT + user_prompt(query, passage)
            return _Answer(verdict, estimate_tokens(text), estimate_tokens(content), False)
        return _Answer(verdict, prompt, completion, True)


@dataclass(frozen=True, slots=True)
class _Answer:
    verdict: float
    prompt_tokens: int
    completion_tokens: int
    reported: bool


def _count(usage: Any, key: str) -> int | None:
    """A reported token count: None when absent; a non-negative integer; else BadResponseError."""
    value = usage.get(key) if isinstance(usage, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadResponseError(f"judge usage {key}={value!r} is not a non-negative integer")
    return value


def judge_from_settings(settings: JudgeSettings) -> ChatJudge:
    """The judge `settings` describe; ConfigError when no model is set."""
    key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    return ChatJudge(
        settings.model,
        settings.base_url,
        api_key=key,
        timeout_s=settings.timeout_s,
        retry=RetryPolicy(max_attempts=settings.max_attempts),
        max_tokens=settings.max_tokens,
    )


@dataclass(frozen=True, slots=True)
class Judged:
    """Hits after the judge, its usage and cost, and failures.

    `cost_usd` is what the ledger recorded for the call: also when it failed after the provider may have
    billed it (an unusable answer, a timeout: the estimate under `judge:unconfirmed`); None when nothing was
    recorded at a price."""

    hits: list[Hit]
    usage: Usage | None
    cost_usd: float | None
    failed: tuple[str, ...] = ()


class JudgeStage:
    """Judges the top `top_n` hits; "no" hits move after all the others (`demote`) or go (`drop`).

    The judge only ever improves on the reranker's answer: over the budget, or failing, it is skipped and
    the hits come back as they were, with why in `failed`. Judged hits carry `stage_scores["judge"]`.
    """

    def __init__(
        self,
        judge: Reranker,
        *,
        top_n: int,
        action: Literal["demote", "drop"],
        meter: Meter | None = None,
    ) -> None:
        self.judge = judge
        self.top_n = top_n
        self.action = action
        self.meter = meter

    async def run(
        self,
        query: str,
        hits: list[Hit],
        *,
        request_id: str | None = None,
        course: str | None = None,
        tenant: str | None = None,
    ) -> Judged:
        head = hits[: self.top_n]
        if not head:
            return Judged(hits, None, None)
        texts = [h.chunk.text for h in head]
        try:
            if self.meter is None:
                response = await self.judge.rerank(query, texts)
                cost = response.usage.cost_usd
            else:
                metered = await self.meter.rerank(
                    self.judge,
                    query,
                    texts,
                    request_id=request_id or uuid.uuid4().hex,
                    course=course,
                    tenant=tenant,
                    stage=JUDGE_STAGE,
                )
                response, cost = metered.response, metered.cost_usd
        except (BackendError, BudgetExceededError) as exc:
            _log.warning("judge skipped, reranker order kept: %s", exc)
            billed = exc.unconfirmed_usd if isinstance(exc, BackendError) else None
            return Judged(hits, None, billed, (f"{self.judge.name}: judge skipped: {exc}",))
        yes: list[Hit] = []
        no: list[Hit] = []
        for hit, verdict in zip(head, response.scores, strict=True):
            judged = replace(hit, stage_scores={**hit.stage_scores, JUDGE_STAGE: verdict})
            (yes if verdict >= 0.5 else no).append(judged)
        rest = hits[self.top_n :]
        kept = [*yes, *rest] if self.action == "drop" else [*yes, *rest, *no]
        return Judged(kept, response.usage, cost)
