"""One schedule as the fold of its stream, and the commands people give it.

`Schedule.fold` is the one place that says what an event does to a schedule, for the API, the scheduler and the
projection alike. Each slot is decided once: a firing, skip, buffering or miss of a slot at or before the latest
one decided changes nothing (the buffered slot, fired later, excepted), so a duplicate appended by a second
process, by a retry or by hand can never make a slot fire twice in any fold.

The commands (`create`, `change`, `pause`, `resume`, `delete`) are pure: given the schedule as folded, they return
the events to append, or raise a `ScheduleError` saying what was wrong (nothing is appended). The API appends them
at the stream version it folded, so two people changing one schedule at once cannot both win blindly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from agentlog.domains.coordination.events import ChatPosted
from agentlog.domains.schedules.events import (
    ScheduleChanged,
    ScheduleCreated,
    ScheduleDeleted,
    ScheduleFired,
    SchedulePaused,
    ScheduleResumed,
    ScheduleSlotBuffered,
    ScheduleSlotSkipped,
    ScheduleSlotsMissed,
    ScheduleSpec,
)
from agentlog.domains.schedules.rules import firing_effect
from agentlog.domains.timers.zones import check_time_zone
from agentlog.eventstore.events import Event
from agentlog.eventstore.storable import MAX_EVENT_DATA_BYTES, stored_size

Status = Literal["new", "active", "paused", "deleted"]
LIVE: frozenset[str] = frozenset({"active", "paused"})


class ScheduleError(Exception):
    """A schedule command was refused; nothing was appended."""


class InvalidScheduleError(ScheduleError):
    """The schedule's spec is not valid; the message names the field (`cron: ...`)."""


class ScheduleTooLargeError(InvalidScheduleError):
    """A firing's event would be over the log's size limit (`limit`, bytes); the message names the field."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class UnknownScheduleError(ScheduleError):
    """No such schedule (never created, or deleted)."""


class ScheduleExistsError(ScheduleError):
    """A schedule with this id exists already: change it, or delete it first."""


class Schedule(BaseModel):
    """One schedule as the fold of its stream, and the stream version it is folded to."""

    version: int = 0
    schedule_id: str = ""
    spec: ScheduleSpec | None = None
    status: Status = "new"
    last_slot: datetime | None = None
    """The latest slot decided (fired, skipped, buffered or missed): only later ones are still to decide."""
    buffered: datetime | None = None
    """The slot waiting for earlier firings' tasks (`buffer_one`)."""
    fired: int = 0
    skipped: int = 0
    missed: int = 0
    last_fired_slot: datetime | None = None

    @property
    def live(self) -> bool:
        return self.status in LIVE

    def fold(self, event: Event, version: int | None = None) -> bool:
        """Apply an event of the schedule's stream; False when it changes nothing (a slot decided already, a
        command the schedule's status does not allow)."""
        if version is not None:
            self.version = version
        match event:
            case ScheduleCreated() if not self.live:
                fresh = Schedule(version=self.version, schedule_id=event.schedule_id, spec=event.spec, status="active")
                for name in type(self).model_fields:  # created anew: nothing of a deleted one carries over
                    setattr(self, name, getattr(fresh, name))
            case ScheduleChanged() if self.live:
                self.spec = event.spec
                if event.spec.overlap != "buffer_one":
                    self.buffered = None
            case SchedulePaused() if self.status == "active":
                self.status = "paused"
            case ScheduleResumed() if self.status == "paused":
                self.status = "active"
            case ScheduleDeleted() if self.live:
                self.status, self.buffered = "deleted", None
            case ScheduleFired() if self.live:
                return self._fired(event)
            case ScheduleSlotSkipped() if self.live and self._later(event.slot):
                self.last_slot, self.skipped = event.slot, self.skipped + 1
            case ScheduleSlotBuffered() if self.live and self._later(event.slot) and self.buffered is None:
                self.last_slot = self.buffered = event.slot
            case ScheduleSlotsMissed() if self.live and self._later(event.last_slot):
                self.last_slot, self.missed = event.last_slot, self.missed + event.count
            case _:
                return False
        return True

    def _later(self, slot: datetime) -> bool:
        return self.last_slot is None or slot > self.last_slot

    def _fired(self, event: ScheduleFired) -> bool:
        if self.buffered is not None and event.slot == self.buffered:
            self.buffered = None
        elif self._later(event.slot):
            self.last_slot = event.slot
        else:
            return False
        self.fired += 1
        if self.last_fired_slot is None or event.slot > self.last_fired_slot:
            self.last_fired_slot = event.slot
        return True


def fold_all(events: Sequence[Event], schedule: Schedule | None = None) -> Schedule:
    schedule = schedule or Schedule()
    for event in events:
        schedule.fold(event)
    return schedule


