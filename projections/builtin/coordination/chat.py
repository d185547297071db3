"""chat: every chat message in the log's order, numbered by `seq` (the cursor clients page with)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from agentlog.domains.coordination.events import ChatPosted
from agentlog.eventstore import TypedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.projections.builtin.coordination.queries import QUERIES


class Chat:
    name: ClassVar[str] = "chat"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("chat",)
    event_types: ClassVar[frozenset[str] | None] = frozenset({"ChatPosted"})

    async def apply(self, connection: Connection, events: Sequence[TypedEvent]) -> None:
        rows = []
        for item in events:
            event = item.event
            assert isinstance(event, ChatPosted)
            rows.append({**event.to_data(), "global_position": item.global_position, "posted_at": item.recorded_at})
        if rows:
            await connection.execute(QUERIES["chat_insert"], rows)


projection = Chat()
