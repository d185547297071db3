"""The API's request and answer bodies, shared by the server (`agentlog.api`) and the typed client.

Field names are the log's vocabulary (`agent_id`, `fencing_token`, `stream_version`). Requests forbid unknown
fields, so a typo is a 422 naming the field, not a silent default.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from agentlog.domains.budgets.events import ReservationId, Tokens
from agentlog.domains.coordination.events import MAX_TTL_S, AgentStatus, ClaimKind, MemoryKind
from agentlog.domains.coordination.names import AGENT_ID_PATTERN
from agentlog.domains.programs import events as programs
from agentlog.domains.schedules.events import ScheduleSpec
from agentlog.domains.tasks import events as tasks
from agentlog.domains.timers.zones import TimeZone

AgentId = Annotated[str, StringConstraints(pattern=AGENT_ID_PATTERN)]
Ttl = Annotated[float, Field(gt=0, le=MAX_TTL_S, description="seconds")]
Body = Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
Short = Annotated[str, StringConstraints(max_length=500)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\s,]+$")]
Id = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
Data = Annotated[dict[str, Any], Field(description="any JSON object")]


def _not_a_number(value: object) -> object:
    """A moment is written as ISO 8601: pydantic would take 1700000000 (or `true`) as seconds since 1970."""
    if isinstance(value, int | float):
        raise ValueError("give an ISO 8601 moment with a time zone (2026-12-02T09:00:00Z, or +01:00), not a number")
    return value


Moment = Annotated[AwareDatetime, BeforeValidator(_not_a_number)]
"""A moment in a request: an ISO 8601 string with its time zone (a datetime from Python); a number, or a string
without a zone (`2030-01-01`, `2030-01-01T09:00:00`: whose nine o'clock?), is refused naming the field."""


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests ------------------------------------------------------------------------------------------------------


class AgentUpsert(Request):
    """Register an agent, or update the fields given of a registered one."""

    name: Short | None = None
    status: AgentStatus | None = None
    working_on: Short | None = None
    capabilities: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] | None = Field(
        default=None, max_length=50
    )
    metadata: Data | None = None
    heartbeat_timeout_s: Annotated[float, Field(ge=2, le=MAX_TTL_S)] | None = None


class Deregistration(Request):
    reason: Short = ""


class ChatPost(Request):
    body: Body
    mentions: list[AgentId] = Field(default_factory=list, max_length=100, description="also read from @mentions")
    data: Data = Field(default_factory=dict)


class DirectMessage(Request):
    body: Body
    data: Data = Field(default_factory=dict)
    thread_id: Id | None = None
    task_id: Id | None = None


class MessageTo(DirectMessage):
    """A direct message to an agent, or to the chat when `to` is `chat`."""

    to: AgentId


class Acknowledgement(Request):
    message_ids: list[Id] = Field(min_length=1, max_length=500)


class CheckpointSave(Request):
    summary: Annotated[str, StringConstraints(max_length=20_000)] = ""
    state: Data = Field(default_factory=dict)


class MemoryStore(Request):
    text: Body
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    kind: MemoryKind = "learning"


class LockAcquire(Request):
    agent_id: AgentId | None = Field(default=None, description="the holder; an agent token's own id by default")
    ttl_s: Ttl = 300.0
    reason: Short = ""


class LockRenew(Request):
    agent_id: AgentId | None = None
    fencing_token: Annotated[int, Field(ge=1)]
    ttl_s: Ttl = 300.0


class LockRelease(Request):
    agent_id: AgentId | None = None
    fencing_token: Annotated[int, Field(ge=1)]


class ClaimRequest(Request):
    agent_id: AgentId | None = None
    pattern: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    kind: ClaimKind = "path"
    exclusive: bool = True
    ttl_s: Ttl = 1800.0
    reason: Short = ""


class ClaimRelease(Request):
    agent_id: AgentId | None = None


