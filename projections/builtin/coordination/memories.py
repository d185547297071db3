"""memories: what agents stored, searchable by tag and by text (full-text index); forgotten ones are kept,
marked, and no longer found."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from agentlog.domains.coordination.events import MemoryForgotten, MemoryStored
from agentlog.eventstore import TypedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.projections.builtin.coordination.queries import QUERIES


class Memories:
    name: ClassVar[str] = "memories"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("memories",)
    event_types: ClassVar[frozenset[str] | None] = frozenset({"MemoryStored", "MemoryForgotten"})

    async def apply(self, connection: Connection, events: Sequence[TypedEvent]) -> None:
        stored: list[dict[str, Any]] = []
        forgotten: list[tuple[str, str, str, Any]] = []
        for item in events:
            event = item.event
            if isinstance(event, MemoryStored):
                stored.append({**event.to_data(), "stored_at": item.recorded_at,
                               "global_position": item.global_position})  # fmt: skip
            elif isinstance(event, MemoryForgotten):
                forgotten.append((event.memory_id, event.agent_id, event.reason, item.recorded_at))
        if stored:  # first: a memory forgotten in the batch that stored it exists by then
            await connection.execute(QUERIES["memory_insert"], stored)
        if forgotten:
            await connection.execute(QUERIES["memory_forget"], *map(list, zip(*forgotten, strict=True)))


projection = Memories()
