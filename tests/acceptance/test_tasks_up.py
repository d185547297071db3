"""The task queue under `agentlog up` as operators meet it (issue 13): a worker process killed with SIGKILL
mid-task is replaced by a new attempt when its heartbeats stop, and its late completion is refused; two `up`
processes on one database assign each task once, and one of them killed mid-way loses nothing."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentlog.eventstore import EventStore
from tests.support.gazetteer import with_gazetteer_index
from tests.support.system import ROOT, RunningSystem, token_for

pytestmark = pytest.mark.slow


def api_of(system: RunningSystem) -> str:
    return system.document_url.replace("ws://", "http://").removesuffix("/doc")


async def client_for(system: RunningSystem, database_url: str, name: str, kind: str = "agent") -> httpx.AsyncClient:
    token = await token_for(database_url, name, kind)  # type: ignore[arg-type]
    return httpx.AsyncClient(base_url=f"{api_of(system)}/api/v1", headers={"authorization": f"Bearer {token}"},
                             timeout=30)  # fmt: skip


async def test_a_killed_worker_is_replaced_by_a_new_attempt_and_its_late_completion_refused(
    database_url: str, tmp_path: Path
) -> None:
    home = with_gazetteer_index(tmp_path / "home")
    system = RunningSystem(database_url, home, tmp_path / "up.log", manager_id="m1").start()
    worker: subprocess.Popen[str] | None = None
    try:
        async with await client_for(system, database_url, "ada", "person") as ada:
            spec = {"task_id": "crawl", "task_type": "crawl", "heartbeat_interval_s": 0.3, "backoff_base_s": 0.05,
                    "backoff_max_s": 0.1}  # fmt: skip
            assert (await ada.post("/tasks", json=spec)).status_code == 201
        token = await token_for(database_url, "w1", "agent")
        worker = subprocess.Popen(
            [sys.executable, "-m", "tests.support.task_worker", api_of(system), token, "w1"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert worker.stdout is not None
        first: dict[str, Any] = json.loads(await asyncio.wait_for(asyncio.to_thread(worker.stdout.readline), 60))
        assert (first["task_id"], first["attempt"]) == ("crawl", 1)
        await asyncio.sleep(1.0)  # beating: two heartbeat intervals pass and the attempt holds
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)

        async with await client_for(system, database_url, "w2") as w2, \
                await client_for(system, database_url, "w1") as w1:  # fmt: skip
            assert (await w2.put("/agents/w2", json={"metadata": {"task_mode": "pull"}})).status_code == 201
            second = None
            async with asyncio.timeout(30):
                while second is None:
                    second = (await w2.post("/task-claims", json={"wait_s": 2})).json()["assignment"]
            assert (second["task_id"], second["attempt"]) == ("crawl", 2)
            late = await w1.post("/tasks/crawl/complete", json={"attempt": 1, "result": {"by": "the dead worker"}})
            assert late.status_code == 409 and late.json()["rule"] == "stale-attempt", late.text
            done = await w2.post("/tasks/crawl/complete", json={"attempt": 2, "result": {"by": "w2"}})
            assert done.status_code == 200, done.text
        async with EventStore.open(database_url) as store:
            events = [store.decode(e) for e in await store.read_stream("task-crawl")]
        failed = [e for e in events if e.event_type == "TaskFailed"]
        assert [getattr(e, "cause") for e in failed] == ["heartbeat_timeout"]  # noqa: B009
        refused = [e for e in events if e.event_type == "TaskAttemptRefused"]
        assert [(getattr(e, "refused_type"), getattr(e, "attempt")) for e in refused] == [("TaskCompleted", 1)]  # noqa: B009
        assert events[-1].event_type == "TaskCompleted" and getattr(events[-1], "result") == {"by": "w2"}  # noqa: B009
    finally:
        if worker is not None:
            if worker.poll() is None:
                worker.kill()
            worker.wait(10)
            if worker.stdout is not None:
                worker.stdout.close()
        assert system.stop() == 0


TASKS = 40


async def test_two_ups_assign_each_task_once_and_one_killed_loses_nothing(database_url: str, tmp_path: Path) -> None:
    home1, home2 = with_gazetteer_index(tmp_path / "home1"), with_gazetteer_index(tmp_path / "home2")
    first = RunningSystem(database_url, home1, tmp_path / "m1.log", manager_id="m1").start()
    second = RunningSystem(database_url, home2, tmp_path / "m2.log", manager_id="m2").start()
    try:
        agents = [await client_for(first if n % 2 else second, database_url, f"a{n}") for n in range(4)]
        for n, agent in enumerate(agents):
            assert (await agent.put(f"/agents/a{n}", json={"metadata": {"max_concurrent_tasks": 3}})).status_code == 201
        async with await client_for(second, database_url, "ada", "person") as ada:
            workflow = {"tasks": [{"task_id": f"t{n}", "task_type": "noop", "heartbeat_interval_s": 30}
                                  for n in range(TASKS)]}  # fmt: skip
            assert (await ada.post("/workflows", json=workflow)).status_code == 201
        completed: set[str] = set()
        killed = False

        async def work(n: int, agent: httpx.AsyncClient) -> None:
            nonlocal killed
            while len(completed) < TASKS:
                try:
                    mine = (await agent.get("/tasks", params={"agent_id": f"a{n}", "status": "assigned"})).json()
                except httpx.TransportError:
                    await asyncio.sleep(0.1)  # this agent's `up` was the one killed: it keeps trying
                    continue
                for task in mine:
                    answer = await agent.post(f"/tasks/{task['task_id']}/complete", json={"attempt": task["attempt"]})
                    if answer.status_code == 200:
                        completed.add(task["task_id"])
                if len(completed) >= TASKS // 3 and not killed:
                    killed = True
                    first.stop(signal.SIGKILL)  # the dispatcher may have been running there: the other takes over
                await asyncio.sleep(0.05)

        survivors = [agent if n % 2 == 0 else await client_for(second, database_url, f"a{n}")
                     for n, agent in enumerate(agents)]  # fmt: skip
        async with asyncio.timeout(120):
            await asyncio.gather(*(work(n, agent) for n, agent in enumerate(survivors)))
        for agent in {*agents, *survivors}:
            await agent.aclose()
        async with EventStore.open(database_url) as store:
            rows = await store.pool.fetch(
                "SELECT stream_id, count(*) FILTER (WHERE event_type = 'TaskAssigned') AS assigned,"
                "       count(*) FILTER (WHERE event_type = 'TaskCompleted') AS completed"
                "  FROM agentlog.events WHERE stream_id LIKE 'task-%' GROUP BY stream_id"
            )
        assert len(rows) == TASKS
        assert all((row["assigned"], row["completed"]) == (1, 1) for row in rows), [dict(r) for r in rows]
    finally:
        for system in (first, second):
            if system.process is not None and system.process.poll() is None:
                system.stop()


async def test_schedules_across_a_restart_of_up_follow_their_catch_up_policy(database_url: str, tmp_path: Path) -> None:
    """Every two seconds, two schedules; `up` stopped for eight: `all` fires every slot missed (no gap, none twice),
    `none` records the missed slots and fires on from the next one."""
    home = with_gazetteer_index(tmp_path / "home")
    system = RunningSystem(database_url, home, tmp_path / "up.log", manager_id="m1").start()
    task = {"kind": "task", "task": {"task_type": "tick"}}
    try:
        async with await client_for(system, database_url, "ada", "person") as ada:
            for schedule_id, catch_up in (("every", "all"), ("recent", "none")):
                made = await ada.post("/schedules", json={"schedule_id": schedule_id, "cron": "*/2 * * * * *",
                                                          "action": task, "overlap": "allow_all",
                                                          "catch_up": catch_up, "grace_s": 1})  # fmt: skip
                assert made.status_code == 201, made.text
        await asyncio.sleep(5)
        assert system.stop() == 0
        await asyncio.sleep(8)
        system = RunningSystem(database_url, home, tmp_path / "up.log", manager_id="m1").start()
        await asyncio.sleep(6)
    finally:
        assert system.stop() == 0
    async with EventStore.open(database_url) as store:
        def slots(schedule_id: str) -> list[datetime]:
            return sorted(getattr(e, "slot") for e in events[schedule_id] if e.event_type == "ScheduleFired")  # noqa: B009

        events = {sid: [store.decode(e) for e in await store.read_stream(f"schedule-{sid}")]
                  for sid in ("every", "recent")}  # fmt: skip
        every = slots("every")
        assert len(every) == len(set(every)) >= 8, every
        assert all(b - a == timedelta(seconds=2) for a, b in pairwise(every)), "a slot was lost"
        recent = slots("recent")
        gaps = [b - a for a, b in pairwise(recent) if b - a > timedelta(seconds=2)]
        assert len(gaps) == 1 and gaps[0] >= timedelta(seconds=6), recent
        missed = [e for e in events["recent"] if e.event_type == "ScheduleSlotsMissed"]
        assert missed and sum(getattr(e, "count") for e in missed) >= 3  # noqa: B009
        tasks = await store.pool.fetchval("SELECT count(*) FROM agentlog.events WHERE event_type = 'TaskCreated'")
        assert tasks == len(every) + len(recent), "a firing without its task, or a task fired twice"
