"""The pure core of the planning projection: the rows a batch of session events touches, folded on by the rules of
`domains.planning.session` (an event the session's fold ignores changes nothing here either: a second
`SessionOpened`, a model call recorded twice, a tool call answered twice, a step started twice, a second end).

`SessionRows` holds the rows as loaded (plain dicts, one per table row) and folds events into them, remembering
which it changed and which transcript messages are new; `planning.sessions` loads and writes them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agentlog.domains.planning.events import (
    ModelAnswered,
    PlanCancelRequested,
    PlanCreated,
    PlanFinished,
    SessionOpened,
    StepCompleted,
    StepFailed,
    StepStarted,
    ToolAnswered,
    TurnAnalysed,
    TurnFinished,
    UserMessagePosted,
    session_stream,
)
from agentlog.eventstore import TypedEvent

Row = dict[str, Any]
TurnKey = tuple[str, str]
"""(session_id, turn_id)"""
StepKey = tuple[str, str]
"""(plan_id, step_id)"""
ExecutionKey = tuple[str, str, str, str]
"""(session_id, turn_id, thread, agent_id)"""


def session_of(item: TypedEvent) -> str:
    """The session a planning event is of ('' for another event)."""
    return str(getattr(item.event, "session_id", ""))


def on_its_session(item: TypedEvent) -> bool:
    """A session event on its own session's stream."""
    session_id = session_of(item)
    return session_id != "" and item.stream_id == session_stream(session_id)


def thread_of(step_id: str | None) -> str:
    """A thread's name in the tables: '' the turn's own, else the step's id (or `FINAL_THREAD`)."""
    return step_id or ""


@dataclass(frozen=True, slots=True)
class Keys:
    """The rows a batch may touch, to load before folding."""

    session_ids: list[str]
    turns: list[TurnKey]
    plan_ids: list[str]
    steps: list[StepKey]
    executions: list[ExecutionKey]


def keys_of(items: Iterable[TypedEvent]) -> Keys:
    session_ids: set[str] = set()
    turns: set[TurnKey] = set()
    plan_ids: set[str] = set()
    steps: set[StepKey] = set()
    executions: set[ExecutionKey] = set()
    for item in items:
        event, session_id = item.event, session_of(item)
        session_ids.add(session_id)
        if isinstance(event, UserMessagePosted):
            turns.add((session_id, event.message_id))
        elif (turn_id := getattr(event, "turn_id", None)) is not None:
            turns.add((session_id, turn_id))
        if isinstance(event, ModelAnswered | ToolAnswered):
            executions.add((session_id, event.turn_id, thread_of(event.step_id), event.agent_id))
        if (plan_id := getattr(event, "plan_id", None)) is not None:
            plan_ids.add(plan_id)
        if isinstance(event, StepStarted | StepCompleted | StepFailed):
            steps.add((event.plan_id, event.step_id))
    return Keys(sorted(session_ids), sorted(turns), sorted(plan_ids), sorted(steps), sorted(executions))


