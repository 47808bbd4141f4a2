"""Budgets per course or tenant and UTC day or month, enforced by reserving spend before each paid call.

A soft cap logs a warning (once per cap and period) and counts every call made above it; a hard cap makes
the meter serve from the free fallback. `reserve` holds a paid call's estimated cost in the ledger, in the
same transaction that reads what is spent and held, and admits it only if it fits under every hard cap:
concurrent calls, in any number of processes, cannot overshoot a cap together. A call whose actual cost
exceeds its estimate (a provider counting more tokens than estimated) can overshoot by that difference.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from leanrank.cost.ledger import CostLedger, Hold, Reservation, Scope
from leanrank.cost.period import Period
from leanrank.errors import LeanrankError
from leanrank.settings import BudgetSettings

BudgetLevel = Literal["ok", "soft", "hard"]
_RANK: Mapping[BudgetLevel, int] = {"ok": 0, "soft": 1, "hard": 2}
_EPS_USD = 1e-9  # sums of float prices: ten calls of $0.002 must fit a $0.02 cap

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BudgetState:
    """The strictest cap that applies: its level, what was spent in its period and the cap (None: no cap).

    When every cap is `ok`, `cap_usd` is the nearest one, so callers can show how close spending is.
    """

    level: BudgetLevel
    spent_usd: float
    cap_usd: float | None
    rule: BudgetSettings | None = None

    @property
    def label(self) -> str:
        """`course:NAME/month` etc., the rule a state came from (`-` when no rule applies)."""
        return "-" if self.rule is None else f"{self.rule.scope}:{self.rule.name}/{self.rule.period}"


UNLIMITED = BudgetState("ok", 0.0, None)


class BudgetExceededError(LeanrankError):
    """A hard cap is reached and no free reranker can serve instead."""

    def __init__(self, state: BudgetState) -> None:
        super().__init__(
            f"budget {state.label} reached: spent ${state.spent_usd:.4f} of ${state.cap_usd or 0:.4f}; "
            "configure a free fallback reranker (cost.fallback) or raise the cap"
        )
        self.state = state


class Budget:
    """Caps from settings, evaluated on the ledger's spending in the period that holds `now`."""

    def __init__(self, rules: Sequence[BudgetSettings], ledger: CostLedger) -> None:
        self._rules = tuple(rules)
        self._ledger = ledger
        self._soft = Counter[str]()
        self._warned: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()

    @property
    def soft_warnings(self) -> Mapping[str, int]:
        """Checks that found a soft cap reached, per `scope:name/period` of the rule."""
        with self._lock:
            return dict(self._soft)

    def check(self, course: str | None, tenant: str | None, now: datetime) -> BudgetState:
        """The strictest state over the caps for this course and tenant (`spent >= cap` reaches a cap)."""
        rules = self._applicable(course, tenant, now)
        return self._worst(rules, [self._ledger.spent(*scope) for _, scope in rules], 0.0)

    def reserve(self, hold: Hold, *, paid: bool) -> tuple[BudgetState, Reservation]:
        """Hold a `paid` call's `hold.amount_usd` if it fits under every hard cap; the state before it,
        and the ledger's reservation (whether it was held, what reaping expired holds recorded). A free call
        is always held: it claims its request id, spends nothing.
        """
        rules = self._applicable(hold.course, hold.tenant, hold.time)

        def admit(committed: Sequence[float]) -> bool:
            states = (_state(rule, c, hold.amount_usd) for (rule, _), c in zip(rules, committed, strict=True))
            return not paid or all(s.level != "hard" for s in states)

        reservation = self._ledger.reserve(hold, [scope for _, scope in rules], admit)
        return self._worst(rules, reservation.committed, hold.amount_usd), reservation

    def _applicable(
        self, course: str | None, tenant: str | None, now: datetime
    ) -> list[tuple[BudgetSettings, tuple[Scope, str, Period]]]:
        found: list[tuple[BudgetSettings, tuple[Scope, str, Period]]] = []
        for rule in self._rules:
            who = course if rule.scope == "course" else tenant
            if who is None or rule.name not in (who, "*"):
                continue
            period = Period.month_of(now) if rule.period == "month" else Period.day_of(now)
            found.append((rule, (rule.scope, who, period)))
        return found

    def _worst(
        self,
        rules: Sequence[tuple[BudgetSettings, tuple[Scope, str, Period]]],
        committed: Sequence[float],
        amount_usd: float,
    ) -> BudgetState:
        worst = UNLIMITED
        for (rule, (_, who, period)), spent in zip(rules, committed, strict=True):
            state = _state(rule, spent, amount_usd)
            if state.level == "soft":
                self._note_soft(state, who, period)
            if _more_urgent(state, worst):
                worst = state
        return worst

    def _note_soft(self, state: BudgetState, who: str, period: Period) -> None:
        with self._lock:
            self._soft[state.label] += 1
            first = (state.label, who, period.label) not in self._warned
            self._warned.add((state.label, who, period.label))
        if first:
            _log.warning(
                "soft budget %s reached for %s in %s: spent $%.4f of $%.4f",
                state.label,
                who,
                period.label,
                state.spent_usd,
                state.cap_usd,
            )


def _state(rule: BudgetSettings, spent: float, amount_usd: float) -> BudgetState:
    """`hard` when the cap is reached or `amount_usd` more would go over it."""
    hard = rule.hard_usd
    if hard is not None and (spent >= hard - _EPS_USD or spent + amount_usd > hard + _EPS_USD):
        return BudgetState("hard", spent, hard, rule)
    if rule.soft_usd is not None and spent >= rule.soft_usd:
        return BudgetState("soft", spent, rule.soft_usd, rule)
    return BudgetState("ok", spent, rule.soft_usd if rule.soft_usd is not None else rule.hard_usd, rule)


def _more_urgent(a: BudgetState, b: BudgetState) -> bool:
    """Higher level first; within a level, the larger share of its cap."""
    if _RANK[a.level] != _RANK[b.level]:
        return _RANK[a.level] > _RANK[b.level]
    return _share(a) > _share(b)


def _share(state: BudgetState) -> float:
    if state.cap_usd is None:
        return -1.0
    return state.spent_usd / state.cap_usd if state.cap_usd > 0 else float("inf")
