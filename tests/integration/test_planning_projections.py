"""The planning and tool_refusals projections over a real log: a planner session of three requests (one planned,
with steps done by executors, a refused write, a failed tool call and a failed step; one answered directly that
ends in error; one planned and cancelled), recorded as the runtime records it (a model call and a tool answer
recorded twice by a resumed runtime among them), read back row by row and through every report view; and
rebuilds, batch by batch, that agree with what the live runner built."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

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
    ToolCallRefused,
    TurnAnalysed,
    TurnFinished,
    UserMessagePosted,
    refusals_stream,
    session_stream,
)
from agentlog.eventstore import ANY, EventStore, TypedEvent
from agentlog.eventstore.events import Event
from agentlog.eventstore.postgres import recorder
from agentlog.projections import installed_projections
from agentlog.projections.replay import rebuild, verify
from tests.support.hosting import hosted

PROJECTIONS = ("planning", "tool_refusals")
SESSION = "s1"
HOTELS_REF = "sha256:" + hashlib.sha256(b"a long list of hotels").hexdigest()
LAST_COMMITTED = """
SELECT transaction_id::text::bigint, global_position FROM agentlog.events
 ORDER BY transaction_id DESC, global_position DESC LIMIT 1
"""
ORDERED = {
    "planning_sessions": "SELECT * FROM projections.planning_sessions ORDER BY session_id",
    "planning_turns": "SELECT * FROM projections.planning_turns ORDER BY session_id, turn_id",
    "planning_plans": "SELECT * FROM projections.planning_plans ORDER BY plan_id",
    "planning_steps": "SELECT * FROM projections.planning_steps ORDER BY plan_id, step_id",
    "planning_messages": "SELECT * FROM projections.planning_messages ORDER BY global_position, message_index",
    "planning_executions": "SELECT * FROM projections.planning_executions ORDER BY 1, 2, 3, 4",
    "tool_refusals": "SELECT * FROM projections.tool_refusals ORDER BY global_position",
}


def answered(turn_id: str, step_id: str | None, agent_id: str, call_index: int, content: str = "",
             calls: tuple[tuple[str, str], ...] = (), role: str = "executor") -> ModelAnswered:  # fmt: skip
    return ModelAnswered(
        session_id=SESSION, turn_id=turn_id, step_id=step_id, agent_id=agent_id, role=role, call_index=call_index,
        content=content, tool_calls=[ToolCallRecord(call_id=c, tool=t, arguments={"q": c}) for c, t in calls],
        provider="gazetteer", model="g-1", prompt_tokens=100 + call_index, completion_tokens=10, duration_ms=5.0,
        message_count=2 + 2 * call_index,
    )  # fmt: skip


def tool(turn_id: str, step_id: str | None, agent_id: str, call_id: str, name: str, **fields: Any) -> ToolAnswered:
    return ToolAnswered(session_id=SESSION, turn_id=turn_id, step_id=step_id, agent_id=agent_id, call_id=call_id,
                        tool=name, **{"ok": True, "content": '{"found": 3}', **fields})  # fmt: skip


def planned_session() -> list[list[Event]]:
    """The session's events, one list per append, as the runtime records them."""
    steps = [
        PlanStep(step_id="weather", title="Weather in Lyon"),
        PlanStep(step_id="hotels", title="Hotels in Lyon", instructions="three, central"),
        PlanStep(step_id="bookings", title="Book one", depends_on=["weather", "hotels"], executor=False),
    ]
    return [
        [SessionOpened(session_id=SESSION, opened_by="ada", opened_by_kind="person", title="Trip")],
        [UserMessagePosted(session_id=SESSION, message_id="m1", author="ada", author_kind="person",
                           content="Plan a weekend in Lyon")],
        [TurnAnalysed(session_id=SESSION, turn_id="m1", planner_id="planner", strategy="complex", analysis="3 steps"),
         PlanCreated(session_id=SESSION, turn_id="m1", plan_id="p1", planner_id="planner", steps=steps)],
        [StepStarted(session_id=SESSION, plan_id="p1", step_id="weather", agent_id="exec-1", executor=True)],
        [answered("m1", "weather", "exec-1", 0, calls=(("c1", "search"),))],
        [tool("m1", "weather", "exec-1", "c1", "search")],
        [tool("m1", "weather", "exec-1", "c1", "search", content="again")],  # a resumed runtime: the first stands
        [answered("m1", "weather", "exec-1", 1, content="Sunny")],
        [answered("m1", "weather", "exec-1", 1, content="Sunny")],  # recorded twice: counted once
        [StepCompleted(session_id=SESSION, plan_id="p1", step_id="weather", content="Sunny")],
        [StepStarted(session_id=SESSION, plan_id="p1", step_id="hotels", agent_id="exec-2", executor=True)],
        [answered("m1", "hotels", "exec-2", 0, calls=(("c2", "write_file"),))],
        [tool("m1", "hotels", "exec-2", "c2", "write_file", ok=False, refused=True, content="",
              error="read-only executor")],
        [answered("m1", "hotels", "exec-2", 1, calls=(("c3", "search"),))],
        [tool("m1", "hotels", "exec-2", "c3", "search", ok=False, content="", error="timeout")],
        [answered("m1", "hotels", "exec-2", 2, content="Three hotels")],
        [StepCompleted(session_id=SESSION, plan_id="p1", step_id="hotels", content_ref=HOTELS_REF)],
        [StepCompleted(session_id=SESSION, plan_id="p1", step_id="hotels", content="late")],  # no longer running
        [StepStarted(session_id=SESSION, plan_id="p1", step_id="bookings", agent_id="planner", executor=False),
         StepFailed(session_id=SESSION, plan_id="p1", step_id="bookings", error="no booking tool")],
        [PlanFinished(session_id=SESSION, plan_id="p1", status="failed", reason="a step failed")],
        [answered("m1", FINAL_THREAD, "planner", 0, content="Go on Saturday", role="planner")],
        [TurnFinished(session_id=SESSION, turn_id="m1", status="done", content="Go on Saturday")],
        [SessionOpened(session_id=SESSION, opened_by="bob", opened_by_kind="agent", title="Not this")],  # ignored
        [UserMessagePosted(session_id=SESSION, message_id="m2", author="ada", author_kind="person",
                           content="And Paris?"),
         TurnAnalysed(session_id=SESSION, turn_id="m2", planner_id="planner", strategy="simple")],
        [answered("m2", None, "planner", 0, content="", role="planner")],
        [TurnFinished(session_id=SESSION, turn_id="m2", status="error", error="model unavailable")],
        [UserMessagePosted(session_id=SESSION, message_id="m3", author="ada", author_kind="person",
                           content="Plan Rome"),
         TurnAnalysed(session_id=SESSION, turn_id="m3", planner_id="planner", strategy="complex"),
         PlanCreated(session_id=SESSION, turn_id="m3", plan_id="p2", planner_id="planner",
                     steps=[PlanStep(step_id="flights", title="Flights")])],
        [PlanCancelRequested(session_id=SESSION, plan_id="p2", requested_by="ada", reason="changed my mind")],
        [PlanFinished(session_id=SESSION, plan_id="p2", status="cancelled"),
         TurnFinished(session_id=SESSION, turn_id="m3", status="cancelled")],
    ]  # fmt: skip


