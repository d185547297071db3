"""log_head: how many events the log holds and where its head is, as far as the projections have read it.

With each handler's `events_applied` this gives every handler's lag without scanning the log
(`reports.handler_lag`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from agentlog.eventstore import RecordedEvent
from agentlog.eventstore.postgres.connections import Connection

UPSERT = """
INSERT INTO log_head AS h (singleton, events, transaction_id, global_position, last_recorded_at)
VALUES (true, $1, $2::xid8, $3, $4)
ON CONFLICT (singleton) DO UPDATE
   SET events = h.events + excluded.events,
       transaction_id = excluded.transaction_id,
       global_position = excluded.global_position,
       last_recorded_at = excluded.last_recorded_at
"""


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
        await connection.execute(UPSERT, len(events), last.transaction_id, last.global_position, last.recorded_at)


projection = LogHead()
