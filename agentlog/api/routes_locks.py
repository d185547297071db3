"""/locks/{resource} and /claims: locks with fencing tokens (acquire, renew, release, check, history) and claims of
path globs or topics (make, release, hand off), each decided by the coordination domain's rule on its stream."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from agentlog.api.errors import not_found
from agentlog.api.reads import QUERIES
from agentlog.api.services import Act, Reader, Svc, Who
from agentlog.api.views import claim_row, claim_state, lock_row, lock_state
from agentlog.client import models
from agentlog.domains.coordination import claims as claim_rules
from agentlog.domains.coordination import locks as lock_rules
from agentlog.domains.coordination.names import CLAIMS_STREAM, check_pattern, inbox_stream, normalise_resource
from agentlog.eventstore import Event

router = APIRouter(tags=["locks and claims"])
ResourcePath = Annotated[str, Path(min_length=1, max_length=512, description="a path relative to the repository")]
Limit = Annotated[int, Query(ge=1, le=500)]
Plan = list[tuple[str, int | None, list[Event]]]


@router.post("/locks/{resource:path}", response_model=models.Lock, status_code=201)
async def acquire(resource: ResourcePath, body: models.LockAcquire, services: Svc, who: Who, actor: Act) -> models.Lock:
    """Take the lock: the grant carries a fencing token that only grows for this resource. Held by another: 409
    naming the holder. The holder asking again renews it (same token). `src/./a.py` and `src/a.py` are one lock."""
    resource = normalise_resource(resource)
    holder = who.agent(body.agent_id)
    coordinator = services.coordinator
    await coordinator.registered(holder)
    await coordinator.claims_by_locks(resource, holder)
    state_after: list[lock_rules.LockState] = []

    async def plan() -> Plan:
        stream, state = await coordinator.lock(resource)
        events = lock_rules.acquire(state, stream, resource, holder, body.ttl_s, body.reason)
        state_after[:] = [state]
        return [(stream, state.version, events)]

    written = await coordinator.decide(actor, plan)
    services.wrote(who, written)
    state = state_after[0]
    for event in written.events:
        state.fold(event)
    state.version = written.stream_version
    return lock_state(resource, state)


@router.patch("/locks/{resource:path}", response_model=models.Lock)
async def renew(resource: ResourcePath, body: models.LockRenew, services: Svc, who: Who, actor: Act) -> models.Lock:
    """Keep the lock `ttl_s` more, from now; only its holder, with its current fencing token (else 409)."""
    resource = normalise_resource(resource)
    holder = who.agent(body.agent_id)
    coordinator = services.coordinator
    state_after: list[lock_rules.LockState] = []

    async def plan() -> Plan:
        stream, state = await coordinator.lock(resource)
        if state.version == 0:
            raise not_found(f"no lock {resource!r} was ever taken")
        events = lock_rules.renew(state, stream, holder, body.fencing_token, body.ttl_s)
        state_after[:] = [state]
        return [(stream, state.version, events)]

    written = await coordinator.decide(actor, plan)
    services.wrote(who, written)
    state = state_after[0]
    for event in written.events:
        state.fold(event)
    state.version = written.stream_version
    return lock_state(resource, state)


@router.delete("/locks/{resource:path}", response_model=models.Lock)
async def release(
    resource: ResourcePath, services: Svc, who: Who, actor: Act,
    fencing_token: Annotated[int, Query(ge=1, description="the grant's token: a stale one is refused (409)")],
    agent_id: Annotated[str | None, Query(max_length=64)] = None,
) -> models.Lock:  # fmt: skip
    """Release the lock; only its holder, with the fencing token of its current grant."""
    resource = normalise_resource(resource)
    holder = who.agent(agent_id)
    coordinator = services.coordinator

    async def plan() -> Plan:
        stream, state = await coordinator.lock(resource)
        if state.version == 0:
            raise not_found(f"no lock {resource!r} was ever taken")
        return [(stream, state.version, lock_rules.release(state, holder, fencing_token))]

    written = await coordinator.decide(actor, plan)
    services.wrote(who, written)
    _, state = await coordinator.lock(resource)
    return lock_state(resource, state)


@router.get("/locks/{resource:path}", response_model=models.Lock)
async def check(resource: ResourcePath, services: Svc, who: Who) -> models.Lock:
    """Who holds the lock now (from its stream: exact), its fencing token and last token; 404 if never taken."""
    resource = normalise_resource(resource)
    _, state = await services.coordinator.lock(resource)
    if state.version == 0:
        raise not_found(f"no lock {resource!r} was ever taken")
    answer = lock_state(resource, state)
    row = await services.store.pool.fetchrow(QUERIES["lock_expires_at"], resource)
    if row is not None and answer.holder is not None:
        answer.expires_at = row["expires_at"]
    return answer


@router.get("/locks", response_model=list[models.Lock])
async def held_locks(
    services: Svc, who: Reader, holder: Annotated[str | None, Query(max_length=64)] = None, limit: Limit = 500
) -> list[models.Lock]:
    """Locks held now (by one holder if given), with their expiries."""
    return [lock_row(row) for row in await services.store.pool.fetch(QUERIES["locks"], holder, limit)]


@router.get("/lock-history/{resource:path}", response_model=list[models.LockEvent])
async def lock_history(
    resource: ResourcePath, services: Svc, who: Who,
    from_version: Annotated[int, Query(ge=1)] = 1, limit: Limit = 100,
) -> list[models.LockEvent]:  # fmt: skip
    """The lock's stream: every grant, renewal, release and expiry (with its reason), oldest first."""
    resource = normalise_resource(resource)
    stream, _ = await services.coordinator.lock(resource)
    events = await services.store.read_stream(stream, from_version=from_version, limit=limit)
    if not events and from_version == 1:
        raise not_found(f"no lock {resource!r} was ever taken")
    return [models.LockEvent(stream_version=e.stream_version, event_type=e.event_type, data=dict(e.data),
                             recorded_at=e.recorded_at) for e in events]  # fmt: skip


