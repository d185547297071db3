"""checkpoints: every checkpoint each agent saved (its latest: the highest version)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from agentlog.domains.coordination.events import CheckpointSaved
from agentlog.eventstore import TypedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.projections.builtin.coordination.queries import QUERIES


class Checkpoints:
    name: ClassVar[str] = "checkpoints"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("agent_checkpoints",)
    event_types: ClassVar[frozenset[str] | None] = frozenset({"CheckpointSaved"})

    async def apply(self, connection: Connection, events: Sequence[TypedEvent]) -> None:
        rows = []
        for item in events:
            event = item.event
            assert isinstance(event, CheckpointSaved)
            rows.append({**event.to_data(), "version": item.stream_version, "global_position": item.global_position,
                         "saved_at": item.recorded_at})  # fmt: skip
        if rows:
            await connection.execute(QUERIES["checkpoint_insert"], rows)


projection = Checkpoints()
