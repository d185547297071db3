"""/budgets: token budgets (set, read) and reservations (reserve before an LLM call, settle after it, release),
decided as everywhere else by `handlers.budgets.reservations` on the budgets' streams: settled and open
reservations never exceed a limit, whatever the concurrency."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path

from agentlog.api.commands import BudgetFold
from agentlog.api.errors import forbidden, not_found
from agentlog.api.reads import QUERIES
from agentlog.api.services import Act, Reader, Services, Svc, Who
from agentlog.api.views import budget, budget_state
from agentlog.client import models
from agentlog.domains.budgets import ledger as rules
from agentlog.domains.budgets.events import BUDGET_ID_PATTERN, budget_stream
from agentlog.domains.budgets.ledger import ReservationOpenError
from agentlog.domains.budgets.periods import period_of
from agentlog.eventstore import Event
from agentlog.handlers.budgets.reservations import Left

router = APIRouter(tags=["budgets"])
BudgetPath = Annotated[str, Path(pattern=BUDGET_ID_PATTERN, description="global, or agent-<agent id>")]
ReservationPath = Annotated[str, Path(min_length=1, max_length=64)]
Plan = list[tuple[str, int | None, list[Event]]]
@router.put("/budgets/{budget_id}", response_model=models.Budget)
async def set_budget(
    budget_id: BudgetPath, body: models.BudgetLimit, services: Svc, who: Who, actor: Act
) -> models.Budget:
    """Set or change a daily budget (admins only): its limit, and the hour and time zone its day begins at. A limit
    below what the day has already settled and holds open is refused (422)."""
    if who.kind != "admin":
        raise forbidden("only an admin token sets budgets")
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


def _left(left: Left) -> models.BudgetLeft:
    return models.BudgetLeft(budget_id=left.budget_id, period=left.period, limit_tokens=left.limit_tokens,
                             remaining_tokens=left.remaining_tokens)  # fmt: skip


@router.post("/budgets/reservations", response_model=models.Reservation, status_code=201)
async def reserve(body: models.ReservationRequest, services: Svc, who: Who, actor: Act) -> models.Reservation:
    """Hold `tokens` (an estimate: the call's `max_tokens` and its prompt) before an LLM call, on the global
    budget and the agent's own, those that are set (none set: nothing is held, `budgets` is empty). Either does not
    fit: 409 `budget_exceeded` naming it and what it has left, and nothing is held anywhere. Give back what was not
    used by settling (or releasing) before `ttl_s`, after which the reservation expires by itself."""
    agent_id = who.agent(body.agent_id)
    reservation_id = body.reservation_id or actor.mint("rsv-")
    reservations = services.coordinator.reservations
    try:
        held, written = await reservations.reserve(
            agent_id, reservation_id, body.tokens, datetime.now(UTC), ttl_s=body.ttl_s, purpose=body.purpose,
            new_event=actor.new, again=actor.again,
        )  # fmt: skip
    except ReservationOpenError:
        # Its id minted from this request's Idempotency-Key: this very request's first run, cut off before it
        # answered (the id is [kind, name, key]'s, nobody else's), answered as that run would have been.
        minted = body.reservation_id is None and actor.key is not None
        again = await reservations.holding(agent_id, reservation_id, body.tokens) if minted else None
        if again is None:
            raise
        held, written = again, None
    if written is not None:
        services.wrote(who, written)
    return models.Reservation(reservation_id=reservation_id, agent_id=agent_id, tokens=body.tokens,
                              budgets=[_left(left) for left in held])  # fmt: skip


async def _close(
    services: Services, who: Who, actor: Act, agent_id: str, reservation_id: str, used_tokens: int | None,
    reason: str = "",
) -> list[Left]:  # fmt: skip
    closed, written = await services.coordinator.reservations.close(
        agent_id, reservation_id, used_tokens, datetime.now(UTC), reason=reason, new_event=actor.new, again=actor.again
    )
    if written is not None:
        services.wrote(who, written)
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
        unbudgeted_tokens=max((left.unbudgeted_tokens for left in closed), default=0),
        budgets=[_left(left) for left in closed],
    )  # fmt: skip


@router.post("/budgets/reservations/{reservation_id}/release", response_model=list[models.BudgetLeft])
async def release(
    reservation_id: ReservationPath, body: models.ReleaseRequest, services: Svc, who: Who, actor: Act
) -> list[models.BudgetLeft]:
    """Give the whole reservation back (the call was not made)."""
    agent_id = who.agent(body.agent_id)
    return [_left(left) for left in await _close(services, who, actor, agent_id, reservation_id, None, body.reason)]
