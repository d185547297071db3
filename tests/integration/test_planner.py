"""The planner over the real API (uvicorn on a socket) and the log: plans, executors, tool calls, refusals, resume."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from agentlog.domains.planning.events import session_stream
from agentlog.domains.planning.session import Session
from agentlog.eventstore import EventStore
from agentlog.handlers import HandlerRunner
from agentlog.llm.chat import ChatChunk, ChatRequest, Profile
from agentlog.llm.openai_chat import OpenAICompatibleChat
from agentlog.planning.local_model import LocalChatModel
from agentlog.planning.runtime import PlannerRuntime, RuntimeSettings
from agentlog.tokens import issue
from agentlog.tools.catalogue import READ_ONLY_TOOLS
from tests.support.api import RunningApi, api_running
from tests.support.coordination import caught_up
from tests.support.fake_openai import Answer, FakeCall, FakeOpenAI

PROFILES = {
    "balanced": Profile("balanced", "agentlog-local-1", 0.7),
    "speed": Profile("speed", "agentlog-local-1", 0.3),
}
LISBON = "Create tasks for the Lisbon trip and schedule a reminder"


@asynccontextmanager
async def planner(
    api: RunningApi, provider: Any = None, profiles: dict[str, Profile] | None = None
) -> AsyncIterator[PlannerRuntime]:
    runtime = PlannerRuntime(
        api.store, RuntimeSettings(api.url, profiles or PROFILES), provider or LocalChatModel(),
        token=lambda agent, read_only: issue(api.keys, "agent", agent, ttl_s=3600, read_only=read_only),
        admin_token=lambda: issue(api.keys, "admin", "planner-runtime", ttl_s=3600),
    )  # fmt: skip
    runner = HandlerRunner(api.store, [runtime], lock_retry_interval=0.1)
    running = asyncio.create_task(runner.run())
    try:
        yield runtime
    finally:
        runner.stop.set()
        await running
        await runtime.shutdown()


async def ask(client: httpx.AsyncClient, session_id: str, content: str) -> list[tuple[str, dict[str, Any]]]:
    """Post and follow the turn's SSE stream to its end."""
    events: list[tuple[str, dict[str, Any]]] = []
    async with client.stream("POST", f"/sessions/{session_id}/messages", json={"content": content},
                             headers={"accept": "text/event-stream"}, timeout=60) as answer:  # fmt: skip
        assert answer.status_code == 200, await answer.aread()
        name = ""
        async for line in answer.aiter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    return events


async def session_of(store: EventStore, session_id: str) -> Session:
    recorded = await store.read_stream(session_stream(session_id))
    return Session.fold(session_id, [store.decode(r) for r in recorded])


async def test_a_request_is_planned_and_its_steps_done_by_an_executor_and_the_planner(store: EventStore) -> None:
    async with api_running(store) as api:
        person = api.client("person", "ana")
        async with planner(api):
            events = await ask(person, "trip", LISBON)
        names = [name for name, _ in events]
        assert names[0] == "analysis" and events[0][1]["strategy"] == "complex"
        assert names[-1] == "done", events[-1]
        plan = next(data for name, data in events if name == "plan_created")
        assert [s["step_id"] for s in plan["steps"]] == ["s1", "s2", "s3"]
        spawned = [data["agent_id"] for name, data in events if name == "executor_spawned"]
        assert len(spawned) == 1 and spawned[0].startswith("exec-")
        calls = [data for name, data in events if name == "tool_call"]
        assert {c["tool"] for c in calls if c["agent_id"] == spawned[0]} == {
            "search_memories",
            "list_tasks",
            "read_chat",
        }
        assert Counter(c["tool"] for c in calls if c["agent_id"] != spawned[0]) == {"create_task": 4}
        results = [data for name, data in events if name == "tool_result"]
        assert len(results) == len(calls) and all(r["ok"] for r in results)
        assert names.count("step_completed") == 3
        tasks = (await person.get("/tasks", params={"limit": 100})).json()
        assert Counter(t["task_type"] for t in tasks) == {"todo": 3, "reminder": 1, "plan-step": 1}
        (step_task,) = [t for t in tasks if t["task_type"] == "plan-step"]
        assert (step_task["status"], step_task["agent_id"]) == ("completed", spawned[0]), step_task
        assert step_task["result"]["text"].startswith("search_memories found"), step_task["result"]
        titles = {t["task_id"]: t for t in tasks}
        assert any("Lisbon trip" in json.dumps(t) for t in titles.values())
        registry = {a["agent_id"]: a for a in (await person.get("/agents", params={"state": "deregistered"})).json()}
        assert spawned[0] in registry, "an executor leaves the registry once its step is done"
        await caught_up(api.store)
        (listed,) = (await person.get("/sessions")).json()
        assert (listed["session_id"], listed["opened_by"], listed["turns_done"]) == ("trip", "ana", 1)
        assert listed["model_calls"] == 1 + 2 + 2 + 2 + 1  # analysis, each step's two calls, the final answer
        executions = (await person.get("/sessions/trip/executions")).json()
        by_thread = {(e["thread"], e["role"]): e for e in executions}
        assert by_thread[("s1", "executor")]["tool_calls"] == 3 and by_thread[("s1", "executor")]["model"]
        assert by_thread[("s2", "planner")]["tool_calls"] == 3
        cost = await api.store.pool.fetchrow("SELECT * FROM reports.session_costs WHERE session_id = 'trip'")
        assert cost is not None and cost["prompt_tokens"] > 0
        counts = {r["tool"]: r["calls"] for r in await api.store.pool.fetch("SELECT * FROM reports.tool_call_counts")}
        assert counts == {"search_memories": 1, "list_tasks": 1, "read_chat": 1, "create_task": 4}


