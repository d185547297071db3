"""timers: every timer a decider scheduled, due at the scheduling event's `recorded_at` plus its delay (the
database's clock, never a decider's), and whether it is still waiting."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import ClassVar

from eventstore import RecordedEvent
from eventstore.postgres.connections import Connection

SCHEDULE = """
INSERT INTO timers (timer_id, stream_id, purpose, subject, due_at, state, scheduled_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::timestamptz[])
ON CONFLICT (timer_id) DO NOTHING
"""

SETTLE = """
UPDATE timers AS t SET state = s.state
  FROM unnest($1::text[], $2::text[]) AS s (timer_id, state)
 WHERE t.timer_id = s.timer_id AND t.state = 'scheduled'
"""


class Timers:
    name: ClassVar[str] = "timers"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("timers",)
    event_types: ClassVar[frozenset[str] | None] = frozenset({"TimerScheduled", "TimerCancelled", "TimerFired"})

    async def apply(self, connection: Connection, events: Sequence[RecordedEvent]) -> None:
        scheduled: list[tuple[object, ...]] = []
        settled: list[tuple[str, str]] = []
        for event in events:
            data = event.data
            if event.event_type == "TimerScheduled":
                due = event.recorded_at + timedelta(seconds=float(data["delay_s"]))
                scheduled.append(
                    (data["timer_id"], event.stream_id, data["purpose"], data.get("subject", ""), due, "scheduled",
                     event.recorded_at)
                )
            else:
                settled.append((data["timer_id"], "fired" if event.event_type == "TimerFired" else "cancelled"))
        # One statement each, schedules first: a timer cancelled in the same batch it was scheduled in must exist.
        if scheduled:
            await connection.execute(SCHEDULE, *map(list, zip(*scheduled, strict=True)))
        if settled:
            await connection.execute(SETTLE, *map(list, zip(*settled, strict=True)))


projection = Timers()