async def record(store: EventStore) -> None:
    for events in planned_session():
        await store.append(session_stream(SESSION), events, ANY)
    await store.append(refusals_stream("exec-2"), [
        ToolCallRefused(agent_id="exec-2", tool="write_file", arguments={"q": "c2"}, session_id=SESSION,
                        step_id="hotels", reason="read-only executor")])  # fmt: skip
    await store.append(refusals_stream("bob"), [
        ToolCallRefused(agent_id="bob", tool="POST /tasks", reason="reporting token")])  # fmt: skip


async def caught_up(store: EventStore, timeout: float = 20) -> None:
    row = await store.pool.fetchrow(LAST_COMMITTED)
    head = (0, 0) if row is None else (row[0], row[1])
    async with asyncio.timeout(timeout):
        for name in PROJECTIONS:
            while (await recorder.select_checkpoint(store.pool, name) or (0, 0)) < head:
                await asyncio.sleep(0.01)


async def dump(store: EventStore) -> dict[str, list[dict[str, Any]]]:
    return {table: [dict(row) for row in await store.pool.fetch(sql)] for table, sql in ORDERED.items()}


async def built_live(store: EventStore) -> dict[str, list[dict[str, Any]]]:
    async with hosted(store, [], PROJECTIONS):
        await record(store)
        await caught_up(store)
    return await dump(store)