class Handoff(Request):
    agent_id: AgentId | None = Field(default=None, description="the current holder")
    to_agent: AgentId
    note: Annotated[str, StringConstraints(max_length=20_000)] = ""
    context: Data = Field(default_factory=dict)
    ttl_s: Ttl | None = None


class TaskCreate(Request):
    """A task to queue; every field but `task_type` has a default. `task_id` is made when not given."""

    task_id: tasks.TaskId | None = None
    task_type: tasks.TaskType
    payload: Data = Field(default_factory=dict)
    payload_ref: tasks.PayloadRef | None = Field(default=None, description="where a payload too large is kept")
    priority: tasks.Priority = Field(default=5, description="1 lowest, 10 highest")
    capabilities: list[tasks.Capability] = Field(default_factory=list, max_length=50)
    max_attempts: tasks.MaxAttempts = 3
    execution_timeout_s: tasks.ExecutionTimeout = 3600.0
    heartbeat_interval_s: tasks.HeartbeatInterval = 30.0
    run_at: Moment | None = Field(default=None, description="not before this moment (ISO 8601, with a time zone)")
    depends_on: list[tasks.TaskId] = Field(default_factory=list, max_length=100)
    dedupe_key: tasks.Key | None = None
    concurrency_key: tasks.Key | None = None
    concurrency_limit: tasks.ConcurrencyLimit = 1
    backoff_base_s: tasks.BackoffBase = 10.0
    backoff_max_s: tasks.BackoffMax = 3600.0


class Workflow(Request):
    """Tasks created together, all or none: `depends_on` may name each other (in any order), never in a cycle."""

    tasks: list[TaskCreate] = Field(min_length=1, max_length=500)


class TaskClaim(Request):
    agent_id: AgentId | None = Field(default=None, description="the claiming agent; an agent token's own id")
    task_types: list[tasks.TaskType] = Field(default_factory=list, max_length=50, description="any when empty")
    wait_s: Annotated[float, Field(ge=0, le=30)] = 5.0
    """How long to wait for the dispatcher's answer."""


class AttemptCommand(Request):
    agent_id: AgentId | None = None
    attempt: tasks.Attempt


class TaskHeartbeat(AttemptCommand):
    progress: Data = Field(default_factory=dict)


class TaskCompletion(AttemptCommand):
    result: Data = Field(default_factory=dict)


class TaskFailure(AttemptCommand):
    error: Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
    retryable: bool = True


class TaskSnooze(AttemptCommand):
    delay_s: tasks.SnoozeDelay
    reason: Short = ""


class TaskCancel(Request):
    reason: Short = ""


class TaskRequeue(Request):
    reason: Short = ""


class BudgetLimit(Request):
    """Set or change a budget: `global`, or `agent-<agent id>`."""

    limit_tokens: Tokens
    reset_hour: Annotated[int, Field(ge=0, le=23)] = 0
    time_zone: TimeZone = "UTC"


class ReservationRequest(Request):
    """Hold tokens for an LLM call against the global budget and the agent's own (those that are set)."""

    agent_id: AgentId | None = None
    tokens: Annotated[int, Field(ge=1, le=10**12)]
    ttl_s: Annotated[float, Field(gt=0, le=86_400)] = 600.0
    purpose: Short = ""
    reservation_id: ReservationId | None = None


class SettlementRequest(Request):
    agent_id: AgentId | None = None
    used_tokens: Tokens


class ReleaseRequest(Request):
    agent_id: AgentId | None = None
    reason: Short = ""


class OperationStart(Request):
    """An operation I start on an entity key (an email id, a customer id...), for conflict detection."""

    agent_id: AgentId | None = None
    key: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    action: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    operation_id: Id | None = None
    window_s: Annotated[float, Field(ge=0, le=86_400)] = 30.0
    """Another agent registering on the key within this is refused (409)."""
    ttl_s: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    """Unfinished, it ends by itself after this."""
    data: Data = Field(default_factory=dict)


class OperationFinish(Request):
    agent_id: AgentId | None = None
    key: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    outcome: Short = ""