async def test_an_executor_that_tries_to_write_is_refused_by_the_server_and_the_refusal_recorded(
    store: EventStore,
) -> None:
    async with api_running(store) as api:
        person = api.client("person", "ana")
        async with planner(api):
            events = await ask(person, "launch", "Ask an executor to post a note about the launch to the chat")
        assert events[-1][0] == "done"
        refused = [data for name, data in events if name == "tool_result" and data["refused"]]
        assert [r["tool"] for r in refused] == ["post_chat"]
        assert "read_only_token" in refused[0]["error"]
        recorded = await api.store.read_stream(f"refusals-{refused[0]['agent_id']}")
        assert [r.event_type for r in recorded] == ["ToolCallRefused"]
        refusal = recorded[0].data
        assert (refusal["tool"], refusal["session_id"], refusal["step_id"]) == ("post_chat", "launch", "s1")
        assert refusal["arguments"]["body"].startswith("Update on")
        chat = (await person.get("/chat")).json()
        assert chat["messages"] == [], "nothing reached the chat"
        await caught_up(api.store)
        (listed,) = (await person.get("/refusals")).json()
        assert (listed["tool"], listed["session_id"], listed["step_id"]) == ("post_chat", "launch", "s1")
        reported = await api.store.pool.fetch("SELECT tool, session_id FROM reports.refused_tool_calls")
        assert [tuple(r) for r in reported] == [("post_chat", "launch")]


async def test_a_read_only_token_cannot_write_through_any_route_and_each_refusal_is_recorded(store: EventStore) -> None:
    async with api_running(store) as api:
        token = issue(api.keys, "agent", "reader", ttl_s=600, read_only=True)
        async with httpx.AsyncClient(base_url=f"{api.url}/api/v1", headers={"authorization": f"Bearer {token}"}) as c:
            assert (await c.get("/agents")).status_code == 200
            for method, path, body in (("POST", "/chat", {"body": "hi"}), ("PUT", "/agents/reader", {}),
                                   ("POST", "/tools/post_chat", {"arguments": {"body": "hi"}}),
                                   ("DELETE", "/agents/reader", None)):  # fmt: skip
                answer = await c.request(method, path, json=body)
                assert answer.status_code == 403, (method, path, answer.text)
                assert answer.json()["code"] == "read_only_token"
            assert (await c.post("/tools/read_chat", json={"arguments": {}})).json()["result"]["messages"] == []
        refusals = [r.data["tool"] for r in await api.store.read_stream("refusals-reader")]
        assert refusals == [
            "POST /api/v1/chat",
            "PUT /api/v1/agents/reader",
            "post_chat",
            "DELETE /api/v1/agents/reader",
        ]


