"""Events of schedules. A schedule is a stream, `schedule-<schedule_id>`: what people do to it (created, changed,
paused, resumed, deleted, through the API) and what the scheduler decided for each of its slots (fired, skipped,
buffered, missed), with the scheduler's timers.

A slot is one moment the cron expression names, a whole second in UTC. Every slot is decided once: the fold of
the stream (`schedule.Schedule`) keeps the latest slot decided and ignores a second decision about it, and a
firing's task and chat message have ids derived from the schedule and the slot (`slot_task_id`), so that two
processes firing one slot collide on the same task instead of running it twice.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from agentlog.domains.coordination.names import AgentId
from agentlog.domains.schedules import cron
from agentlog.domains.tasks.events import (
    Capability,
    ConcurrencyLimit,
    Data,
    ExecutionTimeout,
    HeartbeatInterval,
    Key,
    MaxAttempts,
    Priority,
    TaskType,
)
from agentlog.eventstore.events import Event, catalogue

SCHEDULE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$"
ScheduleId = Annotated[str, StringConstraints(pattern=SCHEDULE_ID_PATTERN)]
"""At most 40 characters, so that `<schedule id>-<slot>` is a valid task id (64)."""
ShortText = Annotated[str, StringConstraints(max_length=500)]
OverlapPolicy = Literal["skip", "buffer_one", "allow_all"]
CatchUpPolicy = Literal["none", "last", "all"]
MAX_CATCH_UP_WINDOW_S = 7 * 24 * 3600
SLOT_NAMESPACE = uuid.UUID("0b6f4d1e-8a3c-4f0e-9d62-7c1f5e2a9b40")


def schedule_stream(schedule_id: str) -> str:
    return f"schedule-{schedule_id}"


def schedule_of(stream_id: str) -> str:
    return stream_id.removeprefix("schedule-")


def slot_stamp(slot: datetime) -> str:
    return slot.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def slot_task_id(schedule_id: str, slot: datetime) -> str:
    """The task a slot's firing creates (also its chat message's id): the same in every process and replay."""
    return f"{schedule_id}-{slot_stamp(slot)}"


def firing_id(schedule_id: str, slot: datetime) -> uuid.UUID:
    """The id of one slot's firing, derived from the schedule and the slot alone."""
    return uuid.uuid5(SLOT_NAMESPACE, f"{schedule_id}/{slot_stamp(slot)}")


class TaskTemplate(BaseModel):
    """What each firing's task is (`TaskCreated`'s fields of the same names, with the same types and limits); its id
    is derived from the slot."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task_type: TaskType
    payload: Data = Field(default_factory=dict)
    priority: Priority = 5
    capabilities: list[Capability] = Field(default_factory=list, max_length=50)
    max_attempts: MaxAttempts = 3
    execution_timeout_s: ExecutionTimeout = 3600.0
    heartbeat_interval_s: HeartbeatInterval = 30.0
    concurrency_key: Key | None = None
    concurrency_limit: ConcurrencyLimit = 1


class TaskAction(BaseModel):
    """Each firing creates a task."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["task"] = "task"
    task: TaskTemplate


class ChatAction(BaseModel):
    """Each firing posts a message to the chat (as `schedule <id>`); a post finishes at once, so never overlaps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["chat"] = "chat"
    body: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
    mentions: list[AgentId] = Field(default_factory=list, max_length=100)
    data: Data = Field(default_factory=dict)


Action = Annotated[TaskAction | ChatAction, Field(discriminator="kind")]


class ScheduleSpec(BaseModel):
    """Everything a schedule is, as created or changed (a change records the whole new spec)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cron: Annotated[str, StringConstraints(min_length=1, max_length=cron.MAX_EXPRESSION_CHARS)]
    time_zone: Annotated[str, StringConstraints(min_length=1, max_length=100)] = "UTC"
    action: Action
    overlap: OverlapPolicy = "skip"
    """While the task of an earlier firing is not finished: `skip` the slot, `buffer_one` (the first such slot
    waits and fires when the earlier tasks finished; more are skipped), or `allow_all` (fire anyway)."""
    catch_up: CatchUpPolicy = "none"
    """Slots missed while nothing ran (downtime): `none` fires none of them, `last` fires only the latest,
    `all` fires every one within `catch_up_window_s`."""
    catch_up_window_s: Annotated[float, Field(gt=0, le=MAX_CATCH_UP_WINDOW_S)] = 3600.0
    grace_s: Annotated[float, Field(ge=0, le=86_400)] = 60.0
    """A slot decided at most this late is on time, not missed (the scheduler's own latency, a short restart)."""

    @model_validator(mode="after")
    def _usable(self) -> ScheduleSpec:
        try:
            cron.check(self.cron, self.time_zone)
        except cron.CronError as error:
            raise ValueError(str(error)) from error
        return self


