"""The lifecycle of one task: which event may happen to it now, and what it leaves.

`check(task, event)` is the one rule: None when the event may happen to the task as it is, else a `Refusal`
naming the rule it breaks. The API asks it before appending an agent's command (and records a refused one as
`TaskAttemptRefused`); `TaskLifecycle.fold` asks it too and ignores what it refuses, so an event appended past
the API cannot move a task either. The most important rule is `stale-attempt`: a start, heartbeat, completion,
failure or snooze names its attempt, and only the current one counts — a worker the dispatcher gave up on (it was
silent, too slow, or gone) cannot overwrite the attempt that replaced it. Likewise `timed-out`: once an attempt's
execution timer fired, or a heartbeat check found it silent (`silent`), nothing its agent says counts, even before
the dispatcher recorded the failure: the dispatcher decides that failure from the log as it was when the timer
fired, and an agent's word landing in between must not make the log say otherwise.

States: `waiting` (for `run_after_s`, a retry back-off or a snooze: a wait timer), `queued` (ready once its
dependencies completed), `assigned`, `running` (these two hold a slot), `failed` (the dispatcher decides next:
retry or dead letter), and the terminal `completed`, `dead_lettered` (until requeued) and `cancelled`.

`follow_up` is what the task itself asks of the dispatcher next (timers, a timeout's failure, a retry or a dead
letter); dependencies and assignment involve other tasks and agents and are decided by the dispatcher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from agentlog.domains.tasks.backoff import retry_delay
from agentlog.domains.tasks.events import (
    TaskAssigned,
    TaskAttemptRefused,
    TaskCancelled,
    TaskCompleted,
    TaskCreated,
    TaskDeadLettered,
    TaskFailed,
    TaskHeartbeat,
    TaskRequeued,
    TaskRetryScheduled,
    TaskSnoozed,
    TaskStarted,
)
from agentlog.domains.timers.events import TimerFired, TimerScheduled
from agentlog.eventstore.events import Event

Status = Literal["new", "waiting", "queued", "assigned", "running", "failed", "completed", "dead_lettered", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"completed", "dead_lettered", "cancelled"})
HOLDING: frozenset[str] = frozenset({"assigned", "running"})
"""States in which an attempt holds a slot of its agent, its concurrency key and the global limit."""

TASK_RUN_AT = "task-run-at"
TASK_RETRY = "task-retry"
TASK_WAKE = "task-wake"
TASK_HEARTBEAT = "task-heartbeat"
TASK_EXECUTION = "task-execution"
WAIT_PURPOSES = frozenset({TASK_RUN_AT, TASK_RETRY, TASK_WAKE})
TASK_TIMER_PURPOSES = WAIT_PURPOSES | {TASK_HEARTBEAT, TASK_EXECUTION}
HEARTBEAT_CHECK_INTERVALS = 2
"""An attempt's heartbeats are checked every two intervals: one silent for a whole check fails. A worker beating
at its interval always lands one in every check, with an interval to spare for latency."""

AttemptCommand = TaskStarted | TaskHeartbeat | TaskCompleted | TaskFailed | TaskSnoozed


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an event may not happen to a task now: `rule` a stable name, `message` a sentence for people."""

    rule: str
    message: str
    current_attempt: int = 0


