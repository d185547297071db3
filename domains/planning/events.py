"""Events of planner sessions (seed 004). A session is a stream, `session-<session_id>`: what people asked, how the
planner read each request, its plan of steps, every model call and tool call of the planner and of its executors,
and how each step and each request ended. One stream per session, so that one fold gives the whole transcript and
a restarted runtime resumes from exactly what was recorded.

A request is a turn, named by the id of the message that asked it. Model calls and tool calls are kept in threads:
the turn's own (`step_id` None), one per plan step, and the final answer's (`FINAL_THREAD`).

Large texts (prompts, answers, tool results) are kept once by content hash (`content_ref`, `sha256:<hex>` in
`agentlog.contents`) and the event carries the reference instead of the text (`content` is then empty).

A refused write is also recorded where it was refused, by the server (`ToolCallRefused`, on the agent's
`refusals-<agent_id>` stream), whoever's process asked for it.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from agentlog.domains.coordination.names import AgentId
from agentlog.eventstore.events import Event, catalogue

SessionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
StepId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=100)]
ToolName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
ContentRef = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
ShortText = Annotated[str, StringConstraints(max_length=2_000)]
Strategy = Literal["simple", "tool", "complex"]

INLINE_CHARS = 8_192
"""Texts longer than this are kept by content hash, not in the event."""
FINAL_THREAD = "final"
"""The thread of the planner's answer after a plan's steps: it reads their results and answers the request."""

PLANNING_TYPES = frozenset(
    {"SessionOpened", "UserMessagePosted", "TurnAnalysed", "PlanCreated", "ModelAnswered", "ToolAnswered",
     "StepStarted", "StepCompleted", "StepFailed", "PlanCancelRequested", "PlanFinished", "TurnFinished"}
)  # fmt: skip


MAX_REFUSED_ARGUMENTS_CHARS = 4_096
"""A refusal keeps the arguments of a refused call up to this size (refusals must not be a way to write)."""


def refused_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """What a `ToolCallRefused` keeps of a refused call's arguments: them, or, when large, their size and start."""
    text = json.dumps(arguments, ensure_ascii=False, default=str)
    if len(text) <= MAX_REFUSED_ARGUMENTS_CHARS:
        return arguments
    return {"truncated": True, "chars": len(text), "start": text[:1_000]}


def session_stream(session_id: str) -> str:
    return f"session-{session_id}"


def refusals_stream(agent_id: str) -> str:
    return f"refusals-{agent_id}"


class _SessionEvent(Event):
    category: ClassVar[str] = "session"

    session_id: SessionId


class _Text(_SessionEvent):
    """An event carrying a text: inline up to `INLINE_CHARS`, else by reference (`content` empty)."""

    content: str = ""
    content_ref: ContentRef | None = None


@catalogue.register
class SessionOpened(_SessionEvent):
    event_type: ClassVar[str] = "SessionOpened"

    opened_by: ShortText
    opened_by_kind: Literal["admin", "person", "agent"]
    title: ShortText = ""


@catalogue.register
class UserMessagePosted(_Text):
    """Someone asked something: a turn, named by `message_id`."""

    event_type: ClassVar[str] = "UserMessagePosted"

    message_id: Identifier
    author: ShortText
    author_kind: Literal["admin", "person", "agent"]


@catalogue.register
class TurnAnalysed(_SessionEvent):
    """How the planner reads the request: answer it (`simple`), answer it with tools (`tool`), or plan it
    (`complex`, a `PlanCreated` follows in the same append)."""

    event_type: ClassVar[str] = "TurnAnalysed"

    turn_id: Identifier
    planner_id: AgentId
    strategy: Strategy
    analysis: Annotated[str, StringConstraints(max_length=4_000)] = ""


