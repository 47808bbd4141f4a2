"""The meter: every rerank call reserved against the budget, priced, and written to the ledger.

Order matters. Before the call, its estimated cost is held in the ledger (`Budget.reserve`), by what it
sends (each window of a long document is a document, as a search unit counts them): a paid
backend that would go over a hard cap is not called at all, a ledger that cannot be written fails the call
with `LedgerError` before anything is sent, and a request id already in use is refused. After it, every
number the backend returned is checked (a NaN or an infinity is a `BadResponseError`), and the record
replaces the hold before the scores are handed back, so nothing served goes unrecorded. A call that fails
after the provider may have billed it (a timeout, an unusable answer, a client that went away) is
recorded at its estimated cost and counts under the stage `<stage>:unconfirmed`, and so is each link of a
fallback chain that failed so (`<stage>:unconfirmed#2`, ...), whether a later link served or none did: in
the transaction that records the call or releases its hold.

Every call has a deadline (`rerank.deadline_s`), its requests, retries and fallback links together: past
it the call is cancelled and fails as a timeout (possibly billed, as above; not when it came while the HTTP
layer waited to retry, no attempt in flight). Its hold says when it expires
(the deadline plus `HOLD_MARGIN`), so a hold left by a process killed mid-call stops counting and frees its
request id once the dead call is over for sure, in whatever process reserves next.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Concatenate, ParamSpec

from leanrank.cost._names import chain_links, parse_backend
from leanrank.cost.billing import SEARCH_UNIT_DOCUMENTS, pair_tokens
from leanrank.cost.budget import UNLIMITED, Budget, BudgetExceededError, BudgetState
from leanrank.cost.ledger import (
    HOLD_MARGIN,
    CostLedger,
    Hold,
    Ledger,
    LedgerError,
    LedgerRecord,
)
from leanrank.cost.pricing import Pricing
from leanrank.cost.tokens import counter_for
from leanrank.errors import BackendError, ConfigError
from leanrank.rerank.base import UNSCORED, Reranker, RerankResponse, Usage, is_blank
from leanrank.rerank.cache import score_scope
from leanrank.rerank.http import BadResponseError, Billable, RerankTimeoutError, billable_failures
from leanrank.rerank.windows import WindowedReranker, as_sent
from leanrank.settings import CALL_DEADLINE_S, Settings
from leanrank.tracing import AttributeValue, span

_log = logging.getLogger(__name__)
BUDGET_SKIP = "budget "
"""How the note on a paid backend a hard cap stopped begins, after its name (`failed` entries)."""


@dataclass(frozen=True, slots=True)
class MeteredResponse:
    """The scores, which backend served them, the budget state before the call and what it cost.

    `cost_usd` None means the backend has no known price; `recorded` is False when the ledger already held
    this `(request_id, stage)` (a retried request: served again, billed once). `full_cost_usd` is what the
    call would have cost with every received document sent, never less than `cost_usd` (None: unknown, the
    cost included, or nothing was received apart).
    """

    response: RerankResponse
    served_by: str
    budget_state: BudgetState
    cost_usd: float | None
    recorded: bool
    full_cost_usd: float | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


_Sent = tuple[str, Sequence[str]]
"""The query and the texts a call sends its backend (`_sent`)."""

_P = ParamSpec("_P")
_Rerank = Callable[Concatenate["Meter", Reranker, str, Sequence[str], _P], Awaitable[MeteredResponse]]


def _traced(rerank: _Rerank[_P]) -> _Rerank[_P]:
    """`Meter.rerank` inside a `leanrank.rerank` span that ends with what the call used and cost."""

    @functools.wraps(rerank)
    async def traced(
        meter: Meter,
        reranker: Reranker,
        query: str,
        documents: Sequence[str],
        /,
        *args: _P.args,
        **kw: _P.kwargs,
    ) -> MeteredResponse:
        course = kw.get("course")
        asked: dict[str, AttributeValue | None] = {
            "leanrank.backend": reranker.name,
            "leanrank.documents": len(documents),
            "leanrank.course": course if isinstance(course, str) else None,
        }
        with span("leanrank.rerank", asked) as current:
            metered = await rerank(meter, reranker, query, documents, *args, **kw)
            usage = metered.response.usage
            used: dict[str, AttributeValue] = {
                "leanrank.served_by": metered.served_by,
                "gen_ai.usage.input_tokens": usage.total_tokens,
                "leanrank.query_tokens": usage.query_tokens,
                "leanrank.document_tokens": usage.document_tokens,
                "leanrank.billed_units": usage.billed_units,
                "leanrank.billed_unit": usage.billed_unit,
                "leanrank.cache_hits": usage.cache_hits,
                "leanrank.budget": metered.budget_state.level,
            }
            if metered.cost_usd is not None:
                used["leanrank.cost_usd"] = metered.cost_usd
            current.set_attributes(used)
        return metered

    return traced


class Meter:
    """Wraps rerank calls with budget, price and ledger; one instance serves a whole process.

    `deadline_s` bounds each call (seconds, `rerank.deadline_s`); ConfigError unless positive.
    """

    def __init__(
        self,
        ledger: CostLedger,
        pricing: Pricing,
        budget: Budget | None = None,
        *,
        deadline_s: float = CALL_DEADLINE_S,
        clock: Callable[[], datetime] = _utcnow,
        on_unconfirmed: Callable[[Sequence[LedgerRecord]], None] | None = None,
        on_replaced: Callable[[Sequence[LedgerRecord]], None] | None = None,
    ) -> None:
        """`on_unconfirmed` is told of the possibly billed records the ledger wrote, once committed: a
        failed call's (which its caller never sees a charge for), a served chain's failed links, and those
        its reservations wrote for the expired holds of dead processes they reaped. `on_replaced` is told
        of such reaped records that a late settlement of their call replaced (deleted) by the call's own
        record. Each record reaches one of them once, in the process that wrote or deleted it: the
        service's metrics count them as the ledger does."""
        if not deadline_s > 0:
            raise ConfigError(f"the call deadline must be positive seconds, got {deadline_s}")
        self._ledger = ledger
        self._pricing = pricing
        self._budget = budget
        self._deadline_s = deadline_s
        self._hold_for = timedelta(seconds=deadline_s) + HOLD_MARGIN
        self._clock = clock
        self._on_unconfirmed = on_unconfirmed
        self._on_replaced = on_replaced
        self._owned: Ledger | None = None
        self._failed: tuple[str, float] | None = None  # the last call's backend, if it failed, and when

    @classmethod
    def from_settings(cls, settings: Settings) -> Meter:
        """Ledger, prices and budgets as configured; the fallback reranker is the caller's to build."""
        ledger = Ledger.from_settings(settings)
        budget = Budget(settings.cost.budgets, ledger) if settings.cost.budgets else None
        meter = cls(ledger, Pricing.from_settings(settings), budget, deadline_s=settings.rerank.deadline_s)
        meter._owned = ledger
        return meter

    def is_paid(self, backend: str) -> bool:
        """Whether a call to `backend` (a catalog name or chain) may be billed, by this meter's prices."""
        return self._pricing.is_paid(backend)

    def failing(self, within_s: float = 30.0) -> str | None:
        """The backend whose failure ended the last call, if that was less than `within_s` ago (readiness:
        after that, traffic is let through again to find out whether it recovered)."""
        failed = self._failed
        return failed[0] if failed is not None and time.monotonic() - failed[1] < within_s else None

    def close(self) -> None:
        """Close the ledger this meter opened itself; one passed in belongs to the caller."""
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    @_traced
    async def rerank(
        self,
        reranker: Reranker,
        query: str,
        documents: Sequence[str],
        *,
        request_id: str,
        course: str | None,
        tenant: str | None = None,
        stage: str = "rerank",
        fallback: Reranker | None = None,
        received: Sequence[str] | None = None,
    ) -> MeteredResponse:
        """Rerank with `reranker`, or with `fallback` when a hard cap stops a paid one.

        `received` are the documents a client sent when `documents` is what a cascade kept of them: the
        record then also says how many were received and what sending them all would have cost.

        `tenant` also scopes the score cache: one tenant never sees another's cached scores.
        Raises `BudgetExceededError` when the cap is hard, `reranker` is paid and no free fallback is given,
        `RequestConflictError` when `(request_id, stage)` is running or billed, `LedgerError` when the
        ledger cannot be written, `BadResponseError` for scores or usage that are not finite numbers,
        `RerankTimeoutError` when the call is not over within the deadline; a `BackendError` is raised as
        this call's own copy (caused by the backend's), carrying what the ledger recorded for the call as
        possibly billed in `unconfirmed_usd`.
        """
        paid = self.is_paid(reranker.name)
        now = self._clock()
        hold, state, admitted, sent = await asyncio.to_thread(
            self._estimate_and_reserve,
            Hold(now, request_id, stage, course, tenant, 0.0, expires=now + self._hold_for),
            reranker,
            paid,
            query,
            documents,
        )
        chosen: Reranker = reranker
        skipped: tuple[str, ...] = ()
        if not admitted:
            if fallback is None or self._pricing.is_paid(fallback.name):
                raise BudgetExceededError(state)
            chosen = fallback
            skipped = (f"{reranker.name}: {BUDGET_SKIP}{state.label} reached, ${state.spent_usd:.4f} spent",)
            hold = replace(hold, amount_usd=0.0, backend=None, documents=0)
            sent = (query, documents)
            await asyncio.to_thread(self._reserve, hold, False)
        answer: RerankResponse | None = None
        billable = Billable()
        try:
            with score_scope(tenant or ""), billable_failures() as billable:
                answer = await _within(self._deadline_s, chosen, query, documents)
            response = _checked(answer, chosen.name, *sent)
        except BaseException as exc:
            if isinstance(exc, BackendError):
                self._failed = (chosen.name, time.monotonic())
            links = _billable(exc, chosen.name, answer, billable)
            written = await self._release(hold, links, exc, len(documents), sent)
            if isinstance(exc, BackendError):
                costs = [r.cost_usd for r in written if r.cost_usd is not None]
                raise _own(exc, sum(costs) if costs else None) from exc
            raise
        self._failed = None
        served_by = response.served_by or chosen.name
        usage, cost, full, recorded = await asyncio.to_thread(
            self._settle,
            response.usage,
            served_by,
            query,
            documents,
            hold,
            sent,
            billable.calls,
            received,
            chosen,
        )
        settled = replace(response, usage=usage, served_by=served_by, failed=(*skipped, *response.failed))
        return MeteredResponse(settled, served_by, state, cost, recorded, full)

    def _estimate_and_reserve(
        self, hold: Hold, reranker: Reranker, paid: bool, query: str, documents: Sequence[str]
    ) -> tuple[Hold, BudgetState, bool, _Sent]:
        """What `reranker` will send (`_sent`), the hold at its estimated cost by that (0 when free) and the
        hold's reservation: one trip off the event loop for all three (tokenizers run, the database
        blocks)."""
        sent = _sent(reranker, query, documents)
        if paid:
            amount = self._pricing.estimate(reranker.name, *sent)
            hold = replace(hold, amount_usd=amount, backend=reranker.name, documents=len(documents))
        return (hold, *self._reserve(hold, paid), sent)

    def _reserve(self, hold: Hold, paid: bool) -> tuple[BudgetState, bool]:
        if self._budget is not None:
            state, reservation = self._budget.reserve(hold, paid=paid)
        else:
            state, reservation = UNLIMITED, self._ledger.reserve(hold, (), lambda _: True)
        self._observe(self._on_unconfirmed, reservation.reaped)
        return state, reservation.admitted

    async def _release(
        self, hold: Hold, links: Sequence[str], exc: BaseException, documents: int, sent: _Sent
    ) -> list[LedgerRecord]:
        """Drop the hold of a failed call of `documents` documents, recording the calls to `links` its
        provider may have billed anyway (at the estimate of what was `sent`); returns the records written.

        A cancelled request releases at once, on the event loop: its task cannot await any more. A
        ledger that fails here is logged: the call's own error is what the caller must see.
        """
        try:
            if isinstance(exc, asyncio.CancelledError):
                return self._drop(hold, links, documents, sent)
            return await asyncio.to_thread(self._drop, hold, links, documents, sent)
        except LedgerError as failure:
            _log.error("could not release hold %s: %s", hold, failure)
            return []

    def _drop(self, hold: Hold, links: Sequence[str], documents: int, sent: _Sent) -> list[LedgerRecord]:
        written = self._ledger.release(hold, self._unconfirmed(hold, links, documents, sent))
        self._observe(self._on_unconfirmed, written)
        return written

    @staticmethod
    def _observe(
        hook: Callable[[Sequence[LedgerRecord]], None] | None, records: Sequence[LedgerRecord]
    ) -> None:
        if records and hook is not None:
            hook(records)

    def _unconfirmed(
        self, hold: Hold, links: Sequence[str], documents: int, sent: _Sent
    ) -> list[LedgerRecord]:
        """The records of the calls to `links` (in call order) their providers may have billed though no
        answer was used, one per paid link: two timed-out links of one chain are two records (the ledger
        gives each its `<stage>:unconfirmed…` stage)."""
        return [
            self._at_estimate(hold, link, documents, sent) for link in links if self._pricing.is_paid(link)
        ]

    def _at_estimate(self, hold: Hold, link: str, documents: int, sent: _Sent) -> LedgerRecord:
        """A call to `link` of `documents` documents recorded at the estimate, as if it had answered without
        reporting usage: the tokens of what was `sent` by the model's counter, its billed units and cost by
        its price (the amount a budget held for it), so the record's counts and its cost agree; a model with
        no listed price has an unknown cost."""
        query, texts = sent
        counter = counter_for(link)
        query_tokens = counter.count(query)
        document_tokens = sum(counter.count(text) for text in texts)
        price = self._pricing.price(link)
        billed = 0 if price is None else price.documents_billed(query_tokens, texts, counter.count)
        units = 0.0 if price is None else price.units(query_tokens, billed, document_tokens)
        name = parse_backend(link)
        return LedgerRecord(
            time=hold.time,
            request_id=hold.request_id,
            course=hold.course,
            tenant=hold.tenant,
            stage=hold.stage,
            backend=name.key,
            model=name.model,
            documents=documents,
            query_tokens=query_tokens,
            document_tokens=document_tokens,
            billed_units=units,
            billed_unit="none" if price is None else price.billed_unit,
            cost_usd=None if price is None else price.cost_of_units(units),
            latency_ms=0.0,
            cache_hits=0,
            count_source="estimate",
        )

    def _settle(
        self,
        usage: Usage,
        backend: str,
        query: str,
        documents: Sequence[str],
        hold: Hold,
        sent: _Sent,
        unconfirmed: Sequence[str],
        received: Sequence[str] | None,
        intended: Reranker,
    ) -> tuple[Usage, float | None, float | None, bool]:
        """Recount, price and record one call (off the event loop: tokenizers and the database block),
        with the links of a fallback chain that failed in a way their provider may still bill (estimated
        by what was `sent`); `intended` is the reranker the call was for (its full cost: `_full_cost`)."""
        usage = recount(usage, backend, query, documents)
        cost = self._pricing.cost_of(usage, backend)
        if usage.cost_usd is None and cost is not None:
            usage = replace(usage, cost_usd=cost)
        full = None
        if received is not None and cost is not None:
            full = self._full_cost(backend, intended, query, received, cost)
        name = parse_backend(backend)
        record = LedgerRecord(
            time=hold.time,
            request_id=hold.request_id,
            course=hold.course,
            tenant=hold.tenant,
            stage=hold.stage,
            backend=name.key,
            model=name.model,
            documents=len(documents),
            query_tokens=usage.query_tokens,
            document_tokens=usage.document_tokens,
            billed_units=usage.billed_units,
            billed_unit=usage.billed_unit,
            cost_usd=cost,
            latency_ms=usage.latency_s * 1000,
            cache_hits=usage.cache_hits,
            count_source=usage.count_source,
            documents_received=None if received is None else len(received),
            full_cost_usd=full,
        )
        maybe = self._unconfirmed(hold, unconfirmed, len(documents), sent)
        try:
            with span("leanrank.ledger.write", {"leanrank.records": 1 + len(maybe)}) as current:
                settled = self._ledger.settle(record, maybe)
                current.set_attributes({"leanrank.recorded": settled.recorded})
            self._observe(self._on_unconfirmed, settled.unconfirmed)
            self._observe(self._on_replaced, settled.replaced)
            return usage, cost, full, settled.recorded
        except LedgerError:
            # Served and maybe paid, but unrecorded: the log is what the operator reconciles from.
            _log.error("ledger write failed after the call; unrecorded call: %s", asdict(record))
            raise

    def _full_cost(
        self, backend: str, intended: Reranker, query: str, received: Sequence[str], cost: float
    ) -> float | None:
        """US dollars sending every `received` document would have cost, for a call that cost `cost`; None
        when no link has a price.

        One rule, whatever the cascade held back or the score cache answered: the price of `backend` (or,
        when that has none, as when the score cache answered, of the first priced link of `intended`) over
        what `intended` would send for those documents through that link (`as_sent`: the request's and the
        link's truncation and windows, so a windowed document counts as its windows), by the one estimate a
        budget holds (`Pricing.estimate`).
        Blank documents are left out: the guard never sends one, cascade or not. Never the provider's
        reported usage, which covers only what was forwarded and not answered from the cache: the same
        request would get a different full cost with each cache state. At least `cost`, so savings (full
        less cost) are never negative: sending more of the same texts never bills less, so a provider that
        reported more than the estimate for all (its own tokenizer, template tokens, its own split of long
        documents) shows the estimate low, and the forwarded call's cost is the closer bound.
        """
        links = [backend, *chain_links(intended.name)]
        priced = next((link for link in links if self._pricing.price(link) is not None), None)
        if priced is None:
            return None
        sent_query, texts = as_sent(intended, query, [doc for doc in received if not is_blank(doc)], priced)
        return max(self._pricing.estimate(priced, sent_query, texts), cost)


