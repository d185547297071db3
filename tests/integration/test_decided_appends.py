"""Commands deciding on one stream at once (`eventstore.folds.append_decided`): every one lands, each decided from
the stream as the ones before it left it. Sixteen agents reserving against one budget used to spin on its version
until some gave up after 50 lost races (the benchmark's "gave up" column; the API answered 500)."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from agentlog.domains.coordination.events import ChatPosted
from agentlog.eventstore import Event, EventStore
from agentlog.eventstore.errors import WrongExpectedVersionError
from agentlog.eventstore.folds import StreamFolds, append_decided

WRITERS = 64


class Posts(BaseModel):
    version: int = 0
    bodies: list[str] = []

    def fold(self, event: Event, version: int | None = None) -> None:
        assert isinstance(event, ChatPosted)
        self.bodies.append(event.body)
        if version is not None:
            self.version = version


async def test_many_commands_on_one_stream_all_land_each_decided_from_the_ones_before(store: EventStore) -> None:
    folds: StreamFolds[Posts] = StreamFolds(store, Posts)
    lost = 0
    original = store.append_batch

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal lost
        try:
            return await original(*args, **kwargs)
        except WrongExpectedVersionError:
            lost += 1
            raise

    store.append_batch = counting  # type: ignore[method-assign]

    async def post(writer: int) -> None:
        async def plan() -> list[tuple[str, int | None, list[Event]]]:
            fold = await folds.current("chat-test")
            body = f"{writer} after {len(fold.bodies)}"  # decided from what it saw
            posted = ChatPosted(message_id=f"m{writer}", author="a", author_kind="agent", body=body)
            return [("chat-test", fold.version, [posted])]

        await append_decided(store, plan)

    await asyncio.gather(*(post(writer) for writer in range(WRITERS)))
    fold = await folds.current("chat-test")
    assert fold.version == WRITERS
    assert sorted(int(body.split(" after ")[1]) for body in fold.bodies) == list(range(WRITERS)), "decided stale"
    assert lost < 2 * WRITERS, f"{lost} lost races for {WRITERS} commands: they spin instead of taking turns"