async def test_a_planned_session_reads_back_row_by_row(store: EventStore) -> None:
    tables = await built_live(store)
    [session] = tables["planning_sessions"]
    assert {key: session[key] for key in ("opened_by", "opened_by_kind", "title", "turns", "turns_done",
                                          "turns_failed", "model_calls", "tool_calls")} == {
        "opened_by": "ada", "opened_by_kind": "person", "title": "Trip", "turns": 3, "turns_done": 1,
        "turns_failed": 1, "model_calls": 7, "tool_calls": 3,
    }  # fmt: skip
    assert (session["prompt_tokens"], session["completion_tokens"]) == (100 + 101 + 100 + 101 + 102 + 100 + 100, 70)
    turns = {row["turn_id"]: row for row in tables["planning_turns"]}
    assert [(t["status"], t["strategy"], t["plan_id"], t["answer"], t["error"]) for t in turns.values()] == [
        ("done", "complex", "p1", "Go on Saturday", ""), ("error", "simple", None, None, "model unavailable"),
        ("cancelled", "complex", "p2", None, ""),
    ]  # fmt: skip
    assert (turns["m1"]["author"], turns["m1"]["content"], turns["m1"]["analysis"]) == (
        "ada", "Plan a weekend in Lyon", "3 steps")  # fmt: skip
    assert all(turn["finished_at"] >= turn["asked_at"] for turn in turns.values())
    plans = {row["plan_id"]: row for row in tables["planning_plans"]}
    assert [(p["status"], p["steps"], p["steps_completed"], p["steps_failed"], p["cancel_requested_by"], p["reason"])
            for p in plans.values()] == [("failed", 3, 2, 1, None, "a step failed"),
                                         ("cancelled", 1, 0, 0, "ada", "changed my mind")]  # fmt: skip
    steps = {(row["plan_id"], row["step_id"]): row for row in tables["planning_steps"]}
    assert [(s["step_id"], s["status"], s["agent_id"], s["result"], s["result_ref"], s["error"])
            for s in steps.values()] == [
        ("bookings", "failed", "planner", None, None, "no booking tool"),
        ("hotels", "completed", "exec-2", "", HOTELS_REF, ""), ("weather", "completed", "exec-1", "Sunny", None, ""),
        ("flights", "pending", None, None, None, ""),
    ]  # fmt: skip
    bookings = steps["p1", "bookings"]
    assert (bookings["depends_on"], bookings["executor"]) == (["weather", "hotels"], False)
    assert steps["p1", "hotels"]["instructions"] == "three, central"

    messages = tables["planning_messages"]
    assert [(m["turn_id"], m["step_id"], m["role"], m["tool"] or "", m["refused"]) for m in messages] == [
        ("m1", None, "user", "", False),
        ("m1", "weather", "assistant", "", False), ("m1", "weather", "tool", "search", False),
        ("m1", "weather", "assistant", "", False),
        ("m1", "hotels", "assistant", "", False), ("m1", "hotels", "tool", "write_file", True),
        ("m1", "hotels", "assistant", "", False), ("m1", "hotels", "tool", "search", False),
        ("m1", "hotels", "assistant", "", False),
        ("m1", FINAL_THREAD, "assistant", "", False),
        ("m2", None, "user", "", False), ("m2", None, "assistant", "", False),
        ("m3", None, "user", "", False),
    ]  # fmt: skip
    assert messages[1]["tool_calls"] == [{"call_id": "c1", "tool": "search", "arguments": {"q": "c1"}}]
    assert (messages[2]["tool_call_id"], messages[2]["content"], messages[2]["ok"]) == ("c1", '{"found": 3}', True)
    assert (messages[7]["ok"], messages[7]["error"]) == (False, "timeout")
    assert messages[0]["tool_calls"] is None and messages[3]["tool_calls"] == []
    assert len({m["global_position"] for m in messages}) == len(messages)  # one message per event here

    executions = {(e["turn_id"], e["thread"], e["agent_id"]): e for e in tables["planning_executions"]}
    assert {key: (e["role"], e["model_calls"], e["tool_calls"], e["refused_calls"], e["message_count"])
            for key, e in executions.items()} == {
        ("m1", "weather", "exec-1"): ("executor", 2, 1, 0, 4), ("m1", "hotels", "exec-2"): ("executor", 3, 2, 1, 6),
        ("m1", FINAL_THREAD, "planner"): ("planner", 1, 0, 0, 2), ("m2", "", "planner"): ("planner", 1, 0, 0, 2),
    }  # fmt: skip
    hotels = executions["m1", "hotels", "exec-2"]
    assert (hotels["prompt_tokens"], hotels["duration_ms"], hotels["model"], hotels["provider"]) == (
        303, 15.0, "g-1", "gazetteer")  # fmt: skip
    assert hotels["first_at"] < hotels["last_at"]