def _sent(reranker: Reranker, query: str, documents: Sequence[str]) -> _Sent:
    """What `reranker` sends its backend for `documents`: the clipped query and every window of a long
    document, by a request's own windows (`WindowedReranker`: a Cohere v1 request's `max_chunks_per_doc`;
    split once and kept for the call) and then by any the backend is configured with (`as_sent`). Each window
    is a document billed (a search unit covers 100), so estimates count these: before windowing they would
    hold too little."""
    if isinstance(reranker, WindowedReranker):
        windows = reranker.split(query, documents)  # kept for the call that follows
        return as_sent(reranker.inner, windows.query, windows.texts)
    return as_sent(reranker, query, documents)


async def _within(
    deadline_s: float, reranker: Reranker, query: str, documents: Sequence[str]
) -> RerankResponse:
    """`reranker`'s answer, or `RerankTimeoutError` once `deadline_s` have passed: the call is cancelled (the
    HTTP layer notes its attempt in flight as possibly billed, a chain its link: `http.billable_failures`),
    so it cannot outlive its hold."""
    scope = asyncio.timeout(deadline_s)
    try:
        async with scope:
            return await reranker.rerank(query, documents)
    except TimeoutError:
        if not scope.expired():
            raise  # the reranker's own, not the deadline's
        raise RerankTimeoutError(
            f"{reranker.name}: no answer within the call deadline of {deadline_s:g} s (rerank.deadline_s)"
        ) from None


