"""The scheduler decider: fires each schedule's slots, by its overlap and catch-up policies, each slot once.

It folds every schedule (`domains.schedules.schedule`) and the tasks its firings created, and wakes up by timers
on the schedule's stream. A decider reads no clock, and a timer's `due_at` is when it was due, not when it fired
(after a downtime, long before): so every wake-up is two timers. The *slot* timer is scheduled for the next slot;
when it fires, a *clock* timer with no delay follows, whose `due_at` is when it was scheduled by the database's
clock — now, give or take the timer service's latency. With that reading the scheduler decides the due slots
(`rules.next_step`: missed ranges, on-time and caught-up firings, each through the overlap policy) and schedules
the slot timer of the next one. A schedule created, changed or resumed starts with a clock timer: its first slot
is the first after that reading, so a change or a pause takes effect from the next slot on (a slot whose timer
is in flight at the moment of a change is neither fired nor missed). A wake-up costs the timer service's latency
twice (up to its poll interval each), so six-field schedules of a second or two are for tests: in production the
`grace_s` of a schedule should exceed that latency, or its slots count as missed.

A firing is two events, decided together: `ScheduleFired` on the schedule's stream (its fold moves the schedule
past the slot, so a second firing of one slot changes nothing) and the action — `TaskCreated` on
`task-<schedule id>-<slot>`, or `ChatPosted` on the chat with the same id. Two processes never fire one slot
twice: one handler instance decides at a time (the runner's lock), decisions have ids derived from their cause,
and the ids of the task and the message derive from the schedule and the slot alone.

Overlap: a firing's task is running until its stream says completed (by its current attempt), dead-lettered or
cancelled. A task requeued after its dead letter no longer counts as running.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, cast

from pydantic import BaseModel, Field, PrivateAttr

from agentlog.domains.coordination.events import ChatPosted
from agentlog.domains.coordination.names import CHAT_STREAM
from agentlog.domains.schedules import rules
from agentlog.domains.schedules.events import (
    ChatAction,
    ScheduleChanged,
    ScheduleCreated,
    ScheduleDeleted,
    ScheduleFired,
    SchedulePaused,
    ScheduleResumed,
    ScheduleSlotBuffered,
    ScheduleSlotSkipped,
    ScheduleSlotsMissed,
    firing_id,
    schedule_stream,
    slot_task_id,
)
from agentlog.domains.schedules.schedule import Schedule
from agentlog.domains.tasks.events import TaskAssigned, TaskCancelled, TaskCompleted, TaskDeadLettered
from agentlog.domains.tasks.events import task_stream as task_stream_of
from agentlog.domains.timers.events import MAX_TIMER_DELAY_S, TimerFired, TimerScheduled
from agentlog.eventstore import Event
from agentlog.handlers.decider import Decision, Fact
from agentlog.handlers.decider_state import KeyedState

SCHEDULE_SLOT = "schedule-slot"
SCHEDULE_CLOCK = "schedule-clock"
SCHEDULE_TIMER_PURPOSES = frozenset({SCHEDULE_SLOT, SCHEDULE_CLOCK})
SCHEDULE_EVENTS = (
    ScheduleCreated, ScheduleChanged, SchedulePaused, ScheduleResumed, ScheduleDeleted, ScheduleFired,
    ScheduleSlotSkipped, ScheduleSlotBuffered, ScheduleSlotsMissed,
)  # fmt: skip
TASK_EVENTS = (TaskAssigned, TaskCompleted, TaskDeadLettered, TaskCancelled)


class SchedulerSettings(BaseModel):
    """Nothing to set: every schedule's policies come with its own events."""


class ScheduleRun(BaseModel):
    """One live schedule as the scheduler keeps it: its fold, where its slots stand and what it waits for."""

    schedule: Schedule = Field(default_factory=Schedule)
    since: datetime | None = None
    """Slots after this are due (with `schedule.last_slot`, the later); None until the first clock reading after
    the schedule was created, changed or resumed."""
    now: datetime | None = None
    """The clock reading being decided from; None once the next slot's timer is scheduled."""
    wants_clock: bool = False
    timer_id: str | None = None
    """The one timer waited for: any other of the schedule's timers firing is stale and ignored."""
    timers: int = 0
    running: dict[str, int] = Field(default_factory=dict)
    """Tasks of its firings not finished → their current attempt (0 before the first assignment)."""


