"""stream_summary: one row per stream — category, current version, event count, last event type, first and last
recorded time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from agentlog.eventstore import RecordedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.eventstore.postgres.queries import load_queries

QUERIES = load_queries(Path(__file__).with_suffix(".sql"))


@dataclass(slots=True)
class _StreamDelta:
    category: str
    version: int
    count: int
    event_type: str
    first: datetime
    last: datetime


class StreamSummary:
    name: ClassVar[str] = "stream_summary"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("stream_summary",)
    event_types: ClassVar[frozenset[str] | None] = None
    raw_events: ClassVar[bool] = True
    """Every event, of any writer's types: only the envelope is read."""

    async def apply(self, connection: Connection, events: Sequence[RecordedEvent]) -> None:
        # Canonical order keeps each stream in version order, so the last event of a stream in the batch is its
        # newest: one row per stream per batch, one statement per batch.
        deltas: dict[str, _StreamDelta] = {}
        for event in events:
            delta = deltas.get(event.stream_id)
            if delta is None:
                deltas[event.stream_id] = _StreamDelta(
                    event.category, event.stream_version, 1, event.event_type, event.recorded_at, event.recorded_at
                )
                continue
            delta.version = event.stream_version
            delta.count += 1
            delta.event_type = event.event_type
            delta.first = min(delta.first, event.recorded_at)
            delta.last = max(delta.last, event.recorded_at)
        if not deltas:
            return
        rows = list(deltas.values())
        await connection.execute(
            QUERIES["upsert_streams"],
            list(deltas),
            [row.category for row in rows],
            [row.version for row in rows],
            [row.count for row in rows],
            [row.event_type for row in rows],
            [row.first for row in rows],
            [row.last for row in rows],
        )


projection = StreamSummary()