@dataclass
class SessionRows:
    sessions: dict[str, Row] = field(default_factory=dict)
    turns: dict[TurnKey, Row] = field(default_factory=dict)
    plans: dict[str, Row] = field(default_factory=dict)
    steps: dict[StepKey, Row] = field(default_factory=dict)
    executions: dict[ExecutionKey, Row] = field(default_factory=dict)
    messages: list[Row] = field(default_factory=list)
    """New transcript messages, in the log's order."""
    changed_turns: set[TurnKey] = field(default_factory=set)
    changed_plans: set[str] = field(default_factory=set)
    changed_steps: set[StepKey] = field(default_factory=set)
    changed_executions: set[ExecutionKey] = field(default_factory=set)

    def changed(self) -> dict[str, list[Row]]:
        """The rows to write, by table, each in key order."""
        return {
            "sessions": [self.sessions[key] for key in sorted(self.sessions)],
            "turns": [self.turns[key] for key in sorted(self.changed_turns)],
            "plans": [self.plans[key] for key in sorted(self.changed_plans)],
            "steps": [self.steps[key] for key in sorted(self.changed_steps)],
            "executions": [self.executions[key] for key in sorted(self.changed_executions)],
        }

    def evolve(self, item: TypedEvent) -> None:
        """Fold one event of a session's stream, in the log's order."""
        event, at, session_id = item.event, item.recorded_at, session_of(item)
        session = self.sessions.get(session_id)
        if session is None:
            session = self.sessions[session_id] = _new_session(session_id, at)
        if item.stream_version <= session["stream_version"]:
            return  # applied already
        session["stream_version"] = item.stream_version
        session["last_activity_at"] = at
        if isinstance(event, SessionOpened):
            if session["opened_at"] is None:
                session.update(opened_by=event.opened_by, opened_by_kind=event.opened_by_kind, title=event.title,
                               opened_at=at)  # fmt: skip
        elif isinstance(event, UserMessagePosted):
            self._asked(session, event, item)
        elif (turn := self.turns.get((session_id, getattr(event, "turn_id", "")))) is not None:
            self._in_turn(session, turn, item)
        elif (plan := self.plans.get(getattr(event, "plan_id", ""))) is not None and plan["session_id"] == session_id:
            self._in_plan(plan, item)

    def _asked(self, session: Row, event: UserMessagePosted, item: TypedEvent) -> None:
        key = (event.session_id, event.message_id)
        if key in self.turns:
            return
        self.turns[key] = {
            "session_id": event.session_id, "turn_id": event.message_id, "author": event.author,
            "content": event.content, "content_ref": event.content_ref, "strategy": None, "analysis": "",
            "plan_id": None, "status": "running", "answer": None, "answer_ref": None, "error": "",
            "asked_at": item.recorded_at, "finished_at": None, "state": {"threads": {}},
        }  # fmt: skip
        self.changed_turns.add(key)
        session["turns"] += 1
        self._message(item, event.message_id, None, None, "user", content=event.content,
                      content_ref=event.content_ref)  # fmt: skip

    def _in_turn(self, session: Row, turn: Row, item: TypedEvent) -> None:
        event, key = item.event, (turn["session_id"], turn["turn_id"])
        if isinstance(event, TurnAnalysed):
            if turn["strategy"] is not None:
                return
            turn.update(strategy=event.strategy, analysis=event.analysis)
        elif isinstance(event, PlanCreated):
            if turn["plan_id"] is not None or event.plan_id in self.plans:
                return
            turn["plan_id"] = event.plan_id
            self._planned(event, item.recorded_at)
        elif isinstance(event, ModelAnswered):
            if not self._model_answered(session, turn, event, item):
                return
        elif isinstance(event, ToolAnswered):
            if not self._tool_answered(session, turn, event, item):
                return
        elif isinstance(event, TurnFinished):
            if turn["status"] != "running":
                return
            turn.update(status=event.status, error=event.error, finished_at=item.recorded_at)
            if event.status == "done":
                turn.update(answer=event.content, answer_ref=event.content_ref)
            session["turns_done"] += event.status == "done"
            session["turns_failed"] += event.status == "error"
        else:
            return
        self.changed_turns.add(key)

    def _planned(self, event: PlanCreated, at: datetime) -> None:
        self.plans[event.plan_id] = {
            "plan_id": event.plan_id, "session_id": event.session_id, "turn_id": event.turn_id,
            "planner_id": event.planner_id, "status": "running", "steps": len(event.steps), "steps_completed": 0,
            "steps_failed": 0, "cancel_requested_by": None, "reason": "", "created_at": at, "finished_at": None,
        }  # fmt: skip
        self.changed_plans.add(event.plan_id)
        for step in event.steps:
            key = (event.plan_id, step.step_id)
            self.steps[key] = {
                "plan_id": event.plan_id, "step_id": step.step_id, "session_id": event.session_id,
                "title": step.title, "instructions": step.instructions, "depends_on": list(step.depends_on),
                "executor": step.executor, "agent_id": None, "status": "pending", "result": None,
                "result_ref": None, "error": "", "started_at": None, "finished_at": None,
            }  # fmt: skip
            self.changed_steps.add(key)

    def _model_answered(self, session: Row, turn: Row, event: ModelAnswered, item: TypedEvent) -> bool:
        thread = _thread_state(turn, event.step_id)
        if event.call_index != thread["calls"]:
            return False  # a call recorded twice (a resumed runtime) counts once
        thread["calls"] += 1
        execution = self._execution(event.session_id, event.turn_id, event.step_id, event.agent_id, item)
        execution.update(role=event.role, model=event.model, provider=event.provider)
        execution["model_calls"] += 1
        execution["prompt_tokens"] += event.prompt_tokens
        execution["completion_tokens"] += event.completion_tokens
        execution["duration_ms"] += event.duration_ms
        execution["message_count"] = max(execution["message_count"], event.message_count)
        session["model_calls"] += 1
        session["prompt_tokens"] += event.prompt_tokens
        session["completion_tokens"] += event.completion_tokens
        calls = [call.model_dump(mode="json") for call in event.tool_calls]
        self._message(item, event.turn_id, event.step_id, event.agent_id, "assistant", content=event.content,
                      content_ref=event.content_ref, tool_calls=calls)  # fmt: skip
        return True

    def _tool_answered(self, session: Row, turn: Row, event: ToolAnswered, item: TypedEvent) -> bool:
        thread = _thread_state(turn, event.step_id)
        if event.call_id in thread["answered"]:
            return False  # answered already: the first answer stands
        thread["answered"].append(event.call_id)
        execution = self._execution(event.session_id, event.turn_id, event.step_id, event.agent_id, item)
        execution["tool_calls"] += 1
        execution["refused_calls"] += event.refused
        session["tool_calls"] += 1
        self._message(item, event.turn_id, event.step_id, event.agent_id, "tool", content=event.content,
                      content_ref=event.content_ref, tool_call_id=event.call_id, tool=event.tool, ok=event.ok,
                      refused=event.refused, error=event.error)  # fmt: skip
        return True

    def _in_plan(self, plan: Row, item: TypedEvent) -> None:
        event, at = item.event, item.recorded_at
        if isinstance(event, PlanCancelRequested):
            if plan["cancel_requested_by"] is not None:
                return
            plan.update(cancel_requested_by=event.requested_by, reason=event.reason)
        elif isinstance(event, PlanFinished):
            if plan["finished_at"] is not None:
                return
            plan.update(status=event.status, reason=event.reason or plan["reason"], finished_at=at)
        elif isinstance(event, StepStarted | StepCompleted | StepFailed):
            step = self.steps.get((event.plan_id, event.step_id))
            if step is None or not _step_moves(step, event):
                return
            self.changed_steps.add((event.plan_id, event.step_id))
            if isinstance(event, StepStarted):
                step.update(status="running", agent_id=event.agent_id, started_at=at)
                return
            if isinstance(event, StepCompleted):
                step.update(status="completed", result=event.content, result_ref=event.content_ref, finished_at=at)
                plan["steps_completed"] += 1
            else:
                step.update(status="failed", error=event.error, finished_at=at)
                plan["steps_failed"] += 1
        else:
            return
        self.changed_plans.add(plan["plan_id"])

    def _execution(self, session_id: str, turn_id: str, step_id: str | None, agent_id: str, item: TypedEvent) -> Row:
        key = (session_id, turn_id, thread_of(step_id), agent_id)
        execution = self.executions.get(key)
        if execution is None:
            execution = self.executions[key] = {
                "session_id": session_id, "turn_id": turn_id, "thread": thread_of(step_id), "agent_id": agent_id,
                "role": "", "model": "", "provider": "", "model_calls": 0, "prompt_tokens": 0,
                "completion_tokens": 0, "duration_ms": 0.0, "tool_calls": 0, "refused_calls": 0,
                "message_count": 0, "first_at": item.recorded_at, "last_at": item.recorded_at,
            }  # fmt: skip
        execution["last_at"] = item.recorded_at
        self.changed_executions.add(key)
        return execution

    def _message(self, item: TypedEvent, turn_id: str, step_id: str | None, agent_id: str | None, role: str,
                 **fields: Any) -> None:  # fmt: skip
        self.messages.append({
            "session_id": session_of(item), "global_position": item.global_position,
            "message_index": 0, "turn_id": turn_id, "step_id": step_id, "agent_id": agent_id, "role": role,
            "content": "", "content_ref": None, "tool_calls": None, "tool_call_id": None, "tool": None,
            "ok": None, "refused": False, "error": "", "recorded_at": item.recorded_at, **fields,
        })  # fmt: skip


def _new_session(session_id: str, at: datetime) -> Row:
    return {
        "session_id": session_id, "opened_by": "", "opened_by_kind": "", "title": "", "opened_at": None,
        "turns": 0, "turns_done": 0, "turns_failed": 0, "last_activity_at": at, "prompt_tokens": 0,
        "completion_tokens": 0, "model_calls": 0, "tool_calls": 0, "stream_version": 0,
    }  # fmt: skip


def _thread_state(turn: Row, step_id: str | None) -> dict[str, Any]:
    threads: dict[str, dict[str, Any]] = turn["state"].setdefault("threads", {})
    return threads.setdefault(thread_of(step_id), {"calls": 0, "answered": []})


def _step_moves(step: Row, event: StepStarted | StepCompleted | StepFailed) -> bool:
    """The step transitions the session's fold takes: pending → running → completed, pending or running → failed."""
    if isinstance(event, StepStarted):
        return bool(step["status"] == "pending")
    if isinstance(event, StepCompleted):
        return bool(step["status"] == "running")
    return step["status"] in ("pending", "running")