def _own(exc: BackendError, unconfirmed_usd: float | None) -> BackendError:
    """A copy of `exc` carrying what this call recorded as possibly billed (`unconfirmed_usd`): one exception
    object may be raised to several calls (a merged batch's failure), each metered on its own. Made without
    calling `__init__`, whose parameters a backend's own error class may name differently than its `args`."""
    own = type(exc).__new__(type(exc), *exc.args)
    own.__dict__.update(vars(exc))
    own.unconfirmed_usd = unconfirmed_usd
    return own


def _billable(exc: BaseException, backend: str, answer: RerankResponse | None, noted: Billable) -> list[str]:
    """The calls of a failed rerank by `backend` that their providers may still bill, in call order.

    `noted` holds the calls noted as they failed (`http.billable_failures`): attempts sent but unanswered (the
    one a cancellation cut off in flight included), and a chain's failed links, the one whose error ended it
    included. An answer the meter refused (`_checked`) was served, so its link may bill, after them; a single
    backend's own failure is its own call, unless the HTTP layer noted its attempts as the call's deadline or
    its caller cut it off (`Billable.unnoted`): cut off while waiting to retry, no attempt was in flight.
    """
    if answer is not None:
        return [*noted.calls, answer.served_by or backend]
    if len(chain_links(backend)) > 1 or not noted.unnoted(exc):
        return list(noted.calls)
    return [*noted.calls, backend]


