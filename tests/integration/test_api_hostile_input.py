"""What a hostile review of the HTTP API sent, each reproduced over real connections (defects 6 to 12 of the review):
strings PostgreSQL cannot store (NUL, lone surrogates), bodies whose event is over the log's size limit, NaN and
Infinity, time zone files that are not IANA zones, and lax input (a boolean priority, a timeout of 1e-300 s, a
back-off base above its maximum, a `run_at` given as a number). Each is a clear 4xx naming the field, never a 500
and never silently changed data, and nothing is appended for any of them."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from agentlog.api.app import ApiLimits
from agentlog.domains.coordination.events import ChatPosted
from agentlog.domains.documents.events import PersonJoined
from agentlog.domains.schedules.events import ScheduleCreated, ScheduleSpec
from agentlog.domains.schedules.rules import firing_effect
from agentlog.eventstore import ANY, Event, EventStore, NewEvent
from agentlog.eventstore.errors import EventTooLargeError, UnstorableValueError
from agentlog.eventstore.postgres import recorder
from agentlog.eventstore.storable import MAX_EVENT_DATA_BYTES
from agentlog.handlers.schedules.scheduler import Scheduler
from tests.support.api import RunningApi, api_running
from tests.support.coordination import settled

TASK = {"kind": "task", "task": {"task_type": "report"}}


def loc_of(answer: httpx.Response) -> list[Any]:
    """The field a 422 names (`["body", "payload", "a"]`)."""
    assert answer.status_code == 422, answer.text
    loc: list[Any] = answer.json()["detail"][0]["loc"]
    return loc


def message_of(answer: httpx.Response) -> str:
    return str(answer.json()["detail"][0]["msg"])


async def send(client: httpx.AsyncClient, method: str, path: str, body: str) -> httpx.Response:
    """A body as the hostile client wrote it, byte for byte (httpx's own encoder would refuse NaN)."""
    return await client.request(method, path, content=body.encode(), headers={"content-type": "application/json"})


async def stored_size(store: EventStore, event: Event) -> int:
    """The event's size as the database measures it against the limit (`jsonb::text`, roomier than compact JSON)."""
    text = event.to_json().decode()
    return int(await store.pool.fetchval("SELECT octet_length($1::text::jsonb::text)", text))


async def ready(api: RunningApi) -> tuple[httpx.AsyncClient, httpx.AsyncClient, httpx.AsyncClient]:
    """A person, an admin and a registered agent `w1`, with a schedule `weekly` and a global budget to change."""
    person, admin, worker = api.client("person", "ada"), api.client("admin", "root"), api.client("agent", "w1")
    assert (await worker.put("/agents/w1", json={})).status_code == 201
    created = await person.post("/schedules", json={"schedule_id": "weekly", "cron": "0 9 * * 1", "action": TASK})
    assert created.status_code == 201, created.text
    assert (await admin.put("/budgets/global", json={"limit_tokens": 1_000})).status_code == 200
    async with asyncio.timeout(20):  # the scheduler reads the clock (a timer, fired) and waits for the first slot
        while await api.store.stream_version("schedule-weekly") < 4:
            await asyncio.sleep(0.02)
    await settled(api.store)
    return person, admin, worker


async def test_nul_and_lone_surrogates_anywhere_are_422_naming_the_field(store: EventStore) -> None:
    async with api_running(store) as api:
        person, admin, worker = await ready(api)
        before = await api.event_count()
        cases: list[tuple[httpx.AsyncClient, str, str, str, list[Any]]] = [
            (person, "POST", "/tasks", r'{"task_type": "x", "payload": {"a": "\u0000"}}', ["payload", "a"]),
            (person, "POST", "/tasks", r'{"task_type": "x\u0000"}', ["task_type"]),
            (person, "POST", "/tasks", r'{"task_type": "x", "payload": {"a": ["ok", "\ud800"]}}', ["payload", "a", 1]),
            (person, "POST", "/tasks", r'{"task_type": "\udc00x"}', ["task_type"]),
            (person, "POST", "/tasks", r'{"task_type": "x", "payload": {"k\u0000": 1}}', ["payload"]),
            (person, "POST", "/workflows", r'{"tasks": [{"task_type": "x"}, {"task_type": "y", "payload": '
                                           r'{"a": "\u0000"}}]}', ["tasks", 1, "payload", "a"]),
            (person, "POST", "/tasks/nope/cancel", r'{"reason": "\ud800"}', ["reason"]),
            (person, "POST", "/chat", r'{"body": "hi\u0000"}', ["body"]),
            (person, "POST", "/chat", r'{"body": "hi", "data": {"x": "\ud800"}}', ["data", "x"]),
            (person, "POST", "/messages", r'{"to": "w1", "body": "hi", "data": {"x": "a\u0000b"}}', ["data", "x"]),
            (worker, "PUT", "/agents/w1", r'{"metadata": {"x": "\u0000"}}', ["metadata", "x"]),
            (worker, "PUT", "/agents/w1", r'{"name": "\u0000"}', ["name"]),
            (worker, "POST", "/agents/w1/checkpoint", r'{"summary": "s", "state": {"a": "\u0000"}}', ["state", "a"]),
            (worker, "POST", "/agents/w1/memories", r'{"text": "\ud800"}', ["text"]),
            (worker, "POST", "/locks/src/a.py", r'{"reason": "\u0000"}', ["reason"]),
            (worker, "POST", "/operations", r'{"key": "k", "action": "a\u0000"}', ["action"]),
            (worker, "POST", "/operations", r'{"key": "k", "action": "a", "data": {"x": "\ud800"}}', ["data", "x"]),
            (admin, "PUT", "/budgets/global", r'{"limit_tokens": 5, "time_zone": "UTC\u0000"}', ["time_zone"]),
            (person, "POST", "/schedules", r'{"cron": "* * * * *", "action": {"kind": "chat", "body": "\u0000"}}',
             ["action", "body"]),
            (person, "PATCH", "/schedules/weekly", r'{"cron": "\u0000"}', ["cron"]),
        ]  # fmt: skip
        for client, method, path, body, field in cases:
            answer = await send(client, method, path, body)
            assert loc_of(answer) == ["body", *field], (path, body, answer.text)
            assert "NUL" in message_of(answer) or "surrogate" in message_of(answer), answer.text
        await settled(store)
        assert await api.event_count() == before, "a refused request appended something"


async def test_a_nul_in_a_query_or_a_path_is_422_not_500(store: EventStore) -> None:
    async with api_running(store) as api:
        person, _, worker = await ready(api)
        before = await api.event_count()
        for client, method, path, loc in (
            (person, "GET", "/memories?q=%00", ["query", "q"]),
            (person, "GET", "/memories?tag=a%00", ["query", "tag"]),
            (person, "GET", "/tasks?task_type=%00&status=queued", ["query", "task_type"]),
            (person, "GET", "/agents?capability=x&after=%00", ["query", "after"]),
            (person, "GET", "/tasks?%00=1", ["query"]),
            (worker, "DELETE", "/agents/w1?reason=%00", ["query", "reason"]),
            (person, "GET", "/claims/%00", ["path"]),
        ):
            answer = await client.request(method, path)
            assert loc_of(answer) == loc and "NUL" in message_of(answer), (path, answer.text)
        assert (await person.get("/memories?q=%ED%A0%80")).status_code == 200  # decoded as U+FFFD: harmless
        await settled(store)
        assert await api.event_count() == before, "a refused request appended something"


async def test_an_event_over_the_size_limit_is_413_naming_the_limit_and_payload_ref(store: EventStore) -> None:
    async with api_running(store) as api:
        person = api.client("person", "ada")
        await settled(store)
        before = await api.event_count()
        # Under the body limit (1 MiB), over the event's once the task's other fields are added.
        body = json.dumps({"task_type": "x", "payload": {"a": "x" * (MAX_EVENT_DATA_BYTES - 100)}})
        assert len(body) < ApiLimits().max_body_bytes
        answer = await send(person, "POST", "/tasks", body)
        assert answer.status_code == 413, answer.text[:300]
        assert answer.json()["limit_bytes"] == MAX_EVENT_DATA_BYTES
        assert f"{MAX_EVENT_DATA_BYTES:,}" in answer.json()["detail"] and "payload_ref" in answer.json()["detail"]
        whole = await send(person, "POST", "/tasks", json.dumps({"task_type": "x", "payload": {"a": "x" * 2_000_000}}))
        assert whole.status_code == 413 and "payload_ref" in whole.json()["detail"], whole.text
        await settled(store)
        assert await api.event_count() == before, "a refused request appended something"


async def test_every_route_carrying_big_json_answers_413(store: EventStore) -> None:
    async with api_running(store, ApiLimits(max_body_bytes=4 << 20)) as api:  # bodies the log cannot take in
        person, _, worker = await ready(api)
        before = await api.event_count()
        big = {"a": "x" * (2 << 20)}
        for client, method, path, body in (
            (person, "POST", "/tasks", {"task_type": "x", "payload": big}),
            (person, "POST", "/workflows", {"tasks": [{"task_type": "x", "payload": big}]}),
            (person, "POST", "/chat", {"body": "hi", "data": big}),
            (person, "POST", "/messages", {"to": "w1", "body": "hi", "data": big}),
            (person, "POST", "/agents/w1/inbox", {"body": "hi", "data": big}),
            (worker, "POST", "/agents/w1/checkpoint", {"summary": "s", "state": big}),
            (worker, "PUT", "/agents/w1", {"metadata": big}),
            (worker, "POST", "/operations", {"key": "k", "action": "a", "data": big}),
            (person, "POST", "/schedules", {"cron": "* * * * *", "action": {"kind": "task", "task": {
                "task_type": "x", "payload": big}}}),
            (person, "PATCH", "/schedules/weekly", {"action": {"kind": "chat", "body": "hi", "data": big}}),
        ):  # fmt: skip
            answer = await send(client, method, path, json.dumps(body))
            assert answer.status_code == 413, (path, answer.text[:300])
            assert answer.json()["limit_bytes"] == MAX_EVENT_DATA_BYTES, answer.text[:300]
        await settled(store)
        assert await api.event_count() == before, "a refused request appended something"


async def test_a_schedule_whose_firings_would_not_fit_in_the_log_is_refused(store: EventStore) -> None:
    """A template that fits in `ScheduleCreated` but not in the `TaskCreated` each firing makes (its id, its
    defaults) would stop the scheduler at the first slot: refused when the schedule is made."""
    async with api_running(store) as api:
        person = api.client("person", "ada")
        await settled(store)
        before = await api.event_count()
        action: dict[str, Any] = {"kind": "task", "task": {"task_type": "x", "payload": {"a": ""}}}
        spec = {"cron": "* * * * * *", "action": action}
        empty = ScheduleCreated(schedule_id="big", spec=ScheduleSpec.model_validate(spec), created_by="ada")
        action["task"]["payload"]["a"] = "x" * (MAX_EVENT_DATA_BYTES - await stored_size(store, empty))
        answer = await send(person, "POST", "/schedules", json.dumps({"schedule_id": "big", **spec}))
        assert answer.status_code == 413 and answer.json()["limit_bytes"] == MAX_EVENT_DATA_BYTES, answer.text[:300]
        assert answer.json()["detail"].startswith("action.task.payload: each firing's TaskCreated"), answer.text
        await settled(store)
        assert await api.event_count() == before, "a refused request appended something"


async def test_nan_and_infinity_are_422_naming_the_field(store: EventStore) -> None:
    async with api_running(store) as api:
        person, admin, worker = await ready(api)
        before = await api.event_count()
        for client, method, path, body, field in (
            (person, "POST", "/tasks", '{"task_type": "x", "payload": {"a": NaN}}', ["payload", "a"]),
            (person, "POST", "/tasks", '{"task_type": "x", "payload": {"a": [1, -Infinity]}}', ["payload", "a", 1]),
            (person, "POST", "/tasks", '{"task_type": "x", "payload": {"a": 1e999}}', ["payload", "a"]),
            (person, "POST", "/tasks", '{"task_type": "x", "execution_timeout_s": Infinity}', ["execution_timeout_s"]),
            (person, "POST", "/tasks", '{"task_type": "x", "heartbeat_interval_s": NaN}', ["heartbeat_interval_s"]),
            (person, "POST", "/chat", '{"body": "hi", "data": {"n": NaN}}', ["data", "n"]),
            (worker, "PUT", "/agents/w1", '{"metadata": {"load": Infinity}}', ["metadata", "load"]),
            (worker, "PUT", "/agents/w1", '{"heartbeat_timeout_s": NaN}', ["heartbeat_timeout_s"]),
            (worker, "POST", "/locks/src/b.py", '{"ttl_s": NaN}', ["ttl_s"]),
            (worker, "POST", "/agents/w1/checkpoint", '{"state": {"x": -Infinity}}', ["state", "x"]),
            (worker, "POST", "/operations", '{"key": "k", "action": "a", "window_s": NaN}', ["window_s"]),
            (admin, "PUT", "/budgets/global", '{"limit_tokens": NaN}', ["limit_tokens"]),
        ):  # fmt: skip
            answer = await send(client, method, path, body)
            assert loc_of(answer) == ["body", *field], (path, body, answer.text)
            assert "finite" in message_of(answer), answer.text
        await settled(store)
        assert await api.event_count() == before, "a refused request appended something"


NOT_ZONES = ("localtime", "posixrules", "Factory", "right/UTC", "posix/Europe/Paris", "Europe/../UTC")


async def test_only_iana_time_zones_are_taken_by_budgets_and_schedules(store: EventStore) -> None:
    async with api_running(store) as api:
        person, admin, _ = await ready(api)
        before = await api.event_count()
        for zone in NOT_ZONES:
            budget = await admin.put("/budgets/global", json={"limit_tokens": 5_000, "time_zone": zone})
            assert loc_of(budget) == ["body", "time_zone"], (zone, budget.text)
            made = await person.post("/schedules", json={"cron": "0 9 * * *", "time_zone": zone, "action": TASK})
            assert loc_of(made) == ["body", "time_zone"], (zone, made.text)
            changed = await person.patch("/schedules/weekly", json={"time_zone": zone})
            assert loc_of(changed) == ["body", "time_zone"], (zone, changed.text)
        await settled(store)
        assert await api.event_count() == before, "a refused request appended something"
        for zone in ("UTC", "Europe/Paris", "America/Argentina/Buenos_Aires", "Etc/GMT+5"):
            budget = await admin.put("/budgets/global", json={"limit_tokens": 5_000, "time_zone": zone})
            assert budget.status_code == 200 and budget.json()["time_zone"] == zone, budget.text
            changed = await person.patch("/schedules/weekly", json={"time_zone": zone})
            assert changed.status_code == 200 and changed.json()["spec"]["time_zone"] == zone, changed.text


async def test_lax_task_input_is_refused_naming_the_field(store: EventStore) -> None:
    async with api_running(store) as api:
        person, _, _ = await ready(api)
        before = await api.event_count()
        for body, field in (
            ({"priority": True}, ["priority"]),
            ({"priority": "5"}, ["priority"]),
            ({"priority": 5.0}, ["priority"]),
            ({"max_attempts": "3"}, ["max_attempts"]),
            ({"concurrency_limit": False}, ["concurrency_limit"]),
            ({"execution_timeout_s": 1e-300}, ["execution_timeout_s"]),
            ({"heartbeat_interval_s": 1e-300}, ["heartbeat_interval_s"]),
            ({"backoff_base_s": 1e-300}, ["backoff_base_s"]),
            ({"backoff_max_s": 0.001}, ["backoff_max_s"]),
            ({"backoff_base_s": 100, "backoff_max_s": 10}, ["backoff_base_s"]),
            ({"run_at": 1_700_000_000}, ["run_at"]),
            ({"run_at": 1.7e9}, ["run_at"]),
            ({"run_at": True}, ["run_at"]),
            ({"run_at": "2030-01-01"}, ["run_at"]),
            ({"run_at": "2030-01-01T09:00:00"}, ["run_at"]),
        ):
            answer = await person.post("/tasks", json={"task_type": "x", **body})
            assert loc_of(answer) == ["body", *field], (body, answer.text)
        both = await person.post("/tasks", json={"task_type": "x", "backoff_base_s": 100, "backoff_max_s": 10})
        assert "backoff_base_s" in message_of(both) and "backoff_max_s" in message_of(both), both.text
        flow = await person.post(
            "/workflows", json={"tasks": [{"task_type": "x"}, {"task_type": "y", "priority": "5"}]}
        )
        assert loc_of(flow) == ["body", "tasks", 1, "priority"], flow.text
        for task, field in (
            ({"priority": True}, "priority"),
            ({"heartbeat_interval_s": 1e-300}, "heartbeat_interval_s"),
            ({"execution_timeout_s": 1e-300}, "execution_timeout_s"),
        ):
            action = {"kind": "task", "task": {"task_type": "x", **task}}
            made = await person.post("/schedules", json={"cron": "0 9 * * *", "action": action})
            assert made.status_code == 422 and field in made.text, (task, made.text)
        await settled(store)
        assert await api.event_count() == before, "a refused request appended something"
        fine = {"priority": 10, "execution_timeout_s": 0.5, "heartbeat_interval_s": 0.2, "backoff_base_s": 5,
                "backoff_max_s": 5, "run_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}  # fmt: skip
        answer = await person.post("/tasks", json={"task_type": "x", **fine})
        assert answer.status_code == 201 and answer.json()["priority"] == 10, answer.text


async def test_the_store_refuses_what_it_cannot_keep_naming_the_field(store: EventStore) -> None:
    """The same rule for every writer, not only the API: the CLI's `append`, handlers, plugins."""
    joined = {"people_present": 1, "connection_id": "c", "server_id": "s"}
    for event, metadata, named in (
        (PersonJoined(user_id="a\x00", **joined), {}, "the payload of PersonJoined: user_id: holds a NUL"),
        (ChatPosted(message_id="m", author="a", author_kind="agent", body="hi", data={"x": ["\ud800"]}), {},
         "data.x.0: holds a lone"),
        (PersonJoined(user_id="ada", **joined), {"note": "\x00"}, "the metadata of PersonJoined: note: holds a NUL"),
        (PersonJoined(user_id="ada", **joined), {"\ud800": 1}, "the key '\\ud800' holds a lone surrogate"),
        (ChatPosted(message_id="m", author="a", author_kind="agent", body="hi", data={"x": {"y": math.nan}}), {},
         "data.x.y: nan is not a finite number"),
        (PersonJoined(user_id="ada", **joined), {"load": -math.inf}, "load: -inf is not a finite number"),
    ):  # fmt: skip
        with pytest.raises(UnstorableValueError) as refused:
            await store.append("document-x", [NewEvent(event, metadata=metadata)], ANY)
        assert named in str(refused.value), str(refused.value)
    big = ChatPosted(message_id="m", author="a", author_kind="agent", body="hi", data={"a": "x" * MAX_EVENT_DATA_BYTES})
    with pytest.raises(EventTooLargeError, match=f"up to {MAX_EVENT_DATA_BYTES:,} bytes") as too_large:
        await store.append("chat", [big], ANY)
    assert too_large.value.limit == MAX_EVENT_DATA_BYTES and too_large.value.size > MAX_EVENT_DATA_BYTES
    assert await store.read_all() == []


async def test_a_firing_over_the_size_limit_is_skipped_and_the_scheduler_goes_on(store: EventStore) -> None:
    """A schedule recorded before its firings were checked (or appended around the API) whose firing the log
    refuses: that slot's decision is skipped with the reason, and every other schedule keeps firing."""
    async with api_running(store) as api:

        def legacy(size: int) -> ScheduleCreated:
            action = {"kind": "task", "task": {"task_type": "big", "payload": {"a": "x" * size}}}
            spec = ScheduleSpec.model_validate({"cron": "* * * * * *", "action": action})
            return ScheduleCreated(schedule_id="legacy", spec=spec)

        empty = await stored_size(store, legacy(0))
        fired = firing_effect("legacy", legacy(0).spec, datetime(2026, 1, 1, tzinfo=UTC))
        assert await stored_size(store, fired) > empty, "a firing's task is no bigger than its schedule's event"
        await store.append("schedule-legacy", [legacy(MAX_EVENT_DATA_BYTES - empty)], ANY)  # it just fits
        person = api.client("person", "ada")
        fine = {"schedule_id": "fine", "cron": "* * * * * *", "action": {"kind": "chat", "body": "tick"}}
        assert (await person.post("/schedules", json=fine)).status_code == 201
        async with asyncio.timeout(30):
            while not await recorder.select_skipped(store.pool, Scheduler.name):
                await asyncio.sleep(0.1)
            while await store.pool.fetchval("SELECT count(*) FROM projections.chat WHERE body = 'tick'") < 3:
                await asyncio.sleep(0.1)
        skipped = await recorder.select_skipped(store.pool, Scheduler.name)
        assert "EventTooLargeError" in skipped[0].reason, skipped[0].reason
