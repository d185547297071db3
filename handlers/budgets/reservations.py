"""Reservations of tokens as commands on the log, for every caller that spends them: the API (agents' own LLM
calls) and the agent supervisor (its document agents' calls), so the rule is applied one way everywhere.

A reservation holds tokens on every budget that applies to the agent — `global` and `agent-<agent id>`, those set
— in one append, each at the version of the ledger it was decided on (`domains.budgets.ledger`): settled and open
reservations never exceed a limit, whatever the concurrency, because a racing reservation's append fails and it
decides again from the newer ledger. Each carries its expiry timer, so a caller that dies gives it back (the budget
keeper). Settling or releasing closes it on every budget holding it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field

from agentlog.domains.budgets import ledger as rules
from agentlog.domains.budgets.events import TokensReserved, agent_budget, budget_stream
from agentlog.domains.budgets.ledger import BudgetLedger, ReservationNotYoursError, UnknownReservationError
from agentlog.eventstore import Event, EventStore, NewEvent
from agentlog.eventstore.folds import Planned, StreamFolds, Written, append_decided

GLOBAL = "global"


class BudgetFold(BaseModel):
    """A budget's ledger and the stream version it is folded to."""

    version: int = 0
    ledger: BudgetLedger = Field(default_factory=BudgetLedger)

    def fold(self, event: Event, version: int | None = None) -> None:
        self.ledger.fold(event)
        if version is not None:
            self.version = version


@dataclass(frozen=True, slots=True)
class Left:
    """What one budget has left after a command, in the period it counted in."""

    budget_id: str
    period: str
    limit_tokens: int
    remaining_tokens: int
    unbudgeted_tokens: int = 0
    """Of a settlement: the usage this budget had no room for."""


def left_of(fold: BudgetFold, period: str, unbudgeted: int = 0) -> Left:
    ledger = fold.ledger
    return Left(ledger.budget_id, max(period, ledger.period), ledger.limit_tokens, ledger.remaining(period), unbudgeted)


def budgets_of(agent_id: str) -> list[str]:
    """The budgets an agent's calls count against (those of them that are set)."""
    return [GLOBAL, agent_budget(agent_id)]


NewEventOf = Callable[[Event], NewEvent]


class Reservations:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.folds: StreamFolds[BudgetFold] = StreamFolds(store, BudgetFold)

    async def budget(self, budget_id: str) -> BudgetFold:
        return await self.folds.current(budget_stream(budget_id))

    async def set_budgets(self, agent_id: str) -> dict[str, BudgetFold]:
        """The agent's budgets that are set, as their streams fold now."""
        ids = budgets_of(agent_id)
        folds = dict(zip(ids, await asyncio.gather(*(self.budget(budget_id) for budget_id in ids)), strict=True))
        return {budget_id: fold for budget_id, fold in folds.items() if fold.ledger.defined}

    async def reserve(
        self, agent_id: str, reservation_id: str, tokens: int, now: datetime, *, ttl_s: float = 600.0,
        purpose: str = "", new_event: NewEventOf = NewEvent, again: Callable[[], None] = lambda: None,
    ) -> tuple[list[Left], Written | None]:  # fmt: skip
        """Hold `tokens` on the agent's budgets, all or none (`BudgetExceededError` names the one without room).
        No budget set: nothing is held, nothing limits the call ([], None)."""
        held: list[Left] = []

        async def plan() -> list[Planned]:
            folds = await self.set_budgets(agent_id)
            decided = rules.reserve_all(
                {budget_id: fold.ledger for budget_id, fold in folds.items()}, reservation_id, tokens, now,
                agent_id=agent_id, ttl_s=ttl_s, purpose=purpose,
            )  # fmt: skip
            planned: list[Planned] = []
            held.clear()
            for budget_id, events in decided.items():
                reserved = events[0]
                assert isinstance(reserved, TokensReserved)
                planned.append((budget_stream(budget_id), folds[budget_id].version, events))
                held.append(left_of(_after(folds[budget_id], events), reserved.period))
            return planned

        if not await self.set_budgets(agent_id):
            return [], None
        return held, await append_decided(self.store, plan, new_event, again)

    async def holding(self, agent_id: str, reservation_id: str, tokens: int) -> list[Left] | None:
        """What each of the agent's budgets has left while reservation `reservation_id` of `tokens` is open on every
        one of them (None if it is not: closed, another's, another amount)."""
        held: list[Left] = []
        for _budget_id, fold in sorted((await self.set_budgets(agent_id)).items()):
            reservation = fold.ledger.open.get(reservation_id)
            if reservation is None or reservation.agent_id != agent_id or reservation.tokens != tokens:
                return None
            held.append(left_of(fold, fold.ledger.period))
        return held

    async def close(
        self, agent_id: str, reservation_id: str, used_tokens: int | None, now: datetime, *, reason: str = "",
        new_event: NewEventOf = NewEvent, again: Callable[[], None] = lambda: None,
    ) -> tuple[list[Left], Written | None]:  # fmt: skip
        """Settle (`used_tokens`) or release (None) the reservation on every budget of the agent holding it."""
        closed: list[Left] = []

        async def plan() -> list[Planned]:
            planned, left = await self.closing(agent_id, reservation_id, used_tokens, now, reason=reason)
            closed[:] = left
            return planned

        if not await self.set_budgets(agent_id):
            return [], None  # no budget is set: nothing was held
        return closed, await append_decided(self.store, plan, new_event, again)

    async def closing(
        self, agent_id: str, reservation_id: str, used_tokens: int | None, now: datetime, *, reason: str = ""
    ) -> tuple[list[Planned], list[Left]]:
        """The appends that settle (or release) the reservation, decided on the budgets as they fold now, for a
        caller to append with its own events in one transaction (a model's answer and what it cost); none when no
        budget is set. Raises as `close` does."""
        planned: list[Planned] = []
        closed: list[Left] = []
        budgets = await self.set_budgets(agent_id)
        for budget_id, fold in sorted(budgets.items()):
            reservation = fold.ledger.open.get(reservation_id)
            if reservation is None:
                continue
            if reservation.agent_id and reservation.agent_id != agent_id:
                raise ReservationNotYoursError(
                    f"reservation {reservation_id} is agent {reservation.agent_id}'s, not {agent_id}'s"
                )
            period = fold.ledger.period_at(now)
            events = (
                rules.release(fold.ledger, reservation_id, period, reason) if used_tokens is None
                else rules.settle(fold.ledger, reservation_id, used_tokens, period)
            )  # fmt: skip
            planned.append((budget_stream(budget_id), fold.version, events))
            closed.append(left_of(_after(fold, events), period, int(getattr(events[0], "unbudgeted", 0))))
        if budgets and not planned:
            raise UnknownReservationError(
                f"reservation {reservation_id} is not open on any budget of agent {agent_id} "
                "(never made, or settled, released or expired already)"
            )
        return planned, closed

def _after(fold: BudgetFold, events: list[Event]) -> BudgetFold:
    after = fold.model_copy(deep=True)
    for event in events:
        after.fold(event)
    return after