def parse_spec(data: Mapping[str, Any]) -> ScheduleSpec:
    """A spec from request data, or `InvalidScheduleError` naming each wrong field (`cron: ...`)."""
    try:
        return ScheduleSpec.model_validate(dict(data))
    except ValidationError as error:
        raise InvalidScheduleError(describe(error)) from error


def describe(error: ValidationError) -> str:
    """A validation error as `field: message; ...` (a whole-spec rule names its field itself)."""
    parts = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")
        where = ".".join(str(part) for part in item["loc"])
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _known(schedule: Schedule, schedule_id: str) -> ScheduleSpec:
    if not schedule.live or schedule.spec is None:
        raise UnknownScheduleError(f"no schedule {schedule_id}: create it first (agentlog schedule create)")
    return schedule.spec


def _iana_zone(spec: ScheduleSpec) -> None:
    """A new spec's zone is an IANA one (`zones`); `ScheduleSpec` itself still reads what older releases took."""
    try:
        check_time_zone(spec.time_zone)
    except ValueError as error:
        raise InvalidScheduleError(f"time_zone: {error}") from error


def fits_the_log(schedule_id: str, spec: ScheduleSpec) -> None:
    """`ScheduleTooLargeError` naming the field when a firing's event would be over the log's size limit.

    A firing appends the action's event: the template's payload (or the post's data) and what the slot adds (ids,
    defaults), more than the schedule's own event holds. Refused when the schedule is made, not at its first slot,
    where the scheduler could only skip it."""
    made = firing_effect(schedule_id, spec, datetime(2026, 1, 1, tzinfo=UTC))  # every slot's ids are as long
    try:
        size = stored_size(made.to_json())
    except PydanticSerializationError:
        return  # a string the log cannot keep: the store refuses the schedule's own event, naming it
    if size > MAX_EVENT_DATA_BYTES:
        field, where = ("action.data", "data") if isinstance(made, ChatPosted) else ("action.task.payload", "payload")
        raise ScheduleTooLargeError(
            f"{field}: each firing's {made.event_type} would be {size:,} bytes; the log keeps events of up to "
            f"{MAX_EVENT_DATA_BYTES:,} bytes: keep large content elsewhere and put its reference in the {where}",
            MAX_EVENT_DATA_BYTES,
        )


def create(
    schedule: Schedule, schedule_id: str, spec: ScheduleSpec | Mapping[str, Any], *, created_by: str = ""
) -> list[Event]:
    """Create a schedule (again, after it was deleted); refused while one with the id exists."""
    if schedule.live:
        raise ScheduleExistsError(f"schedule {schedule_id} exists already: change it, or delete it first")
    parsed = spec if isinstance(spec, ScheduleSpec) else parse_spec(spec)
    _iana_zone(parsed)
    fits_the_log(schedule_id, parsed)
    return [ScheduleCreated(schedule_id=schedule_id, spec=parsed, created_by=created_by)]


def change(schedule: Schedule, schedule_id: str, changes: Mapping[str, Any], *, changed_by: str = "") -> list[Event]:
    """Change some fields of the spec (those given); nothing when they are as they were."""
    current = _known(schedule, schedule_id)
    unknown = sorted(set(changes) - set(ScheduleSpec.model_fields))
    if unknown:
        raise InvalidScheduleError(f"{unknown[0]}: not a field of a schedule")
    merged = parse_spec({**current.model_dump(mode="json"), **changes})
    if merged == current:
        return []
    if "time_zone" in changes:  # one recorded in a zone older releases took may still change its other fields
        _iana_zone(merged)
    fits_the_log(schedule_id, merged)
    return [ScheduleChanged(schedule_id=schedule_id, spec=merged, changed_by=changed_by)]


def pause(schedule: Schedule, schedule_id: str, *, paused_by: str = "", reason: str = "") -> list[Event]:
    """Pause; nothing when paused already."""
    _known(schedule, schedule_id)
    if schedule.status == "paused":
        return []
    return [SchedulePaused(schedule_id=schedule_id, paused_by=paused_by, reason=reason)]


def resume(schedule: Schedule, schedule_id: str, *, resumed_by: str = "") -> list[Event]:
    """Resume; nothing when not paused."""
    _known(schedule, schedule_id)
    if schedule.status == "active":
        return []
    return [ScheduleResumed(schedule_id=schedule_id, resumed_by=resumed_by)]


def delete(schedule: Schedule, schedule_id: str, *, deleted_by: str = "", reason: str = "") -> list[Event]:
    _known(schedule, schedule_id)
    return [ScheduleDeleted(schedule_id=schedule_id, deleted_by=deleted_by, reason=reason)]
