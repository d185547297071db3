"""An in-memory fold of the built-in projections: the model their SQL must agree with, written independently."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import asyncpg

from agentlog.eventstore import RecordedEvent

StreamRow = tuple[str, str, int, int, str, datetime, datetime]
CountRow = tuple[date, str, str, int]
HeadRow = tuple[int, int, int, datetime]


def fold(events: Iterable[RecordedEvent]) -> dict[str, set[Any]]:
    streams: dict[str, list[Any]] = {}
    counts: dict[tuple[date, str, str], int] = {}
    head: HeadRow | None = None
    for total, event in enumerate(events, start=1):
        row = streams.setdefault(
            event.stream_id, [event.category, 0, 0, "", event.recorded_at, event.recorded_at]
        )
        row[1] = event.stream_version
        row[2] += 1
        row[3] = event.event_type
        row[4] = min(row[4], event.recorded_at)
        row[5] = max(row[5], event.recorded_at)
        key = (event.recorded_at.astimezone(UTC).date(), event.category, event.event_type)
        counts[key] = counts.get(key, 0) + 1
        head = (total, event.transaction_id, event.global_position, event.recorded_at)
    return {
        "stream_summary": {(stream_id, *row) for stream_id, row in streams.items()},
        "event_counts_daily": {(*key, n) for key, n in counts.items()},
        "log_head": set() if head is None else {head},
    }


TABLE_QUERIES = {
    "stream_summary": "SELECT stream_id, category, current_version, event_count, last_event_type, "
    "first_recorded_at, last_recorded_at FROM {schema}.stream_summary",
    "event_counts_daily": "SELECT day, category, event_type, events FROM {schema}.event_counts_daily",
    "log_head": "SELECT events, transaction_id, global_position, last_recorded_at FROM {schema}.log_head",
}


async def tables(connection: asyncpg.Connection | Any, names: Sequence[str], schema: str = "projections") -> dict[
    str, set[Any]
]:
    """The rows of the built-in projections' tables, as the fold shapes them (test-only, fixed schema names)."""
    found = {}
    for name in names:
        rows = await connection.fetch(TABLE_QUERIES[name].format(schema=schema))
        found[name] = {tuple(row) for row in rows}
    return found