class TaskLifecycle(BaseModel):
    """One task as the fold of its stream."""

    task_id: str = ""
    spec: TaskCreated | None = None
    status: Status = "new"
    attempt: int = 0
    """The last attempt assigned (0 before the first)."""
    agent_id: str | None = None
    """The last attempt's agent."""
    attempts_spent: int = 0
    """Failed attempts since creation or the last requeue; snoozes spend none."""
    retryable: bool = True
    last_error: str = ""
    reason: str = ""
    """Why it is dead-lettered or cancelled."""
    waiting_for: str | None = None
    wait_delay_s: float = 0.0
    wait_timer: str | None = None
    heartbeat_timer: str | None = None
    heard: bool = False
    """A start or heartbeat of the current attempt since its last heartbeat check was scheduled."""
    execution_timer: str | None = None
    overdue: bool = False
    timers: int = 0
    """Timers scheduled for this task so far: numbers them."""

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def holding(self) -> bool:
        return self.status in HOLDING

    @property
    def silent(self) -> bool:
        """Its last heartbeat check fired with nothing heard since it was scheduled: the attempt has failed."""
        return self.holding and self.heartbeat_timer is None and not self.heard

    def fold(self, event: Event) -> bool:
        """Apply an event of the task's stream; False (nothing changed) when `check` refuses it."""
        if check(self, event) is not None:
            return False
        match event:
            case TaskCreated():
                self.task_id, self.spec = event.task_id, event
                if event.run_after_s > 0:
                    self._wait(TASK_RUN_AT, event.run_after_s)
                else:
                    self.status = "queued"
            case TaskAssigned():
                self.status, self.attempt, self.agent_id = "assigned", event.attempt, event.agent_id
                self.heard, self.overdue = True, False
                self.heartbeat_timer = self.execution_timer = None
            case TaskStarted():
                self.status, self.heard = "running", True
            case TaskHeartbeat():
                self.heard = True
            case TaskCompleted():
                self._end("completed")
            case TaskFailed():
                self._end("failed")
                self.attempts_spent += 1
                self.retryable, self.last_error = event.retryable, event.error
            case TaskSnoozed():
                self._end("waiting")
                self._wait(TASK_WAKE, event.delay_s)
            case TaskRetryScheduled():
                self._wait(TASK_RETRY, event.delay_s)
            case TaskDeadLettered():
                self._end("dead_lettered")
                self.reason = event.reason
            case TaskRequeued():
                self.status, self.attempts_spent, self.reason, self.retryable = "queued", 0, "", True
            case TaskCancelled():
                self._end("cancelled")
                self.reason = event.reason
            case TimerScheduled():
                return self._timer_scheduled(event)
            case TimerFired():
                return self._timer_fired(event)
            case _:
                return False
        return True

    def _wait(self, purpose: str, delay_s: float) -> None:
        self.status, self.waiting_for, self.wait_delay_s, self.wait_timer = "waiting", purpose, delay_s, None

    def _end(self, status: Status) -> None:
        self.status = status
        self.heartbeat_timer = self.execution_timer = self.wait_timer = None
        self.waiting_for, self.heard, self.overdue = None, False, False

    def _timer_scheduled(self, event: TimerScheduled) -> bool:
        if event.purpose not in TASK_TIMER_PURPOSES or event.subject != self.task_id:
            return False
        self.timers += 1
        if event.purpose == TASK_HEARTBEAT and self.holding:
            self.heartbeat_timer, self.heard = event.timer_id, False
        elif event.purpose == TASK_EXECUTION and self.holding:
            self.execution_timer = event.timer_id
        elif self.status == "waiting" and event.purpose == self.waiting_for:
            self.wait_timer = event.timer_id
        return True

    def _timer_fired(self, event: TimerFired) -> bool:
        if self.status == "waiting" and event.timer_id == self.wait_timer:
            self.status, self.wait_timer, self.waiting_for = "queued", None, None
        elif self.holding and event.timer_id == self.heartbeat_timer:
            self.heartbeat_timer = None
        elif self.holding and event.timer_id == self.execution_timer:
            self.execution_timer, self.overdue = None, True
        else:
            return False  # a timer the task no longer waits for (its attempt ended): ignored
        return True


def check(task: TaskLifecycle, event: Event) -> Refusal | None:
    """None when `event` may happen to `task` now; else the rule it breaks."""
    if isinstance(event, TaskCreated):
        if task.status != "new":
            return Refusal("created-once", f"task {event.task_id} exists already")
        return None
    if isinstance(event, TaskAttemptRefused | TimerScheduled | TimerFired):
        return None  # a record of a refusal, or a timer: never moves the task by itself being checked
    if task.status == "new":
        return Refusal("task-unknown", "no such task: it was never created")
    if isinstance(event, AttemptCommand):
        return _check_attempt(task, event)
    if isinstance(event, TaskAssigned):
        if task.status != "queued":
            return Refusal("not-queued", f"task {task.task_id} is {task.status}, not queued", task.attempt)
        if event.attempt != task.attempt + 1:
            return Refusal(
                "attempt-sequence", f"the next attempt of task {task.task_id} is {task.attempt + 1}", task.attempt
            )
        return None
    if isinstance(event, TaskRetryScheduled):
        if task.status != "failed" or event.attempt != task.attempt:
            return Refusal("not-failed", f"attempt {event.attempt} of task {task.task_id} did not just fail")
        return None
    if isinstance(event, TaskDeadLettered):
        if task.terminal:
            return Refusal("task-finished", f"task {task.task_id} is {task.status} already")
        if task.holding:
            return Refusal("attempt-running", f"task {task.task_id} is {task.status}: cancel it instead")
        return None
    if isinstance(event, TaskRequeued):
        if task.status != "dead_lettered":
            return Refusal("not-dead-lettered", f"task {task.task_id} is {task.status}; only a dead letter requeues")
        return None
    if isinstance(event, TaskCancelled):
        if task.terminal:
            return Refusal("task-finished", f"task {task.task_id} is {task.status} already")
        return None
    return None