async def test_simple_and_tool_requests_are_answered_without_a_plan(store: EventStore) -> None:
    async with api_running(store) as api:
        person = api.client("person", "ana")
        async with planner(api):
            hello = await ask(person, "talk", "Hello there")
            listing = await ask(person, "talk", "Which tasks are in the queue?")
        assert [n for n, _ in hello] == ["analysis", "text", "done"] and hello[0][1]["strategy"] == "simple"
        assert listing[0][1]["strategy"] == "tool"
        assert [d["tool"] for n, d in listing if n == "tool_call"] == ["list_tasks"]
        assert listing[-1][0] == "done" and "list_tasks found 0" in listing[-1][1]["content"]


class StopsAfter:
    """The local model, until `calls` calls were made: then the runtime's process 'dies' in the next call."""

    provider = "local"

    def __init__(self, calls: int) -> None:
        self.inner = LocalChatModel()
        self.left = calls
        self.died = asyncio.Event()

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        if self.left == 0:
            self.died.set()
            await asyncio.Event().wait()  # hangs until the runtime is stopped, as a killed process would
        self.left -= 1
        async for chunk in self.inner.stream(request):
            yield chunk

    async def aclose(self) -> None:
        return None


async def test_a_plan_cut_off_midway_is_resumed_from_the_log_with_no_step_or_write_done_twice(
    store: EventStore,
) -> None:
    async with api_running(store) as api:
        person = api.client("person", "ana")
        dying = StopsAfter(calls=6)  # analysis, executor x2, create tasks, then cut off in the reminder's step
        async with planner(api, dying):
            posted = await person.post("/sessions/resume/messages", json={"content": LISBON})
            assert posted.status_code == 202
            await asyncio.wait_for(dying.died.wait(), 30)
        before = await session_of(api.store, "resume")
        (turn,) = before.turns.values()
        assert turn.finished is None and turn.plan is not None
        assert [s.status for s in turn.plan.steps.values()] == ["completed", "completed", "running"]
        async with planner(api):
            async with asyncio.timeout(30):
                while (await session_of(api.store, "resume")).turns[turn.turn_id].finished is None:
                    await asyncio.sleep(0.05)
        after = await session_of(api.store, "resume")
        done = after.turns[turn.turn_id]
        assert done.finished is not None and done.finished.status == "done"
        recorded = [api.store.decode(r) for r in await api.store.read_stream(session_stream("resume"))]
        started = Counter(e.step_id for e in recorded if e.event_type == "StepStarted")  # type: ignore[attr-defined]
        assert started == {"s1": 1, "s2": 1, "s3": 1}
        answered = Counter((e.step_id, e.call_id) for e in recorded if e.event_type == "ToolAnswered")  # type: ignore[attr-defined]
        assert set(answered.values()) == {1}
        tasks = (await person.get("/tasks", params={"limit": 100})).json()
        assert Counter(t["task_type"] for t in tasks) == {"todo": 3, "reminder": 1, "plan-step": 1}, "no write twice"
        assert {t["status"] for t in tasks if t["task_type"] == "plan-step"} == {"completed"}


async def test_the_planner_runs_on_an_openai_compatible_model_streaming_tool_calls(store: EventStore) -> None:
    plan = {"strategy": "complex", "analysis": "look, then answer",
            "steps": [{"step_id": "look", "title": "Look at the queue", "executor": True}]}  # fmt: skip
    async with FakeOpenAI(api_key="sk-test") as fake, api_running(store) as api:
        fake.script(
            Answer.say(json.dumps(plan), pieces=5),
            Answer.call(FakeCall("list_tasks", {"limit": 5}), FakeCall("read_chat", {"limit": 3}), interleave=True),
            Answer.say("The queue is empty and the chat is quiet."),
            Answer.say("Nothing is queued yet."),
        )
        provider = OpenAICompatibleChat(fake.base_url, "sk-test")
        profiles = {"balanced": Profile("balanced", "big-model", 0.7), "speed": Profile("speed", "small-model", 0.3)}
        async with planner(api, provider, profiles):
            events = await ask(api.client("person", "ana"), "q", "What is queued?")
        assert events[-1] == ("done", {"turn_id": events[-1][1]["turn_id"], "content": "Nothing is queued yet.",
                                       "content_ref": None})  # fmt: skip
        assert [d["tool"] for n, d in events if n == "tool_call"] == ["list_tasks", "read_chat"]
        assert all(d["ok"] for n, d in events if n == "tool_result")
        models = [request.body["model"] for request in fake.requests]
        assert models == ["big-model", "small-model", "small-model", "big-model"]
        executor_tools = {t["function"]["name"] for t in fake.requests[1].body["tools"]}
        assert executor_tools == {t.name for t in READ_ONLY_TOOLS}, "an executor is shown the read-only tools"
        replied = fake.requests[2].body["messages"]
        assert [m["role"] for m in replied[-3:]] == ["assistant", "tool", "tool"]
        assert fake.requests[1].body["temperature"] == 0.3


