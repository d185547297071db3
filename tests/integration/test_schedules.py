"""The scheduler over a real log, with the timer service and the projections hosted as `agentlog up` hosts them:
a six-field schedule fires every two seconds, creating tasks with ids derived from the slot; across a downtime
(hosting stopped, time passing, hosting again) each catch-up policy fires what it promises; two processes
(two stores on one database, each hosting the scheduler) fire each slot once; and the live decisions and the
projection agree with a refold of the log."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from datetime import timedelta
from typing import Any

from agentlog.domains.schedules import cron
from agentlog.domains.schedules.events import (
    ScheduleFired,
    ScheduleSlotBuffered,
    ScheduleSlotSkipped,
    ScheduleSlotsMissed,
    schedule_stream,
    slot_task_id,
)
from agentlog.domains.schedules.schedule import Schedule, create
from agentlog.domains.tasks.events import TaskAssigned, TaskCompleted, TaskCreated, TaskStarted, task_stream
from agentlog.eventstore import Event, EventStore
from agentlog.handlers.decider import verify_decider
from agentlog.handlers.schedules.scheduler import Scheduler
from agentlog.projections import installed_projections
from agentlog.projections.replay import verify
from tests.support.hosting import hosted

PROJECTIONS = ("schedules", "tasks", "timers")
EVERY_2S = "*/2 * * * * *"


def spec(**fields: Any) -> dict[str, Any]:
    return {"cron": EVERY_2S, "action": {"kind": "task", "task": {"task_type": "tick"}}, "overlap": "allow_all",
            "grace_s": 1.0, **fields}  # fmt: skip


async def events_of(store: EventStore, stream_id: str) -> list[Event]:
    return [store.decode(recorded) for recorded in await store.read_stream(stream_id)]


async def firings(store: EventStore, schedule_id: str) -> list[ScheduleFired]:
    return [e for e in await events_of(store, schedule_stream(schedule_id)) if isinstance(e, ScheduleFired)]


async def fired_when(store: EventStore, schedule_id: str, count: int, timeout: float = 20) -> list[ScheduleFired]:
    async with asyncio.timeout(timeout):
        while len(found := await firings(store, schedule_id)) < count:
            await asyncio.sleep(0.05)
    return found


async def create_schedule(store: EventStore, schedule_id: str, **fields: Any) -> None:
    await store.append(schedule_stream(schedule_id), create(Schedule(), schedule_id, spec(**fields)), 0)


async def test_a_schedule_fires_each_slot_creating_its_task_and_the_projection_follows(store: EventStore) -> None:
    async with hosted(store, [Scheduler()], PROJECTIONS):
        await create_schedule(store, "tick", catch_up="all")  # a slow wake-up on a busy machine still fires
        fired = await fired_when(store, "tick", 3)
        row = await store.pool.fetchrow("SELECT * FROM projections.tasks WHERE task_id = $1", fired[0].task_id)
        assert row is not None and row["task_type"] == "tick"
        position = await store.head()
    slots = [f.slot for f in fired]
    assert all(later - earlier == timedelta(seconds=2) for earlier, later in itertools.pairwise(slots))
    for firing in fired:
        assert firing.task_id == slot_task_id("tick", firing.slot)
        assert firing.decided_at is not None and timedelta(0) <= firing.decided_at - firing.slot < timedelta(seconds=5)
        created = await events_of(store, task_stream(firing.task_id))
        assert [type(e) for e in created] == [TaskCreated]
    schedule = await store.pool.fetchrow("SELECT * FROM projections.schedules WHERE schedule_id = 'tick'")
    assert schedule is not None and schedule["status"] == "active" and schedule["fired"] >= 3
    assert schedule["next_slot"] > schedule["last_fired_slot"]
    report = await store.pool.fetchrow("SELECT * FROM reports.schedules WHERE schedule_id = 'tick'")
    assert report is not None and report["cron"] == EVERY_2S
    assert await verify_decider(store, Scheduler(), until=position) == []
    assert (await verify(store, installed_projections().found["schedules"])).differences == []


async def test_a_chat_schedule_posts_to_the_chat_with_the_slots_id(store: EventStore) -> None:
    chat = {"kind": "chat", "body": "stand-up in five", "mentions": ["ada"], "data": {"room": "main"}}
    async with hosted(store, [Scheduler()], ("schedules", "timers", "chat", "inbox")):
        await create_schedule(store, "standup", action=chat)
        (fired,) = await fired_when(store, "standup", 1)
        async with asyncio.timeout(10):
            while (row := await store.pool.fetchrow("SELECT * FROM projections.chat WHERE message_id = $1",
                                                    fired.message_id)) is None:  # fmt: skip
                await asyncio.sleep(0.05)
    assert fired.message_id == slot_task_id("standup", fired.slot) and fired.task_id is None
    assert (row["author"], row["body"], row["mentions"]) == ("schedule standup", "stand-up in five", ["ada"])
    assert row["data"] == {"room": "main", "schedule_id": "standup", "slot": fired.slot.isoformat()}


async def test_a_downtime_is_caught_up_by_each_policy(store: EventStore) -> None:
    policies = {"none": {}, "last": {}, "all": {"catch_up_window_s": 60}}
    async with hosted(store, [Scheduler()], PROJECTIONS):
        for policy, fields in policies.items():
            await create_schedule(store, f"up-{policy}", catch_up=policy, **fields)
        for policy in policies:
            await fired_when(store, f"up-{policy}", 1)
    stopped_at = max([(await firings(store, f"up-{policy}"))[-1].slot for policy in policies])
    await asyncio.sleep(9.5)  # down: four or five slots pass with nothing running
    async with hosted(store, [Scheduler()], PROJECTIONS):
        for policy in policies:
            before = [f for f in await firings(store, f"up-{policy}") if f.slot <= stopped_at]
            await fired_when(store, f"up-{policy}", len(before) + 2)
    restart: dict[str, list[ScheduleFired]] = {}
    missed: dict[str, list[ScheduleSlotsMissed]] = {}
    for policy in policies:
        stream = await events_of(store, schedule_stream(f"up-{policy}"))
        after = [e for e in stream if isinstance(e, ScheduleFired) and e.slot > stopped_at and e.decided_at]
        first_reading = min(e.decided_at for e in after if e.decided_at is not None)
        restart[policy] = [e for e in after if e.decided_at == first_reading]  # decided at the restart's reading
        missed[policy] = [e for e in stream if isinstance(e, ScheduleSlotsMissed)]
    # none: at most the latest slot, and only if on time; the rest of the downtime's slots are one missed range
    assert len(restart["none"]) <= 1 and all(not f.catch_up for f in restart["none"])
    assert len(missed["none"]) == 1 and missed["none"][0].count >= 3
    # last: exactly one slot, the latest; those before it missed
    assert len(restart["last"]) == 1 and len(missed["last"]) == 1 and missed["last"][0].count >= 3
    assert missed["last"][0].last_slot < restart["last"][0].slot
    # all: every slot of the downtime fired at the restart, late, and none was missed
    assert missed["all"] == [] and len(restart["all"]) >= 4
    assert sum(f.catch_up for f in restart["all"]) >= 3
    fired_all = sorted(f.slot for f in await firings(store, "up-all"))
    assert fired_all == cron.slots_between(EVERY_2S, "UTC", fired_all[0] - timedelta(seconds=1), fired_all[-1], 1000)


async def test_a_running_task_is_not_overlapped_across_a_restart_and_a_buffered_slot_fires_after_it(
    store: EventStore,
) -> None:
    async with hosted(store, [Scheduler()], PROJECTIONS):
        await create_schedule(store, "skip", overlap="skip", catch_up="all")  # the downtime's slots meet the overlap
        await create_schedule(store, "buffer", overlap="buffer_one", catch_up="all")
        skip_first, buffer_first = (await fired_when(store, "skip", 1))[0], (await fired_when(store, "buffer", 1))[0]
        await asyncio.sleep(2.5)  # a slot passes while both tasks run (nobody takes them): skipped, buffered
    await asyncio.sleep(2.5)  # down
    async with hosted(store, [Scheduler()], PROJECTIONS):
        await asyncio.sleep(2.5)  # up again, the tasks still running: nothing fires
        assert len(await firings(store, "skip")) == 1 and len(await firings(store, "buffer")) == 1
        for firing in (skip_first, buffer_first):
            assert firing.task_id is not None
            stream, by = task_stream(firing.task_id), {"agent_id": "ada", "task_id": firing.task_id, "attempt": 1}
            await store.append(stream, [TaskAssigned(**by), TaskStarted(**by), TaskCompleted(**by)], 1)
        buffered_fired = (await fired_when(store, "buffer", 2))[1]  # at once, not at the next slot
        skip_next = (await fired_when(store, "skip", 2))[1]
        position = await store.head()
    buffer_stream = await events_of(store, schedule_stream("buffer"))
    buffered = next(e for e in buffer_stream if isinstance(e, ScheduleSlotBuffered))  # (its own task runs on)
    assert buffered_fired.buffered and buffered_fired.slot == buffered.slot == buffer_first.slot + timedelta(seconds=2)
    skipped = [e.slot for e in await events_of(store, schedule_stream("skip")) if isinstance(e, ScheduleSlotSkipped)]
    assert len(skipped) >= 2 and skip_first.slot < min(skipped) and max(skipped) < skip_next.slot
    assert await verify_decider(store, Scheduler(), until=position) == []


async def test_two_processes_fire_each_slot_once(store: EventStore, database_url: str) -> None:
    other_store = EventStore.open(database_url, notify_interval=0.001, poll_interval=0.2)
    async with other_store as other, contextlib.AsyncExitStack() as first:
        await first.enter_async_context(hosted(store, [Scheduler()], PROJECTIONS))
        async with hosted(other, [Scheduler()], PROJECTIONS):
            await create_schedule(store, "twice", catch_up="all")
            await fired_when(store, "twice", 3)
            await first.aclose()  # the first process stops: whichever was active, the other goes on
            fired = await fired_when(other, "twice", len(await firings(other, "twice")) + 3)
    slots = [f.slot for f in fired]
    assert len(slots) == len(set(slots)), "a slot fired twice"
    assert slots == cron.slots_between(EVERY_2S, "UTC", slots[0] - timedelta(seconds=1), slots[-1], 1000)
    for firing in fired:
        assert firing.task_id is not None
        created = [e for e in await events_of(store, task_stream(firing.task_id)) if isinstance(e, TaskCreated)]
        assert len(created) == 1, firing.task_id