class ScheduleCreate(ScheduleSpec):
    """A schedule to create: its spec, and its id (made when not given)."""

    schedule_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")] | None = None
    time_zone: TimeZone = "UTC"
    """An IANA name: refused naming the field before the spec's own checks (which name no field) run."""


class ScheduleReason(Request):
    reason: Short = ""


class ProgramDefine(Request):
    """The command line an agent runs as (an admin's to set: it runs on the server), and its restart policy. It
    gets AGENTLOG_AGENT_ID, AGENTLOG_URL, AGENTLOG_TOKEN (its agent's token) and AGENTLOG_TOKEN_FILE (the token,
    renewed) in its environment, beside `env`."""

    command: list[programs.Argument] = Field(min_length=1, max_length=100)
    env: dict[programs.EnvName, Annotated[str, StringConstraints(max_length=4_096)]] = Field(
        default_factory=dict, max_length=100
    )
    working_dir: Annotated[str, StringConstraints(min_length=1, max_length=4_096)] | None = None
    max_restarts: programs.MaxRestarts = 3
    restart_delay_s: programs.RestartDelay = 1.0
    stop_grace_s: programs.StopGrace = 10.0
    proven_after_s: Annotated[float, Field(ge=1, le=86_400)] = 60.0


class ProgramAction(Request):
    reason: Short = ""


# -- answers -------------------------------------------------------------------------------------------------------


class Agent(BaseModel):
    agent_id: str
    name: str
    state: Literal["registered", "deregistered", "gone"]
    status: str
    working_on: str
    capabilities: list[str]
    metadata: dict[str, Any]
    heartbeat_timeout_s: float
    reason: str
    stream_version: int
    registered_at: datetime | None = None
    last_seen_at: datetime | None = None
    activity: Literal["active", "idle", "offline"] = "active"
    """Inferred from what the agent does (the status keeper): idle after 10 minutes of silence, offline after 60."""
    last_active_at: datetime | None = None


class AgentStatistics(BaseModel):
    heartbeats: int
    locks_held: int
    claims_held: int
    unread_messages: int
    messages_sent: int
    chat_posts: int
    memories: int
    checkpoints: int


class AgentDetails(Agent):
    statistics: AgentStatistics


class Health(BaseModel):
    agent_id: str
    state: str
    healthy: bool
    last_seen_at: datetime | None
    seconds_since_seen: float | None
    heartbeat_timeout_s: float
    locks_expiring: list[Lock]
    claims_expiring: list[Claim]


class ChatMessage(BaseModel):
    seq: int
    message_id: str
    author: str
    author_kind: str
    body: str
    mentions: list[str]
    data: dict[str, Any]
    posted_at: datetime


class ChatPage(BaseModel):
    messages: list[ChatMessage]
    next_after: int
    """Pass as `after` to read on."""


class Posted(BaseModel):
    message_id: str
    global_position: int


class InboxMessage(BaseModel):
    seq: int
    message_id: str
    kind: Literal["direct", "mention"]
    sender: str
    sender_kind: str
    body: str
    data: dict[str, Any]
    thread_id: str | None
    task_id: str | None
    sent_at: datetime
    acknowledged_at: datetime | None


class InboxPage(BaseModel):
    messages: list[InboxMessage]
    unread: int
    next_after: int


class Acknowledged(BaseModel):
    acknowledged: list[str]
    """Ids newly acknowledged (a message already acknowledged, or not in the inbox, is not listed)."""


class Checkpoint(BaseModel):
    agent_id: str
    stream_version: int
    summary: str
    state: dict[str, Any]
    saved_at: datetime | None = None


class Memory(BaseModel):
    memory_id: str
    agent_id: str
    kind: str
    text: str
    tags: list[str]
    stored_at: datetime | None = None
    rank: float | None = None


class Lock(BaseModel):
    resource: str
    holder: str | None
    fencing_token: int | None
    last_fencing_token: int
    ttl_s: float | None = None
    reason: str | None = None
    expires_at: datetime | None = None
    stream_version: int | None = None


