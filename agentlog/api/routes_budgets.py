"""/budgets: token budgets (set, read) and reservations (reserve before an LLM call, settle after it, release).

A reservation holds tokens on every budget that applies to the agent — `global` and `agent-<agent id>`, those that
are set — in one append, each at the version of the ledger it was decided on (`domains.budgets.ledger`): settled
and open reservations never exceed a limit, whatever the concurrency, because a racing reservation's append fails
and it decides again from the newer ledger. Each carries its expiry timer, so a caller that dies gives it back.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Path

from agentlog.api.commands import BudgetFold
from agentlog.api.errors import forbidden, invalid, not_found
from agentlog.api.reads import QUERIES
from agentlog.api.services import Act, Reader, Services, Svc, Who
from agentlog.api.views import budget, budget_left, budget_state
from agentlog.client import models
from agentlog.domains.budgets import ledger as rules
from agentlog.domains.budgets.events import BUDGET_ID_PATTERN, TokensReserved, agent_budget, budget_stream
from agentlog.domains.budgets.ledger import UnknownReservationError
from agentlog.domains.budgets.periods import period_of
from agentlog.eventstore import Event

router = APIRouter(tags=["budgets"])
BudgetPath = Annotated[str, Path(pattern=BUDGET_ID_PATTERN, description="global, or agent-<agent id>")]
ReservationPath = Annotated[str, Path(min_length=1, max_length=64)]
Plan = list[tuple[str, int | None, list[Event]]]
GLOBAL = "global"


def budgets_of(agent_id: str) -> list[str]:
    """The budgets an agent's calls count against (those of them that are set)."""
    return [GLOBAL, agent_budget(agent_id)]


