"""event_counts_daily: how many events of each type and category were recorded each day (UTC)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date
from pathlib import Path
from typing import ClassVar

from agentlog.eventstore import RecordedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.eventstore.postgres.queries import load_queries

QUERIES = load_queries(Path(__file__).with_suffix(".sql"))


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
            QUERIES["add_counts"],
            [key[0] for key in keys],
            [key[1] for key in keys],
            [key[2] for key in keys],
            [counts[key] for key in keys],
        )


projection = EventCountsDaily()