def _checked(response: RerankResponse, backend: str, query: str, documents: Sequence[str]) -> RerankResponse:
    """`response` if every score and usage number is finite (usage not negative) and the counts could be
    this request's as sent (`usage_bounds` of `documents` as `_sent`: each window one), else
    BadResponseError: the call is then recorded as possibly billed, at the estimate, instead of a provider's
    typo or a hostile stand-in filling the ledger and the budgets."""
    usage = response.usage
    numbers = [usage.query_tokens, usage.document_tokens, usage.billed_units, usage.latency_s]
    if usage.cost_usd is not None:
        numbers.append(usage.cost_usd)
    if not all(math.isfinite(n) and n >= 0 for n in numbers):
        raise BadResponseError(f"{backend}: usage with a number that is not finite or negative: {usage}")
    tokens, units = usage_bounds(query, documents, usage.billed_unit)
    for what, value, bound in (
        ("query tokens", usage.query_tokens, tokens),
        ("document tokens", usage.document_tokens, tokens),
        (f"billed {usage.billed_unit}", usage.billed_units, units),
    ):
        if value > bound:
            raise BadResponseError(
                f"{backend}: reported {value:g} {what} for {len(documents)} documents; at most {bound:g} "
                "can be this request's"
            )
    # The guard in front of every backend has already ranked a NaN or infinite score last as `UNSCORED`
    # (with a warning in the usage record); anything else non-finite comes from an unguarded backend.
    if not all(math.isfinite(s) or s == UNSCORED for s in response.scores):
        raise BadResponseError(f"{backend}: a score that is not finite")
    return response


