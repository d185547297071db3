"""/agents: the registry (register or update with If-Match, list, details, health, heartbeat, deregister), an
agent's checkpoints and memories, and its hot-start bundle."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response

from agentlog.api.errors import ApiError, not_found
from agentlog.api.reads import QUERIES
from agentlog.api.services import Act, Reader, Svc, Who
from agentlog.api.views import agent, agent_of_entry, chat, checkpoint, claim_row, inbox, lock_row, memory, task
from agentlog.client import models
from agentlog.domains.coordination.events import (
    AgentDeregistered,
    AgentHeartbeat,
    AgentRegistered,
    AgentUpdated,
    CheckpointSaved,
    MemoryForgotten,
    MemoryStored,
)
from agentlog.domains.coordination.names import (
    AGENT_ID_PATTERN,
    checkpoint_stream,
    heartbeat_stream,
    member_stream,
    memory_stream,
)
from agentlog.eventstore import Event

router = APIRouter(tags=["agents"])
AgentPath = Annotated[str, Path(pattern=AGENT_ID_PATTERN, description="the agent's id")]
Limit = Annotated[int, Query(ge=1, le=500)]
EXPIRING_S = 120.0
"""Locks and claims expiring within this are named in health reports and the attention of MCP replies."""


def parse_if_match(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    text = if_match.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise ApiError(422, "invalid", [{"loc": ["header", "If-Match"], "msg": "a stream version (an integer, as "
                                         "the ETag gave it)", "type": "value_error"}])  # fmt: skip
    return int(text)


def stale(expected: int, current: int) -> ApiError:
    return ApiError(412, "stale_version", f"If-Match {expected} is stale: the agent's entry is at version {current}",
                    {"ETag": f'"{current}"'}, current_version=current)  # fmt: skip


@router.put("/agents/{agent_id}", response_model=models.Agent, status_code=200)
async def upsert_agent(
    agent_id: AgentPath, body: models.AgentUpsert, services: Svc, who: Who, actor: Act, response: Response,
    if_match: Annotated[str | None, Header()] = None,
) -> models.Agent:  # fmt: skip
    """Register the agent, or update the fields given; `If-Match: "<version>"` makes it conditional (412 when the
    entry moved on; `"0"` for "not registered yet")."""
    agent_id = who.agent(agent_id)
    expected = parse_if_match(if_match)
    coordinator = services.coordinator
    created = False

    async def plan() -> list[tuple[str, int | None, list[Event]]]:
        nonlocal created
        entry = await coordinator.member(agent_id)
        if expected is not None and expected != entry.version:
            raise stale(expected, entry.version)
        given = body.model_dump(exclude_none=True)
        created = not entry.registered
        if created or ("heartbeat_timeout_s" in given and given["heartbeat_timeout_s"] != entry.heartbeat_timeout_s):
            fields = {"name": entry.name, "status": entry.status, "working_on": entry.working_on,
                      "capabilities": entry.capabilities, "metadata": entry.metadata,
                      "heartbeat_timeout_s": entry.heartbeat_timeout_s} if not created else {}  # fmt: skip
            event: Event = AgentRegistered(agent_id=agent_id, registered_by=who.name, **{**fields, **given})
        else:
            event = AgentUpdated(agent_id=agent_id, **given)
        return [(member_stream(agent_id), entry.version, [event])]

    written = await coordinator.decide(actor, plan)
    services.wrote(who, written)
    entry = await coordinator.member(agent_id)
    response.headers["ETag"] = f'"{entry.version}"'
    response.status_code = 201 if created else 200
    return agent_of_entry(entry)


@router.get("/agents", response_model=list[models.Agent])
async def list_agents(
    services: Svc, who: Reader,
    state: Annotated[str | None, Query(pattern="^(registered|deregistered|gone)$")] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    capability: Annotated[str | None, Query(max_length=100)] = None,
    after: Annotated[str, Query(max_length=64)] = "", limit: Limit = 100,
) -> list[models.Agent]:  # fmt: skip
    """Agents in id order; filter by state, status and capability; page with `after` (the last id seen)."""
    rows = await services.store.pool.fetch(QUERIES["agents"], state, status, capability, after, limit)
    return [agent(row) for row in rows]


@router.get("/agents/{agent_id}", response_model=models.AgentDetails)
async def agent_details(agent_id: AgentPath, services: Svc, who: Reader, response: Response) -> models.AgentDetails:
    """The registry entry (ETag: its stream version) with statistics."""
    entry = await services.coordinator.member(agent_id)
    if entry.state == "unknown":
        raise not_found(f"no agent {agent_id}")
    row = await services.store.pool.fetchrow(QUERIES["agent"], agent_id)
    stats = await services.store.pool.fetchrow(QUERIES["agent_statistics"], agent_id)
    base = agent_of_entry(entry).model_dump()
    if row is not None:
        base.update(registered_at=row["registered_at"], last_seen_at=row["last_seen_at"],
                    last_active_at=row.get("last_active_at"))  # fmt: skip
    statistics = models.AgentStatistics(
        **(dict(stats) if stats else dict.fromkeys(models.AgentStatistics.model_fields, 0))
    )
    response.headers["ETag"] = f'"{entry.version}"'
    return models.AgentDetails(**base, statistics=statistics)


@router.get("/agents/{agent_id}/health", response_model=models.Health)
async def agent_health(agent_id: AgentPath, services: Svc, who: Reader) -> models.Health:
    """Whether the agent is registered and heard from within its heartbeat timeout, and what it holds that expires
    within two minutes."""
    row = await services.store.pool.fetchrow(QUERIES["agent"], agent_id)
    if row is None:
        raise not_found(f"no agent {agent_id}")
    now = datetime.now(UTC)
    since = (now - row["last_seen_at"]).total_seconds()
    locks = [lock_row(r) for r in await services.store.pool.fetch(QUERIES["locks"], agent_id, 500)]
    claims = [claim_row(r) for r in await services.store.pool.fetch(QUERIES["claims"], agent_id, "held", 500)]
    soon = [lock for lock in locks if lock.expires_at and (lock.expires_at - now).total_seconds() < EXPIRING_S]
    claims_soon = [c for c in claims if c.expires_at and (c.expires_at - now).total_seconds() < EXPIRING_S]
    return models.Health(
        agent_id=agent_id, state=row["state"],
        healthy=row["state"] == "registered" and since < row["heartbeat_timeout_s"],
        last_seen_at=row["last_seen_at"], seconds_since_seen=round(since, 3),
        heartbeat_timeout_s=row["heartbeat_timeout_s"], locks_expiring=soon, claims_expiring=claims_soon,
    )  # fmt: skip


@router.post("/agents/{agent_id}/heartbeat", response_model=models.Agent)
async def heartbeat(agent_id: AgentPath, services: Svc, who: Who, actor: Act) -> models.Agent:
    """The agent is alive (send one at least every heartbeat_timeout_s / 2)."""
    agent_id = who.agent(agent_id)
    entry = await services.coordinator.registered(agent_id)

    async def plan() -> list[tuple[str, int | None, list[Event]]]:
        return [(heartbeat_stream(agent_id), None, [AgentHeartbeat(agent_id=agent_id)])]

    services.wrote(who, await services.coordinator.decide(actor, plan))
    return agent_of_entry(entry)


@router.delete("/agents/{agent_id}", response_model=models.Agent)
async def deregister(
    agent_id: AgentPath, services: Svc, who: Who, actor: Act,
    reason: Annotated[str, Query(max_length=500)] = "", if_match: Annotated[str | None, Header()] = None,
) -> models.Agent:  # fmt: skip
    """The agent leaves: its locks and claims are released by the log."""
    agent_id = who.agent(agent_id)
    expected = parse_if_match(if_match)
    coordinator = services.coordinator

    async def plan() -> list[tuple[str, int | None, list[Event]]]:
        entry = await coordinator.registered(agent_id)
        if expected is not None and expected != entry.version:
            raise stale(expected, entry.version)
        return [(member_stream(agent_id), entry.version, [AgentDeregistered(agent_id=agent_id, reason=reason)])]

    services.wrote(who, await coordinator.decide(actor, plan))
    return agent_of_entry(await coordinator.member(agent_id))


# -- checkpoints ---------------------------------------------------------------------------------------------------


@router.post("/agents/{agent_id}/checkpoint", response_model=models.Checkpoint, status_code=201)
async def save_checkpoint(
    agent_id: AgentPath, body: models.CheckpointSave, services: Svc, who: Who, actor: Act
) -> models.Checkpoint:
    agent_id = who.agent(agent_id)
    await services.coordinator.registered(agent_id)
    event = CheckpointSaved(agent_id=agent_id, summary=body.summary, state=body.state)

    async def plan() -> list[tuple[str, int | None, list[Event]]]:
        return [(checkpoint_stream(agent_id), None, [event])]

    written = await services.coordinator.decide(actor, plan)
    services.wrote(who, written)
    return models.Checkpoint(agent_id=agent_id, stream_version=written.stream_version, summary=body.summary,
                             state=body.state)  # fmt: skip


@router.get("/agents/{agent_id}/checkpoint", response_model=models.Checkpoint)
async def latest_checkpoint(agent_id: AgentPath, services: Svc, who: Reader) -> models.Checkpoint:
    who.reads_private(agent_id)
    row = await services.store.pool.fetchrow(QUERIES["checkpoint_latest"], agent_id)
    if row is None:
        raise not_found(f"agent {agent_id} saved no checkpoint")
    return checkpoint(row)


@router.get("/agents/{agent_id}/checkpoint/history", response_model=list[models.Checkpoint])
async def checkpoint_history(
    agent_id: AgentPath, services: Svc, who: Reader,
    before: Annotated[int, Query(ge=1)] = 2**31 - 1, limit: Limit = 20,
) -> list[models.Checkpoint]:  # fmt: skip
    """Newest first; page with `before` (the last stream_version seen)."""
    who.reads_private(agent_id)
    return [checkpoint(row) for row in await services.store.pool.fetch(QUERIES["checkpoint_history"], agent_id,
                                                                         before, limit)]  # fmt: skip


# -- memories ------------------------------------------------------------------------------------------------------


@router.post("/agents/{agent_id}/memories", response_model=models.Memory, status_code=201)
async def remember(agent_id: AgentPath, body: models.MemoryStore, services: Svc, who: Who, actor: Act) -> models.Memory:
    agent_id = who.agent(agent_id)
    await services.coordinator.registered(agent_id)
    memory_id = actor.mint("mem-")
    event = MemoryStored(memory_id=memory_id, agent_id=agent_id, text=body.text, tags=body.tags, kind=body.kind)

    async def plan() -> list[tuple[str, int | None, list[Event]]]:
        return [(memory_stream(agent_id), None, [event])]

    services.wrote(who, await services.coordinator.decide(actor, plan))
    return models.Memory(memory_id=memory_id, agent_id=agent_id, kind=body.kind, text=body.text, tags=body.tags)


Search = Annotated[str | None, Query(min_length=1, max_length=500, description="full-text query (websearch syntax)")]
TagQuery = Annotated[str | None, Query(min_length=1, max_length=100)]
KindQuery = Annotated[str | None, Query(pattern="^(learning|pattern|fact)$")]


@router.get("/agents/{agent_id}/memories", response_model=list[models.Memory])
async def agent_memories(
    agent_id: AgentPath, services: Svc, who: Reader, q: Search = None, tag: TagQuery = None, kind: KindQuery = None,
    limit: Limit = 50,
) -> list[models.Memory]:  # fmt: skip
    """One agent's memories: by tag, kind and text (best match first), else newest first."""
    return [memory(row) for row in await services.store.pool.fetch(QUERIES["memories"], agent_id, tag, kind, q, limit)]