class SchedulerState(KeyedState):
    keyed: ClassVar[dict[str, tuple[str, ...]]] = {"schedule": ("runs",)}

    runs: dict[str, ScheduleRun] = Field(default_factory=dict)
    """Live schedules (a deleted one is dropped)."""

    _owners: dict[str, str] = PrivateAttr(default_factory=dict)
    """Running task → its schedule (derived from `runs`)."""
    _unsettled: set[str] = PrivateAttr(default_factory=set)
    """Schedules touched by the event being decided (empty between events)."""

    def model_post_init(self, context: object, /) -> None:
        for schedule_id, run in self.runs.items():
            for task_id in run.running:
                self.owners[task_id] = schedule_id

    @property
    def owners(self) -> dict[str, str]:
        return cast(dict[str, str], self.__pydantic_private__["_owners"])  # type: ignore[index]

    @property
    def unsettled(self) -> set[str]:
        return cast(set[str], self.__pydantic_private__["_unsettled"])  # type: ignore[index]

    def touched(self, schedule_id: str) -> None:
        self.changed("schedule", schedule_id)
        self.unsettled.add(schedule_id)


class Scheduler:
    """Fires schedules' slots (`handlers.schedules`)."""

    name: ClassVar[str] = "scheduler"
    input_types: ClassVar[frozenset[str]] = frozenset(
        {event.event_type for event in (*SCHEDULE_EVENTS, *TASK_EVENTS)} | {"TimerFired"}
    )
    state_model: ClassVar[type[SchedulerState]] = SchedulerState
    state_version: ClassVar[int] = 1

    def __init__(self) -> None:
        self.configured = SchedulerSettings()

    def initial_state(self) -> SchedulerState:
        return SchedulerState()

    # -- evolve ----------------------------------------------------------------------------------------------------

    def evolve(self, state: SchedulerState, fact: Fact) -> SchedulerState:
        event = fact.event
        if isinstance(event, TimerScheduled | TimerFired):
            if event.purpose in SCHEDULE_TIMER_PURPOSES and fact.stream_id == schedule_stream(event.subject):
                self._timer(state, event.subject, event)
        elif isinstance(event, TASK_EVENTS):
            self._task(state, fact.stream_id, event)
        elif isinstance(event, SCHEDULE_EVENTS) and fact.stream_id == schedule_stream(event.schedule_id):
            self._schedule(state, event.schedule_id, event)
        return state

    def _schedule(self, state: SchedulerState, schedule_id: str, event: Event) -> None:
        run = state.runs.get(schedule_id) or ScheduleRun()
        if not run.schedule.fold(event):
            return
        if isinstance(event, ScheduleDeleted):
            for task_id in run.running:
                state.owners.pop(task_id, None)
            del state.runs[schedule_id]
            state.touched(schedule_id)
            return
        if isinstance(event, ScheduleCreated | ScheduleChanged | ScheduleResumed):
            run.since, run.now, run.wants_clock, run.timer_id = None, None, True, None
        elif isinstance(event, SchedulePaused):
            run.now, run.wants_clock, run.timer_id = None, False, None
        elif isinstance(event, ScheduleFired) and event.task_id is not None:
            run.running[event.task_id] = 0
            state.owners[event.task_id] = schedule_id
        state.runs[schedule_id] = run
        state.touched(schedule_id)

    def _timer(self, state: SchedulerState, schedule_id: str, event: TimerScheduled | TimerFired) -> None:
        run = state.runs.get(schedule_id)
        if run is None:
            return
        if isinstance(event, TimerScheduled):
            run.timer_id, run.timers = event.timer_id, run.timers + 1
            if event.purpose == SCHEDULE_CLOCK:
                run.wants_clock = False
            else:
                run.now = None
        elif event.timer_id != run.timer_id:
            return  # stale: superseded by a change, a pause or a resume
        else:
            run.timer_id = None
            if event.purpose == SCHEDULE_SLOT:
                run.wants_clock = True
            else:
                run.now = event.due_at
                run.since = run.since or event.due_at
        state.touched(schedule_id)

    def _task(self, state: SchedulerState, stream_id: str, event: Event) -> None:
        task_id: str = getattr(event, "task_id")  # noqa: B009 - every task event names its task
        schedule_id = state.owners.get(task_id)
        if schedule_id is None or stream_id != task_stream_of(task_id):
            return
        run = state.runs[schedule_id]
        attempt = run.running[task_id]
        if isinstance(event, TaskAssigned):
            if event.attempt != attempt + 1:
                return  # not the lifecycle's next attempt: the task's fold refuses it too
            run.running[task_id] = event.attempt
        elif isinstance(event, TaskCompleted) and event.attempt != attempt:
            return  # a stale attempt's completion: the task goes on
        else:
            del run.running[task_id]
            del state.owners[task_id]
        state.touched(schedule_id)

    # -- decide ----------------------------------------------------------------------------------------------------

    def decide(self, state: SchedulerState, fact: Fact) -> list[Decision]:
        while state.unsettled:
            schedule_id = min(state.unsettled)
            decisions = self._next(state, schedule_id, fact)
            if decisions:
                return decisions
            state.unsettled.discard(schedule_id)
        return []

    def _next(self, state: SchedulerState, schedule_id: str, fact: Fact) -> list[Decision]:
        run = state.runs.get(schedule_id)
        if run is None or run.schedule.spec is None or run.schedule.status != "active":
            return []
        schedule, spec, stream = run.schedule, run.schedule.spec, schedule_stream(schedule_id)
        if schedule.buffered is not None and not run.running:
            return _firing(schedule_id, run, schedule.buffered, None, catch_up=False, buffered=True)
        if run.wants_clock:
            return [] if run.timer_id is not None else [_timer(schedule_id, run, fact, SCHEDULE_CLOCK, 0.0)]
        if run.now is None or run.since is None:
            return []
        since = max(run.since, schedule.last_slot or run.since)
        step = rules.next_step(spec, since, run.now)
        if step is None:
            upcoming = rules.next_slot(spec, max(since, run.now))
            if upcoming is None:
                return []  # no slot within cronsim's horizon: the schedule has fired its last
            delay = min(max((upcoming - run.now).total_seconds(), 0.0), MAX_TIMER_DELAY_S)
            return [_timer(schedule_id, run, fact, SCHEDULE_SLOT, delay)]
        if isinstance(step, rules.Missed):
            missed = ScheduleSlotsMissed(
                schedule_id=schedule_id, first_slot=step.first, last_slot=step.last, count=step.count,
                reason=step.reason,
            )  # fmt: skip
            return [Decision(stream, missed)]
        running = bool(run.running) and not isinstance(spec.action, ChatAction)
        buffered = schedule.buffered is not None
        match rules.overlap(spec.overlap, running=running, buffered=buffered):
            case "fire":
                return _firing(schedule_id, run, step.slot, run.now, catch_up=step.catch_up, buffered=False)
            case "buffer":
                return [Decision(stream, ScheduleSlotBuffered(schedule_id=schedule_id, slot=step.slot))]
            case _:
                reason = rules.overlap_reason(spec.overlap, buffered=buffered)
                return [Decision(stream, ScheduleSlotSkipped(schedule_id=schedule_id, slot=step.slot, reason=reason))]