_WINDOW_OVERLAP = 2
"""Windows of a long document cut where the meter does not see them (a catalog backend's `max_doc_tokens`,
behind its guard and cache; `leanrank.rerank.windows`) may overlap: each byte is counted at most this many
times."""
_SPECIAL_TOKENS = 16
"""Template tokens a pair may add beyond its text (start, separators, end, instructions)."""
_CHUNK_BYTES = 256
"""The smallest chunk a search-unit provider splits a long document into is at least this many tokens (half
of a 512-token context, the rest being the query), and a token covers at least one byte."""


def usage_bounds(query: str, documents: Sequence[str], unit: str) -> tuple[float, float]:
    """The most tokens, and the most billed units of `unit`, that reranking `documents` for `query` can use.

    Generous on purpose (every token covers at least one UTF-8 byte; windows may overlap twice; the query is
    sent once per document): only a count no tokenizer could produce is refused. Search units: one per 100
    documents after long ones are split into chunks (Cohere's rule). Units `none` and `characters` bound by
    the same byte count.
    """
    q = len(query.encode("utf-8", "surrogatepass"))
    sizes = [len(d.encode("utf-8", "surrogatepass")) for d in documents]
    tokens = float(_WINDOW_OVERLAP * (len(documents) * (q + _SPECIAL_TOKENS) + sum(sizes)))
    if unit == "search_units":
        chunks = sum(max(1, -(-_WINDOW_OVERLAP * b // _CHUNK_BYTES)) for b in sizes)
        return tokens, float(max(1, -(-chunks // SEARCH_UNIT_DOCUMENTS)))
    return tokens, tokens


def recount(usage: Usage, backend: str, query: str, documents: Sequence[str]) -> Usage:
    """A character estimate of a token-billed call, replaced by the model's own tokenizer where bundled.

    A free call (identity, a free local model) that counted nothing gets the tokens a token-billed API would
    have been sent, still billed as nothing: `costs project --from-ledger` prices that traffic elsewhere.
    Only when the usage covers exactly these texts (no cache hits, no windows); a wrapper that truncated
    documents makes this an upper bound of what was sent.
    """
    if usage.billed_unit == "none" and not (
        usage.total_tokens or usage.cache_hits or usage.documents != len(documents)
    ):
        counter = counter_for(backend)
        return replace(
            usage,
            query_tokens=counter.count(query),
            document_tokens=sum(counter.count(doc) for doc in documents),
            count_source=counter.source,
        )
    if (
        usage.count_source != "estimate"
        or usage.billed_unit != "tokens"
        or usage.cache_hits
        or usage.documents != len(documents)
    ):
        return usage
    counter = counter_for(backend)
    if counter.source != "tokenizer":
        return usage
    query_tokens = counter.count(query)
    document_tokens = [counter.count(doc) for doc in documents]
    return replace(
        usage,
        query_tokens=query_tokens,
        document_tokens=sum(document_tokens),
        billed_units=float(pair_tokens(query_tokens, document_tokens)),
        count_source="tokenizer",
    )
