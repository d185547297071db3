"""Status inference over a real log and real timers: a silent agent becomes idle, then offline, in the registry; the
next thing it does makes it active again; the registry's `last_active_at` is its last activity; replays agree."""

from __future__ import annotations

import asyncio

from agentlog.domains.activity.events import AgentStatusInferred, activity_stream
from agentlog.domains.coordination.events import AgentHeartbeat, AgentRegistered
from agentlog.domains.coordination.names import heartbeat_stream, member_stream
from agentlog.domains.tasks.events import TaskAssigned, TaskHeartbeat
from agentlog.eventstore import ANY, EventStore
from agentlog.eventstore.postgres import recorder
from agentlog.handlers.activity.status_keeper import StatusKeeper
from agentlog.handlers.decider import record_settings, verify_decider
from agentlog.projections import installed_projections
from agentlog.projections.replay import verify
from tests.support.hosting import hosted

PROJECTIONS = ("registry", "timers")
FAST = {"idle_after_s": 0.3, "offline_after_s": 0.6, "check_every_s": 0.1}


async def activity(store: EventStore, agent_id: str) -> tuple[str, object]:
    row = await store.pool.fetchrow(
        "SELECT activity, last_active_at FROM projections.registry WHERE agent_id = $1", agent_id
    )
    assert row is not None
    return row["activity"], row["last_active_at"]


async def wait_for_activity(store: EventStore, agent_id: str, wanted: str, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while (await store.pool.fetchval("SELECT activity FROM projections.registry WHERE agent_id = $1",
                                         agent_id)) != wanted:  # fmt: skip
            await asyncio.sleep(0.02)


async def inferred(store: EventStore, agent_id: str) -> list[str]:
    return [
        event.status
        for event in map(store.decode, await store.read_stream(member_stream(agent_id)))
        if isinstance(event, AgentStatusInferred)
    ]


async def test_a_silent_agent_goes_idle_then_offline_and_comes_back_active(store: EventStore) -> None:
    keeper = StatusKeeper(**FAST)
    assert await record_settings(store, keeper)
    async with hosted(store, [keeper], PROJECTIONS):
        await store.append(member_stream("ada"), [AgentRegistered(agent_id="ada")], 0)
        await store.append(member_stream("bob"), [AgentRegistered(agent_id="bob")], 0)
        await wait_for_activity(store, "ada", "active")
        # bob keeps working (task heartbeats count; a task assigned to him does not), ada says nothing
        working = asyncio.Event()

        async def bob_works() -> None:
            while not working.is_set():
                await store.append("task-t1", [TaskHeartbeat(task_id="t1", attempt=1, agent_id="bob")], ANY)
                await asyncio.sleep(0.05)

        bob = asyncio.create_task(bob_works())
        await wait_for_activity(store, "ada", "offline")
        assert await inferred(store, "ada") == ["idle", "offline"]
        registered, idle, offline = await store.read_stream(member_stream("ada"))
        assert (idle.recorded_at - registered.recorded_at).total_seconds() >= FAST["idle_after_s"]  # never early
        assert (offline.recorded_at - registered.recorded_at).total_seconds() >= FAST["offline_after_s"]
        assert store.decode(idle).since is not None  # type: ignore[attr-defined]
        assert (await activity(store, "bob"))[0] == "active"
        assert await inferred(store, "bob") == []
        working.set()
        await bob
        await store.append("task-t2", [TaskAssigned(task_id="t2", attempt=1, agent_id="ada")], ANY)
        await asyncio.sleep(0.2)
        assert (await activity(store, "ada"))[0] == "offline"  # done to ada, not by her
        beat = await store.append(heartbeat_stream("ada"), [AgentHeartbeat(agent_id="ada")], ANY)
        await wait_for_activity(store, "ada", "active")
        (recorded,) = await store.read_stream(heartbeat_stream("ada"), from_version=beat.stream_version)
        assert (await activity(store, "ada"))[1] == recorded.recorded_at
        await wait_for_activity(store, "ada", "idle")  # and silent again
        assert (await inferred(store, "ada"))[:3] == ["idle", "offline", "active"]
        timers = await store.read_stream(activity_stream("ada"))
        assert {event.event_type for event in timers} == {"TimerScheduled", "TimerFired"}
        registry = await store.pool.fetchrow("SELECT version FROM projections.registry WHERE agent_id = 'ada'")
        assert registry is not None
        assert registry["version"] == await store.stream_version(member_stream("ada"))  # the If-Match version
        checkpoint = await recorder.select_checkpoint(store.pool, keeper.name)
    assert checkpoint is not None
    assert await verify_decider(store, StatusKeeper(), until=checkpoint) == []  # settings come from the log
    assert (await verify(store, installed_projections().found["registry"])).differences == []