@router.get("/memories", response_model=list[models.Memory], tags=["memories"])
async def all_memories(
    services: Svc, who: Reader, q: Search = None, tag: TagQuery = None, kind: KindQuery = None, limit: Limit = 50,
) -> list[models.Memory]:  # fmt: skip
    """Every agent's memories (what one learned, the others can find)."""
    return [memory(row) for row in await services.store.pool.fetch(QUERIES["memories"], None, tag, kind, q, limit)]


@router.delete("/agents/{agent_id}/memories/{memory_id}", response_model=models.Memory)
async def forget(
    agent_id: AgentPath, memory_id: Annotated[str, Path(max_length=64)], services: Svc, who: Who, actor: Act,
    reason: Annotated[str, Query(max_length=500)] = "",
) -> models.Memory:  # fmt: skip
    agent_id = who.agent(agent_id)
    await services.reads.caught_up(who.key)
    row = await services.store.pool.fetchrow(QUERIES["memory"], memory_id)
    if row is None or row["agent_id"] != agent_id or row["forgotten_at"] is not None:
        raise not_found(f"agent {agent_id} has no memory {memory_id}")

    async def plan() -> list[tuple[str, int | None, list[Event]]]:
        return [(memory_stream(agent_id), None, [MemoryForgotten(memory_id=memory_id, agent_id=agent_id,
                                                                 reason=reason)])]  # fmt: skip

    services.wrote(who, await services.coordinator.decide(actor, plan))
    return memory(row)


