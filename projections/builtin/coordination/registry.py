"""registry: one row per coordinating agent — its entry as the domain folds its `member-` stream, when it was
last heard from (heartbeats), and its inferred activity: `activity` (active, idle, offline: the status keeper's
`AgentStatusInferred`, active from registration until the keeper says otherwise) and `last_active_at` (the last
event the activity rule, `domains.activity.status.active_agent`, counts as something the agent did)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from agentlog.domains.activity.events import AgentStatusInferred
from agentlog.domains.activity.status import ACTIVITY_TYPES, active_agent
from agentlog.domains.coordination.events import (
    AgentDeregistered,
    AgentGone,
    AgentHeartbeat,
    AgentRegistered,
    AgentUpdated,
)
from agentlog.domains.coordination.liveness import RegistryEntry
from agentlog.eventstore import Event, TypedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.projections.builtin.coordination.queries import QUERIES

ENTRY_FIELDS = ("name", "status", "working_on", "capabilities", "metadata", "heartbeat_timeout_s", "reason")
ENTRY_EVENTS = (AgentRegistered, AgentUpdated, AgentHeartbeat, AgentDeregistered, AgentGone)


class Registry:
    name: ClassVar[str] = "registry"
    version: ClassVar[int] = 2
    """2: `activity` and `last_active_at` (status inference, issue 13)."""
    tables: ClassVar[tuple[str, ...]] = ("registry",)
    event_types: ClassVar[frozenset[str] | None] = frozenset(
        {"AgentRegistered", "AgentUpdated", "AgentHeartbeat", "AgentDeregistered", "AgentGone",
         "AgentStatusInferred"} | ACTIVITY_TYPES
    )  # fmt: skip

    async def apply(self, connection: Connection, events: Sequence[TypedEvent]) -> None:
        agent_ids = sorted({agent_id for item in events if (agent_id := _agent_of(item.event)) is not None})
        if not agent_ids:
            return
        rows: dict[str, dict[str, Any]] = {
            row["agent_id"]: dict(row) for row in await connection.fetch(QUERIES["registry_rows"], agent_ids)
        }
        touched: set[str] = set()
        for item in events:
            event = item.event
            agent_id = _agent_of(event)
            if agent_id is None:
                continue
            row = rows.get(agent_id)
            if row is None:
                if not isinstance(event, AgentRegistered):
                    continue  # heard of before it registered: nothing to show
                row = {"agent_id": agent_id, "registered_at": item.recorded_at, "heartbeats": 0, "version": 0,
                       "state": "unknown", "activity": "active", "last_active_at": None}  # fmt: skip
                rows[agent_id] = row
            touched.add(agent_id)
            if active_agent(event) == agent_id:
                row["last_active_at"] = item.recorded_at
            if isinstance(event, AgentStatusInferred):
                row.update(activity=event.status, version=item.stream_version, updated_at=item.recorded_at)
                continue
            if not isinstance(event, ENTRY_EVENTS):
                continue  # activity of another kind (a task attempt, a message): last_active_at only
            row["last_seen_at"] = item.recorded_at
            if isinstance(event, AgentHeartbeat):
                row["heartbeats"] += 1
                continue
            entry = RegistryEntry(agent_id=agent_id, state=row["state"], version=row["version"],
                                  **{name: row[name] for name in ENTRY_FIELDS if name in row})  # fmt: skip
            entry.fold(event, item.stream_version)
            if isinstance(event, AgentRegistered):
                row["registered_at"] = item.recorded_at if row["state"] != "registered" else row["registered_at"]
            row.update({name: getattr(entry, name) for name in ENTRY_FIELDS}, state=entry.state,
                       version=entry.version, updated_at=item.recorded_at)  # fmt: skip
        if touched:
            await connection.execute(QUERIES["registry_upsert"], [rows[agent_id] for agent_id in sorted(touched)])


def _agent_of(event: Event) -> str | None:
    """The agent whose row an event may change: the entry's own events, an inferred status, or its activity."""
    if isinstance(event, (*ENTRY_EVENTS, AgentStatusInferred)):
        return event.agent_id
    return active_agent(event)


projection = Registry()
