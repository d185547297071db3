"""The rules of firing, as pure functions of a schedule's spec and moments handed in (never a clock read here).

The scheduler wakes up at a slot and reads the clock (`now`, from a timer). The slots after the latest one already
decided (`since`) and at or before `now` are due; it decides them one at a time, oldest first (`next_step`):

- The latest due slot is *on time* when `now` is at most `grace_s` after it; every other due slot was *missed*
  (nothing ran when it passed, or the scheduler was too slow for a slot this close to the next).
- The catch-up policy says which missed slots fire: `none` — none (only an on-time slot fires); `last` — only the
  latest due slot, on time or not; `all` — every due slot within `catch_up_window_s` before `now` (and an on-time
  one; the window, at most a week, is what bounds a catch-up). The due slots that do not fire are one
  `Missed` range, decided before the first that fires, so a day of missed seconds is one event, not 86,400.

Each slot that fires then meets the overlap policy (`overlap`): with the task of an earlier firing not finished,
`skip` skips it, `buffer_one` makes it wait (one at most: later ones are skipped) and `allow_all` fires it anyway.
Since every step is computed again from the state after the previous step was folded, deciding in several rounds
gives the same answer as deciding all at once, and a step folded twice changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from agentlog.domains.coordination.events import ChatPosted
from agentlog.domains.schedules import cron
from agentlog.domains.schedules.events import ChatAction, OverlapPolicy, ScheduleSpec, slot_task_id
from agentlog.domains.tasks.events import TaskCreated

MAX_COUNTED_MISSED = 10_000
"""Missed slots are counted up to this many (a `Missed` count at the limit means at least so many)."""

OverlapDecision = Literal["fire", "buffer", "skip"]


@dataclass(frozen=True, slots=True)
class Due:
    """The next slot to decide fires (subject to the overlap policy); `catch_up` when it was missed."""

    slot: datetime
    catch_up: bool


@dataclass(frozen=True, slots=True)
class Missed:
    """The due slots from `first` to `last` (`count` of them, counted up to a limit) do not fire."""

    first: datetime
    last: datetime
    count: int
    reason: str


Step = Due | Missed


def next_slot(spec: ScheduleSpec, after: datetime) -> datetime | None:
    """The schedule's first slot strictly after `after`."""
    return cron.next_after(spec.cron, spec.time_zone, after)


def next_step(spec: ScheduleSpec, since: datetime, now: datetime) -> Step | None:
    """What to decide next about the slots after `since` and at or before `now`; None when none is due."""
    first = next_slot(spec, since)
    if first is None or first > now:
        return None
    latest = cron.latest_at_or_before(spec.cron, spec.time_zone, now)
    if latest is None or latest < first:  # cannot be (`first` is one at or before `now`); never decide less for it
        latest = first
    on_time = now - latest <= timedelta(seconds=spec.grace_s)
    fire_from, reason = _first_firing(spec, latest, now, on_time=on_time)
    if fire_from is not None and fire_from <= first:
        return Due(first, catch_up=not (on_time and first == latest))
    last_missed = latest if fire_from is None else (_slot_before(spec, fire_from, since) or first)
    count = len(cron.slots_between(spec.cron, spec.time_zone, since, last_missed, MAX_COUNTED_MISSED))
    return Missed(first, last_missed, max(count, 1), reason)


def _first_firing(spec: ScheduleSpec, latest: datetime, now: datetime, *, on_time: bool) -> tuple[datetime | None, str]:
    """The earliest due slot that fires (None: none fires), and why the due slots before it do not."""
    if spec.catch_up == "none":
        return (latest if on_time else None), "missed; catch-up policy none"
    if spec.catch_up == "last":
        return latest, "missed; catch-up policy last fires only the latest"
    window_start = now - timedelta(seconds=spec.catch_up_window_s)
    in_window = next_slot(spec, window_start - timedelta(microseconds=1))
    reason = f"missed; before the catch-up window of {spec.catch_up_window_s:g} s"
    if in_window is None or in_window > latest:
        return (latest if on_time else None), reason
    return in_window, reason


def _slot_before(spec: ScheduleSpec, slot: datetime, since: datetime) -> datetime | None:
    before = cron.latest_at_or_before(spec.cron, spec.time_zone, slot - timedelta(microseconds=1))
    return before if before is not None and before > since else None


def overlap(policy: OverlapPolicy, *, running: bool, buffered: bool) -> OverlapDecision:
    """What a slot due to fire does while an earlier firing's task is `running` and a slot is `buffered`."""
    if not running or policy == "allow_all":
        return "fire"
    if policy == "buffer_one" and not buffered:
        return "buffer"
    return "skip"


def overlap_reason(policy: OverlapPolicy, *, buffered: bool) -> str:
    if policy == "buffer_one" and buffered:
        return "overlap: an earlier firing's task is not finished and one slot is already buffered"
    return "overlap: an earlier firing's task is not finished (overlap policy skip)"


def firing_effect(schedule_id: str, spec: ScheduleSpec, slot: datetime) -> ChatPosted | TaskCreated:
    """What a firing of `slot` does: the chat post or the task of the spec's action, its id derived from the slot
    (the scheduler appends it; a schedule is refused when this would not fit in the log)."""
    derived = slot_task_id(schedule_id, slot)
    action = spec.action
    if isinstance(action, ChatAction):
        return ChatPosted(
            message_id=derived, author=f"schedule {schedule_id}", author_kind="admin", body=action.body,
            mentions=action.mentions, data={"schedule_id": schedule_id, "slot": slot.isoformat(), **action.data},
        )  # fmt: skip
    template = action.task
    return TaskCreated(
        task_id=derived, task_type=template.task_type, payload=template.payload, priority=template.priority,
        capabilities=template.capabilities, max_attempts=template.max_attempts,
        execution_timeout_s=template.execution_timeout_s, heartbeat_interval_s=template.heartbeat_interval_s,
        concurrency_key=template.concurrency_key, concurrency_limit=template.concurrency_limit, run_at=slot,
        created_by=f"schedule {schedule_id}", created_by_kind="schedule",
    )  # fmt: skip
