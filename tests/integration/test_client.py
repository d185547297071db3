"""The typed client (issue 12, item 3) against the API over real connections: every kind of call, typed errors,
POST retries that append once, and the feed iterator resuming by itself after the connection is cut."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from agentlog.client import (
    AgentlogClient,
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    PreconditionFailedError,
)
from agentlog.client.models import TaskCreate
from agentlog.eventstore import EventStore
from tests.support.api import api_running
from tests.support.coordination import settled


async def test_an_agent_loop_with_the_client(store: EventStore) -> None:
    async with api_running(store) as api:
        ada = AgentlogClient(api.url, api.token("agent", "ada"))
        bob = AgentlogClient(api.url, api.token("agent", "bob"))
        async with ada, bob:
            entry = await ada.register("ada", working_on="parser", capabilities=["python"])
            assert entry.stream_version == 1
            with pytest.raises(PreconditionFailedError) as stale:
                await ada.register("ada", if_match=0, status="busy")
            assert stale.value.current_version == 1
            await bob.register("bob")
            lock = await ada.acquire("src/./parser.py", ttl_s=60, reason="refactor")
            assert (lock.resource, lock.fencing_token) == ("src/parser.py", 1)
            with pytest.raises(ConflictError) as held:
                await bob.acquire("src/parser.py")
            assert held.value.holder == "ada"
            with pytest.raises(ForbiddenError):
                await bob.release("src/parser.py", lock.fencing_token, agent_id="ada")
            claim = await ada.claim("docs/**", reason="rewrite")
            await bob.send("ada", "can I have docs/?", thread_id="t1")
            await bob.post_chat("@ada standup in 5")
            await ada.save_checkpoint("ada", "halfway", {"step": 2})
            await ada.remember("ada", "The grammar lives in grammar.lark", tags=["parser"], kind="fact")
            await settled(store)
            hot = await ada.hot_start("ada")
            assert [m.kind for m in hot.unread] == ["direct", "mention"] and hot.checkpoint is not None
            assert [item.resource for item in hot.locks] == ["src/parser.py"] and hot.claims[0].pattern == "docs/**"
            assert (await ada.acknowledge("ada", [m.message_id for m in hot.unread])).acknowledged
            assert (await ada.inbox("ada")).unread == 0
            assert [m.text for m in await bob.recall("grammar")] == ["The grammar lives in grammar.lark"]
            await ada.hand_off(claim.claim_id, "bob", note="yours now", context={"left": ["intro"]})
            assert (await ada.release("src/parser.py", lock.fencing_token)).holder is None
            assert [e.event_type for e in await bob.lock_history("src/parser.py")][-1] == "LockReleased"
            await settled(store)
            assert (await bob.claims(holder="bob"))[0].context == {"left": ["intro"]}
            assert (await bob.agent("ada")).statistics.memories == 1


async def test_posts_are_retried_with_their_idempotency_key(store: EventStore) -> None:
    async with api_running(store) as api:
        real = httpx.AsyncHTTPTransport()
        failures = {"left": 1}

        class LosesTheFirstAnswer(httpx.AsyncBaseTransport):
            """Delivers the request, then drops the answer once: the client cannot know it was done."""

            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                answer = await real.handle_async_request(request)
                if request.method == "POST" and failures["left"]:
                    failures["left"] -= 1
                    await answer.aclose()
                    raise httpx.ReadError("connection lost", request=request)
                return answer

        async with AgentlogClient(api.url, api.token("agent", "ada"), transport=LosesTheFirstAnswer()) as ada:
            await ada.register("ada")
            posted = await ada.post_chat("exactly once")
            await settled(store)
            page = await ada.chat()
            assert [m.body for m in page.messages] == ["exactly once"]
            assert page.messages[0].message_id == posted.message_id
        await real.aclose()


async def test_a_post_told_its_first_try_is_under_way_is_tried_again(store: EventStore) -> None:
    async with api_running(store) as api:
        real = httpx.AsyncHTTPTransport()
        seen: list[str] = []

        class FirstTryStillRuns(httpx.AsyncBaseTransport):
            """Answers the first POST as the server does while the key's first request still runs."""

            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                if request.method == "POST":
                    seen.append(request.headers["idempotency-key"])
                    if len(seen) == 1:
                        busy = {"detail": "under way", "code": "idempotency_key_in_progress"}
                        return httpx.Response(409, json=busy, headers={"retry-after": "0"})
                return await real.handle_async_request(request)

        async with AgentlogClient(api.url, api.token("agent", "ada"), transport=FirstTryStillRuns()) as ada:
            await ada.register("ada")
            await ada.post_chat("after the wait")
            assert len(seen) == 2 and seen[0] == seen[1], "the retry must carry the same key"
        await real.aclose()


