"""The task lifecycle, dependency and back-off rules (`domains.tasks`), without a dispatcher."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agentlog.domains.tasks.access import created_by_agent
from agentlog.domains.tasks.backoff import jitter_fraction, retry_delay
from agentlog.domains.tasks.dependencies import (
    DependencyCycleError,
    blocked_by,
    check_workflow,
    dependencies_met,
    find_cycle,
)
from agentlog.domains.tasks.events import (
    TaskAssigned,
    TaskCancelled,
    TaskCompleted,
    TaskCreated,
    TaskDeadLettered,
    TaskFailed,
    TaskHeartbeat,
    TaskRequeued,
    TaskSnoozed,
    TaskStarted,
)
from agentlog.domains.tasks.lifecycle import (
    TASK_HEARTBEAT,
    TaskLifecycle,
    check,
    follow_up,
    refusal_event,
)
from agentlog.domains.timers.events import TimerFired, TimerScheduled
from agentlog.eventstore.events import catalogue


def running(attempt: int = 1) -> TaskLifecycle:
    task = TaskLifecycle()
    assert task.fold(TaskCreated(task_id="t1", task_type="echo", max_attempts=2))
    for number in range(1, attempt + 1):
        if number > 1:
            assert task.fold(TaskFailed(task_id="t1", attempt=number - 1, agent_id="a", error="x", retryable=True))
            task.status = "queued"  # as after the retry timer fired
        assert task.fold(TaskAssigned(task_id="t1", attempt=number, agent_id="a"))
    assert task.fold(TaskStarted(task_id="t1", attempt=attempt, agent_id="a"))
    return task


def test_a_stale_attempts_completion_is_refused_and_changes_nothing() -> None:
    task = running(attempt=2)
    late = TaskCompleted(task_id="t1", attempt=1, agent_id="a", result={"late": True})
    refusal = check(task, late)
    assert refusal is not None and refusal.rule == "stale-attempt" and refusal.current_attempt == 2
    before = task.model_dump()
    assert not task.fold(late)
    assert task.model_dump() == before
    recorded = refusal_event(task, late, refusal)
    assert (recorded.rule, recorded.attempt, recorded.current_attempt) == ("stale-attempt", 1, 2)
    assert task.fold(TaskCompleted(task_id="t1", attempt=2, agent_id="a"))
    assert task.status == "completed"


@pytest.mark.parametrize(
    ("event", "rule"),
    [
        (TaskHeartbeat(task_id="t1", attempt=1, agent_id="b"), "other-agent"),
        (TaskHeartbeat(task_id="t1", attempt=3, agent_id="a"), "attempt-unknown"),
        (TaskStarted(task_id="t1", attempt=1, agent_id="a"), "started-once"),
        (TaskRequeued(task_id="t1"), "not-dead-lettered"),
        (TaskDeadLettered(task_id="t1", reason="x"), "attempt-running"),
        (TaskAssigned(task_id="t1", attempt=2, agent_id="a"), "not-queued"),
        (TaskCreated(task_id="t1", task_type="echo"), "created-once"),
    ],
)
def test_each_refusal_names_its_rule(event: TaskHeartbeat, rule: str) -> None:
    refusal = check(running(), event)
    assert refusal is not None and refusal.rule == rule


def test_after_a_failure_the_attempt_has_ended_and_a_finished_task_refuses_everything() -> None:
    task = running()
    assert task.fold(TaskFailed(task_id="t1", attempt=1, agent_id="a", error="boom"))
    refusal = check(task, TaskCompleted(task_id="t1", attempt=1, agent_id="a"))
    assert refusal is not None and refusal.rule == "attempt-ended"
    assert task.fold(TaskCancelled(task_id="t1", reason="no longer needed"))
    for event in (TaskCancelled(task_id="t1"), TaskCompleted(task_id="t1", attempt=1, agent_id="a")):
        refusal = check(task, event)
        assert refusal is not None and refusal.rule == "task-finished"
    assert check(TaskLifecycle(), TaskCancelled(task_id="t9")) is not None


def test_follow_up_retries_with_back_off_then_dead_letters_after_the_last_attempt() -> None:
    task = running()
    assert task.fold(TaskFailed(task_id="t1", attempt=1, agent_id="a", error="boom"))
    retry = follow_up(task)
    assert retry is not None and retry.event_type == "TaskRetryScheduled"
    assert task.fold(retry) and task.status == "waiting"
    timer = follow_up(task)
    assert isinstance(timer, TimerScheduled) and timer.delay_s == retry.to_data()["delay_s"]
    assert task.fold(timer)
    due = datetime(2026, 1, 1, tzinfo=UTC)
    assert task.fold(TimerFired(timer_id=timer.timer_id, purpose=timer.purpose, subject="t1", due_at=due))
    assert task.status == "queued"
    assert task.fold(TaskAssigned(task_id="t1", attempt=2, agent_id="a"))
    assert task.fold(TaskFailed(task_id="t1", attempt=2, agent_id="a", error="boom again"))
    dead = follow_up(task)
    assert isinstance(dead, TaskDeadLettered) and "2 attempts failed: boom again" in dead.reason
    assert task.fold(dead) and task.fold(TaskRequeued(task_id="t1")) and task.attempts_spent == 0


def test_a_silent_attempt_fails_at_its_heartbeat_check_and_a_heard_one_gets_the_next() -> None:
    task = TaskLifecycle()
    task.fold(TaskCreated(task_id="t1", task_type="echo", heartbeat_interval_s=5))
    task.fold(TaskAssigned(task_id="t1", attempt=1, agent_id="a"))
    due = datetime(2026, 1, 1, tzinfo=UTC)
    scheduled = []
    while (next_event := follow_up(task)) is not None and isinstance(next_event, TimerScheduled):
        scheduled.append(next_event)
        task.fold(next_event)
    beat = next(timer for timer in scheduled if timer.purpose == TASK_HEARTBEAT)
    assert beat.delay_s == 10
    task.fold(TaskHeartbeat(task_id="t1", attempt=1, agent_id="a"))
    task.fold(TimerFired(timer_id=beat.timer_id, purpose=TASK_HEARTBEAT, subject="t1", due_at=due))
    again = follow_up(task)
    assert isinstance(again, TimerScheduled) and again.purpose == TASK_HEARTBEAT
    task.fold(again)
    task.fold(TimerFired(timer_id=again.timer_id, purpose=TASK_HEARTBEAT, subject="t1", due_at=due))
    failed = follow_up(task)
    assert isinstance(failed, TaskFailed) and failed.cause == "heartbeat_timeout"


def test_a_snooze_waits_without_spending_an_attempt() -> None:
    task = running()
    assert task.fold(TaskSnoozed(task_id="t1", attempt=1, agent_id="a", delay_s=60))
    assert (task.status, task.attempts_spent, task.waiting_for) == ("waiting", 0, "task-wake")


def test_a_task_cannot_depend_on_itself_or_name_a_dependency_twice() -> None:
    with pytest.raises(ValidationError, match="itself"):
        TaskCreated(task_id="t1", task_type="echo", depends_on=["t1"])
    with pytest.raises(ValidationError, match="twice"):
        TaskCreated(task_id="t1", task_type="echo", depends_on=["t2", "t2"])
    with pytest.raises(ValidationError):
        TaskCreated(task_id="t1", task_type="echo", priority=11)


def test_a_cycle_closed_by_a_later_task_is_found_and_named() -> None:
    known = {"a": ["b"], "b": ["c"]}
    assert find_cycle(lambda t: known.get(t, []), "c", ["a"]) == ["c", "a", "b", "c"]
    assert find_cycle(lambda t: known.get(t, []), "d", ["a"]) is None
    with pytest.raises(DependencyCycleError, match="c -> d -> a -> b -> c"):
        check_workflow(known, [("d", ["a"]), ("c", ["d", "a"])])
    check_workflow(known, [("c", []), ("d", ["a", "c"])])


@given(st.lists(st.lists(st.integers(0, 9), max_size=4), min_size=1, max_size=10))
@settings(max_examples=100, deadline=None)
def test_find_cycle_agrees_with_a_reachability_closure(depends: list[list[int]]) -> None:
    graph: dict[str, list[str]] = {}
    for index, deps in enumerate(depends):
        name = f"t{index}"
        wanted = sorted({f"t{d}" for d in deps} - {name})
        reach: set[str] = set()
        frontier = list(wanted)
        while frontier:
            node = frontier.pop()
            if node not in reach:
                reach.add(node)
                frontier.extend(graph.get(node, []))
        cycle = find_cycle(lambda t: graph.get(t, []), name, wanted)
        assert (cycle is not None) == (name in reach)
        if cycle is None:
            graph[name] = wanted
        else:
            assert cycle[0] == cycle[-1] == name
            assert all(b in graph.get(a, wanted if a == name else []) for a, b in itertools.pairwise(cycle))


def test_a_dead_lettered_or_cancelled_dependency_blocks_and_only_completions_ready() -> None:
    statuses = {"a": "completed", "b": "cancelled", "c": "queued"}
    blocked = blocked_by(["a", "c", "b"], statuses.get)  # type: ignore[arg-type]
    assert blocked is not None and blocked.dependency == "b" and blocked.reason == "dependency b was cancelled"
    assert dependencies_met(["a"], statuses.get)  # type: ignore[arg-type]
    assert not dependencies_met(["a", "c"], statuses.get)  # type: ignore[arg-type]
    assert not dependencies_met(["zz"], statuses.get)  # type: ignore[arg-type]


@given(st.text(min_size=1, max_size=20), st.integers(1, 50), st.integers(1, 50))
@settings(max_examples=100, deadline=None)
def test_back_off_is_a_function_of_the_log_and_within_its_bounds(task_id: str, attempt: int, spent: int) -> None:
    delay = retry_delay(task_id, attempt, spent, 10.0, 600.0)
    assert delay == retry_delay(task_id, attempt, spent, 10.0, 600.0)
    ceiling = min(600.0, 10.0 * 2 ** (spent - 1))
    assert ceiling / 2 - 0.001 <= delay <= ceiling + 0.001
    assert 0 <= jitter_fraction(task_id, attempt) < 1


def test_once_the_execution_timer_fired_the_agent_is_refused_and_only_the_timeout_failure_lands() -> None:
    task = running()
    timers = []
    while isinstance(wanted := follow_up(task), TimerScheduled):
        timers.append(wanted)
        task.fold(wanted)
    execution = next(timer for timer in timers if timer.purpose == "task-execution")
    due = datetime(2026, 1, 1, tzinfo=UTC)
    assert task.fold(TimerFired(timer_id=execution.timer_id, purpose=execution.purpose, subject="t1", due_at=due))
    ids = {"task_id": "t1", "attempt": 1, "agent_id": "a"}
    for late in (
        TaskCompleted(**ids, result={"late": True}), TaskHeartbeat(**ids), TaskSnoozed(**ids, delay_s=5),
        TaskFailed(**ids, error="gave up"),
    ):  # fmt: skip
        refusal = check(task, late)
        assert refusal is not None and refusal.rule == "timed-out", late
        assert not task.fold(late)
    failure = follow_up(task)
    assert isinstance(failure, TaskFailed) and failure.cause == "execution_timeout"
    assert task.fold(failure) and task.status == "failed"


def test_a_version_1_creation_is_upcast_with_its_creators_kind_unknown_but_a_schedules() -> None:
    by_person = catalogue.decode("TaskCreated", 1, {"task_id": "t", "task_type": "x", "created_by": "ada"})
    by_schedule = catalogue.decode("TaskCreated", 1, {"task_id": "t", "task_type": "x", "created_by": "schedule s1"})
    assert isinstance(by_person, TaskCreated) and isinstance(by_schedule, TaskCreated)
    assert (by_person.created_by_kind, by_schedule.created_by_kind) == ("", "schedule")
    assert not created_by_agent("ada", by_person.created_by, by_person.created_by_kind)
