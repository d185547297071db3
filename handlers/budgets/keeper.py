"""The budget keeper decider: gives back reservations whose caller died (their expiry timer fired unsettled).

The API appends a reservation with its expiry timer (`domains.budgets.ledger.reserve`) at the budget stream's
version it decided from; the timer service fires it on the same stream; this decider folds every budget
(`BudgetLedger`) and, when the timer fires for a reservation still open, appends `ReservationExpired`. It appends
at any version: a settlement that lands between the timer and the expiry comes first in the log, and the fold of
an expiry for a reservation no longer open changes nothing, so nothing is ever given back twice.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field

from agentlog.domains.budgets.events import budget_stream
from agentlog.domains.budgets.ledger import RESERVATION_EXPIRY, BudgetLedger, budget_of, expire
from agentlog.domains.timers.events import TimerFired
from agentlog.handlers.decider import Decision, Fact
from agentlog.handlers.decider_state import KeyedState


class KeeperSettings(BaseModel):
    """Nothing to set: limits, resets and TTLs come with the events that set them."""


class KeeperState(KeyedState):
    keyed: ClassVar[dict[str, tuple[str, ...]]] = {"budget": ("ledgers",)}

    ledgers: dict[str, BudgetLedger] = Field(default_factory=dict)


class BudgetKeeper:
    name: ClassVar[str] = "budget-keeper"
    input_types: ClassVar[frozenset[str]] = frozenset(
        {"BudgetSet", "TokensReserved", "ReservationSettled", "ReservationReleased", "ReservationExpired",
         "BudgetWarning", "TimerScheduled", "TimerFired"}
    )  # fmt: skip
    state_model: ClassVar[type[KeeperState]] = KeeperState
    state_version: ClassVar[int] = 3
    """2: the ledger knows each open reservation's expiry timer (read from its `TimerScheduled`). 3: and an expiry
    by another timer than that changes nothing."""

    def __init__(self) -> None:
        self.configured = KeeperSettings()

    def initial_state(self) -> KeeperState:
        return KeeperState()

    def evolve(self, state: KeeperState, fact: Fact) -> KeeperState:
        event = fact.event
        if isinstance(event, TimerFired):
            return state
        budget_id = budget_of(fact.stream_id, event)
        if budget_id is not None:
            state.ledgers.setdefault(budget_id, BudgetLedger(budget_id=budget_id)).fold(event)
            state.changed("budget", budget_id)
        return state

    def decide(self, state: KeeperState, fact: Fact) -> list[Decision]:
        event = fact.event
        if not isinstance(event, TimerFired) or event.purpose != RESERVATION_EXPIRY:
            return []
        budget_id = event.subject.partition("/")[0]
        ledger = state.ledgers.get(budget_id)
        if ledger is None or fact.stream_id != budget_stream(budget_id):
            return []
        return [Decision(fact.stream_id, expired) for expired in expire(ledger, event.subject, event.timer_id)]