class LockEvent(BaseModel):
    stream_version: int
    event_type: str
    data: dict[str, Any]
    recorded_at: datetime


class Claim(BaseModel):
    claim_id: str
    holder: str
    pattern: str
    kind: str
    exclusive: bool
    ttl_s: float
    reason: str
    context: dict[str, Any] = Field(default_factory=dict)
    handed_off_from: str | None = None
    state: str = "held"
    expires_at: datetime | None = None
    end_reason: str | None = None


class Task(BaseModel):
    """A task as the tasks projection shows it."""

    task_id: str
    task_type: str
    priority: int
    status: str
    attempt: int
    agent_id: str | None
    attempts_spent: int
    max_attempts: int
    capabilities: list[str]
    depends_on: list[str]
    concurrency_key: str | None
    dedupe_key: str | None
    payload: dict[str, Any]
    payload_ref: str | None
    result: dict[str, Any] | None
    last_error: str | None
    reason: str | None
    refusals: int
    created_at: datetime | None
    assigned_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    last_heartbeat_at: datetime | None
    updated_at: datetime | None
    withheld: list[str] = Field(
        default_factory=list,
        description="fields left out: an agent reading a task it neither created nor was given sees no payload, "
        "payload reference, result or error",
    )


class TaskState(BaseModel):
    """A task as its stream folds right after a command: exact, whatever the projections show yet."""

    task_id: str
    task_type: str
    priority: int
    status: str
    attempt: int
    agent_id: str | None
    attempts_spent: int
    max_attempts: int
    reason: str
    last_error: str
    stream_version: int


class Assignment(BaseModel):
    """A task given to an agent: what to do, and the attempt every later command must name."""

    task_id: str
    attempt: int
    agent_id: str
    task_type: str
    payload: dict[str, Any]
    payload_ref: str | None
    priority: int
    heartbeat_interval_s: float
    execution_timeout_s: float
    claim_id: str | None = None


class ClaimAnswer(BaseModel):
    """The dispatcher's answer to a claim: an assignment, or why none (`declined`), or not yet (`pending`)."""

    claim_id: str
    assignment: Assignment | None = None
    declined: str | None = None
    pending: bool = False


class QueueDepth(BaseModel):
    status: str
    priority: int
    tasks: int
    oldest_created_at: datetime | None


class Budget(BaseModel):
    budget_id: str
    limit_tokens: int
    reset_hour: int
    time_zone: str
    period: str
    settled_tokens: int
    reserved_tokens: int
    open_reservations: int
    remaining_tokens: int
    warned: list[int]
    unbudgeted_tokens: int
    updated_at: datetime | None = None
    stream_version: int | None = None


class BudgetLeft(BaseModel):
    budget_id: str
    period: str
    limit_tokens: int
    remaining_tokens: int


class Reservation(BaseModel):
    """Tokens held for a call on every budget that applies (none set: `budgets` is empty, nothing limits it)."""

    reservation_id: str
    agent_id: str
    tokens: int
    budgets: list[BudgetLeft]


class Settlement(BaseModel):
    reservation_id: str
    used_tokens: int
    unbudgeted_tokens: int
    """Used beyond what a budget had left (the most over any budget)."""
    budgets: list[BudgetLeft]


class Operation(BaseModel):
    key: str
    operation_id: str
    agent_id: str
    action: str
    window_s: float
    ttl_s: float
    in_window: bool
    """Inside its conflict window: it refuses other agents."""
    state: Literal["open", "finished"] = "open"


class OperationRow(BaseModel):
    key: str
    operation_id: str
    agent_id: str
    action: str
    in_window: bool
    data: dict[str, Any]
    registered_at: datetime | None
    window_ends_at: datetime | None
    expires_at: datetime | None


class TaskStatistics(BaseModel):
    """An agent's tasks (those whose last attempt it held), in seed 003's shape."""

    total_tasks: int
    completed_tasks: int
    failed_tasks: int
    """Dead-lettered, or failed and not retried yet."""
    active_tasks: int
    avg_execution_time_ms: int | None
    """From start to completion, over its completed tasks."""


