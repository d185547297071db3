"""registry: one row per coordinating agent — its entry as the domain folds its `member-` stream, and when it was
last heard from (heartbeats)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from agentlog.domains.coordination.events import (
    AgentDeregistered,
    AgentGone,
    AgentHeartbeat,
    AgentRegistered,
    AgentUpdated,
)
from agentlog.domains.coordination.liveness import RegistryEntry
from agentlog.eventstore import TypedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.projections.builtin.coordination.queries import QUERIES

ENTRY_FIELDS = ("name", "status", "working_on", "capabilities", "metadata", "heartbeat_timeout_s", "reason")


class Registry:
    name: ClassVar[str] = "registry"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("registry",)
    event_types: ClassVar[frozenset[str] | None] = frozenset(
        {"AgentRegistered", "AgentUpdated", "AgentHeartbeat", "AgentDeregistered", "AgentGone"}
    )

    async def apply(self, connection: Connection, events: Sequence[TypedEvent]) -> None:
        agent_ids = sorted({item.event.agent_id for item in events})  # type: ignore[attr-defined]
        rows: dict[str, dict[str, Any]] = {
            row["agent_id"]: dict(row) for row in await connection.fetch(QUERIES["registry_rows"], agent_ids)
        }
        for item in events:
            event = item.event
            assert isinstance(event, AgentRegistered | AgentUpdated | AgentHeartbeat | AgentDeregistered | AgentGone)
            row = rows.get(event.agent_id)
            if row is None:
                if not isinstance(event, AgentRegistered):
                    continue  # heard of before it registered: nothing to show
                row = {"agent_id": event.agent_id, "registered_at": item.recorded_at, "heartbeats": 0,
                       "version": 0, "state": "unknown"}  # fmt: skip
                rows[event.agent_id] = row
            row["last_seen_at"] = item.recorded_at
            if isinstance(event, AgentHeartbeat):
                row["heartbeats"] += 1
                continue
            entry = RegistryEntry(agent_id=event.agent_id, state=row["state"], version=row["version"],
                                  **{name: row[name] for name in ENTRY_FIELDS if name in row})  # fmt: skip
            entry.fold(event, item.stream_version)
            if isinstance(event, AgentRegistered):
                row["registered_at"] = item.recorded_at if row["state"] != "registered" else row["registered_at"]
            row.update({name: getattr(entry, name) for name in ENTRY_FIELDS}, state=entry.state,
                       version=entry.version, updated_at=item.recorded_at)  # fmt: skip
        if rows:
            await connection.execute(QUERIES["registry_upsert"], list(rows.values()))


projection = Registry()
