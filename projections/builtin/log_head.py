"""log_head: how many events the log holds and where its head is, as far as the projections have read it.

With each handler's `events_applied` this gives every handler's lag without scanning the log
(`reports.handler_lag`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from agentlog.eventstore import RecordedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.eventstore.postgres.queries import load_queries

QUERIES = load_queries(Path(__file__).with_suffix(".sql"))


class LogHead:
    name: ClassVar[str] = "log_head"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("log_head",)
    event_types: ClassVar[frozenset[str] | None] = None
    raw_events: ClassVar[bool] = True
    """Every event, of any writer's types: only the envelope is read."""

    async def apply(self, connection: Connection, events: Sequence[RecordedEvent]) -> None:
        if not events:
            return
        last = events[-1]
        await connection.execute(
            QUERIES["advance_head"], len(events), last.transaction_id, last.global_position, last.recorded_at
        )


projection = LogHead()