async def test_the_read_document_tool_reads_a_document_as_stored_and_honours_document_tokens(store: EventStore) -> None:
    from pycrdt import Doc, XmlElement, XmlFragment, XmlText

    document: Doc[Any] = Doc()
    fragment = document.get("default", type=XmlFragment)
    updates: list[bytes] = []
    document.observe(lambda event: updates.append(event.update))
    fragment.children.append(XmlElement("paragraph", contents=[XmlText("We fly to Lisbon on Friday.")]))
    fragment.children.append(XmlElement("paragraph", contents=[XmlText("Then Porto.")]))
    stored = "INSERT INTO agentlog.document_updates (document_id, body) SELECT 'trip', unnest($1::bytea[])"
    await store.pool.execute(stored, updates)
    async with api_running(store) as api:
        reader = api.client("agent", "reader")
        answer = await reader.post("/tools/read_document", json={"arguments": {"document_id": "trip"}})
        assert answer.status_code == 200, answer.text
        result = answer.json()["result"]
        assert (result["layout"], result["text"]) == ("tiptap", "We fly to Lisbon on Friday.\nThen Porto.")
        empty = (await reader.post("/tools/read_document", json={"arguments": {"document_id": "none"}})).json()
        assert (empty["result"]["layout"], empty["result"]["text"]) == ("empty", "")
        limited = issue(api.keys, "person", "ana", ttl_s=60, documents=("notes-*",))
        async with httpx.AsyncClient(base_url=f"{api.url}/api/v1", headers={"authorization": f"Bearer {limited}"}) as c:
            refused = await c.get("/documents/trip/text")
            assert refused.status_code == 403, refused.text


async def test_the_mark_place_tool_marks_a_place_in_a_stored_document_where_it_stands(store: EventStore) -> None:
    from pycrdt import Doc, XmlElement, XmlFragment, XmlText

    from agentlog.documents.updates import fold

    document: Doc[Any] = Doc()
    fragment = document.get("default", type=XmlFragment)
    updates: list[bytes] = []
    document.observe(lambda event: updates.append(event.update))
    fragment.children.append(XmlElement("paragraph", contents=[XmlText("Après São Paulo, Lisbon; then Lisbon again.")]))
    stored = "INSERT INTO agentlog.document_updates (document_id, body) SELECT 'trip', unnest($1::bytea[])"
    await store.pool.execute(stored, updates)
    async with api_running(store) as api:
        agent = api.client("agent", "marker")
        arguments = {"document_id": "trip", "text": "Lisbon", "latitude": 38.72, "longitude": -9.14}
        answer = await agent.post("/tools/mark_place", json={"arguments": arguments})
        assert answer.status_code == 200, answer.text
        assert answer.json()["result"]["marked"] == 2
        missing = await agent.post("/tools/mark_place", json={"arguments": {**arguments, "text": "Porto"}})
        assert missing.json()["result"]["marked"] == 0
        reader = issue(api.keys, "agent", "exec-x", ttl_s=60, read_only=True)
        async with httpx.AsyncClient(base_url=f"{api.url}/api/v1", headers={"authorization": f"Bearer {reader}"}) as c:
            refused = await c.post("/tools/mark_place", json={"arguments": arguments})
            assert refused.status_code == 403 and refused.json()["code"] == "read_only_token"
    rows = await store.pool.fetch(
        "SELECT id, body FROM agentlog.document_updates WHERE document_id = 'trip' ORDER BY id"
    )
    marked = fold([(row["id"], bytes(row["body"])) for row in rows])[0]
    (paragraph,) = marked.get("default", type=XmlFragment).children
    (text,) = paragraph.children
    runs = [
        (chunk, (attributes or {}).get("geo"))
        for chunk, *rest in text.diff()
        for attributes in [rest[0] if rest else None]
    ]
    assert [chunk for chunk, geo in runs if geo] == ["Lisbon", "Lisbon"], runs
    assert all(geo == {"name": "Lisbon", "lat": 38.72, "lon": -9.14} for _, geo in runs if geo)
