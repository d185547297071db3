"""/operations: conflict detection (seed 002). An agent registers the operation it starts on an entity key (an
email id, a customer id); another agent's operation on that key registered inside its conflict window answers 409
naming it and its agent, so two agents never answer one email twice. Operations end when finished, or by their
expiry timer. Decided by the operations domain's rule on the key's stream (`domains.operations.conflicts`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from agentlog.api.errors import not_found
from agentlog.api.reads import QUERIES
from agentlog.api.services import Act, Reader, Svc, Who
from agentlog.client import models
from agentlog.domains.operations import conflicts as rules
from agentlog.domains.operations.conflicts import Operation
from agentlog.domains.operations.events import OPERATION_ID_PATTERN, normalise_key, operation_stream
from agentlog.eventstore import Event

router = APIRouter(tags=["conflict detection"])
Plan = list[tuple[str, int | None, list[Event]]]


def operation_of(key: str, operation: Operation, state: str = "open") -> models.Operation:
    return models.Operation(
        key=key, operation_id=operation.operation_id, agent_id=operation.agent_id, action=operation.action,
        window_s=operation.window_s, ttl_s=operation.ttl_s, in_window=operation.in_window, state=state,
    )  # fmt: skip


@router.post("/operations", response_model=models.Operation, status_code=201)
async def register_operation(body: models.OperationStart, services: Svc, who: Who, actor: Act) -> models.Operation:
    """Register the operation I start on `key`. Another agent's operation on the key registered less than its
    `window_s` ago: 409 naming it and its agent (nothing registered). Mine again (same `operation_id`): the one
    under way. It ends when finished, or after `ttl_s`."""
    agent_id = who.agent(body.agent_id)
    key = normalise_key(body.key)
    operation_id = body.operation_id or actor.mint("op-")
    folds = services.coordinator.operations
    stream = operation_stream(key)

    registered: list[Operation] = []

    async def plan() -> Plan:
        state = await folds.current(stream)
        events = rules.register(state, key, agent_id, body.action, operation_id, body.window_s, body.ttl_s, body.data)
        for event in events:
            state.fold(event)
        registered[:] = [state.open[operation_id]]
        return [(stream, state.version, events)] if events else []

    planned = await plan()  # a registration already under way appends nothing
    if planned:
        services.wrote(who, await services.coordinator.decide(actor, plan))
    # As registered; finished already when it ended (finished, or a very short TTL) before this answer.
    ended = operation_id not in (await folds.current(stream)).open
    return operation_of(key, registered[0], "finished" if ended else "open")


@router.post("/operations/{operation_id}/finish", response_model=models.Operation)
async def finish_operation(
    operation_id: Annotated[str, Path(pattern=OPERATION_ID_PATTERN)], body: models.OperationFinish, services: Svc,
    who: Who, actor: Act,
) -> models.Operation:  # fmt: skip
    """End my operation on `key` (it refuses nobody from now on)."""
    agent_id = who.agent(body.agent_id)
    key = normalise_key(body.key)
    folds = services.coordinator.operations
    stream = operation_stream(key)
    ended: list[Operation] = []

    async def plan() -> Plan:
        state = await folds.current(stream)
        events = rules.finish(state, key, agent_id, operation_id, body.outcome)
        ended[:] = [state.open[operation_id]]
        return [(stream, state.version, events)]

    services.wrote(who, await services.coordinator.decide(actor, plan))
    return operation_of(key, ended[0], "finished")


@router.get("/operations", response_model=list[models.OperationRow])
async def operations_under_way(
    services: Svc, who: Reader, key: Annotated[str | None, Query(max_length=500)] = None,
    agent_id: Annotated[str | None, Query(max_length=64)] = None, limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[models.OperationRow]:  # fmt: skip
    """Operations under way (of one key, one agent), oldest first."""
    key = None if key is None else normalise_key(key)
    rows = await services.store.pool.fetch(QUERIES["operations_under_way"], key, agent_id, limit)
    if key is not None and not rows and (await services.coordinator.operations.current(operation_stream(key))).open:
        raise not_found("the projection has not caught up with this key yet; ask again")
    return [models.OperationRow(**{name: row[name] for name in models.OperationRow.model_fields}) for row in rows]
