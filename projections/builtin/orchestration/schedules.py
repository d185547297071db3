"""schedules: one row per schedule — its spec, whether it is active, paused or deleted, how many slots fired,
were skipped and were missed, the latest fired, and the next slot (computed from the cron expression after the
latest slot decided, or after the moment it was created, changed or resumed). The schedule's stream is folded by
the schedules domain (`domains.schedules.schedule`), so a duplicate firing changes nothing here either."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from agentlog.domains.schedules.events import (
    ChatAction,
    ScheduleChanged,
    ScheduleCreated,
    ScheduleResumed,
    schedule_of,
)
from agentlog.domains.schedules.rules import next_slot
from agentlog.domains.schedules.schedule import Schedule
from agentlog.eventstore import TypedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.eventstore.postgres.queries import load_queries

QUERIES = load_queries(Path(__file__).with_suffix(".sql"))


class ScheduleRow(BaseModel):
    """What the projection folds on from: the schedule, and when its slots started to count."""

    schedule: Schedule = Field(default_factory=Schedule)
    anchor: datetime | None = None
    """When it was last created, changed or resumed: its first slot after that is the next (if none decided)."""
    created_at: datetime | None = None


SPEC_COLUMNS = ("cron", "time_zone", "action_kind", "action", "overlap", "catch_up", "catch_up_window_s", "grace_s")


def _row(schedule_id: str, folded: ScheduleRow, updated_at: datetime) -> dict[str, Any]:
    schedule, spec = folded.schedule, folded.schedule.spec
    described: dict[str, Any] = dict.fromkeys(SPEC_COLUMNS)
    upcoming = None
    if spec is not None:
        described.update(spec.model_dump(mode="json", include=set(SPEC_COLUMNS)))
        described["action_kind"] = "chat" if isinstance(spec.action, ChatAction) else "task"
        after = max(filter(None, (schedule.last_slot, folded.anchor)), default=None)
        if after is not None and schedule.status == "active":
            upcoming = next_slot(spec, after)
    return {
        "schedule_id": schedule_id, "status": schedule.status, **described, "fired": schedule.fired,
        "skipped": schedule.skipped, "missed": schedule.missed, "last_slot": schedule.last_slot,
        "last_fired_slot": schedule.last_fired_slot, "buffered_slot": schedule.buffered, "next_slot": upcoming,
        "created_at": folded.created_at, "updated_at": updated_at, "state": folded.model_dump(mode="json"),
    }  # fmt: skip


class Schedules:
    name: ClassVar[str] = "schedules"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("schedules",)
    event_types: ClassVar[frozenset[str] | None] = frozenset(
        {"ScheduleCreated", "ScheduleChanged", "SchedulePaused", "ScheduleResumed", "ScheduleDeleted",
         "ScheduleFired", "ScheduleSlotSkipped", "ScheduleSlotBuffered", "ScheduleSlotsMissed"}
    )  # fmt: skip

    async def apply(self, connection: Connection, events: Sequence[TypedEvent]) -> None:
        mine = [item for item in events if item.stream_id == f"schedule-{item.event.schedule_id}"]  # type: ignore[attr-defined]
        if not mine:
            return
        schedule_ids = sorted({schedule_of(item.stream_id) for item in mine})
        rows = await connection.fetch(QUERIES["schedule_rows"], schedule_ids)
        folded = {row["schedule_id"]: ScheduleRow.model_validate(row["state"]) for row in rows}
        updated: dict[str, datetime] = {}
        for item in mine:
            schedule_id = schedule_of(item.stream_id)
            row = folded.setdefault(schedule_id, ScheduleRow())
            event = item.event
            if not row.schedule.fold(event, item.stream_version):
                continue
            if isinstance(event, ScheduleCreated):
                row.created_at = item.recorded_at
            if isinstance(event, ScheduleCreated | ScheduleChanged | ScheduleResumed):
                row.anchor = item.recorded_at
            updated[schedule_id] = item.recorded_at
        if updated:
            out = [_row(schedule_id, folded[schedule_id], at) for schedule_id, at in sorted(updated.items())]
            await connection.execute(QUERIES["schedule_upsert"], out)


projection = Schedules()