class UnroutableTask(BaseModel):
    task_id: str
    task_type: str
    priority: int
    capabilities: list[str]


class Overview(BaseModel):
    """The fleet and its queue now, in seed 003's shape (camelCase): healthy agents are active, degraded idle,
    unhealthy offline (the status keeper's inference); `unroutable` names queued tasks no agent can take."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    total_agents: int
    running_agents: int
    stopped_agents: int
    healthy_agents: int
    degraded_agents: int
    unhealthy_agents: int
    pending_tasks: int
    running_tasks: int
    completed_tasks: int
    dead_lettered_tasks: int
    unroutable_tasks: int
    agents_by_type: dict[str, int]
    unroutable: list[UnroutableTask]


class ScheduleState(BaseModel):
    """A schedule as its stream folds right after a command."""

    schedule_id: str
    status: str
    spec: ScheduleSpec | None
    fired: int
    skipped: int
    missed: int
    last_fired_slot: datetime | None
    stream_version: int


class _Program(BaseModel):
    agent_id: str
    status: str
    command: list[str]
    max_restarts: int
    run: int
    """The latest run started (0: never)."""
    restart: int
    """Automatic restarts in a row behind the current run."""
    pid: int | None
    host: str
    last_exit_code: int | None
    reason: str


class ProgramState(_Program):
    """An agent program as its stream folds now, with its health while it runs (from its agent's activity in the
    registry: healthy while active, degraded when idle, unhealthy when offline or gone, unknown until it
    registers). The environment's values are not shown (they may be secrets), only its names."""

    status: Literal["stopped", "starting", "running", "stopping", "error"]
    health: Literal["healthy", "degraded", "unhealthy", "unknown"] | None
    env_names: list[str]
    working_dir: str | None
    restart_delay_s: float
    stop_grace_s: float
    proven_after_s: float
    stream_version: int


class ProgramRow(_Program):
    """An agent program as the programs projection shows it."""

    runs_started: int
    crashes: int
    started_at: datetime | None
    updated_at: datetime


class ScheduleRow(BaseModel):
    """A schedule as the schedules projection shows it."""

    schedule_id: str
    status: str
    cron: str | None
    time_zone: str | None
    action_kind: str | None
    action: dict[str, Any] | None
    overlap: str | None
    catch_up: str | None
    fired: int
    skipped: int
    missed: int
    last_fired_slot: datetime | None
    buffered_slot: datetime | None
    next_slot: datetime | None
    created_at: datetime | None
    updated_at: datetime | None
    withheld: list[str] = Field(
        default_factory=list, description="fields left out: an agent's token sees no template payload or data"
    )


class HotStart(BaseModel):
    """Everything an agent needs to pick up its work, in one call."""

    agent: Agent
    unread: list[InboxMessage]
    recent_chat: list[ChatMessage]
    locks: list[Lock]
    claims: list[Claim]
    checkpoint: Checkpoint | None
    tasks: list[Task] = Field(default_factory=list, description="my tasks assigned or running")
    budgets: list[BudgetLeft] = Field(default_factory=list, description="what the budgets I spend from have left")


class Problem(BaseModel):
    """Every refusal: what was wrong (`detail`), a stable `code`, and what the refusal is about."""

    detail: Any
    code: str
    conflicts: list[dict[str, Any]] | None = None
    current_version: int | None = None
    holder: str | None = None
    fencing_token: int | None = None
    rule: str | None = None
    current_attempt: int | None = None
    task_status: str | None = None
    budget_id: str | None = None
    remaining_tokens: int | None = None


Health.model_rebuild()


class FeedEvent(BaseModel):
    """One event of the live feed (`/api/v1/ws`)."""

    topic: str
    position: str
    """Where it is in the log's canonical order (`transaction_id/global_position`): resume after it."""
    global_position: int
    stream_id: str
    stream_version: int
    event_type: str
    data: dict[str, Any]
    recorded_at: datetime
