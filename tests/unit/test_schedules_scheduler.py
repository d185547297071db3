"""The scheduler decider, against a simulated world: a clock, a timer service that fires each timer at its due time
(late, with its original `due_at`, after a downtime), and agents that take each created task at once and finish
it some seconds later.

Hypothesis drives what happens — waits, downtimes, changes, pauses and resumes, a duplicate `ScheduleFired` for a
slot already fired (a second process) — under every overlap and catch-up policy. The checks read the world's log,
never the decider's state: a slot fires at most once and its task id is derived from it; with `skip` and
`buffer_one` no firing starts while an earlier firing's task runs, and at most one slot is buffered; `allow_all`
never skips; with catch-up `none` every firing was on time; every slot between the first clock reading and the
last is decided exactly once (fired, skipped, buffered or missed) while the schedule was active. The state is
saved and loaded row by row after every event and the decider goes on from the loaded one, as a restarted
handler would.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentlog.domains.coordination.events import ChatPosted
from agentlog.domains.schedules import cron
from agentlog.domains.schedules.events import (
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
from agentlog.domains.schedules.schedule import Schedule, change, create, delete, fold_all, pause, resume
from agentlog.domains.tasks.events import TaskAssigned, TaskCompleted, TaskCreated, task_stream
from agentlog.domains.timers.events import TimerFired, TimerScheduled
from agentlog.eventstore import Event
from agentlog.handlers.decider import Decision, Fact, step
from agentlog.handlers.schedules.scheduler import SCHEDULE_CLOCK, SCHEDULE_SLOT, Scheduler, SchedulerState
from tests.unit.saved_rows import SavedRows

T0 = datetime(2026, 12, 2, 12, 0, 0, 500_000, tzinfo=UTC)
SID = "report"
STREAM = schedule_stream(SID)
TASK = {"kind": "task", "task": {"task_type": "report"}}


@dataclass
class World:
    durations: list[float]
    clock: datetime = T0
    decider: Scheduler = field(default_factory=Scheduler)
    state: SchedulerState = field(default_factory=SchedulerState)
    log: list[tuple[str, Event]] = field(default_factory=list)
    inputs: list[tuple[str, Event, int]] = field(default_factory=list)
    decided: list[list[Decision]] = field(default_factory=list)
    timers: dict[str, tuple[datetime, TimerScheduled]] = field(default_factory=dict)
    finishing: dict[str, datetime] = field(default_factory=dict)
    """Running tasks (the world's view) → when they complete."""
    queued: list[tuple[str, Event]] = field(default_factory=list)
    fired_slots: list[datetime] = field(default_factory=list)
    buffered: datetime | None = None
    active_since: list[tuple[datetime, datetime | None]] = field(default_factory=list)
    """Periods the schedule was active (clock readings), for the coverage check."""

    def schedule(self) -> Schedule:
        return fold_all([event for stream, event in self.log if stream == STREAM])

    def feed(self, stream_id: str, event: Event) -> list[Decision]:
        self.log.append((stream_id, event))
        self.inputs.append((stream_id, event, len(self.log)))
        fact = Fact(event, uuid.UUID(int=len(self.log)), stream_id, len(self.log))
        self.state, decisions = step(self.decider, self.state, fact)
        self.decided.append(decisions)
        for decision in decisions:
            self.observe(decision)
        saved = SavedRows()
        saved.save(self.state, everything=True)
        loaded = saved.load(SchedulerState)
        assert loaded.model_dump() == self.state.model_dump()
        assert loaded.owners == self.state.owners
        self.state = loaded  # go on as a restarted handler would
        while self.queued:
            self.feed(*self.queued.pop(0))
        return decisions

    def observe(self, decision: Decision) -> None:
        event = decision.event
        self.log.append((decision.stream_id, event))
        match event:
            case TimerScheduled():
                assert event.timer_id not in self.timers and event.delay_s >= 0
                self.timers[event.timer_id] = (self.clock + timedelta(seconds=event.delay_s), event)
            case ScheduleFired():
                assert event.slot not in self.fired_slots, f"slot {event.slot} fired twice"
                self.fired_slots.append(event.slot)
                assert event.firing_id == firing_id(SID, event.slot)
                policy = self.spec_now().overlap
                if policy != "allow_all":
                    assert not self.finishing, f"{event.slot} fired while {sorted(self.finishing)} ran ({policy})"
                if event.buffered:
                    assert self.buffered == event.slot
                    self.buffered = None
                if self.spec_now().catch_up == "none" and not event.buffered:
                    assert event.decided_at is not None
                    assert event.decided_at - event.slot <= timedelta(seconds=self.spec_now().grace_s)
            case TaskCreated():
                assert decision.stream_id == task_stream(event.task_id)
                duration = self.durations[len(self.fired_slots) % len(self.durations)] or 0.1
                self.finishing[event.task_id] = self.clock + timedelta(seconds=duration)
                self.queued.append((decision.stream_id, TaskAssigned(task_id=event.task_id, attempt=1,
                                                                     agent_id="ada")))  # fmt: skip
            case ScheduleSlotBuffered():
                assert self.spec_now().overlap == "buffer_one" and self.buffered is None
                self.buffered = event.slot
            case ScheduleSlotSkipped():
                assert self.spec_now().overlap != "allow_all"

    def spec_now(self) -> Any:
        spec = self.schedule().spec
        assert spec is not None
        return spec

    def command(self, events: list[Event]) -> None:
        for event in events:
            self.feed(STREAM, event)

    def advance(self, seconds: float, *, down: bool = False) -> None:
        """Let time pass; nothing fires during a downtime, then everything overdue fires at once (late)."""
        until = self.clock + timedelta(seconds=seconds)
        if down:
            self.clock = until
        while True:
            due = [(at, "timer", timer_id) for timer_id, (at, _) in self.timers.items() if at <= until]
            due += [(at, "task", task_id) for task_id, at in self.finishing.items() if at <= until]
            if not due:
                break
            at, kind, key = min(due)
            self.clock = max(self.clock, at)
            if kind == "timer":
                due_at, scheduled = self.timers.pop(key)
                self.feed(STREAM, TimerFired(timer_id=key, purpose=scheduled.purpose, subject=scheduled.subject,
                                             due_at=due_at))  # fmt: skip
            else:
                del self.finishing[key]
                self.feed(task_stream(key), TaskCompleted(task_id=key, attempt=1, agent_id="ada"))
        self.clock = until

    def clock_readings(self) -> list[datetime]:
        """The `due_at` of every clock timer the decider acted on."""
        readings = []
        for stream_id, event, _ in self.inputs:
            if isinstance(event, TimerFired) and event.purpose == SCHEDULE_CLOCK and stream_id == STREAM:
                readings.append(event.due_at)
        return readings


def decided_slots(world: World) -> list[datetime]:
    """The slots decided, as the schedule's fold took them (a duplicate it refused decided nothing)."""
    slots: list[datetime] = []
    schedule = Schedule()
    for stream_id, event in world.log:
        if stream_id != STREAM or not schedule.fold(event):
            continue
        match event:
            case ScheduleFired() if not event.buffered:
                slots.append(event.slot)
            case ScheduleSlotSkipped() | ScheduleSlotBuffered():
                slots.append(event.slot)
            case ScheduleSlotsMissed():
                slots += cron.slots_between("*/5 * * * * *", "UTC", event.first_slot - timedelta(microseconds=1),
                                            event.last_slot, 100_000)  # fmt: skip
    return slots


actions = st.lists(
    st.one_of(
        st.tuples(st.just("wait"), st.floats(0.5, 40.0)),
        st.tuples(st.just("down"), st.floats(1.0, 120.0)),
        st.tuples(st.just("pause")),
        st.tuples(st.just("resume")),
        st.tuples(st.just("grace"), st.sampled_from([0.0, 2.0, 10.0])),
        st.tuples(st.just("duplicate")),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=80, deadline=None)
@given(
    overlap=st.sampled_from(["skip", "buffer_one", "allow_all"]), catch_up=st.sampled_from(["none", "last", "all"]),
    window=st.sampled_from([5.0, 30.0, 600.0]), steps=actions,
    durations=st.lists(st.floats(0.0, 25.0), min_size=1, max_size=8),
)  # fmt: skip
def test_every_slot_fires_at_most_once_by_its_policies_whatever_happens(
    overlap: str, catch_up: str, window: float, steps: list[tuple[Any, ...]], durations: list[float]
) -> None:
    world = World(durations=list(durations))
    spec = {"cron": "*/5 * * * * *", "action": TASK, "overlap": overlap, "catch_up": catch_up,
            "catch_up_window_s": window, "grace_s": 2.0}  # fmt: skip
    world.command(create(Schedule(), SID, spec))
    for action in steps:
        schedule = world.schedule()
        match action:
            case ("wait", seconds):
                world.advance(seconds)
            case ("down", seconds):
                world.advance(seconds, down=True)
            case ("pause",):
                world.command(pause(schedule, SID))
            case ("resume",):
                world.command(resume(schedule, SID))
            case ("grace", grace):
                world.command(change(schedule, SID, {"grace_s": grace}))
            case ("duplicate",) if world.fired_slots:
                slot = world.fired_slots[-1]
                before = len(world.fired_slots)
                world.feed(STREAM, ScheduleFired(schedule_id=SID, slot=slot, firing_id=firing_id(SID, slot),
                                                 task_id=slot_task_id(SID, slot)))  # fmt: skip
                assert len(world.fired_slots) == before
    world.advance(60)
    decided = decided_slots(world)
    assert len(decided) == len(set(decided)), "a slot was decided twice"
    assert sorted(world.fired_slots) == sorted(set(world.fired_slots))
    # Every slot between consecutive clock readings while active was decided: nothing is silently lost.
    readings = world.clock_readings()
    paused_or_changed = any(isinstance(e, SchedulePaused | ScheduleResumed) for _, e, _ in world.inputs) or any(
        a[0] == "grace" for a in steps
    )
    if not paused_or_changed and len(readings) >= 2:
        expected = cron.slots_between("*/5 * * * * *", "UTC", readings[0], readings[-1], 100_000)
        assert sorted(decided) == expected
    # The same inputs give the same decisions (what `replay --verify` checks).
    again = Scheduler()
    state = again.initial_state()
    for (stream_id, event, position), recorded in zip(world.inputs, world.decided, strict=True):
        state, decisions = step(again, state, Fact(event, uuid.UUID(int=position), stream_id, position))
        assert decisions == recorded


def test_a_schedule_reads_the_clock_then_fires_each_slot_with_derived_ids_and_arms_the_next() -> None:
    world = World(durations=[100.0] * 10)
    (clock_timer,) = world.feed(STREAM, *create(Schedule(), SID, {"cron": "*/5 * * * * *", "action": TASK}))
    assert isinstance(clock_timer.event, TimerScheduled) and clock_timer.event.purpose == SCHEDULE_CLOCK
    assert clock_timer.event.delay_s == 0
    world.advance(0)
    (slot_timer,) = world.decided[-1]
    assert isinstance(slot_timer.event, TimerScheduled) and slot_timer.event.purpose == SCHEDULE_SLOT
    assert slot_timer.event.delay_s == 4.5  # T0 is 12:00:00.5; the first slot 12:00:05
    world.advance(4.5)
    fired = [d for d in world.decided[-2] if isinstance(d.event, ScheduleFired | TaskCreated)]
    slot = datetime(2026, 12, 2, 12, 0, 5, tzinfo=UTC)
    assert [(d.stream_id, d.event.event_type) for d in fired] == [
        (STREAM, "ScheduleFired"), (task_stream("report-20261202T120005Z"), "TaskCreated")
    ]  # fmt: skip
    created = fired[1].event
    assert isinstance(created, TaskCreated) and (created.run_at, created.task_type) == (slot, "report")
    world.advance(5)  # the task runs 100 s: the next slot is skipped (overlap skip)
    skipped = [e for _, e in world.log if isinstance(e, ScheduleSlotSkipped)]
    assert [e.slot for e in skipped] == [slot + timedelta(seconds=5)]
    assert "not finished" in skipped[0].reason


def test_a_downtime_is_caught_up_by_policy() -> None:
    outcomes = {}
    for policy in ("none", "last", "all"):
        world = World(durations=[0.1] * 100)
        spec = {"cron": "*/5 * * * * *", "action": TASK, "catch_up": policy, "catch_up_window_s": 12,
                "grace_s": 1, "overlap": "allow_all"}  # fmt: skip
        world.command(create(Schedule(), SID, spec))
        world.advance(5)  # 12:00:05 fires
        world.advance(33, down=True)  # down from 12:00:05.5 to 12:00:38.5: 10, 15, 20, 25, 30 and 35 missed
        world.advance(0)
        caught = [(e.slot.second, e.catch_up) for _, e in world.log if isinstance(e, ScheduleFired)]
        missed = [(e.first_slot.second, e.last_slot.second, e.count) for _, e in world.log
                  if isinstance(e, ScheduleSlotsMissed)]  # fmt: skip
        outcomes[policy] = (caught, missed)
    assert outcomes["none"] == ([(5, False)], [(10, 35, 6)])
    assert outcomes["last"] == ([(5, False), (35, True)], [(10, 30, 5)])
    assert outcomes["all"] == ([(5, False), (30, True), (35, True)], [(10, 25, 4)])  # within 12 s of 38.5


def test_buffer_one_waits_for_the_running_task_and_allow_all_overlaps() -> None:
    world = World(durations=[12.0] * 10)
    world.command(create(Schedule(), SID, {"cron": "*/5 * * * * *", "action": TASK, "overlap": "buffer_one"}))
    world.advance(4.5)  # 12:00:05 fires; its task runs until 12:00:17
    world.advance(14)  # 10 is buffered, 15 skipped (one buffered already); 10 fires at 17 when 05's task ends
    kinds = [(type(e).__name__, e.slot.second) for _, e in world.log
             if isinstance(e, ScheduleFired | ScheduleSlotBuffered | ScheduleSlotSkipped)]  # fmt: skip
    assert kinds == [("ScheduleFired", 5), ("ScheduleSlotBuffered", 10), ("ScheduleSlotSkipped", 15),
                     ("ScheduleFired", 10)]  # fmt: skip
    many = World(durations=[100.0] * 10)
    many.command(create(Schedule(), SID, {"cron": "*/5 * * * * *", "action": TASK, "overlap": "allow_all"}))
    many.advance(20)
    assert [slot.second for slot in many.fired_slots] == [5, 10, 15, 20]


def test_pause_change_and_delete_take_effect_on_the_next_slot_and_stale_timers_are_ignored() -> None:
    world = World(durations=[0.1] * 10)
    world.command(create(Schedule(), SID, {"cron": "*/5 * * * * *", "action": TASK}))
    world.advance(5)
    world.command(pause(world.schedule(), SID))
    world.advance(20)  # the armed timer fires, ignored
    assert [slot.second for slot in world.fired_slots] == [5]
    world.command(resume(world.schedule(), SID))  # from now (12:00:25.5) on: 10..25 are neither fired nor missed
    world.advance(5)
    assert [slot.second for slot in world.fired_slots] == [5, 30]
    world.command(change(world.schedule(), SID, {"cron": "*/4 * * * * *"}))
    world.advance(10)
    assert [slot.second for slot in world.fired_slots] == [5, 30, 32, 36, 40]  # not 35 (the old one's timer)
    world.command(delete(world.schedule(), SID))
    world.advance(30)
    assert [slot.second for slot in world.fired_slots] == [5, 30, 32, 36, 40]
    assert world.state.runs == {}


def test_a_chat_schedule_posts_with_the_slots_id_and_never_overlaps() -> None:
    world = World(durations=[1.0])
    world.command(create(Schedule(), SID, {"cron": "*/5 * * * * *", "action": {"kind": "chat", "body": "stand-up",
                                                                                "mentions": ["ada"]}}))  # fmt: skip
    world.advance(10)
    posts = [(stream, e) for stream, e in world.log if isinstance(e, ChatPosted)]
    assert [(stream, e.message_id, e.body, e.mentions) for stream, e in posts] == [
        ("chat", "report-20261202T120005Z", "stand-up", ["ada"]),
        ("chat", "report-20261202T120010Z", "stand-up", ["ada"]),
    ]