class PlanStep(BaseModel):
    """One step: its instructions, the steps whose results it needs, and whether an executor does it (read-only
    tools) or the planner itself (every tool)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step_id: StepId
    title: ShortText
    instructions: Annotated[str, StringConstraints(max_length=4_000)] = ""
    depends_on: list[StepId] = Field(default_factory=list, max_length=50)
    executor: bool = True


@catalogue.register
class PlanCreated(_SessionEvent):
    event_type: ClassVar[str] = "PlanCreated"

    turn_id: Identifier
    plan_id: Identifier
    planner_id: AgentId
    steps: list[PlanStep] = Field(min_length=1, max_length=50)


class ToolCallRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    call_id: Identifier
    tool: ToolName
    arguments: dict[str, Any] = Field(default_factory=dict)


@catalogue.register
class ModelAnswered(_Text):
    """One model call of one agent in one thread: the answer (text and the tool calls it asks for) and its cost."""

    event_type: ClassVar[str] = "ModelAnswered"

    turn_id: Identifier
    step_id: StepId | None = None
    """The thread: None the turn's own, a plan step's id, or `FINAL_THREAD`."""
    agent_id: AgentId
    role: Literal["planner", "executor"]
    call_index: Annotated[int, Field(ge=0)]
    tool_calls: list[ToolCallRecord] = Field(default_factory=list, max_length=50)
    provider: ShortText
    model: ShortText
    prompt_tokens: Annotated[int, Field(ge=0)] = 0
    completion_tokens: Annotated[int, Field(ge=0)] = 0
    duration_ms: Annotated[float, Field(ge=0)] = 0.0
    message_count: Annotated[int, Field(ge=0)] = 0
    """How many messages the model was sent."""
    prompt_ref: ContentRef | None = None
    """The whole prompt, kept by content hash (the same prompt is kept once)."""


@catalogue.register
class ToolAnswered(_Text):
    """What a tool call gave (its result as JSON text), or why it failed; `refused` when the server refused it
    (a write by a read-only executor: the server's `ToolCallRefused` says so too)."""

    event_type: ClassVar[str] = "ToolAnswered"

    turn_id: Identifier
    step_id: StepId | None = None
    agent_id: AgentId
    call_id: Identifier
    tool: ToolName
    ok: bool
    refused: bool = False
    error: ShortText = ""
    duration_ms: Annotated[float, Field(ge=0)] = 0.0


@catalogue.register
class StepStarted(_SessionEvent):
    event_type: ClassVar[str] = "StepStarted"

    plan_id: Identifier
    step_id: StepId
    agent_id: AgentId
    executor: bool


@catalogue.register
class StepCompleted(_Text):
    """A step's result (the text its dependents are given)."""

    event_type: ClassVar[str] = "StepCompleted"

    plan_id: Identifier
    step_id: StepId


@catalogue.register
class StepFailed(_SessionEvent):
    event_type: ClassVar[str] = "StepFailed"

    plan_id: Identifier
    step_id: StepId
    error: ShortText


@catalogue.register
class PlanCancelRequested(_SessionEvent):
    event_type: ClassVar[str] = "PlanCancelRequested"

    plan_id: Identifier
    requested_by: ShortText
    reason: ShortText = ""


@catalogue.register
class PlanFinished(_SessionEvent):
    event_type: ClassVar[str] = "PlanFinished"

    plan_id: Identifier
    status: Literal["completed", "failed", "cancelled"]
    reason: ShortText = ""


@catalogue.register
class TurnFinished(_Text):
    """The request's answer (`done`), or why there is none (`error`, `cancelled`)."""

    event_type: ClassVar[str] = "TurnFinished"

    turn_id: Identifier
    status: Literal["done", "error", "cancelled"]
    error: ShortText = ""


@catalogue.register
class ToolCallRefused(Event):
    """The server refused a tool call or a write: who asked, for which tool (or route), with which arguments, in
    which session and step. Recorded by the server that refused it, whatever the caller's prompt said."""

    event_type: ClassVar[str] = "ToolCallRefused"
    category: ClassVar[str] = "refusals"

    agent_id: ShortText
    """The token's holder (an agent id for an executor's token)."""
    holder_kind: Literal["admin", "person", "agent"] = "agent"
    tool: ShortText
    """The tool's name, or the route (`POST /api/v1/chat`) of a write sent to the API directly."""
    arguments: dict[str, Any] = Field(default_factory=dict)
    session_id: SessionId | None = None
    step_id: StepId | None = None
    reason: ShortText
