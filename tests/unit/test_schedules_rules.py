"""The pure side of schedules: cron slots in a time zone (daylight saving included), the commands' validation
(errors name the field), the fold's one-decision-per-slot rule, and the catch-up rules under hypothesis: wake-ups
at random moments decide every slot exactly once, and each policy fires exactly the slots it promises."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentlog.domains.schedules import cron, rules
from agentlog.domains.schedules.events import (
    ScheduleFired,
    ScheduleSlotSkipped,
    ScheduleSlotsMissed,
    ScheduleSpec,
    firing_id,
    slot_task_id,
)
from agentlog.domains.schedules.schedule import (
    InvalidScheduleError,
    Schedule,
    ScheduleExistsError,
    UnknownScheduleError,
    change,
    create,
    delete,
    fold_all,
    pause,
    resume,
)

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
TASK = {"kind": "task", "task": {"task_type": "report"}}


def spec(**fields: Any) -> ScheduleSpec:
    return ScheduleSpec.model_validate({"cron": "*/5 * * * * *", "action": TASK, **fields})


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# -- cron ----------------------------------------------------------------------------------------------------------


def test_a_fixed_time_in_a_skipped_local_hour_fires_right_after_the_gap_and_a_repeated_one_once() -> None:
    # Europe/Paris: 2026-03-29 02:00 CET jumps to 03:00 CEST; 2026-10-25 03:00 CEST falls back to 02:00 CET.
    spring = cron.slots_between("30 2 * * *", "Europe/Paris", utc(2026, 3, 28, 12), utc(2026, 3, 30, 12), 10)
    assert spring == [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]  # 03:00 CEST, then 02:30 CEST
    autumn = cron.slots_between("30 2 * * *", "Europe/Paris", utc(2026, 10, 24, 12), utc(2026, 10, 26, 12), 10)
    assert autumn == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]  # the first 02:30 only


def test_a_frequent_expression_ticks_in_real_time_across_daylight_saving() -> None:
    hourly = cron.slots_between("30 * * * *", "Europe/Paris", utc(2026, 10, 25, 0), utc(2026, 10, 25, 3), 10)
    assert hourly == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 2, 30)]  # 02:30 twice
    skipped = cron.slots_between("30 2,3 * * *", "Europe/Paris", utc(2026, 3, 28, 23), utc(2026, 3, 29, 3), 10)
    assert skipped == [utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 30)]


def test_six_fields_put_seconds_first_and_slots_are_strictly_after_and_at_or_before() -> None:
    assert cron.next_after("*/5 * * * * *", "UTC", T0) == T0 + timedelta(seconds=5)
    assert cron.next_after("*/5 * * * * *", "UTC", T0 - timedelta(microseconds=1)) == T0
    assert cron.latest_at_or_before("*/5 * * * * *", "UTC", T0) == T0
    assert cron.latest_at_or_before("*/5 * * * * *", "UTC", T0 - timedelta(microseconds=1)) == T0 - timedelta(seconds=5)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cron": "61 * * * *"}, "cron: '61 * * * *': bad minute"),
        ({"cron": "* * *"}, "cron: '* * *' has 3 fields"),
        ({"time_zone": "Mars/Olympus"}, "time_zone: unknown time zone 'Mars/Olympus'"),
        ({"overlap": "sometimes"}, "overlap: Input should be"),
        ({"catch_up_window_s": 0}, "catch_up_window_s: Input should be greater than 0"),
        ({"action": {"kind": "task", "task": {}}}, "action.task.task.task_type: Field required"),
    ],
)
def test_a_bad_spec_is_refused_naming_its_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidScheduleError) as raised:
        create(Schedule(), "nightly", {"cron": "*/5 * * * * *", "action": TASK, **fields})
    assert str(raised.value).startswith(message), str(raised.value)


# -- commands and the fold -----------------------------------------------------------------------------------------


def test_the_commands_follow_the_schedule_through_its_life() -> None:
    events = create(Schedule(), "nightly", {"cron": "0 3 * * *", "action": TASK, "time_zone": "Europe/Paris"})
    schedule = fold_all(events)
    assert (schedule.status, schedule.spec and schedule.spec.cron) == ("active", "0 3 * * *")
    with pytest.raises(ScheduleExistsError):
        create(schedule, "nightly", {"cron": "0 3 * * *", "action": TASK})
    assert change(schedule, "nightly", {"cron": "0 3 * * *"}) == []
    with pytest.raises(InvalidScheduleError, match=r"^cron: "):
        change(schedule, "nightly", {"cron": "0 25 * * *"})
    with pytest.raises(InvalidScheduleError, match=r"^colour: not a field"):
        change(schedule, "nightly", {"colour": "blue"})
    schedule = fold_all(change(schedule, "nightly", {"cron": "0 4 * * *", "catch_up": "last"}), schedule)
    assert schedule.spec is not None and (schedule.spec.cron, schedule.spec.catch_up) == ("0 4 * * *", "last")
    schedule = fold_all(pause(schedule, "nightly"), schedule)
    assert schedule.status == "paused" and pause(schedule, "nightly") == []
    schedule = fold_all(resume(schedule, "nightly"), schedule)
    assert schedule.status == "active" and resume(schedule, "nightly") == []
    schedule = fold_all(delete(schedule, "nightly", reason="done"), schedule)
    assert schedule.status == "deleted"
    for command in (pause, resume, delete):
        with pytest.raises(UnknownScheduleError):
            command(schedule, "nightly")
    again = fold_all(create(schedule, "nightly", {"cron": "0 5 * * *", "action": TASK}), schedule)
    assert (again.status, again.fired, again.last_slot) == ("active", 0, None)


def test_a_slot_is_decided_once_whatever_is_appended_after() -> None:
    schedule = fold_all(create(Schedule(), "s", spec()))
    slot = T0
    fired = ScheduleFired(schedule_id="s", slot=slot, firing_id=firing_id("s", slot), task_id=slot_task_id("s", slot))
    assert schedule.fold(fired, 2)
    assert not schedule.fold(fired, 3)  # the same slot again (a second process, a retry, by hand)
    assert not schedule.fold(ScheduleSlotSkipped(schedule_id="s", slot=slot, reason="x"), 4)
    assert not schedule.fold(ScheduleSlotsMissed(schedule_id="s", first_slot=slot, last_slot=slot, count=1,
                                                 reason="x"), 5)  # fmt: skip
    assert (schedule.fired, schedule.skipped, schedule.missed, schedule.version) == (1, 0, 0, 5)
    assert slot_task_id("s", slot) == "s-20261202T120000Z"


# -- catch-up ------------------------------------------------------------------------------------------------------


def decide_all(
    schedule_spec: ScheduleSpec, since: datetime, now: datetime
) -> tuple[list[rules.Due], list[rules.Missed]]:
    """Every step until nothing is due, folding each as the scheduler does (since moves past what it decided)."""
    due: list[rules.Due] = []
    missed: list[rules.Missed] = []
    for _ in range(10_000):
        step = rules.next_step(schedule_spec, since, now)
        if step is None:
            return due, missed
        if isinstance(step, rules.Due):
            due.append(step)
            since = step.slot
        else:
            missed.append(step)
            since = step.last
    raise AssertionError("next_step kept deciding")


policies = st.sampled_from(["none", "last", "all"])
expressions = st.sampled_from(["*/5 * * * * *", "*/7 * * * * *", "0,20,25 * * * * *", "* * * * *"])


@settings(max_examples=300, deadline=None)
@given(
    expression=expressions, catch_up=policies, grace=st.integers(0, 30), window=st.integers(1, 600),
    gaps=st.lists(st.floats(0.0, 900.0), min_size=1, max_size=8),
)  # fmt: skip
def test_wake_ups_decide_every_slot_exactly_once_and_each_policy_fires_what_it_promises(
    expression: str, catch_up: str, grace: int, window: int, gaps: list[float]
) -> None:
    schedule_spec = spec(cron=expression, catch_up=catch_up, grace_s=grace, catch_up_window_s=window)
    since = now = T0
    decided: list[datetime] = []
    for gap in gaps:
        now = now + timedelta(seconds=gap)
        due_slots = cron.slots_between(expression, "UTC", since, now, 100_000)
        due, missed = decide_all(schedule_spec, since, now)
        fired = [step.slot for step in due]
        missed_slots = [s for m in missed for s in cron.slots_between(expression, "UTC", m.first - timedelta(
            microseconds=1), m.last, 100_000)]  # fmt: skip
        assert all(m.count == len(cron.slots_between(expression, "UTC", m.first - timedelta(microseconds=1), m.last,
                                                     100_000)) for m in missed)  # fmt: skip
        assert sorted(fired + missed_slots) == due_slots  # each due slot decided once: fired or missed
        on_time = [s for s in due_slots[-1:] if now - s <= timedelta(seconds=grace)]
        if catch_up == "none":
            assert fired == on_time
        elif catch_up == "last":
            assert fired == due_slots[-1:]
        else:
            within = [s for s in due_slots if now - s <= timedelta(seconds=window)]
            assert fired == sorted(set(within) | set(on_time))
        assert all(step.catch_up == (step.slot not in on_time) for step in due)
        decided += due_slots
        since = max([since, *due_slots])
    assert len(decided) == len(set(decided))


@settings(max_examples=150, deadline=None)
@given(
    expression=st.sampled_from(["30 2 * * *", "0,30 2 * * *", "*/20 * * * *", "15 1-3 * * *"]),
    start=st.sampled_from([utc(2026, 3, 28, 22), utc(2026, 10, 24, 22)]), catch_up=policies,
    gaps=st.lists(st.integers(60, 4 * 3600), min_size=1, max_size=10),
)  # fmt: skip
def test_across_daylight_saving_every_slot_is_decided_once(
    expression: str, start: datetime, catch_up: str, gaps: list[int]
) -> None:
    schedule_spec = spec(cron=expression, time_zone="Europe/Paris", catch_up=catch_up, catch_up_window_s=3600)
    since = now = start
    decided: list[datetime] = []
    for gap in gaps:
        now = now + timedelta(seconds=gap)
        due, missed = decide_all(schedule_spec, since, now)
        slots = [step.slot for step in due] + [m.last for m in missed]
        assert all(since < slot <= now for slot in slots)
        decided += [step.slot for step in due]
        since = max([since, *slots])
    assert len(decided) == len(set(decided))


def test_a_day_of_missed_seconds_is_one_event() -> None:
    schedule_spec = spec(cron="* * * * * *", catch_up="none", grace_s=0)
    due, missed = decide_all(schedule_spec, T0, T0 + timedelta(days=1, microseconds=500))
    assert due == []  # the latest is 500 µs late, beyond a grace of 0
    assert len(missed) == 1 and missed[0].count == rules.MAX_COUNTED_MISSED  # counted up to the limit
    assert missed[0].first == T0 + timedelta(seconds=1)


@pytest.mark.parametrize(
    ("policy", "running", "buffered", "decision"),
    [
        ("skip", False, False, "fire"), ("skip", True, False, "skip"),
        ("buffer_one", True, False, "buffer"), ("buffer_one", True, True, "skip"), ("buffer_one", False, True, "fire"),
        ("allow_all", True, True, "fire"),
    ],
)  # fmt: skip
def test_the_overlap_decision(policy: Any, running: bool, buffered: bool, decision: str) -> None:
    assert rules.overlap(policy, running=running, buffered=buffered) == decision
