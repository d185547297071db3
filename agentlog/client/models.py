"""The API's request and answer bodies, shared by the server (`agentlog.api`) and the typed client.

Field names are the log's vocabulary (`agent_id`, `fencing_token`, `stream_version`). Requests forbid unknown
fields, so a typo is a 422 naming the field, not a silent default.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from agentlog.domains.coordination.events import MAX_TTL_S, AgentStatus, ClaimKind, MemoryKind
from agentlog.domains.coordination.names import AGENT_ID_PATTERN

AgentId = Annotated[str, StringConstraints(pattern=AGENT_ID_PATTERN)]
Ttl = Annotated[float, Field(gt=0, le=MAX_TTL_S, description="seconds")]
Body = Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
Short = Annotated[str, StringConstraints(max_length=500)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\s,]+$")]
Id = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
Data = Annotated[dict[str, Any], Field(description="any JSON object")]


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


class HotStart(BaseModel):
    """Everything an agent needs to pick up its work, in one call."""

    agent: Agent
    unread: list[InboxMessage]
    recent_chat: list[ChatMessage]
    locks: list[Lock]
    claims: list[Claim]
    checkpoint: Checkpoint | None
    tasks: list[dict[str, Any]] = Field(default_factory=list, description="assigned tasks, once tasks exist")


class Problem(BaseModel):
    """Every refusal: what was wrong (`detail`), a stable `code`, and what the refusal is about."""

    detail: Any
    code: str
    conflicts: list[dict[str, Any]] | None = None
    current_version: int | None = None
    holder: str | None = None
    fencing_token: int | None = None


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
