"""The live feed (/api/v1/ws, issue 12): events by topic, resumable by position; a forced disconnect loses nothing
and repeats nothing; scopes hold (an agent reads no other agent's inbox)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from agentlog.eventstore import EventStore
from tests.support.api import RunningApi, api_running


def feed_url(api: RunningApi, token: str, topics: str, after: str | None = None) -> str:
    url = api.url.replace("http://", "ws://") + f"/api/v1/ws?token={token}&topics={topics}"
    return url + (f"&after={after}" if after else "")


async def events(socket: ClientConnection, count: int, into: list[dict[str, Any]]) -> None:
    while sum(1 for item in into if item["type"] == "event") < count:
        into.append(json.loads(await socket.recv()))


async def test_a_forced_disconnect_loses_and_repeats_nothing(store: EventStore) -> None:
    async with api_running(store) as api, api.client("person", "ada") as ada:
        token = api.token("person", "watcher")
        seen: list[dict[str, Any]] = []
        async with connect(feed_url(api, token, "chat")) as socket:
            for n in range(10):
                assert (await ada.post("/chat", json={"body": f"m{n}"})).status_code == 201
            async with asyncio.timeout(10):
                await events(socket, 5, seen)
            socket.transport.abort()  # gone without a close handshake, mid-stream
        last = [item["position"] for item in seen if "position" in item][-1]
        for n in range(10, 20):
            assert (await ada.post("/chat", json={"body": f"m{n}"})).status_code == 201
        async with connect(feed_url(api, token, "chat", after=last)) as socket:
            async with asyncio.timeout(10):
                await events(socket, 20, seen)
        bodies = [item["data"]["body"] for item in seen if item["type"] == "event"]
        assert bodies == [f"m{n}" for n in range(20)], "lost or repeated across the reconnect"


async def test_topics_and_scopes(store: EventStore) -> None:
    async with api_running(store) as api, api.client("agent", "ada") as ada, api.client("agent", "bob") as bob:
        for name, client in (("ada", ada), ("bob", bob)):
            assert (await client.put(f"/agents/{name}", json={})).status_code == 201
        got: list[dict[str, Any]] = []
        async with connect(feed_url(api, api.token("agent", "ada"), "inbox:ada,locks")) as socket:
            await bob.post("/agents/ada/inbox", json={"body": "direct"})
            await bob.post("/chat", json={"body": "hey @ada"})
            await bob.post("/chat", json={"body": "not for ada"})
            await bob.post("/locks/x.py", json={})
            async with asyncio.timeout(10):
                await events(socket, 3, got)
        kinds = [(item["topic"], item["event_type"]) for item in got if item["type"] == "event"]
        assert kinds == [("inbox:ada", "DirectMessageSent"), ("inbox:ada", "ChatPosted"), ("locks", "LockAcquired")]
        for private in ("inbox:bob", "tasks:bob", "tasks"):  # bob's tasks, or everyone's payloads and results
            async with connect(feed_url(api, api.token("agent", "ada"), private)) as socket, asyncio.timeout(10):
                await socket.wait_closed()
            assert socket.close_code == 4403, private
        async with connect(feed_url(api, "forged", "chat")) as socket:
            await socket.wait_closed()
        assert socket.close_code == 4401
