"""Events of `manager-{manager_id}` and `agent-{agent_id}` streams: agent managers, the agents they run, and
what those agents do (LLM calls, places marked, resource use).

Decisions (spawn, detach, fail) are recorded by the agent manager's decider with their reason; facts about
processes (started, exited, unresponsive) by the supervisor that runs them; work done by the worker itself,
through its supervisor.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from agentlog.domains.documents.events import DocumentId
from agentlog.eventstore.events import Event, catalogue

ManagerId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
AgentId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=500)]
NonNegative = Annotated[float, Field(ge=0)]


def manager_stream(manager_id: str) -> str:
    return f"manager-{manager_id}"


def agent_stream(agent_id: str) -> str:
    return f"agent-{agent_id}"


@catalogue.register
class ManagerStarted(Event):
    """An agent manager (one `agentlog up` process: document server plus supervisor) started.

    `incarnation` is new at every start, so that a manager restarting under the same id is told apart from its
    previous life, whose agents and connections are gone.
    """

    event_type: ClassVar[str] = "ManagerStarted"
    category: ClassVar[str] = "manager"

    manager_id: ManagerId
    incarnation: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    host: str
    pid: int
    max_agents: Annotated[int, Field(ge=0, le=10_000)]
    document_url: str
    """Where its document server serves `/{document_id}` (agents of documents whose people are here join there)."""


@catalogue.register
class ManagerStopped(Event):
    """A manager is gone: shut down (it says so itself) or lost (another manager found its lock free)."""

    event_type: ClassVar[str] = "ManagerStopped"
    category: ClassVar[str] = "manager"

    manager_id: ManagerId
    incarnation: str
    how: Literal["shutdown", "lost"]
    reason: Reason


@catalogue.register
class ManagerReconnected(Event):
    """A manager that lost its database session (a server restart, a failover) took its lock back before anyone
    recorded it as lost: it carries on in the same incarnation, with the agents it kept running meanwhile.

    Appended with the manager stream's version as read, so it and another manager's `ManagerStopped(lost)`
    exclude each other: whichever is recorded first holds, and the other is refused and re-examined.
    """

    event_type: ClassVar[str] = "ManagerReconnected"
    category: ClassVar[str] = "manager"

    manager_id: ManagerId
    incarnation: str
    offline_s: Annotated[float, Field(ge=0)]
    """How long it was without its lock."""


@catalogue.register
class AgentSpawnRequested(Event):
    """Decision: run an agent for this document on this manager."""

    event_type: ClassVar[str] = "AgentSpawnRequested"
    category: ClassVar[str] = "agent"

    agent_id: AgentId
    document_id: DocumentId
    manager_id: ManagerId
    incarnation: str
    """The manager's life this agent belongs to: a restarted manager ignores requests made to its previous life."""
    document_url: str
    """The document server the agent joins: the one holding the document's people."""
    attempt: Annotated[int, Field(ge=1)]
    reason: Reason


@catalogue.register
class AgentDeferred(Event):
    """Decision: this active document gets no agent for now (no room, no manager, or it lost an eviction)."""

    event_type: ClassVar[str] = "AgentDeferred"
    category: ClassVar[str] = "agent"

    document_id: DocumentId
    reason: Reason


@catalogue.register
class AgentDetachRequested(Event):
    """Decision: stop this agent. `cause` is machine-readable, `reason` says it for people."""

    event_type: ClassVar[str] = "AgentDetachRequested"
    category: ClassVar[str] = "agent"

    agent_id: AgentId
    document_id: DocumentId
    manager_id: ManagerId
    cause: Literal["idle", "evicted", "shutdown"]
    reason: Reason


@catalogue.register
class AgentAbandoned(Event):
    """Decision: the agent did not start (or stop) in time; its slot is free again and its supervisor kills it."""

    event_type: ClassVar[str] = "AgentAbandoned"
    category: ClassVar[str] = "agent"

    agent_id: AgentId
    document_id: DocumentId
    manager_id: ManagerId
    stage: Literal["start", "stop"]
    reason: Reason


@catalogue.register
class AgentFailed(Event):
    """Decision: the agent kept crashing; no more restarts until the document becomes active again."""

    event_type: ClassVar[str] = "AgentFailed"
    category: ClassVar[str] = "agent"

    agent_id: AgentId
    document_id: DocumentId
    attempts: int
    reason: Reason


@catalogue.register
class AgentProcessStarted(Event):
    """Fact: the supervisor started the agent's worker process."""

    event_type: ClassVar[str] = "AgentProcessStarted"
    category: ClassVar[str] = "agent"

    agent_id: AgentId
    document_id: DocumentId
    manager_id: ManagerId
    pid: int


@catalogue.register
class AgentConnected(Event):
    """Fact: the worker joined its document and finished the first sync."""

    event_type: ClassVar[str] = "AgentConnected"
    category: ClassVar[str] = "agent"

    agent_id: AgentId
    document_id: DocumentId
    sync_ms: NonNegative


@catalogue.register
class AgentUnresponsive(Event):
    """Fact: the worker missed its pongs; the supervisor kills it (its exit follows)."""

    event_type: ClassVar[str] = "AgentUnresponsive"
    category: ClassVar[str] = "agent"

    agent_id: AgentId
    document_id: DocumentId
    missed_pongs: int
    silent_s: NonNegative


@catalogue.register
class AgentProcessExited(Event):
    """Fact: the worker process is gone. `expected` is true when it was asked to stop."""

    event_type: ClassVar[str] = "AgentProcessExited"
    category: ClassVar[str] = "agent"

    agent_id: AgentId
    document_id: DocumentId
    manager_id: ManagerId
    pid: int | None
    exit_code: int | None
    expected: bool
    reason: Reason


class MarkedPlace(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    latitude: float
    longitude: float


@catalogue.register
class LocationsMarked(Event):
    """The agent marked places it found in a finished sentence of its document."""

    event_type: ClassVar[str] = "LocationsMarked"
    category: ClassVar[str] = "agent"

    agent_id: AgentId
    document_id: DocumentId
    places: tuple[MarkedPlace, ...]


@catalogue.register
class TokensSpent(Event):
    """One LLM call's token usage (prompts and answers stay out of the log: they can be large)."""

    event_type: ClassVar[str] = "TokensSpent"
    category: ClassVar[str] = "agent"

    agent_id: AgentId
    document_id: DocumentId
    provider: str
    model: str
    purpose: str
    prompt_tokens: Annotated[int, Field(ge=0)]
    completion_tokens: Annotated[int, Field(ge=0)]
    duration_ms: NonNegative


@catalogue.register
class AgentMetricsReported(Event):
    """A worker's periodic figures, as its supervisor collected them."""

    event_type: ClassVar[str] = "AgentMetricsReported"
    category: ClassVar[str] = "agent"

    agent_id: AgentId
    document_id: DocumentId
    memory_mb: NonNegative
    cpu_percent: NonNegative
    llm_calls: Annotated[int, Field(ge=0)]
    locations_marked: Annotated[int, Field(ge=0)]
    websocket_latency_ms: NonNegative | None
    llm_response_time_ms: NonNegative | None
