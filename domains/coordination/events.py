"""Events of the coordination domain. Each names the entity it is about, so a projection can fold it alone.

Streams (`names`): `member-<agent>` the registry entry, `heartbeat-<agent>` heartbeats and liveness timers,
`inbox-<agent>` direct messages and read receipts, `chat`, `checkpoint-<agent>`, `memory-<agent>`,
`lock-<digest>` one lock resource (its stream is its history), `claims` every claim.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, StringConstraints

from agentlog.domains.coordination.names import AgentId
from agentlog.eventstore.events import Event, catalogue

MAX_TTL_S = 7 * 24 * 3600
Ttl = Annotated[float, Field(gt=0, le=MAX_TTL_S)]
Text = Annotated[str, StringConstraints(max_length=20_000)]
ShortText = Annotated[str, StringConstraints(max_length=500)]
Resource = Annotated[str, StringConstraints(min_length=1, max_length=512)]
MessageId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
AgentStatus = Literal["active", "idle", "busy", "blocked", "offline"]
MemoryKind = Literal["learning", "pattern", "fact"]
ClaimKind = Literal["path", "topic"]
Data = dict[str, Any]


# -- the registry -------------------------------------------------------------------------------------------------


@catalogue.register
class AgentRegistered(Event):
    """An agent joined the fleet (or came back after it was gone or deregistered)."""

    event_type: ClassVar[str] = "AgentRegistered"
    category: ClassVar[str] = "member"

    agent_id: AgentId
    name: ShortText = ""
    status: AgentStatus = "active"
    working_on: ShortText = ""
    capabilities: list[Annotated[str, StringConstraints(max_length=100)]] = Field(default_factory=list, max_length=50)
    metadata: Data = Field(default_factory=dict)
    heartbeat_timeout_s: Ttl = 120.0
    """Silence after which the agent is marked gone and its locks and claims are released."""
    registered_by: ShortText = ""


@catalogue.register
class AgentUpdated(Event):
    """Some of an agent's registry fields changed (those given; None leaves a field as it was)."""

    event_type: ClassVar[str] = "AgentUpdated"
    category: ClassVar[str] = "member"

    agent_id: AgentId
    status: AgentStatus | None = None
    working_on: ShortText | None = None
    capabilities: list[Annotated[str, StringConstraints(max_length=100)]] | None = Field(default=None, max_length=50)
    metadata: Data | None = None


@catalogue.register
class AgentHeartbeat(Event):
    """The agent is alive (on `heartbeat-<agent>`, so that heartbeats do not move the registry entry's version)."""

    event_type: ClassVar[str] = "AgentHeartbeat"
    category: ClassVar[str] = "heartbeat"

    agent_id: AgentId


@catalogue.register
class AgentDeregistered(Event):
    """The agent left; its locks and claims are released by the log."""

    event_type: ClassVar[str] = "AgentDeregistered"
    category: ClassVar[str] = "member"

    agent_id: AgentId
    reason: ShortText = ""


@catalogue.register
class AgentGone(Event):
    """The agent's heartbeats stopped; its locks and claims are released by the log with this reason."""

    event_type: ClassVar[str] = "AgentGone"
    category: ClassVar[str] = "member"

    agent_id: AgentId
    reason: ShortText


# -- messages ----------------------------------------------------------------------------------------------------


@catalogue.register
class ChatPosted(Event):
    """A message to everyone; each `@mention` lands in the mentioned agent's inbox."""

    event_type: ClassVar[str] = "ChatPosted"
    category: ClassVar[str] = "chat"

    message_id: MessageId
    author: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    author_kind: Literal["agent", "person", "admin"]
    body: Text
    mentions: list[AgentId] = Field(default_factory=list, max_length=100)
    data: Data = Field(default_factory=dict)


@catalogue.register
class DirectMessageSent(Event):
    """A message to one agent, in its inbox until acknowledged."""

    event_type: ClassVar[str] = "DirectMessageSent"
    category: ClassVar[str] = "inbox"

    message_id: MessageId
    sender: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    sender_kind: Literal["agent", "person", "admin"]
    recipient: AgentId
    body: Text
    data: Data = Field(default_factory=dict)
    thread_id: MessageId | None = None
    task_id: MessageId | None = None


@catalogue.register
class DirectMessageAcknowledged(Event):
    """The recipient read a message (a direct one, or a chat message that mentioned it): the read receipt."""

    event_type: ClassVar[str] = "DirectMessageAcknowledged"
    category: ClassVar[str] = "inbox"

    message_id: MessageId
    agent_id: AgentId


# -- an agent's own state ---------------------------------------------------------------------------------------