# -- claims ------------------------------------------------------------------------------------------------------


@router.post("/claims", response_model=models.Claim, status_code=201)
async def make_claim(body: models.ClaimRequest, services: Svc, who: Who, actor: Act) -> models.Claim:
    """Claim a path glob (`src/parser/**`) or a topic, exclusively or shared. Overlapping claims of others (either
    exclusive), or locks others hold inside a path claim: 409 naming each."""
    holder = who.agent(body.agent_id)
    pattern = check_pattern(body.pattern) if body.kind == "path" else body.pattern
    coordinator = services.coordinator
    await coordinator.registered(holder)
    claim_id = actor.mint("claim-")

    async def plan() -> Plan:
        state = await coordinator.claims_state()
        events = claim_rules.claim(
            state, claim_id=claim_id, holder=holder, pattern=pattern, kind=body.kind, exclusive=body.exclusive,
            ttl_s=body.ttl_s, reason=body.reason, held_locks=await coordinator.held_locks(),
        )  # fmt: skip
        return [(CLAIMS_STREAM, state.version, events)]

    services.wrote(who, await coordinator.decide(actor, plan))
    state = await coordinator.claims_state()
    return claim_state(state.claims[claim_id]) if claim_id in state.claims else await _claim(services, claim_id)


async def _claim(services: Svc, claim_id: str) -> models.Claim:
    row = await services.store.pool.fetchrow(QUERIES["claim"], claim_id)
    if row is None:
        raise not_found(f"no claim {claim_id}")
    return claim_row(row)


@router.get("/claims", response_model=list[models.Claim])
async def list_claims(
    services: Svc, who: Reader, holder: Annotated[str | None, Query(max_length=64)] = None,
    state: Annotated[str | None, Query(pattern="^(held|released|expired)$")] = "held", limit: Limit = 500,
) -> list[models.Claim]:  # fmt: skip
    return [claim_row(row) for row in await services.store.pool.fetch(QUERIES["claims"], holder, state, limit)]


@router.get("/claims/{claim_id}", response_model=models.Claim)
async def get_claim(claim_id: Annotated[str, Path(max_length=64)], services: Svc, who: Reader) -> models.Claim:
    state = await services.coordinator.claims_state()
    held = state.claims.get(claim_id)
    return claim_state(held) if held is not None else await _claim(services, claim_id)


@router.delete("/claims/{claim_id}", response_model=models.Claim)
async def release_claim(
    claim_id: Annotated[str, Path(max_length=64)], services: Svc, who: Who, actor: Act,
    agent_id: Annotated[str | None, Query(max_length=64)] = None,
) -> models.Claim:  # fmt: skip
    holder = who.agent(agent_id)
    coordinator = services.coordinator
    released: list[models.Claim] = []

    async def plan() -> Plan:
        state = await coordinator.claims_state()
        events = claim_rules.release(state, claim_id, holder)
        released[:] = [claim_state(state.claims[claim_id]).model_copy(update={"state": "released"})]
        return [(CLAIMS_STREAM, state.version, events)]

    services.wrote(who, await coordinator.decide(actor, plan))
    return released[0]


@router.post("/claims/{claim_id}/handoff", response_model=models.Claim)
async def hand_off(
    claim_id: Annotated[str, Path(max_length=64)], body: models.Handoff, services: Svc, who: Who, actor: Act
) -> models.Claim:
    """Pass the claim and its context to another agent, who gets a direct message saying so (one append)."""
    holder = who.agent(body.agent_id)
    coordinator = services.coordinator
    await coordinator.registered(body.to_agent)
    message_id = actor.mint("msg-")

    async def plan() -> Plan:
        state = await coordinator.claims_state()
        events, message = claim_rules.hand_off(
            state,
            claim_id,
            holder,
            body.to_agent,
            note=body.note,
            context=body.context,
            ttl_s=body.ttl_s,
            message_id=message_id,
        )
        return [(CLAIMS_STREAM, state.version, events), (inbox_stream(body.to_agent), None, [message])]

    services.wrote(who, await coordinator.decide(actor, plan))
    state = await coordinator.claims_state()
    return claim_state(state.claims[claim_id]) if claim_id in state.claims else await _claim(services, claim_id)