@router.put("/budgets/{budget_id}", response_model=models.Budget)
async def set_budget(
    budget_id: BudgetPath, body: models.BudgetLimit, services: Svc, who: Who, actor: Act
) -> models.Budget:
    """Set or change a daily budget (admins only): its limit, and the hour and time zone its day begins at. A limit
    below what the day has already settled and holds open is refused (422)."""
    if who.kind != "admin":
        raise forbidden("only an admin token sets budgets")
    try:
        ZoneInfo(body.time_zone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise invalid("time_zone", f"unknown time zone {body.time_zone!r} (an IANA name, like Europe/Paris)") from error
    coordinator = services.coordinator
    now = datetime.now(UTC)
    period = period_of(now, body.reset_hour, body.time_zone)
    folded: list[BudgetFold] = []

    async def plan() -> Plan:
        fold = await coordinator.budget(budget_id)
        folded[:] = [fold]
        events = rules.set_limit(
            fold.ledger, budget_id, body.limit_tokens, period, reset_hour=body.reset_hour, time_zone=body.time_zone,
            set_by=who.name,
        )  # fmt: skip
        return [(budget_stream(budget_id), fold.version, events)]

    written = await coordinator.decide(actor, plan)
    services.wrote(who, written)
    fold = folded[0]
    for event in written.events:
        fold.fold(event)
    fold.version = written.stream_version
    return budget_state(fold, fold.ledger.period_at(now))


@router.get("/budgets", response_model=list[models.Budget])
async def list_budgets(services: Svc, who: Reader) -> list[models.Budget]:
    return [budget(row) for row in await services.store.pool.fetch(QUERIES["budgets"])]


@router.get("/budgets/{budget_id}", response_model=models.Budget)
async def get_budget(budget_id: BudgetPath, services: Svc, who: Reader) -> models.Budget:
    """The budget now, as its stream folds (exact): settled, reserved, left, warnings of the current period."""
    fold = await services.coordinator.budget(budget_id)
    if not fold.ledger.defined:
        raise not_found(f"no budget {budget_id}: set its limit first (PUT /api/v1/budgets/{budget_id})")
    return budget_state(fold, fold.ledger.period_at(datetime.now(UTC)))


async def _set_budgets(services: Services, agent_id: str) -> dict[str, BudgetFold]:
    folds = {budget_id: await services.coordinator.budget(budget_id) for budget_id in budgets_of(agent_id)}
    return {budget_id: fold for budget_id, fold in folds.items() if fold.ledger.defined}


@router.post("/budgets/reservations", response_model=models.Reservation, status_code=201)
async def reserve(body: models.ReservationRequest, services: Svc, who: Who, actor: Act) -> models.Reservation:
    """Hold `tokens` (an estimate: the call's `max_tokens` and its prompt) before an LLM call, on the global
    budget and the agent's own. Either does not fit: 409 `budget_exceeded` naming it and what it has left, and
    nothing is held anywhere. Give back what was not used by settling (or releasing) before `ttl_s`."""
    agent_id = who.agent(body.agent_id)
    reservation_id = body.reservation_id or "rsv-" + secrets.token_hex(8)
    now = datetime.now(UTC)
    held: list[models.BudgetLeft] = []

    async def plan() -> Plan:
        folds = await _set_budgets(services, agent_id)
        decided = rules.reserve_all(
            {budget_id: fold.ledger for budget_id, fold in folds.items()}, reservation_id, body.tokens, now,
            agent_id=agent_id, ttl_s=body.ttl_s, purpose=body.purpose,
        )  # fmt: skip
        planned: Plan = []
        held.clear()
        for budget_id, events in decided.items():
            reserved = events[0]
            assert isinstance(reserved, TokensReserved)
            timer = rules.expiry_timer(reserved)
            planned.append((budget_stream(budget_id), folds[budget_id].version, [*events, timer]))
            after = folds[budget_id].model_copy(deep=True)
            for event in events:
                after.fold(event)
            held.append(budget_left(after, reserved.period))
        return planned

    if await _set_budgets(services, agent_id):
        services.wrote(who, await services.coordinator.decide(actor, plan))
    return models.Reservation(reservation_id=reservation_id, agent_id=agent_id, tokens=body.tokens, budgets=held)


async def _close(
    services: Services, who: Who, actor: Act, agent_id: str, reservation_id: str, settle_tokens: int | None,
    reason: str = "",
) -> Sequence[tuple[models.BudgetLeft, int]]:  # fmt: skip
    """Settle (`settle_tokens` used) or release the reservation on every budget holding it."""
    now = datetime.now(UTC)
    closed: list[tuple[models.BudgetLeft, int]] = []

    async def plan() -> Plan:
        folds = await _set_budgets(services, agent_id)
        planned: Plan = []
        closed.clear()
        for budget_id, fold in sorted(folds.items()):
            reservation = fold.ledger.open.get(reservation_id)
            if reservation is None:
                continue
            if reservation.agent_id and reservation.agent_id != agent_id:
                raise forbidden(f"reservation {reservation_id} is agent {reservation.agent_id}'s, not {agent_id}'s")
            period = fold.ledger.period_at(now)
            events = (
                rules.release(fold.ledger, reservation_id, period, reason) if settle_tokens is None
                else rules.settle(fold.ledger, reservation_id, settle_tokens, period)
            )  # fmt: skip
            planned.append((budget_stream(budget_id), fold.version, events))
            after = fold.model_copy(deep=True)
            for event in events:
                after.fold(event)
            unbudgeted = int(getattr(events[0], "unbudgeted", 0))
            closed.append((budget_left(after, period), unbudgeted))
        if not planned:
            raise UnknownReservationError(
                f"reservation {reservation_id} is not open on any budget of agent {agent_id} "
                "(never made, or settled, released or expired already)"
            )
        return planned

    if not await _set_budgets(services, agent_id):
        return closed  # no budget is set: nothing was held, nothing limits the call
    services.wrote(who, await services.coordinator.decide(actor, plan))
    return closed


@router.post("/budgets/reservations/{reservation_id}/settle", response_model=models.Settlement)
async def settle(
    reservation_id: ReservationPath, body: models.SettlementRequest, services: Svc, who: Who, actor: Act
) -> models.Settlement:
    """Charge what the call used and give back the rest of the reservation. Usage beyond what a budget had left
    is charged only up to its limit; the rest is reported as `unbudgeted_tokens`."""
    agent_id = who.agent(body.agent_id)
    closed = await _close(services, who, actor, agent_id, reservation_id, body.used_tokens)
    return models.Settlement(
        reservation_id=reservation_id, used_tokens=body.used_tokens,
        unbudgeted_tokens=max((extra for _, extra in closed), default=0), budgets=[left for left, _ in closed],
    )  # fmt: skip


@router.post("/budgets/reservations/{reservation_id}/release", response_model=list[models.BudgetLeft])
async def release(
    reservation_id: ReservationPath, body: models.ReleaseRequest, services: Svc, who: Who, actor: Act
) -> list[models.BudgetLeft]:
    """Give the whole reservation back (the call was not made)."""
    agent_id = who.agent(body.agent_id)
    closed = await _close(services, who, actor, agent_id, reservation_id, None, body.reason)
    return [left for left, _ in closed]