class _ScheduleEvent(Event):
    category: ClassVar[str] = "schedule"

    schedule_id: ScheduleId


@catalogue.register
class ScheduleCreated(_ScheduleEvent):
    """A schedule exists; its first slot is the first after the scheduler's next reading of the clock."""

    event_type: ClassVar[str] = "ScheduleCreated"

    spec: ScheduleSpec
    created_by: ShortText = ""


@catalogue.register
class ScheduleChanged(_ScheduleEvent):
    """The schedule is now `spec`, from its next slot on (slots already decided stay as they were)."""

    event_type: ClassVar[str] = "ScheduleChanged"

    spec: ScheduleSpec
    changed_by: ShortText = ""


@catalogue.register
class SchedulePaused(_ScheduleEvent):
    """No slot fires until resumed; slots passing meanwhile are not caught up."""

    event_type: ClassVar[str] = "SchedulePaused"

    paused_by: ShortText = ""
    reason: ShortText = ""


@catalogue.register
class ScheduleResumed(_ScheduleEvent):
    """Slots fire again, from the first after the scheduler's next reading of the clock."""

    event_type: ClassVar[str] = "ScheduleResumed"

    resumed_by: ShortText = ""


@catalogue.register
class ScheduleDeleted(_ScheduleEvent):
    """The schedule is gone; a firing buffered is dropped. Its id may be created anew."""

    event_type: ClassVar[str] = "ScheduleDeleted"

    deleted_by: ShortText = ""
    reason: ShortText = ""


@catalogue.register
class ScheduleFired(_ScheduleEvent):
    """The slot fired: the task `task_id` was created, or the chat message `message_id` posted, with it."""

    event_type: ClassVar[str] = "ScheduleFired"

    slot: datetime
    firing_id: uuid.UUID
    task_id: str | None = None
    message_id: str | None = None
    decided_at: datetime | None = None
    """The scheduler's reading of the clock it fired at (None for a buffered slot, fired when tasks finished)."""
    catch_up: bool = False
    """It was missed (downtime) and fired by the catch-up policy."""
    buffered: bool = False
    """It waited for earlier firings' tasks (`buffer_one`)."""


@catalogue.register
class ScheduleSlotSkipped(_ScheduleEvent):
    """The slot did not fire because an earlier firing's task was not finished (`overlap`)."""

    event_type: ClassVar[str] = "ScheduleSlotSkipped"

    slot: datetime
    reason: ShortText


@catalogue.register
class ScheduleSlotBuffered(_ScheduleEvent):
    """The slot waits for the earlier firings' tasks to finish (`buffer_one`), then fires."""

    event_type: ClassVar[str] = "ScheduleSlotBuffered"

    slot: datetime


@catalogue.register
class ScheduleSlotsMissed(_ScheduleEvent):
    """Slots from `first_slot` to `last_slot` passed while nothing ran and the catch-up policy fires none of them.
    `count` is how many (at most `rules.MAX_COUNTED_MISSED`: a count at that limit means at least so many)."""

    event_type: ClassVar[str] = "ScheduleSlotsMissed"

    first_slot: datetime
    last_slot: datetime
    count: Annotated[int, Field(ge=1)]
    reason: ShortText
