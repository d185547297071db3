"""The planner session's rule (`domains.planning.session`), the analysis reader and the local model, without a
database: driven by a simulated runtime over random plans, a session always ends, a step starts only after the
steps it depends on completed and never twice, a failed dependency fails its dependents, and a runtime that
restarts anywhere (the fold of what was recorded so far) does nothing twice."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentlog.domains.planning.events import (
    FINAL_THREAD,
    ModelAnswered,
    PlanCancelRequested,
    PlanCreated,
    PlanFinished,
    PlanStep,
    SessionOpened,
    StepCompleted,
    StepFailed,
    StepStarted,
    ToolAnswered,
    ToolCallRecord,
    TurnAnalysed,
    TurnFinished,
    UserMessagePosted,
)
from agentlog.domains.planning.session import (
    MAX_MODEL_CALLS,
    Action,
    Analyse,
    CallModel,
    CallTool,
    CompleteStep,
    FailStep,
    FinishPlan,
    FinishTurn,
    Session,
    StartStep,
    departures,
    next_action,
    validate_steps,
)
from agentlog.eventstore.events import Event
from agentlog.llm.chat import ChatMessage
from agentlog.planning.local_model import LocalChatModel
from agentlog.planning.prompts import ANALYSE, EXECUTOR, read_analysis
from agentlog.tools.catalogue import CATALOGUE, TOOLS

S = "s"
OPENED = SessionOpened(session_id=S, opened_by="ana", opened_by_kind="person")
ASKED = UserMessagePosted(session_id=S, message_id="m1", author="ana", author_kind="person", content="do it")


def answer(thread: str | None, index: int, calls: int = 0, agent: str = "planner-s") -> ModelAnswered:
    return ModelAnswered(
        session_id=S,
        turn_id="m1",
        step_id=thread,
        agent_id=agent,
        role="planner",
        call_index=index,
        tool_calls=[ToolCallRecord(call_id=f"c{thread}{index}{n}", tool="list_tasks") for n in range(calls)],
        content="" if calls else f"result of {thread}",
        provider="test",
        model="m",
    )


def simulate(events: list[Event], failing: set[str], tool_rounds: int) -> list[Event]:
    """What a runtime records for each action until there is none; `failing` steps' models fail."""
    for _ in range(1_000):
        session = Session.fold(S, events)
        action = next_action(session)
        if action is None:
            return events
        events.extend(_outcome(session, action, failing, tool_rounds))
    raise AssertionError("the session never ended")


def _outcome(session: Session, action: Action, failing: set[str], tool_rounds: int) -> list[Event]:
    if isinstance(action, Analyse):
        raise AssertionError("analysed already")
    if isinstance(action, CallModel):
        thread = action.thread_id
        if thread in failing:
            return [StepFailed(session_id=S, plan_id="p", step_id=thread, error="model failed")]
        calls = 1 if action.call_index < tool_rounds and thread != FINAL_THREAD else 0
        return [answer(thread, action.call_index, calls)]
    if isinstance(action, CallTool):
        return [
            ToolAnswered(
                session_id=S,
                turn_id="m1",
                step_id=action.thread_id,
                agent_id=action.agent_id,
                call_id=action.call.call_id,
                tool=action.call.tool,
                ok=True,
                content="[]",
            )
        ]
    if isinstance(action, StartStep):
        for dependency in action.step.spec.depends_on:
            assert action.plan.steps[dependency].status == "completed", "started before what it depends on"
        assert action.step.status == "pending"
        return [StepStarted(session_id=S, plan_id="p", step_id=action.step.spec.step_id, agent_id="x", executor=True)]
    if isinstance(action, CompleteStep):
        return [StepCompleted(session_id=S, plan_id="p", step_id=action.step.spec.step_id, content="ok")]
    if isinstance(action, FailStep):
        return [StepFailed(session_id=S, plan_id="p", step_id=action.step.spec.step_id, error=action.error)]
    if isinstance(action, FinishPlan):
        return [PlanFinished(session_id=S, plan_id="p", status=action.status, reason=action.reason)]
    assert isinstance(action, FinishTurn)
    return [TurnFinished(session_id=S, turn_id="m1", status=action.status, error=action.error)]