@catalogue.register
class CheckpointSaved(Event):
    """What an agent needs to pick its work up again after a crash; the stream is its history."""

    event_type: ClassVar[str] = "CheckpointSaved"
    category: ClassVar[str] = "checkpoint"

    agent_id: AgentId
    summary: Text = ""
    state: Data = Field(default_factory=dict)


@catalogue.register
class MemoryStored(Event):
    event_type: ClassVar[str] = "MemoryStored"
    category: ClassVar[str] = "memory"

    memory_id: MessageId
    agent_id: AgentId
    text: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
    tags: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=50
    )
    kind: MemoryKind = "learning"


@catalogue.register
class MemoryForgotten(Event):
    event_type: ClassVar[str] = "MemoryForgotten"
    category: ClassVar[str] = "memory"

    memory_id: MessageId
    agent_id: AgentId
    reason: ShortText = ""


# -- locks ------------------------------------------------------------------------------------------------------


@catalogue.register
class LockAcquired(Event):
    """`holder` holds `resource` until released, renewed or expired. The fencing token only ever grows for the
    resource: whoever the lock protects refuses writes carrying a smaller one. The expiry timer is scheduled in the
    same append (`timer_id`)."""

    event_type: ClassVar[str] = "LockAcquired"
    category: ClassVar[str] = "lock"

    resource: Resource
    holder: AgentId
    fencing_token: Annotated[int, Field(ge=1)]
    ttl_s: Ttl
    reason: ShortText = ""
    timer_id: Annotated[str, StringConstraints(min_length=1, max_length=100)]


@catalogue.register
class LockRenewed(Event):
    """The holder of grant `fencing_token` keeps the lock for `ttl_s` more, counted from now (a new timer)."""

    event_type: ClassVar[str] = "LockRenewed"
    category: ClassVar[str] = "lock"

    resource: Resource
    holder: AgentId
    fencing_token: Annotated[int, Field(ge=1)]
    ttl_s: Ttl
    timer_id: Annotated[str, StringConstraints(min_length=1, max_length=100)]


@catalogue.register
class LockReleased(Event):
    event_type: ClassVar[str] = "LockReleased"
    category: ClassVar[str] = "lock"

    resource: Resource
    holder: AgentId
    fencing_token: Annotated[int, Field(ge=1)]


@catalogue.register
class LockExpired(Event):
    """Released by the log: its TTL passed without renewal, or its holder is gone or deregistered (`reason`)."""

    event_type: ClassVar[str] = "LockExpired"
    category: ClassVar[str] = "lock"

    resource: Resource
    holder: AgentId
    fencing_token: Annotated[int, Field(ge=1)]
    timer_id: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    """The expiry timer of the grant as the releaser saw it: a renewal after that keeps the lock."""
    reason: ShortText


# -- claims -----------------------------------------------------------------------------------------------------


@catalogue.register
class ClaimMade(Event):
    """`holder` claims a path glob (or a topic), exclusively or shared, for `ttl_s` (timer `timer_id`)."""

    event_type: ClassVar[str] = "ClaimMade"
    category: ClassVar[str] = "claims"

    claim_id: MessageId
    holder: AgentId
    pattern: Resource
    kind: ClaimKind = "path"
    exclusive: bool = True
    ttl_s: Ttl
    reason: ShortText = ""
    timer_id: Annotated[str, StringConstraints(min_length=1, max_length=100)]


@catalogue.register
class ClaimReleased(Event):
    event_type: ClassVar[str] = "ClaimReleased"
    category: ClassVar[str] = "claims"

    claim_id: MessageId
    holder: AgentId


@catalogue.register
class ClaimExpired(Event):
    """Released by the log: its TTL passed, or its holder is gone or deregistered (`reason`)."""

    event_type: ClassVar[str] = "ClaimExpired"
    category: ClassVar[str] = "claims"

    claim_id: MessageId
    holder: AgentId
    timer_id: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    """The claim's timer as the releaser saw it: a handoff after that keeps the claim."""
    reason: ShortText


@catalogue.register
class ClaimHandedOff(Event):
    """The claim passes to `to_agent` with what it needs to carry on (`context`); its TTL starts again (a new
    timer). The new holder also gets a direct message, in the same append."""

    event_type: ClassVar[str] = "ClaimHandedOff"
    category: ClassVar[str] = "claims"

    claim_id: MessageId
    from_agent: AgentId
    to_agent: AgentId
    note: Text = ""
    context: Data = Field(default_factory=dict)
    ttl_s: Ttl
    timer_id: Annotated[str, StringConstraints(min_length=1, max_length=100)]