def _timer(schedule_id: str, run: ScheduleRun, fact: Fact, purpose: str, delay_s: float) -> Decision:
    """A timer with an id never used before: the timer service fires each id once (`TimerFired`'s id derives from
    it), so a reused id would never fire. The causing event's log position makes it unique even for a schedule
    deleted and created anew (its count of timers starts again); the count tells one schedule's timers apart."""
    timer_id = f"schedule-{schedule_id}-{fact.position or 0}-{run.timers}"
    return Decision(
        schedule_stream(schedule_id),
        TimerScheduled(timer_id=timer_id, delay_s=delay_s, purpose=purpose, subject=schedule_id),
    )


def _firing(
    schedule_id: str, run: ScheduleRun, slot: datetime, decided_at: datetime | None, *, catch_up: bool,
    buffered: bool,
) -> list[Decision]:  # fmt: skip
    """`ScheduleFired` and its action, with ids derived from the schedule and the slot."""
    spec = run.schedule.spec
    assert spec is not None
    derived = slot_task_id(schedule_id, slot)
    action = spec.action
    made = rules.firing_effect(schedule_id, spec, slot)
    effect = Decision(CHAT_STREAM if isinstance(made, ChatPosted) else task_stream_of(derived), made)
    fired = ScheduleFired(
        schedule_id=schedule_id, slot=slot, firing_id=firing_id(schedule_id, slot),
        task_id=None if isinstance(action, ChatAction) else derived,
        message_id=derived if isinstance(action, ChatAction) else None, decided_at=decided_at, catch_up=catch_up,
        buffered=buffered,
    )  # fmt: skip
    return [Decision(schedule_stream(schedule_id), fired), effect]
