"""The planner attacked (a hostile review of issue 14's first slice): read-only tokens that wrote anyway, model
answers and providers that wedged a turn and billed it again and again, sessions that starved others, tool calls
without ids, leaked reservations, endless streams, session ownership, cancels, and refusals as a way to write.
Each test failed before its fix."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import websockets
from pycrdt import create_update_message

from agentlog.llm.chat import ChatChunk, ChatMessage, ChatRequest, Profile, ToolCallDelta, Usage, collect
from agentlog.llm.openai_chat import OpenAICompatibleChat, _chunk
from agentlog.llm.port import LLMProviderError
from agentlog.planning.prompts import ANALYSE, EXECUTOR
from agentlog.planning.runtime import planner_of
from agentlog.tokens import issue, rotate_key, signing_key
from tests.integration.test_document_server import FAST, keystrokes, log, stored_text  # noqa: F401
from tests.integration.test_planner import LISBON, planner
from tests.support.api import api_running
from tests.support.coordination import caught_up
from tests.support.documents import document_server, raw_client
from tests.support.scripted_model import Scripted, analysis, marker, session_of, wait_finished


# -- test_guard_bypass.py --------------------------------------------------------------------------------
async def test_read_only_token_in_query_string_writes_to_chat(store) -> None:
    async with api_running(store) as api:
        token = issue(api.keys, "person", "reader", ttl_s=600, read_only=True)
        async with httpx.AsyncClient(base_url=f"{api.url}/api/v1") as c:
            answer = await c.post("/chat", params={"token": token}, json={"body": "written by a read-only token"})
            print("query token:", answer.status_code, answer.text[:300])
            chat = (await c.get("/chat", params={"token": token})).json()
            print("chat:", chat)
        assert answer.status_code == 403, answer.text


async def test_read_only_token_with_a_second_authorization_header_writes(store) -> None:
    async with api_running(store) as api:
        token = issue(api.keys, "person", "reader", ttl_s=600, read_only=True)
        async with httpx.AsyncClient(base_url=f"{api.url}/api/v1") as c:
            headers = [("authorization", f"Bearer {token}"), ("authorization", "Bearer garbage")]
            answer = await c.post("/chat", headers=headers, json={"body": "written by a read-only token (2 headers)"})
            assert answer.status_code == 401 and "one Authorization header" in answer.text, answer.text
            assert (await c.get("/chat", params={"token": token})).json()["messages"] == []


async def test_read_only_token_with_a_non_bearer_guard_view(store) -> None:
    """The guard reads the last header; the route the first. Other spellings."""
    async with api_running(store) as api:
        token = issue(api.keys, "agent", "reader", ttl_s=600, read_only=True)
        async with httpx.AsyncClient(base_url=f"{api.url}/api/v1") as c:
            results = {}
            for label, headers in {
                "tab": [("authorization", f"Bearer\t{token}")],
                "lower": [("authorization", f"bearer {token}")],
                "double-space": [("authorization", f"Bearer  {token}")],
            }.items():
                r = await c.post("/agents/reader/heartbeat", headers=headers, json={})
                results[label] = (r.status_code, r.text[:120])
            print(results)


# -- test_guard_rotation.py ------------------------------------------------------------------------------
async def test_first_write_after_a_key_rotation_bypasses_the_read_only_guard(store) -> None:
    async with api_running(store) as api:
        await rotate_key(store.pool)  # `agentlog token rotate-key`, in another process
        other = await signing_key(store.pool)  # another process's keyring: signs with the new key
        token = issue(other, "person", "reader", ttl_s=600, read_only=True)
        await asyncio.sleep(1.1)  # the API refreshes its keys at most once a second
        async with httpx.AsyncClient(base_url=f"{api.url}/api/v1", headers={"authorization": f"Bearer {token}"}) as c:
            first = await c.post("/chat", json={"body": "written by a read-only token"})
            second = await c.post("/chat", json={"body": "again"})
        print("first:", first.status_code, first.text[:200], "second:", second.status_code)
        assert first.status_code == 403, first.text


# -- test_document_read_only.py --------------------------------------------------------------------------
async def test_read_only_agent_token_edits_any_document(log) -> None:  # noqa: F811
    async with document_server(log, room_limits=FAST) as served:
        keys = await signing_key(log.pool)
        # Exactly what the planner runtime issues an executor (hosting.py): kind agent, no doc claim, scope read.
        token = issue(keys, "agent", "exec-plan-abc-s1", ttl_s=600, read_only=True)
        with pytest.raises(websockets.exceptions.ConnectionClosedError) as closed:
            async with raw_client(served.url, "secret-plan", token) as client:
                await client.sync()
                for update in keystrokes("pwned"):
                    await client.send(create_update_message(update))
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
    assert await stored_text(log, "secret-plan") != "pwned", "a scope-read token wrote a document"


# -- test_runtime_stuck.py -------------------------------------------------------------------------------
def tool_turn(bad_calls):
    def answer(request, n):
        if marker(request) == ANALYSE:
            return analysis("tool"), [], (10, 5)
        return "", bad_calls, (10, 5)

    return answer


async def _run(store, bad_calls, seconds=8.0):
    async with api_running(store) as api:
        admin = api.client("admin", "root")
        assert (await admin.put("/budgets/global", json={"limit_tokens": 10_000_000})).status_code == 200
        person = api.client("person", "ana")
        model = Scripted(tool_turn(bad_calls))
        async with planner(api, model):
            assert (await person.post("/sessions/s/messages", json={"content": "list things"})).status_code == 202
            session = await wait_finished(api.store, "s", seconds)
        budget = (await admin.get("/budgets/global")).json()
        (turn,) = session.turns.values()
        print("model calls:", model.calls, "finished:", turn.finished, "budget:", budget)
        return model, turn, budget


async def test_a_tool_name_with_a_dot_wedges_the_turn(store) -> None:
    model, turn, _budget = await _run(store, [("c1", "web.search", {"q": "x"})])
    assert turn.finished is not None, f"turn never ends; the model was called {model.calls} times"


async def test_fifty_one_tool_calls_wedge_the_turn(store) -> None:
    model, turn, _budget = await _run(store, [(f"c{i}", "list_tasks", {}) for i in range(51)])
    assert turn.finished is not None, f"turn never ends; the model was called {model.calls} times"


async def test_negative_usage_wedges_the_turn(store) -> None:
    async with api_running(store) as api:
        person = api.client("person", "ana")
        model = Scripted(lambda r, n: ("hello", [], (-5, 3)))
        async with planner(api, model):
            await person.post("/sessions/neg/messages", json={"content": "hi"})
            session = await wait_finished(api.store, "neg", 8)
        (turn,) = session.turns.values()
        print("model calls:", model.calls, turn.finished)
        assert turn.finished is not None, f"turn never ends; the model was called {model.calls} times"


# -- test_runtime_starve.py ------------------------------------------------------------------------------
def wedging_answer(request, n):
    wedge = any("WEDGE" in m.content for m in request.messages if m.role == "user")
    if marker(request) == ANALYSE:
        return analysis("tool" if wedge else "simple"), [], (10, 5)
    if wedge:
        return "", [("c1", "web.search", {})], (10, 5)
    return "hello", [], (10, 5)


async def test_eight_wedged_sessions_starve_every_other_session(store) -> None:
    async with api_running(store) as api:
        person = api.client("person", "mallory")
        ana = api.client("person", "ana")
        model = Scripted(wedging_answer)
        async with planner(api, model):
            for i in range(8):
                await person.post(f"/sessions/w{i}/messages", json={"content": "WEDGE"})
            await asyncio.sleep(2)
            await ana.post("/sessions/innocent/messages", json={"content": "hello"})
            session = await wait_finished(api.store, "innocent", 15)
        (turn,) = session.turns.values()
        print("innocent finished:", turn.finished, "analysed:", turn.analysed)
        assert turn.finished is not None, "an unrelated person's turn is never even analysed"


# -- test_call_ids.py ------------------------------------------------------------------------------------
def answer(request, n):
    if marker(request) == ANALYSE:
        return analysis("tool"), [], (10, 5)
    answered = sum(1 for m in request.messages if m.role == "assistant")
    if answered == 0:
        return "", [(None, "list_tasks", {})], (10, 5)
    if answered == 1:
        return "", [(None, "read_chat", {})], (10, 5)
    return "done", [], (10, 5)


async def test_tool_calls_without_ids_in_two_answers(store) -> None:
    async with api_running(store) as api:
        person = api.client("person", "ana")
        await person.post("/chat", json={"body": "the chat has this line"})
        model = Scripted(answer)
        async with planner(api, model):
            await person.post("/sessions/ids/messages", json={"content": "tasks then chat"})
            session = await wait_finished(api.store, "ids", 20)
        (turn,) = session.turns.values()
        thread = turn.threads[None]
        ran = [t.tool for t in thread.tool_answers.values()]
        print("tools run:", ran, "answers:", [[c.tool for c in a.tool_calls] for a in thread.answers])
        last = model.requests[-1]
        tool_msgs = [(m.tool_call_id, m.content[:80]) for m in last.messages if m.role == "tool"]
        print("the model was told:", tool_msgs)
        assert "read_chat" in ran, "read_chat was asked for and never run"


# -- test_budgets.py -------------------------------------------------------------------------------------
async def test_a_tiny_global_budget_ends_the_turn_with_why(store) -> None:
    async with api_running(store) as api:
        admin, person = api.client("admin", "root"), api.client("person", "ana")
        await admin.put("/budgets/global", json={"limit_tokens": 100})
        async with planner(api):
            await person.post("/sessions/poor/messages", json={"content": LISBON})
            s = await wait_finished(api.store, "poor", 15)
        (turn,) = s.turns.values()
        budget = (await admin.get("/budgets/global")).json()
        print(
            "turn:",
            turn.finished.status if turn.finished else None,
            turn.finished.error if turn.finished else "",
            "reserved:",
            budget["reserved_tokens"],
            budget["open_reservations"],
        )
        assert turn.finished is not None and turn.finished.status == "error"
        assert budget["open_reservations"] == 0


async def test_an_executor_budget_too_low_fails_its_step(store) -> None:
    async with api_running(store) as api:
        admin, person = api.client("admin", "root"), api.client("person", "ana")
        # The planner's own budget is too small for the final answer after the steps.
        await admin.put(f"/budgets/agent-{planner_of('poor2')}", json={"limit_tokens": 3_000})
        async with planner(api):
            await person.post("/sessions/poor2/messages", json={"content": LISBON})
            s = await wait_finished(api.store, "poor2", 20)
        (turn,) = s.turns.values()
        print(
            "turn:",
            turn.finished,
            [(st.spec.step_id, st.status, st.error[:80]) for st in turn.plan.steps.values()] if turn.plan else None,
        )
        b = (await admin.get(f"/budgets/agent-{planner_of('poor2')}")).json()
        print("planner budget:", b["settled_tokens"], b["reserved_tokens"], b["open_reservations"])
        assert turn.finished is not None


class Boom:
    provider = "boom"
    calls = 0

    async def stream(self, request):
        self.calls += 1
        raise RuntimeError("the provider broke in a way that is not an LLMProviderError")
        yield  # pragma: no cover

    async def aclose(self):
        return None


async def test_an_unexpected_provider_exception_leaks_a_reservation_per_retry(store) -> None:
    async with api_running(store) as api:
        admin, person = api.client("admin", "root"), api.client("person", "ana")
        await admin.put("/budgets/global", json={"limit_tokens": 1_000_000})
        boom = Boom()
        async with planner(api, boom):
            await person.post("/sessions/leak/messages", json={"content": "hi"})
            s = await wait_finished(api.store, "leak", 8)
        budget = (await admin.get("/budgets/global")).json()
        print(
            "calls:",
            boom.calls,
            "reserved:",
            budget["reserved_tokens"],
            "open:",
            budget["open_reservations"],
            "turn finished:",
            next(iter(s.turns.values())).finished,
        )
        assert budget["open_reservations"] == 0


async def test_negative_usage_leaks_the_reservation(store) -> None:
    async with api_running(store) as api:
        admin, person = api.client("admin", "root"), api.client("person", "ana")
        await admin.put("/budgets/global", json={"limit_tokens": 1_000_000})
        model = Scripted(lambda r, n: ("hello", [], (-5, 3)))
        async with planner(api, model):
            await person.post("/sessions/neg/messages", json={"content": "hi"})
            await wait_finished(api.store, "neg", 8)
        budget = (await admin.get("/budgets/global")).json()
        print("neg calls:", model.calls, "reserved:", budget["reserved_tokens"], "open:", budget["open_reservations"])
        assert budget["open_reservations"] == 0


# -- test_model_garbage.py -------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["nul \x00 here", "lone \ud800 surrogate"])
async def test_model_text_the_log_cannot_keep(store, text) -> None:
    async with api_running(store) as api:
        person = api.client("person", "ana")
        model = Scripted(lambda r, n: (analysis("simple") if marker(r) == ANALYSE else text, [], (5, 5)))
        async with planner(api, model):
            await person.post("/sessions/g/messages", json={"content": "hi"})
            s = await wait_finished(api.store, "g", 8)
        (turn,) = s.turns.values()
        print(repr(text), "model calls:", model.calls, "finished:", turn.finished and turn.finished.status)
        assert turn.finished is not None


async def test_tool_arguments_with_a_nul(store) -> None:
    async with api_running(store) as api:
        person = api.client("person", "ana")
        model = Scripted(
            lambda r, n: (
                (analysis("tool"), [], (5, 5))
                if marker(r) == ANALYSE
                else ("", [("c1", "search_memories", {"query": "a\x00b"})], (5, 5))
                if n == 1
                else ("ok", [], (5, 5))
            )
        )
        async with planner(api, model):
            await person.post("/sessions/g2/messages", json={"content": "hi"})
            s = await wait_finished(api.store, "g2", 8)
        (turn,) = s.turns.values()
        print("nul args: model calls:", model.calls, "finished:", turn.finished and turn.finished.status)
        assert turn.finished is not None


async def test_unknown_tool_and_bad_arguments_are_answered_as_failures(store) -> None:
    async with api_running(store) as api:
        person = api.client("person", "ana")

        def answer(r, n):
            if marker(r) == ANALYSE:
                return analysis("tool"), [], (5, 5)
            if n == 1:
                return (
                    "",
                    [
                        ("c1", "drop_database", {}),
                        ("c2", "list_tasks", {"limit": 10_000, "bogus": 1}),
                        ("c3", "read_task", {"task_id": "../../agents"}),
                    ],
                    (5, 5),
                )
            return "ok", [], (5, 5)

        model = Scripted(answer)
        async with planner(api, model):
            await person.post("/sessions/g3/messages", json={"content": "hi"})
            s = await wait_finished(api.store, "g3", 10)
        (turn,) = s.turns.values()
        print(
            "answers:",
            [(t.tool, t.ok, t.error[:60]) for t in turn.threads[None].tool_answers.values()],
            turn.finished and turn.finished.status,
        )
        assert turn.finished is not None and turn.finished.status == "done"


# -- test_openai_garbage.py ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data",
    [
        '{"choices": [], "n": ' + "1" * 5000 + "}",  # int too long: ValueError, not JSONDecodeError
        "[" * 100_000 + "]" * 100_000,  # RecursionError
    ],
)
def test_a_chunk_the_parser_chokes_on_is_a_provider_error(data: str) -> None:
    try:
        _chunk(data)
    except Exception as error:
        print(type(error).__name__)
        assert isinstance(error, LLMProviderError) or type(error).__name__ == "_ChunkError", type(error)


class Args:
    provider = "x"

    def __init__(self, arguments: str) -> None:
        self.arguments = arguments

    async def stream(self, request):
        yield ChatChunk(tool_calls=(ToolCallDelta(0, "c", "list_tasks", self.arguments),))

    async def aclose(self):
        return None


@pytest.mark.parametrize("arguments", ['{"a": ' + "9" * 5000 + "}", '{"a":' + "[" * 100_000 + "]" * 100_000 + "}"])
async def test_tool_arguments_the_parser_chokes_on_are_a_provider_error(arguments: str) -> None:
    request = ChatRequest((ChatMessage("user", "x"),), Profile("p", "m"))
    with pytest.raises(LLMProviderError):
        await collect(Args(arguments), request)


# -- test_openai_endless.py ------------------------------------------------------------------------------
async def _serve(writer_body, handlers):
    async def handle(reader, writer):
        handlers.add(asyncio.current_task())
        try:
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            while True:
                data = writer_body()
                writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                await writer.drain()
                await asyncio.sleep(0.05)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_a_never_ending_stream_never_times_out() -> None:
    handlers: set[asyncio.Task[None]] = set()
    server = await _serve(lambda: b'data: {"choices":[{"delta":{"content":"' + b"x" * 10_000 + b'"}}]}\n\n', handlers)
    port = server.sockets[0].getsockname()[1]
    chat = OpenAICompatibleChat(f"http://127.0.0.1:{port}/v1", None, timeout_s=1)
    request = ChatRequest((ChatMessage("user", "hi"),), Profile("p", "m", max_tokens=10))
    try:
        with pytest.raises(LLMProviderError, match="ran past"):
            await asyncio.wait_for(collect(chat, request), 6)
        ended = True
    finally:
        await chat.aclose()
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()
    assert ended, "a 1 s timeout and max_tokens=10, and the call was still streaming after 6 s (~1 MB kept)"


# -- test_sessions_authz.py ------------------------------------------------------------------------------
async def test_two_people_opening_one_session_at_once_both_get_in(store) -> None:
    """The owner check is read-then-append with expected version ANY: both posts pass it."""
    async with api_running(store) as api:
        wins = 0
        for i in range(10):
            ana, bob = api.client("person", "ana"), api.client("person", "bob")
            a, b = await asyncio.gather(
                ana.post(f"/sessions/race{i}/messages", json={"content": "ana's"}),
                bob.post(f"/sessions/race{i}/messages", json={"content": "bob's"}),
            )
            s = await session_of(api.store, f"race{i}")
            authors = {t.asked.author for t in s.turns.values()}
            if a.status_code == b.status_code == 202 and authors == {"ana", "bob"}:
                wins += 1
                print(f"race{i}: owner {s.opened.opened_by}, turns by {authors}")
        assert wins == 0, f"{wins}/10 sessions hold a turn by someone who is not their owner"


async def test_a_person_cancels_another_persons_plan(store) -> None:
    from tests.integration.test_planner import LISBON, planner
    from tests.support.scripted_model import wait_finished

    async with api_running(store) as api:
        ana, bob = api.client("person", "ana"), api.client("person", "bob")
        async with planner(api):
            await ana.post("/sessions/anas/messages", json={"content": LISBON})
            for _ in range(100):
                s = await session_of(api.store, "anas")
                plan = next(iter(s.plans), None)
                if plan:
                    break
                await asyncio.sleep(0.05)
            refused_post = await bob.post("/sessions/anas/messages", json={"content": "mine now"})
            cancelled = await bob.post(f"/sessions/anas/plans/{plan}/cancel", json={"reason": "bob says no"})
            s = await wait_finished(api.store, "anas", 20)
        print(
            "bob post:",
            refused_post.status_code,
            "bob cancel:",
            cancelled.status_code,
            [t.finished.status for t in s.turns.values()],
        )
        assert cancelled.status_code == 403, "bob may not post to ana's session, but may cancel her plan"


async def test_an_agent_named_like_a_person_posts_into_her_session(store) -> None:
    async with api_running(store) as api:
        ana, agent_ana = api.client("person", "ana"), api.client("agent", "ana")
        await ana.post("/sessions/private/messages", json={"content": "my secret"})
        posted = await agent_ana.post("/sessions/private/messages", json={"content": "an agent's request"})
        print("agent 'ana' posting into person ana's session:", posted.status_code)
        assert posted.status_code == 403


# -- test_cancel.py --------------------------------------------------------------------------------------
class Blocking:
    provider = "blocking"

    def __init__(self) -> None:
        self.in_step = asyncio.Event()
        self.go = asyncio.Event()

    async def stream(self, request):
        if marker(request) == ANALYSE:
            steps = [
                {"step_id": "s1", "title": "look", "executor": True},
                {"step_id": "s2", "title": "more", "executor": True, "depends_on": ["s1"]},
            ]
            yield ChatChunk(text=analysis("complex", steps), usage=Usage(5, 5))
            return
        if marker(request) == EXECUTOR:
            self.in_step.set()
            await self.go.wait()
        yield ChatChunk(text="found nothing", usage=Usage(5, 5))

    async def aclose(self):
        return None


async def test_cancel_while_an_executor_step_runs(store) -> None:
    async with api_running(store) as api:
        ana = api.client("person", "ana")
        model = Blocking()
        async with planner(api, model):
            await ana.post("/sessions/c/messages", json={"content": "do it"})
            await asyncio.wait_for(model.in_step.wait(), 10)
            plan = next(iter((await session_of(api.store, "c")).plans))
            first = await ana.post(f"/sessions/c/plans/{plan}/cancel", json={})
            second = await ana.post(f"/sessions/c/plans/{plan}/cancel", json={})
            model.go.set()
            s = await wait_finished(api.store, "c", 10)
            third = await ana.post(f"/sessions/c/plans/{plan}/cancel", json={})
        (turn,) = s.turns.values()
        steps = {k: (v.status, v.agent_id) for k, v in turn.plan.steps.items()}
        await caught_up(api.store)
        registered = {a["agent_id"] for a in (await ana.get("/agents", params={"state": "registered"})).json()}
        print(
            "cancels:",
            first.status_code,
            second.status_code,
            third.status_code,
            "turn:",
            turn.finished.status,
            "steps:",
            steps,
            "still registered:",
            sorted(registered),
        )
        shown = (await ana.get("/sessions/c")).json()["turns"][0]["plan"]
        print("GET /sessions/c plan:", shown["status"], [(st["step_id"], st["status"]) for st in shown["steps"]])
        assert steps["s1"][1] not in registered, "the cancelled step's executor stays registered"
        assert steps["s1"][0] != "running", "a step of a cancelled plan shows as running for ever"


# -- test_refusal_amplification.py -----------------------------------------------------------------------
async def test_a_read_only_token_writes_megabytes_into_the_log_through_refusals(store) -> None:
    async with api_running(store) as api:
        token = issue(api.keys, "agent", "reader", ttl_s=600, read_only=True)
        junk = {"k": "x" * 900_000}
        async with httpx.AsyncClient(base_url=f"{api.url}/api/v1", headers={"authorization": f"Bearer {token}"}) as c:
            for _ in range(20):
                r = await c.post(
                    "/tools/create_task", json={"arguments": {"task_type": "t", "title": "t", "details": junk}}
                )
                assert r.status_code == 403
        size = await api.store.pool.fetchval(
            "SELECT sum(pg_column_size(data)) FROM agentlog.events WHERE event_type = 'ToolCallRefused'"
        )
        raw = await api.store.pool.fetchval(
            "SELECT sum(length(data::text)) FROM agentlog.events WHERE event_type = 'ToolCallRefused'"
        )
        print(f"20 refused calls: {raw / 1e6:.1f} MB of event data ({size / 1e6:.2f} MB stored)")
        assert raw < 1e6


async def test_a_plan_step_task_must_ask_for_an_executors_capability(store) -> None:
    """A `plan-step` task without one `executor:<id>` capability would be claimed by any executor in place of its own
    step's task, failing that step and staying assigned to it (a hostile review's finding)."""
    async with api_running(store) as api:
        person = api.client("person", "mallory")
        stray = await person.post("/tasks", json={"task_type": "plan-step"})
        assert stray.status_code == 422 and "executor:<agent id>" in stray.text, stray.text
        two = await person.post("/tasks", json={"task_type": "plan-step", "capabilities": ["executor:a", "x"]})
        assert two.status_code == 422
        own = await person.post("/tasks", json={"task_type": "plan-step", "capabilities": ["executor:a"]})
        assert own.status_code == 201, own.text


class FailsInSteps:
    """Plans one executor step, whose model call fails (a provider error): the step fails through the thread."""

    provider = "fails-in-steps"

    async def stream(self, request):
        if marker(request) == ANALYSE:
            yield ChatChunk(text=analysis("complex", [{"step_id": "s1", "title": "look", "executor": True}]),
                            usage=Usage(5, 5))
            return
        if marker(request) == EXECUTOR:
            raise LLMProviderError("the provider is down", provider=self.provider, model="m")
        yield ChatChunk(text="done", usage=Usage(5, 5))

    async def aclose(self):
        return None


async def test_a_step_whose_model_fails_ends_its_task_and_retires_its_executor(store) -> None:
    """A step that failed inside its thread (a provider error, a budget refused) used to be recorded failed without
    the step's task or its executor: the task stayed running and the executor registered."""
    async with api_running(store) as api:
        ana = api.client("person", "ana")
        async with planner(api, FailsInSteps()):
            await ana.post("/sessions/f/messages", json={"content": "do it"})
            session = await wait_finished(api.store, "f", 20)
        (turn,) = session.turns.values()
        assert turn.finished is not None and turn.finished.status == "error"
        step = turn.plan.steps["s1"]
        assert step.status == "failed" and "provider is down" in step.error
        await caught_up(api.store)
        (task,) = [t for t in (await ana.get("/tasks", params={"task_type": "plan-step"})).json()]
        assert task["status"] not in ("assigned", "running"), task
        registered = {a["agent_id"] for a in (await ana.get("/agents", params={"state": "registered"})).json()}
        assert step.agent_id not in registered
