"""The budget keeper decider: an expiry timer gives back a reservation still open, and nothing else."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from agentlog.domains.budgets.events import budget_stream
from agentlog.domains.budgets.ledger import BudgetLedger, fold_all, release, reserve, set_limit
from agentlog.domains.timers.events import TimerFired, TimerScheduled
from agentlog.eventstore import Event
from agentlog.handlers.agents.supervisor import new_reservation_id
from agentlog.handlers.budgets.keeper import BudgetKeeper, KeeperState
from agentlog.handlers.decider import Decision, Fact, step
from tests.unit.saved_rows import SavedRows

STREAM = budget_stream("global")
DUE = datetime(2026, 1, 1, tzinfo=UTC)


class Log:
    def __init__(self) -> None:
        self.decider = BudgetKeeper()
        self.state = self.decider.initial_state()
        self.events: list[Event] = []

    def feed(self, *events: Event) -> list[Decision]:
        decided: list[Decision] = []
        for event in events:
            self.events.append(event)
            fact = Fact(event, uuid.UUID(int=len(self.events)), STREAM, len(self.events))
            self.state, decisions = step(self.decider, self.state, fact)
            self.events += [decision.event for decision in decisions]
            decided += decisions
        saved = SavedRows()
        saved.save(self.state, everything=True)
        assert saved.load(KeeperState).model_dump() == self.state.model_dump()
        return decided


def test_an_expired_reservation_is_given_back_once_and_a_released_one_not_at_all() -> None:
    log = Log()
    log.feed(*set_limit(BudgetLedger(), "global", 1_000, "2026-01-01"))
    for reservation_id in ("r1", "r2"):
        log.feed(*reserve(fold_all(log.events), reservation_id, 100, "2026-01-01", ttl_s=60))
    log.feed(*release(fold_all(log.events), "r2", "2026-01-01"))
    fired = [e for e in log.events if isinstance(e, TimerScheduled)]
    decided = log.feed(*(TimerFired(timer_id=t.timer_id, purpose=t.purpose, subject=t.subject, due_at=DUE)
                         for t in fired))  # fmt: skip
    assert [(d.stream_id, d.event.event_type, d.event.to_data()["reservation_id"]) for d in decided] == [
        (STREAM, "ReservationExpired", "r1")
    ]
    assert fold_all(log.events).open == {}
    again = fired[0]
    assert log.feed(TimerFired(timer_id=again.timer_id, purpose=again.purpose, subject=again.subject, due_at=DUE)) == []


def test_the_supervisors_reservation_ids_are_new_every_call_and_fit_whatever_the_agent_id() -> None:
    """They were the agent id, the worker's pid and a counter cut to 64 characters: a long agent id lost the
    counter (every call the same id) and a restarted worker could get its pid and counter back."""
    agent_id = "a" * 80
    made = {new_reservation_id(agent_id) for _ in range(1_000)}
    assert len(made) == 1_000 and all(len(rid) <= 64 and rid.startswith("a" * 31) for rid in made)