@st.composite
def plans(draw: st.DrawFn) -> list[PlanStep]:
    count = draw(st.integers(1, 8))
    steps = []
    for number in range(count):
        depends = draw(st.sets(st.integers(0, number - 1), max_size=3)) if number else set()
        steps.append(PlanStep(step_id=f"s{number}", title=f"step {number}", depends_on=[f"s{d}" for d in depends]))
    return steps


@settings(max_examples=150, deadline=None)
@given(plans(), st.data(), st.integers(0, 3))
def test_any_plan_ends_with_every_step_done_or_failed_by_its_dependencies(
    steps: list[PlanStep], data: st.DataObject, tool_rounds: int
) -> None:
    failing = data.draw(st.sets(st.sampled_from([s.step_id for s in steps])))
    start: list[Event] = [
        OPENED,
        ASKED,
        TurnAnalysed(session_id=S, turn_id="m1", planner_id="planner-s", strategy="complex"),
        PlanCreated(session_id=S, turn_id="m1", plan_id="p", planner_id="planner-s", steps=steps),
    ]
    events = simulate(list(start), failing, tool_rounds)
    session = Session.fold(S, events)
    turn = session.turns["m1"]
    assert turn.finished is not None and turn.plan is not None
    started = [e.step_id for e in events if isinstance(e, StepStarted)]
    assert len(started) == len(set(started)), "a step started twice"
    for step in turn.plan.steps.values():
        assert step.status in ("completed", "failed")
        needs_failed = any(turn.plan.steps[d].status == "failed" for d in step.spec.depends_on)
        if step.spec.step_id in failing or needs_failed:
            assert step.status == "failed"
        else:
            assert step.status == "completed"
    assert turn.finished.status == ("error" if any(s.status == "failed" for s in turn.plan.steps.values()) else "done")
    assert departures(S, events) == [], "the recorded session follows the rule"
    # A runtime restarted after any prefix of the log does exactly what remains: the same events, nothing twice.
    cut = data.draw(st.integers(len(start), len(events)))
    assert simulate(events[:cut], failing, tool_rounds) == events


def test_an_answer_recorded_twice_counts_once_and_a_cancel_ends_the_plan() -> None:
    events: list[Event] = [
        OPENED,
        ASKED,
        TurnAnalysed(session_id=S, turn_id="m1", planner_id="planner-s", strategy="complex"),
        PlanCreated(
            session_id=S, turn_id="m1", plan_id="p", planner_id="planner-s", steps=[PlanStep(step_id="a", title="a")]
        ),
        StepStarted(session_id=S, plan_id="p", step_id="a", agent_id="x", executor=True),
        answer("a", 0, calls=1),
        answer("a", 0, calls=1),
    ]
    session = Session.fold(S, events)
    assert len(session.turns["m1"].threads["a"].answers) == 1
    action = next_action(session)
    assert isinstance(action, CallTool) and action.call.call_id == "ca00"
    events.append(PlanCancelRequested(session_id=S, plan_id="p", requested_by="ana", reason="changed my mind"))
    action = next_action(Session.fold(S, events))
    assert isinstance(action, FailStep) and action.error == "the plan was cancelled: changed my mind"
    events.append(StepFailed(session_id=S, plan_id="p", step_id="a", error=action.error))
    action = next_action(Session.fold(S, events))
    assert isinstance(action, FinishPlan) and (action.status, action.reason) == ("cancelled", "changed my mind")
    events.append(PlanFinished(session_id=S, plan_id="p", status="cancelled", reason="changed my mind"))
    action = next_action(Session.fold(S, events))
    assert isinstance(action, FinishTurn) and action.status == "cancelled"


