"""Events of the task queue. A task is a stream, `task-<task_id>`: its creation, every attempt (assigned, started,
heartbeats, completed / failed / snoozed), the dispatcher's timers and decisions (retry, dead letter) and what
people do to it (cancel, requeue). Pulls are their own streams, `taskclaim-<agent_id>`, answered by the dispatcher.

Attempt numbers count assignments: the n-th `TaskAssigned` of a task carries `attempt = n`, and every command of
an agent names the attempt it works on, so one from an earlier attempt is refused (`TaskAttemptRefused`) and can
never overwrite a newer result. Snoozes get a new attempt number too, but do not spend one of `max_attempts`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, StringConstraints, model_validator

from agentlog.domains.coordination.names import AgentId
from agentlog.domains.timers.events import TimerDelay
from agentlog.eventstore.events import Event, catalogue

TASK_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
TaskId = Annotated[str, StringConstraints(pattern=TASK_ID_PATTERN)]
Capability = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ShortText = Annotated[str, StringConstraints(max_length=500)]
ErrorText = Annotated[str, StringConstraints(max_length=10_000)]
MIN_DELAY_S = 0.01
"""The shortest execution timeout, heartbeat interval, back-off or snooze a task may have. Each is a timer (two
events in the log, and a wake-up of the dispatcher): a heartbeat interval of 1e-300 s would be a check every
2e-300 s, the log flooded for nothing. A hundredth of a second is below anything a worker can mean (tests use
tenths) and above the timers' millisecond rounding."""
Priority = Annotated[int, Field(ge=1, le=10, strict=True)]
"""1 lowest, 10 highest. Whole numbers strictly, as every count of a task: `true` or `"5"` is no priority (a
lax model would take `true` as 1 without a word)."""
Attempt = Annotated[int, Field(ge=1, strict=True)]
Data = dict[str, Any]
TaskType = Annotated[str, StringConstraints(min_length=1, max_length=200)]
PayloadRef = Annotated[str, StringConstraints(max_length=2_000)]
MaxAttempts = Annotated[int, Field(ge=1, le=100, strict=True)]
ExecutionTimeout = Annotated[TimerDelay, Field(ge=MIN_DELAY_S)]
HeartbeatInterval = Annotated[float, Field(ge=MIN_DELAY_S, le=86_400)]
ConcurrencyLimit = Annotated[int, Field(ge=1, le=10_000, strict=True)]
BackoffBase = Annotated[float, Field(ge=MIN_DELAY_S, le=86_400)]
BackoffMax = Annotated[float, Field(ge=MIN_DELAY_S, le=7 * 86_400)]
"""The cap of the back-off; a new task's base may not exceed it (`backoff.check_backoff`)."""
SnoozeDelay = Annotated[TimerDelay, Field(ge=MIN_DELAY_S)]
ClaimId = Annotated[str, StringConstraints(min_length=1, max_length=64)]

CreatorKind = Literal["agent", "person", "admin", "schedule", ""]
"""Who created a task: a token's kind, or a schedule; empty for tasks created before the kind was recorded."""

FailureCause = Literal["error", "heartbeat_timeout", "execution_timeout", "agent_gone"]
"""Why an attempt failed: the agent said so (`error`), or the dispatcher found it silent, too slow or gone."""


def task_stream(task_id: str) -> str:
    return f"task-{task_id}"


def claim_stream(agent_id: str) -> str:
    return f"taskclaim-{agent_id}"


def task_of(stream_id: str) -> str:
    return stream_id.removeprefix("task-")


@catalogue.register
class TaskCreated(Event):
    """A task was queued. It is ready once everything in `depends_on` completed and `run_after_s` passed; the
    dispatcher then assigns it to an available agent having every capability in `capabilities`.

    Version 2 records what kind of caller `created_by` names (an agent and a person may share a name, and only
    the agent may then cancel it as its own)."""

    event_type: ClassVar[str] = "TaskCreated"
    schema_version: ClassVar[int] = 2
    category: ClassVar[str] = "task"

    task_id: TaskId
    task_type: TaskType
    payload: Data = Field(default_factory=dict)
    payload_ref: PayloadRef | None = None
    """Where a payload too large for the log is kept (a URL, a path); the log keeps only the reference."""
    priority: Priority = 5
    capabilities: list[Capability] = Field(default_factory=list, max_length=50)
    max_attempts: MaxAttempts = 3
    execution_timeout_s: ExecutionTimeout = 3600.0
    """An attempt running longer than this fails (`execution_timeout`), heartbeats or not."""
    heartbeat_interval_s: HeartbeatInterval = 30.0
    """How often the agent sends heartbeats; an attempt silent for two intervals fails (`heartbeat_timeout`)."""
    run_at: datetime | None = None
    """When the creator asked it to run, for people reading the log; the dispatcher waits `run_after_s`."""
    run_after_s: TimerDelay = 0.0
    """Not ready before this long after the event was recorded (the API computes it from `run_at`)."""
    depends_on: list[TaskId] = Field(default_factory=list, max_length=100)
    dedupe_key: Key | None = None
    """While a task with this key is not finished, another created with it is cancelled as its duplicate."""
    concurrency_key: Key | None = None
    concurrency_limit: ConcurrencyLimit = 1
    """At most this many tasks with `concurrency_key` assigned or running at once (this task's own limit)."""
    backoff_base_s: BackoffBase = 10.0
    backoff_max_s: BackoffMax = 3600.0
    created_by: ShortText = ""
    created_by_kind: CreatorKind = ""

    @model_validator(mode="after")
    def _sane(self) -> TaskCreated:
        if self.task_id in self.depends_on:
            raise ValueError("depends_on: a task cannot depend on itself")
        if len(set(self.depends_on)) != len(self.depends_on):
            raise ValueError("depends_on: a task is named twice")
        return self