def _check_attempt(task: TaskLifecycle, event: AttemptCommand) -> Refusal | None:
    what = f"attempt {event.attempt} of task {task.task_id}"
    if task.terminal:
        return Refusal("task-finished", f"task {task.task_id} is {task.status} already", task.attempt)
    if event.attempt < task.attempt:
        return Refusal("stale-attempt", f"{what} is stale: attempt {task.attempt} replaced it", task.attempt)
    if event.attempt > task.attempt:
        return Refusal("attempt-unknown", f"{what} was never assigned", task.attempt)
    if not task.holding:
        return Refusal("attempt-ended", f"{what} has ended (the task is {task.status})", task.attempt)
    if event.agent_id != task.agent_id:
        return Refusal("other-agent", f"{what} is assigned to {task.agent_id}, not {event.agent_id}", task.attempt)
    if isinstance(event, TaskFailed) and event.cause != "error":
        return None  # the log's own failure of the attempt (a timeout, its agent gone)
    if task.overdue:  # its execution timer fired: the attempt is over, only its failure is still to be recorded
        return Refusal("timed-out", f"{what} ran past its execution timeout", task.attempt)
    if task.silent:  # a heartbeat check found it silent: likewise
        return Refusal("silent", f"{what} sent no start or heartbeat in time", task.attempt)
    if isinstance(event, TaskStarted) and task.status == "running":
        return Refusal("started-once", f"{what} has started already", task.attempt)
    return None


def refusal_event(task: TaskLifecycle, event: Event, refusal: Refusal) -> TaskAttemptRefused:
    """What the API records for an agent's command the lifecycle refused."""
    return TaskAttemptRefused(
        task_id=task.task_id or getattr(event, "task_id", "unknown"),
        refused_type=event.event_type,
        rule=refusal.rule,
        message=refusal.message[:500],
        attempt=getattr(event, "attempt", 0),
        agent_id=getattr(event, "agent_id", None),
        current_attempt=refusal.current_attempt,
    )


def timer_id(task: TaskLifecycle) -> str:
    """The id of the task's next timer: unique, and the same on every replay."""
    return f"task{task.timers + 1}-{task.task_id}"


def follow_up(task: TaskLifecycle) -> Event | None:
    """What the task asks of the dispatcher next, by itself (timers, a timeout's failure, retry or dead letter)."""
    spec = task.spec
    if spec is None:
        return None
    if task.status == "waiting" and task.wait_timer is None and task.waiting_for is not None:
        return TimerScheduled(
            timer_id=timer_id(task), delay_s=task.wait_delay_s, purpose=task.waiting_for, subject=task.task_id
        )
    if task.holding:
        assert task.agent_id is not None
        if task.overdue:
            why = f"ran past its execution timeout of {spec.execution_timeout_s:g} s"
            return _timed_out(task, "execution_timeout", why)
        if task.silent:
            interval = spec.heartbeat_interval_s * HEARTBEAT_CHECK_INTERVALS
            return _timed_out(task, "heartbeat_timeout", f"no start or heartbeat within {interval:g} s")
        if task.execution_timer is None:
            return TimerScheduled(
                timer_id=timer_id(task), delay_s=spec.execution_timeout_s, purpose=TASK_EXECUTION, subject=task.task_id
            )
        if task.heartbeat_timer is None:
            return TimerScheduled(
                timer_id=timer_id(task),
                delay_s=spec.heartbeat_interval_s * HEARTBEAT_CHECK_INTERVALS,
                purpose=TASK_HEARTBEAT,
                subject=task.task_id,
            )
        return None
    if task.status == "failed":
        if task.retryable and task.attempts_spent < spec.max_attempts:
            spent = task.attempts_spent
            delay = retry_delay(task.task_id, task.attempt, spent, spec.backoff_base_s, spec.backoff_max_s)
            return TaskRetryScheduled(
                task_id=task.task_id, attempt=task.attempt, attempts_spent=task.attempts_spent, delay_s=delay
            )
        why = "its failure is not retryable" if not task.retryable else f"{task.attempts_spent} attempts failed"
        return TaskDeadLettered(task_id=task.task_id, attempt=task.attempt, reason=f"{why}: {task.last_error}"[:10_000])
    return None


def _timed_out(task: TaskLifecycle, cause: Literal["heartbeat_timeout", "execution_timeout"], why: str) -> TaskFailed:
    assert task.agent_id is not None
    return TaskFailed(
        task_id=task.task_id, attempt=task.attempt, agent_id=task.agent_id, error=f"attempt {task.attempt} {why}",
        cause=cause,
    )  # fmt: skip


def failed_with_agent(task: TaskLifecycle, reason: str) -> TaskFailed | None:
    """The failure of the task's running attempt when its agent is gone (None when it holds no attempt)."""
    if not task.holding or task.agent_id is None:
        return None
    return TaskFailed(
        task_id=task.task_id, attempt=task.attempt, agent_id=task.agent_id, error=reason, cause="agent_gone"
    )