def test_a_model_that_keeps_calling_tools_is_stopped() -> None:
    events: list[Event] = [
        OPENED,
        ASKED,
        TurnAnalysed(session_id=S, turn_id="m1", planner_id="planner-s", strategy="tool"),
    ]
    for index in range(MAX_MODEL_CALLS):
        events.append(answer(None, index, calls=1))
        events.append(
            ToolAnswered(
                session_id=S, turn_id="m1", agent_id="planner-s", call_id=f"cNone{index}0", tool="list_tasks", ok=True
            )
        )
    action = next_action(Session.fold(S, events))
    assert isinstance(action, FinishTurn) and action.status == "error" and "after 8 calls" in action.error


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"step_id": "a", "title": "a"}, {"step_id": "a", "title": "b"}], "repeat"),
        (
            [{"step_id": "a", "title": "a", "depends_on": ["b"]}, {"step_id": "b", "title": "b", "depends_on": ["a"]}],
            "cycle",
        ),
        ([{"step_id": "a", "title": "a", "depends_on": ["zz"]}], "unknown step"),
        ([{"step_id": "final", "title": "a"}], "final"),
        ([{"step_id": "analysis", "title": "a"}], "analysis"),
        ([{"step_id": "bad id!", "title": "a"}], "step_id"),
        ([], "needs steps"),
    ],
)
def test_a_plan_that_does_not_hold_together_is_answered_with_tools_instead(
    steps: list[dict[str, Any]], message: str
) -> None:
    strategy, analysis, kept = read_analysis(json.dumps({"strategy": "complex", "steps": steps}))
    assert (strategy, kept) == ("tool", []) and message in analysis
    assert read_analysis("not json at all")[0] == "tool"
    assert read_analysis('```json\n{"strategy": "simple"}\n```') == ("simple", "", [])


def test_validate_steps_accepts_any_order_of_a_dag() -> None:
    steps = [PlanStep(step_id="b", title="b", depends_on=["a"]), PlanStep(step_id="a", title="a")]
    assert validate_steps(steps) == steps


def test_the_local_model_plans_the_lisbon_trip_and_an_executor_that_is_told_to_write_tries() -> None:
    model = LocalChatModel()
    text, calls = model.answer(
        (
            ChatMessage("system", ANALYSE),
            ChatMessage("user", "Create tasks for the Lisbon trip and schedule a reminder"),
        )
    )
    plan = json.loads(text)
    assert plan["strategy"] == "complex" and calls == []
    assert [(s["step_id"], s["executor"], s["depends_on"]) for s in plan["steps"]] == [
        ("s1", True, []),
        ("s2", False, ["s1"]),
        ("s3", False, ["s1"]),
    ]
    assert "Lisbon trip" in plan["steps"][0]["title"]
    _, calls = model.answer(
        (ChatMessage("system", EXECUTOR), ChatMessage("user", "Step s1: post a note about the launch to the chat"))
    )
    assert [name for _, name, _ in calls] == ["post_chat"]
    assert json.loads(model.answer((ChatMessage("system", ANALYSE), ChatMessage("user", "hi")))[0])["strategy"] == (
        "simple"
    )


def test_every_tool_is_declared_once_with_a_schema_and_a_permission() -> None:
    assert len(CATALOGUE) == len(TOOLS)
    for tool in TOOLS:
        schema = tool.schema()
        assert schema["type"] == "object" and tool.permission in ("read", "write")
        assert "title" not in schema
    reads = {tool.name for tool in TOOLS if tool.permission == "read"}
    assert reads == {
        "read_document",
        "read_registry",
        "list_tasks",
        "read_task",
        "read_chat",
        "read_inbox",
        "check_lock",
        "search_memories",
    }


def test_a_session_that_departs_from_the_rule_is_found() -> None:
    steps = [PlanStep(step_id="a", title="a"), PlanStep(step_id="b", title="b", depends_on=["a"])]
    start: list[Event] = [
        OPENED,
        ASKED,
        answer("analysis", 0),
        TurnAnalysed(session_id=S, turn_id="m1", planner_id="planner-s", strategy="complex"),
        PlanCreated(session_id=S, turn_id="m1", plan_id="p", planner_id="planner-s", steps=steps),
    ]
    good = simulate(list(start), set(), 1)
    assert departures(S, good) == []
    early = [*start, StepStarted(session_id=S, plan_id="p", step_id="b", agent_id="x", executor=True)]
    ((index, event, expected),) = departures(S, early)
    assert (index, event.event_type, type(expected).__name__) == (5, "StepStarted", "StartStep")
    cancelled_meanwhile = [*good[:7], PlanCancelRequested(session_id=S, plan_id="p", requested_by="ana"), *good[7:9]]
    assert departures(S, cancelled_meanwhile) == [], "an answer in flight when a cancel came follows the rule"