@catalogue.upcaster("TaskCreated", 1)
def _creator_kind_unknown(payload: dict[str, Any]) -> dict[str, Any]:
    # Version 1 named the creator only. The scheduler's name says what it is (so a replay of the scheduler agrees
    # with what it recorded); any other kind is not known, so no agent may take the task for its own.
    created_by = str(payload.get("created_by", ""))
    return {**payload, "created_by_kind": "schedule" if created_by.startswith("schedule ") else ""}


@catalogue.register
class TaskAssigned(Event):
    """The dispatcher gave the task's `attempt`-th attempt to an agent (pushed, or answering its claim)."""

    event_type: ClassVar[str] = "TaskAssigned"
    category: ClassVar[str] = "task"

    task_id: TaskId
    attempt: Attempt
    agent_id: AgentId
    claim_id: ClaimId | None = None
    """The `TaskClaimRequested` this answers; None when the dispatcher pushed it."""


class _AttemptEvent(Event):
    category: ClassVar[str] = "task"

    task_id: TaskId
    attempt: Attempt
    agent_id: AgentId


@catalogue.register
class TaskStarted(_AttemptEvent):
    """The agent began the attempt it was assigned."""

    event_type: ClassVar[str] = "TaskStarted"


@catalogue.register
class TaskHeartbeat(_AttemptEvent):
    """The agent is still working on the attempt."""

    event_type: ClassVar[str] = "TaskHeartbeat"

    progress: Data = Field(default_factory=dict)


@catalogue.register
class TaskCompleted(_AttemptEvent):
    """The attempt succeeded: the task is done, for good."""

    event_type: ClassVar[str] = "TaskCompleted"

    result: Data = Field(default_factory=dict)


@catalogue.register
class TaskFailed(_AttemptEvent):
    """The attempt failed; the dispatcher retries it after a back-off, or dead-letters it after the last attempt
    (at once when it is not `retryable`)."""

    event_type: ClassVar[str] = "TaskFailed"

    error: ErrorText
    cause: FailureCause = "error"
    retryable: bool = True


@catalogue.register
class TaskSnoozed(_AttemptEvent):
    """The agent put the task back for `delay_s` (a rate limit, say) without spending an attempt."""

    event_type: ClassVar[str] = "TaskSnoozed"

    delay_s: SnoozeDelay
    reason: ShortText = ""


@catalogue.register
class TaskRetryScheduled(Event):
    """After the failed `attempt`, the task waits `delay_s` (back-off with jitter, `backoff`) and is ready again."""

    event_type: ClassVar[str] = "TaskRetryScheduled"
    category: ClassVar[str] = "task"

    task_id: TaskId
    attempt: Attempt
    attempts_spent: Annotated[int, Field(ge=1)]
    delay_s: TimerDelay


@catalogue.register
class TaskDeadLettered(Event):
    """The task will not run again unless someone requeues it: its last attempt failed, or a task it depends on
    was dead-lettered or cancelled, or it would close a cycle of dependencies."""

    event_type: ClassVar[str] = "TaskDeadLettered"
    category: ClassVar[str] = "task"

    task_id: TaskId
    reason: ErrorText
    attempt: int = 0
    """The last attempt (0 when it never ran)."""


@catalogue.register
class TaskRequeued(Event):
    """A dead-lettered task is queued again by hand, with all its attempts to spend anew."""

    event_type: ClassVar[str] = "TaskRequeued"
    category: ClassVar[str] = "task"

    task_id: TaskId
    requeued_by: ShortText = ""
    reason: ShortText = ""


@catalogue.register
class TaskCancelled(Event):
    """The task will not run (again); an agent working on it (`agent_id`, `attempt`) is told by this event and
    should stop. Also the fate of a duplicate (`duplicate_of`)."""

    event_type: ClassVar[str] = "TaskCancelled"
    category: ClassVar[str] = "task"

    task_id: TaskId
    reason: ShortText = ""
    cancelled_by: ShortText = ""
    agent_id: AgentId | None = None
    attempt: int = 0
    duplicate_of: TaskId | None = None


@catalogue.register
class TaskAttemptRefused(Event):
    """A command or event the task's lifecycle refused (`rule` names why: a stale attempt, another agent, a task
    already finished); recorded so that a late worker's result is seen, and nothing else changes."""

    event_type: ClassVar[str] = "TaskAttemptRefused"
    category: ClassVar[str] = "task"

    task_id: TaskId
    refused_type: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    rule: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    message: ShortText
    attempt: int = 0
    agent_id: AgentId | None = None
    current_attempt: int = 0


@catalogue.register
class TaskClaimRequested(Event):
    """An agent asks for a task (pull); the dispatcher answers with `TaskAssigned` naming `claim_id`, or with
    `TaskClaimDeclined`, within the same limits as the tasks it pushes."""

    event_type: ClassVar[str] = "TaskClaimRequested"
    category: ClassVar[str] = "taskclaim"

    claim_id: ClaimId
    agent_id: AgentId
    task_types: list[TaskType] = Field(default_factory=list, max_length=50)
    """Only tasks of these types (any when empty)."""


@catalogue.register
class TaskClaimDeclined(Event):
    """Nothing the agent could take is ready within the limits (or the agent is not available)."""

    event_type: ClassVar[str] = "TaskClaimDeclined"
    category: ClassVar[str] = "taskclaim"

    claim_id: ClaimId
    agent_id: AgentId
    reason: ShortText