# -- hot start -------------------------------------------------------------------------------------------------


@router.get("/agents/{agent_id}/hot-start", response_model=models.HotStart)
async def hot_start(agent_id: AgentPath, services: Svc, who: Reader) -> models.HotStart:
    """Everything to pick the work up: the entry, unread messages, recent chat, my locks and claims with their
    expiries, my latest checkpoint, my tasks assigned or running, and what my budgets have left."""
    who.reads_private(agent_id)
    entry = await services.coordinator.member(agent_id)
    if entry.state == "unknown":
        raise not_found(f"no agent {agent_id}; register it first (PUT /api/v1/agents/{agent_id})")
    pool = services.store.pool
    latest = await pool.fetchrow(QUERIES["checkpoint_latest"], agent_id)
    return models.HotStart(
        agent=agent_of_entry(entry),
        unread=[inbox(row) for row in await pool.fetch(QUERIES["inbox_after"], agent_id, True, 0, 100)],
        recent_chat=[chat(row) for row in await pool.fetch(QUERIES["chat_recent"], 20)],
        locks=[lock_row(row) for row in await pool.fetch(QUERIES["locks"], agent_id, 500)],
        claims=[claim_row(row) for row in await pool.fetch(QUERIES["claims"], agent_id, "held", 500)],
        checkpoint=None if latest is None else checkpoint(latest),
        tasks=[task(row) for row in await pool.fetch(QUERIES["agent_tasks"], agent_id)],
        budgets=[models.BudgetLeft(budget_id=row["budget_id"], period=row["period"], limit_tokens=row["limit_tokens"],
                                   remaining_tokens=row["remaining_tokens"])
                 for row in await pool.fetch(QUERIES["agent_budgets"], agent_id)],
    )
