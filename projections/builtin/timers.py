"""timers: every timer a decider scheduled, due at the scheduling event's `recorded_at` plus its delay (the
database's clock, never a decider's), and whether it is still waiting."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

from agentlog.domains.timers.events import TimerCancelled, TimerFired, TimerScheduled
from agentlog.eventstore import TypedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.eventstore.postgres.queries import load_queries

QUERIES = load_queries(Path(__file__).with_suffix(".sql"))


class Timers:
    name: ClassVar[str] = "timers"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("timers",)
    event_types: ClassVar[frozenset[str] | None] = frozenset({"TimerScheduled", "TimerCancelled", "TimerFired"})

    async def apply(self, connection: Connection, events: Sequence[TypedEvent]) -> None:
        scheduled: list[tuple[object, ...]] = []
        settled: list[tuple[str, str]] = []
        for item in events:
            event = item.event
            if isinstance(event, TimerScheduled):
                due = item.recorded_at + timedelta(seconds=float(event.delay_s))
                scheduled.append(
                    (event.timer_id, item.stream_id, event.purpose, event.subject, due, "scheduled", item.recorded_at)
                )
            elif isinstance(event, TimerFired | TimerCancelled):
                settled.append((event.timer_id, "fired" if isinstance(event, TimerFired) else "cancelled"))
        # One statement each, schedules first: a timer cancelled in the same batch it was scheduled in must exist.
        if scheduled:
            await connection.execute(QUERIES["schedule"], *map(list, zip(*scheduled, strict=True)))
        if settled:
            await connection.execute(QUERIES["settle"], *map(list, zip(*settled, strict=True)))


projection = Timers()
