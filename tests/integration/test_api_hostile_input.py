"""What a hostile review of the HTTP API sent, each reproduced over real connections (defects 6 to 12 of the review):
strings PostgreSQL cannot store (NUL, lone surrogates), bodies whose event is over the log's size limit, NaN and
Infinity, time zone files that are not IANA zones, and lax input (a boolean priority, a timeout of 1e-300 s, a
back-off base above its maximum, a `run_at` given as a number). Each is a clear 4xx naming the field, never a 500
and never silently changed data, and nothing is appended for any of them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from agentlog.domains.coordination.events import ChatPosted
from agentlog.domains.documents.events import PersonJoined
from agentlog.eventstore import ANY, EventStore, NewEvent
from agentlog.eventstore.errors import UnstorableValueError
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


async def ready(api: RunningApi) -> tuple[httpx.AsyncClient, httpx.AsyncClient, httpx.AsyncClient]:
    """A person, an admin and a registered agent `w1`, with a schedule `weekly` and a global budget to change."""
    person, admin, worker = api.client("person", "ada"), api.client("admin", "root"), api.client("agent", "w1")
    assert (await worker.put("/agents/w1", json={})).status_code == 201
    created = await person.post("/schedules", json={"schedule_id": "weekly", "cron": "0 9 * * 1", "action": TASK})
    assert created.status_code == 201, created.text
    assert (await admin.put("/budgets/global", json={"limit_tokens": 1_000})).status_code == 200
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


async def test_the_store_refuses_what_it_cannot_keep_naming_the_field(store: EventStore) -> None:
    """The same rule for every writer, not only the API: the CLI's `append`, handlers, plugins."""
    joined = {"people_present": 1, "connection_id": "c", "server_id": "s"}
    for event, metadata, named in (
        (PersonJoined(user_id="a\x00", **joined), {}, "the payload of PersonJoined: user_id: holds a NUL"),
        (ChatPosted(message_id="m", author="a", author_kind="agent", body="hi", data={"x": ["\ud800"]}), {},
         "data.x.0: holds a lone"),
        (PersonJoined(user_id="ada", **joined), {"note": "\x00"}, "the metadata of PersonJoined: note: holds a NUL"),
        (PersonJoined(user_id="ada", **joined), {"\ud800": 1}, "the key '\\ud800' holds a lone surrogate"),
    ):  # fmt: skip
        with pytest.raises(UnstorableValueError) as refused:
            await store.append("document-x", [NewEvent(event, metadata=metadata)], ANY)
        assert named in str(refused.value), str(refused.value)
    assert await store.read_all() == []
