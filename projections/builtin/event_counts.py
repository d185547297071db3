"""event_counts_daily: how many events of each type and category were recorded each day (UTC)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date
from typing import ClassVar

from agentlog.eventstore import RecordedEvent
from agentlog.eventstore.postgres.connections import Connection

UPSERT = """
INSERT INTO event_counts_daily AS c (day, category, event_type, events)
SELECT * FROM unnest($1::date[], $2::text[], $3::text[], $4::bigint[])
ON CONFLICT (day, category, event_type) DO UPDATE SET events = c.events + excluded.events
"""


class EventCountsDaily:
    name: ClassVar[str] = "event_counts_daily"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("event_counts_daily",)
    event_types: ClassVar[frozenset[str] | None] = None
    raw_events: ClassVar[bool] = True
    """Every event, of any writer's types: only the envelope is read."""

    async def apply(self, connection: Connection, events: Sequence[RecordedEvent]) -> None:
        counts: Counter[tuple[date, str, str]] = Counter(
            (event.recorded_at.astimezone(UTC).date(), event.category, event.event_type) for event in events
        )
        if not counts:
            return
        keys = list(counts)
        await connection.execute(
            UPSERT,
            [key[0] for key in keys],
            [key[1] for key in keys],
            [key[2] for key in keys],
            [counts[key] for key in keys],
        )


projection = EventCountsDaily()