async def test_the_report_views_add_up(store: EventStore) -> None:
    await built_live(store)
    [costs] = await store.pool.fetch("SELECT * FROM reports.session_costs")
    assert (costs["session_id"], costs["turns"], costs["prompt_tokens"], costs["completion_tokens"],
            costs["total_tokens"], costs["model_calls"], costs["tool_calls"], costs["refused_calls"],
            costs["duration_ms"]) == (SESSION, 3, 704, 70, 774, 7, 3, 1, 35.0)  # fmt: skip
    plans = {row["plan_id"]: dict(row) for row in await store.pool.fetch("SELECT * FROM reports.plan_costs")}
    assert {plan_id: (p["status"], p["prompt_tokens"], p["completion_tokens"], p["total_tokens"], p["model_calls"],
                      p["tool_calls"], p["refused_calls"], p["duration_ms"], p["agents"])
            for plan_id, p in plans.items()} == {
        "p1": ("failed", 604, 60, 664, 6, 3, 1, 30.0, 3), "p2": ("cancelled", 0, 0, 0, 0, 0, 0, 0.0, 0),
    }  # fmt: skip
    counts = [tuple(row) for row in await store.pool.fetch(
        "SELECT tool, calls, failed, refused, agents FROM reports.tool_call_counts")]  # fmt: skip
    assert counts == [("search", 2, 1, 0, 2), ("write_file", 1, 0, 1, 1)]
    refused = [dict(row) for row in await store.pool.fetch("SELECT * FROM reports.refused_tool_calls")]
    assert [(r["agent_id"], r["tool"], r["arguments"], r["session_id"], r["step_id"], r["reason"])
            for r in refused] == [
        ("bob", "POST /tasks", {}, None, None, "reporting token"),
        ("exec-2", "write_file", {"q": "c2"}, SESSION, "hotels", "read-only executor"),
    ]  # fmt: skip
    tool_refusals = await store.pool.fetch("SELECT event_id, agent_id FROM projections.tool_refusals")
    assert sorted(row["agent_id"] for row in tool_refusals) == ["bob", "exec-2"]


async def test_rebuilds_batch_by_batch_give_the_live_rows(store: EventStore) -> None:
    live = await built_live(store)
    installed = installed_projections().found
    for name in PROJECTIONS:
        assert (await verify(store, installed[name], batch_size=2)).differences == [], name
    for batch_size in (1, 3, 1000):
        for name in PROJECTIONS:
            await rebuild(store, installed[name], batch_size=batch_size)
        assert await dump(store) == live, batch_size


async def test_applying_a_batch_again_changes_nothing(store: EventStore) -> None:
    """The session rows remember the last event applied: a batch delivered twice is applied once."""
    live = await built_live(store)
    planning = installed_projections().found["planning"]
    recorded = await store.read_stream(session_stream(SESSION))
    events = [TypedEvent(store.decode(one), one) for one in recorded]
    async with store.pool.acquire() as connection, connection.transaction():
        await connection.execute("SET LOCAL search_path = projections")
        await planning.apply(connection, events)
    assert await dump(store) == live
