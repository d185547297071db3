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


async def test_a_command_that_finds_itself_done_when_it_decides_again_appends_nothing(store: EventStore) -> None:
    """Six people pause one schedule at once: the losers decide again from a fold where it is paused already, and
    their plan is empty. That used to be an append of nothing (`InvalidEventError`), a 500."""

    async def pause() -> list[tuple[str, int | None, list[Event]]]:
        fold = await folds.current("chat-pause")
        if fold.bodies:
            return [("chat-pause", fold.version, [])]
        return [("chat-pause", fold.version, [ChatPosted(message_id="p", author="a", author_kind="person", body="x")])]

    folds: StreamFolds[Posts] = StreamFolds(store, Posts)
    written = await asyncio.gather(*(append_decided(store, pause) for _ in range(6)))
    assert sorted(len(w.events) for w in written) == [0, 0, 0, 0, 0, 1]
    assert (await folds.current("chat-pause")).version == 1