async def test_the_feed_iterator_reconnects_and_resumes(store: EventStore) -> None:
    async with api_running(store) as api, AgentlogClient(api.url, api.token("person", "ada")) as ada:
        for n in range(3):
            await ada.post_chat(f"m{n}")
        seen: list[str] = []
        async with asyncio.timeout(20), contextlib.aclosing(ada.feed(["chat"])) as feed:
            async for event in feed:
                seen.append(event.data["body"])
                if len(seen) == 2:
                    # Cut every connection the feed has: the iterator must reconnect and resume by itself.
                    await _cut_feed_connections(api.url)
                    for n in range(3, 6):
                        await ada.post_chat(f"m{n}")
                if len(seen) == 6:
                    break
        assert seen == [f"m{n}" for n in range(6)]


async def _cut_feed_connections(url: str) -> None:
    """Close the server side of every feed socket at once (as a restart of the server would)."""
    import gc

    from starlette.websockets import WebSocket, WebSocketState

    sockets = []
    for item in gc.get_objects():
        with contextlib.suppress(ReferenceError):
            if type(item) is WebSocket and item.application_state is WebSocketState.CONNECTED:
                sockets.append(item)
    for socket in sockets:
        with contextlib.suppress(RuntimeError):
            await socket.close(1012, "restarting")


async def test_tasks_and_budgets_with_the_client(store: EventStore) -> None:
    async with api_running(store) as api:
        admin = AgentlogClient(api.url, api.token("admin", "root"))
        worker = AgentlogClient(api.url, api.token("agent", "worker"))
        async with admin, worker:
            await worker.register("worker", capabilities=["docs"], metadata={"task_mode": "pull"})
            created = await worker.create_workflow([
                TaskCreate(task_id="outline", task_type="write", capabilities=["docs"]),
                TaskCreate(task_id="draft", task_type="write", depends_on=["outline"], payload={"words": 500}),
            ])  # fmt: skip
            assert [state.status for state in created] == ["queued", "queued"]
            with pytest.raises(InvalidRequestError) as cycle:
                await worker.create_task("write", task_id="again", depends_on=["again"])
            assert cycle.value.detail[0]["loc"] == ["body", "depends_on"]

            answer = await worker.claim_task(wait_s=10)
            assert answer.assignment is not None and answer.assignment.task_id == "outline"
            await worker.start_task("outline", answer.assignment.attempt)
            await worker.task_heartbeat("outline", 1, progress={"sections": 2})
            await worker.complete_task("outline", 1, result={"sections": 4})
            draft = await worker.claim_task(wait_s=10)
            assert draft.assignment is not None and draft.assignment.payload == {"words": 500}
            await worker.snooze_task("draft", draft.assignment.attempt, 60, reason="waiting for review")
            with pytest.raises(ConflictError) as stale:
                await worker.complete_task("draft", draft.assignment.attempt)
            assert stale.value.body["rule"] == "attempt-ended"
            assert (await worker.task("outline")).result == {"sections": 4}
            assert {(d.status, d.tasks) for d in await worker.queue_depth()} == {("completed", 1), ("waiting", 1)}
            assert (await admin.cancel_task("draft", "not needed")).status == "cancelled"

            await admin.set_budget("global", 1_000)
            await admin.set_budget("agent-worker", 300, reset_hour=6, time_zone="Europe/Paris")
            held = await worker.reserve_tokens(250, purpose="summary")
            assert {b.budget_id: b.remaining_tokens for b in held.budgets} == {"global": 750, "agent-worker": 50}
            with pytest.raises(ConflictError) as exceeded:
                await worker.reserve_tokens(100)
            assert (exceeded.value.code, exceeded.value.body["budget_id"]) == ("budget_exceeded", "agent-worker")
            settlement = await worker.settle_tokens(held.reservation_id, 120)
            assert {b.budget_id: b.remaining_tokens for b in settlement.budgets} == {"global": 880, "agent-worker": 180}
            spare = await worker.reserve_tokens(100)
            assert [b.remaining_tokens for b in await worker.release_tokens(spare.reservation_id)] == [180, 880]
            with pytest.raises(NotFoundError):
                await worker.settle_tokens(spare.reservation_id, 1)
            assert (await worker.budget("agent-worker")).time_zone == "Europe/Paris"
            await settled(store)
            assert [b.budget_id for b in await worker.budgets()] == ["agent-worker", "global"]
            bundle = await worker.hot_start("worker")
            assert {b.budget_id: b.remaining_tokens for b in bundle.budgets} == {"global": 880, "agent-worker": 180}
