"""Schedules through the API and the typed client (issue 13 item 3): a schedule created at runtime fires its slots
as tasks with ids derived from the slot, pauses and resumes, changes, is deleted; bad cron expressions, time zones
and policies are refused naming the field, with nothing appended."""

from __future__ import annotations

import asyncio

import pytest

from agentlog.client import AgentlogClient, ConflictError, InvalidRequestError, NotFoundError
from agentlog.eventstore import EventStore
from tests.support.api import api_running
from tests.support.coordination import settled

TASK = {"kind": "task", "task": {"task_type": "report", "priority": 3}}


async def fired_tasks(store: EventStore) -> list[str]:
    rows = await store.pool.fetch("SELECT task_id FROM projections.tasks WHERE task_type = 'report' ORDER BY 1")
    return [row["task_id"] for row in rows]


async def test_a_schedule_made_at_runtime_fires_pauses_changes_and_is_deleted(store: EventStore) -> None:
    async with api_running(store) as api, AgentlogClient(api.url, api.token("person", "ada")) as ada:
        made = await ada.create_schedule("*/2 * * * * *", TASK, schedule_id="reports", overlap="allow_all",
                                         time_zone="Europe/Paris")  # fmt: skip
        assert (made.status, made.stream_version) == ("active", 1)
        with pytest.raises(ConflictError):
            await ada.create_schedule("* * * * *", TASK, schedule_id="reports")
        async with asyncio.timeout(30):
            while len(await fired_tasks(store)) < 2:
                await asyncio.sleep(0.1)
        first = await fired_tasks(store)
        assert all(task_id.startswith("reports") or "reports" in task_id for task_id in first), first

        paused = await ada.pause_schedule("reports", "maintenance")
        assert paused.status == "paused"
        await asyncio.sleep(0.5)  # a firing decided before the pause may still land
        before = len(await fired_tasks(store))
        await asyncio.sleep(4.5)
        assert len(await fired_tasks(store)) == before, "a paused schedule fired"
        assert (await ada.resume_schedule("reports")).status == "active"
        async with asyncio.timeout(30):
            while len(await fired_tasks(store)) <= before:
                await asyncio.sleep(0.1)

        changed = await ada.change_schedule("reports", cron="0 3 * * *")
        assert changed.spec is not None and changed.spec.cron == "0 3 * * *"
        await settled(store)
        row = await ada.schedule("reports")
        assert row.cron == "0 3 * * *" and row.next_slot is not None and row.fired >= 3
        assert [s.schedule_id for s in await ada.schedules()] == ["reports"]
        assert (await ada.delete_schedule("reports")).status == "deleted"
        with pytest.raises(NotFoundError):
            await ada.pause_schedule("reports")


async def test_bad_schedules_are_refused_naming_the_field(store: EventStore) -> None:
    async with api_running(store) as api, AgentlogClient(api.url, api.token("person", "ada")) as ada:
        http = api.client("person", "ada")
        await settled(store)
        before = await api.event_count()
        for body, named in (
            ({"cron": "61 * * * *", "action": TASK}, "cron"),
            ({"cron": "* * *", "action": TASK}, "cron"),
            ({"cron": "* * * * *", "time_zone": "Mars/Olympus", "action": TASK}, "time_zone"),
            ({"cron": "* * * * *", "action": TASK, "overlap": "sometimes"}, "overlap"),
            ({"cron": "* * * * *", "action": {"kind": "task", "task": {"task_type": "x", "priority": 11}}},
             "priority"),
            ({"cron": "* * * * *", "action": {"kind": "email"}}, "action"),
        ):  # fmt: skip
            answer = await http.post("/schedules", json=body)
            assert answer.status_code == 422, (body, answer.text)
            assert named in answer.text, (body, answer.text)
        await ada.create_schedule("0 9 * * 1-5", TASK, schedule_id="weekdays")
        with pytest.raises(InvalidRequestError) as refused:
            await ada.change_schedule("weekdays", cron="not cron")
        assert "cron" in str(refused.value.detail)
        with pytest.raises(InvalidRequestError):
            await ada.change_schedule("weekdays", colour="blue")
        await settled(store)
        types = [event.event_type for event in await store.read_stream("schedule-weekdays")]
        assert types.count("ScheduleCreated") == 1 and "ScheduleChanged" not in types, types
        others = await store.pool.fetchval(
            "SELECT count(*) FROM agentlog.events WHERE stream_id <> 'schedule-weekdays'"
        )
        assert others == before, "a refused schedule appended something"


async def test_schedules_are_peoples_an_agent_reads_them_without_what_they_carry(store: EventStore) -> None:
    """A schedule's template may carry secrets (an API key in a task's payload) and fires tasks and posts in
    people's names: an agent's token reads schedules without the template's payload or data, and may not create,
    change, pause, resume or delete one (it could rewrite a person's schedule)."""
    secret = {"kind": "task", "task": {"task_type": "mail", "payload": {"api_key": "sk-hunter2"}}}
    async with api_running(store) as api:
        person, agent = api.client("person", "ada"), api.client("agent", "ada")
        assert (await agent.put("/agents/ada", json={})).status_code == 201
        made = await person.post("/schedules", json={"schedule_id": "s1", "cron": "0 9 * * *", "action": secret})
        assert made.status_code == 201, made.text
        await settled(store)
        before = await api.event_count()
        for answer in (await agent.get("/schedules/s1"), await agent.get("/schedules")):
            assert answer.status_code == 200 and "hunter2" not in answer.text, answer.text
        assert "action.task.payload" in (await agent.get("/schedules/s1")).json()["withheld"]
        assert "hunter2" in (await person.get("/schedules/s1")).text
        for refused in (
            await agent.post("/schedules", json={"schedule_id": "s2", "cron": "0 9 * * *", "action": secret}),
            await agent.patch("/schedules/s1", json={"cron": "0 10 * * *"}),
            await agent.post("/schedules/s1/pause", json={}),
            await agent.post("/schedules/s1/resume"),
            await agent.delete("/schedules/s1"),
        ):
            assert refused.status_code == 403, refused.text
        assert await api.event_count() == before
