"""Wake-ups: a store's own commits wake its readers at once; other stores' commits reach them by NOTIFY."""

from __future__ import annotations

import asyncio

from agentlog.eventstore import EventStore
from tests.support.events import Tick, test_catalogue


async def test_a_stores_own_append_wakes_its_readers_before_append_returns(database_url: str) -> None:
    async with EventStore.open(database_url, catalogue=test_catalogue) as store:
        waiter = await store.waiter()
        await asyncio.sleep(0.1)
        waiter.clear()
        await store.append("test-s", [Tick(n=1)])
        assert await waiter.wait(0), "woken by the commit itself, not by the NOTIFY still to come"


async def test_a_stores_own_notify_does_not_wake_it_again_but_another_stores_does(database_url: str) -> None:
    async with (
        EventStore.open(database_url, catalogue=test_catalogue) as store,
        EventStore.open(database_url, catalogue=test_catalogue) as other,
    ):
        waiter = await store.waiter()
        other_waiter = await other.waiter()
        await asyncio.sleep(0.1)
        waiter.clear()
        other_waiter.clear()
        await store.append("test-s", [Tick(n=1)])
        waiter.clear()  # the local wake-up; what follows would be the NOTIFY coming back
        assert await other_waiter.wait(5), "the other store hears the NOTIFY"
        await asyncio.sleep(0.2)
        assert not await waiter.wait(0), "the store's own NOTIFY woke its readers a second time"

        await other.append("test-s", [Tick(n=2)])
        assert await waiter.wait(5)
