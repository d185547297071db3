"""A session's events as a caller follows a turn: `analysis`, `plan_created`, `step_started`, `executor_spawned`,
`text`, `tool_call`, `tool_result`, `step_completed`, `step_failed`, `plan_finished`, then `done` or `error`.
Pure: the API streams them over SSE, the CLI prints them, and both read them from the log, so a caller that
reconnects (or comes late) sees the same transcript."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agentlog.domains.planning.events import (
    ModelAnswered,
    PlanCreated,
    PlanFinished,
    StepCompleted,
    StepFailed,
    StepStarted,
    ToolAnswered,
    TurnAnalysed,
    TurnFinished,
)
from agentlog.eventstore.events import Event

StreamEvent = tuple[str, dict[str, Any]]


def turn_events(event: Event, turn_id: str, plan_ids: set[str]) -> Iterator[StreamEvent]:
    """What `event` shows a caller following turn `turn_id` (whose plans, once created, are added to `plan_ids`)."""
    if getattr(event, "turn_id", None) not in (None, turn_id):
        return
    plan_id = getattr(event, "plan_id", None)
    if plan_id is not None and plan_id not in plan_ids and not isinstance(event, PlanCreated):
        return
    yield from _shown(event, plan_ids)


def _shown(event: Event, plan_ids: set[str]) -> Iterator[StreamEvent]:
    if isinstance(event, TurnAnalysed):
        yield "analysis", {"strategy": event.strategy, "analysis": event.analysis, "planner_id": event.planner_id}
    elif isinstance(event, PlanCreated):
        plan_ids.add(event.plan_id)
        yield "plan_created", {"plan_id": event.plan_id, "steps": [s.model_dump() for s in event.steps]}
    elif isinstance(event, StepStarted):
        yield "step_started", {"plan_id": event.plan_id, "step_id": event.step_id, "agent_id": event.agent_id}
        if event.executor:
            yield "executor_spawned", {"plan_id": event.plan_id, "step_id": event.step_id, "agent_id": event.agent_id}
    elif isinstance(event, ModelAnswered):
        if event.step_id == "analysis":
            return
        where = {"agent_id": event.agent_id, "step_id": event.step_id}
        if event.content or event.content_ref:
            yield "text", {**where, "content": event.content, "content_ref": event.content_ref}
        for call in event.tool_calls:
            yield "tool_call", {**where, "call_id": call.call_id, "tool": call.tool, "arguments": call.arguments}
    elif isinstance(event, ToolAnswered):
        yield "tool_result", {"agent_id": event.agent_id, "step_id": event.step_id, "call_id": event.call_id,
                              "tool": event.tool, "ok": event.ok, "refused": event.refused, "error": event.error,
                              "content": event.content, "content_ref": event.content_ref}  # fmt: skip
    elif isinstance(event, StepCompleted):
        yield "step_completed", {"plan_id": event.plan_id, "step_id": event.step_id, "content": event.content,
                                 "content_ref": event.content_ref}  # fmt: skip
    elif isinstance(event, StepFailed):
        yield "step_failed", {"plan_id": event.plan_id, "step_id": event.step_id, "error": event.error}
    elif isinstance(event, PlanFinished):
        yield "plan_finished", {"plan_id": event.plan_id, "status": event.status, "reason": event.reason}
    elif isinstance(event, TurnFinished):
        if event.status == "done":
            yield "done", {"turn_id": event.turn_id, "content": event.content, "content_ref": event.content_ref}
        else:
            yield "error", {"turn_id": event.turn_id, "status": event.status, "error": event.error}
