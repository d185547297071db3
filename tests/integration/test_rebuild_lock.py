"""One rebuild per projection at a time, whatever its version, and a swap that installs only what it built.

Two rebuilds of one projection share its shadow schema; a rebuild of another version used to run beside the first
(the lock was per version), drop the shadow and forget the first one's checkpoint, and the first one's swap then
installed the second one's half-built tables under a live checkpoint that claimed more: silently, for good.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from agentlog.eventstore import START, EventStore, LogPosition, RecordedEvent
from agentlog.eventstore.errors import AgentlogError
from agentlog.eventstore.postgres import recorder
from agentlog.projections.builtin.log_head import LogHead
from agentlog.projections.builtin.stream_summary import StreamSummary
from agentlog.projections.replay import ShadowBuild, rebuild
from tests.integration.test_projections import StreamSummaryV2, everything, live_until_caught_up
from tests.support.events import test_catalogue, ticks
from tests.support.projection_model import fold, tables

NAME = "stream_summary"
STEPS = ("open", "prepare", "catch_up", "swap")
"""The steps of a rebuild; the swap also ends it (closes its connection, releasing its lock)."""


@pytest.fixture
async def log(database_url: str) -> AsyncIterator[EventStore]:
    async with EventStore.open(database_url, catalogue=test_catalogue, notify_interval=0.001, poll_interval=0.1) as s:
        yield s


async def live_state(store: EventStore) -> tuple[set[Any], LogPosition | None, list[Any]]:
    """The live tables, the live checkpoint and the recorded version of the projection."""
    versions = await store.pool.fetch("SELECT version, rebuilt_at FROM agentlog.projections WHERE name = $1", NAME)
    return (await tables(store.pool, [NAME]))[NAME], await recorder.select_checkpoint(store.pool, NAME), versions


class LogSoFar:
    """The log as read so far: each read reads only what was appended since, as a subscriber does (the log only
    grows, in its order below the barrier), instead of all of it again for each of the test's 420 checks."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.events: list[RecordedEvent] = []

    async def read(self) -> list[RecordedEvent]:
        while page := await self.store.read_all(after=self.events[-1].position if self.events else START, limit=10_000):
            self.events.extend(page)
        return self.events


async def assert_live_is_consistent(store: EventStore, where: str, log_so_far: LogSoFar | None = None) -> None:
    """The live tables hold exactly what a clean rebuild (the in-memory fold) gives up to the live checkpoint."""
    checkpoint = await recorder.select_checkpoint(store.pool, NAME)
    assert checkpoint is not None
    events = await (log_so_far or LogSoFar(store)).read()
    expected = fold([event for event in events if event.position <= checkpoint])[NAME]
    live = (await tables(store.pool, [NAME]))[NAME]
    assert live == expected, f"{where}: live tables do not match the live checkpoint {checkpoint}"


class Process:
    """One rebuild driven step by step, on its own connection, as a separate `agentlog replay` process would."""

    def __init__(self, label: str, store: EventStore, projection: StreamSummary) -> None:
        self.label = label
        self.build = ShadowBuild(store, projection, batch_size=40)
        self.exits = contextlib.AsyncExitStack()
        self.open = False
        self.ended = False
        self.refusals: list[tuple[str, str]] = []

    async def step(self, step: str) -> None:
        if self.ended:
            return
        try:
            if step == "open":
                await self.exits.enter_async_context(self.build.opened())
                self.open = True
            elif step == "prepare":
                await self.build.prepare()
            elif step == "catch_up":
                await self.build.catch_up()
            else:
                await self.build.swap()
                await self.end()
        except (AgentlogError, asyncpg.PostgresError) as error:
            self.refusals.append((step, f"{type(error).__name__}: {error}"))
            await self.end()

    async def end(self) -> None:
        self.ended, self.open = True, False
        await self.exits.aclose()


@pytest.mark.slow
async def test_two_rebuilds_of_one_projection_at_different_versions_never_mix_in_any_order(log: EventStore) -> None:
    appended = 0

    async def more_events() -> None:
        nonlocal appended
        await log.append(f"agent-{appended % 7}", ticks(3, start=appended))
        appended += 3

    for _ in range(40):
        await more_events()
    await live_until_caught_up(log, 50, projections=(StreamSummary(),))
    orders = list(itertools.combinations(range(2 * len(STEPS)), len(STEPS)))
    assert len(orders) == 70  # every interleaving of the two rebuilds' steps
    swapped_last: int | None = None
    log_so_far = LogSoFar(log)
    for order in orders:
        first = Process("v1", log, StreamSummary())
        second = Process("v2", log, StreamSummaryV2())
        a_steps, b_steps = iter(STEPS), iter(STEPS)
        script: list[str] = []
        refused_while_other_open: list[bool] = []
        for slot in range(2 * len(STEPS)):
            process, other, step = (
                (first, second, next(a_steps)) if slot in order else (second, first, next(b_steps))
            )
            script.append(f"{process.label}.{step}")
            other_open, refusals, ended = other.open, len(process.refusals), process.ended
            await process.step(step)
            if len(process.refusals) > refusals:
                refused_while_other_open.append(other_open)
            elif step == "swap" and not ended:
                swapped_last = process.build.projection.version
            await more_events()  # the log keeps moving between any two steps
            await assert_live_is_consistent(log, " ".join(script), log_so_far)
        # The second rebuild is refused at its start, with a clear message, exactly when the first one runs;
        # nothing else is ever refused.
        for process in (first, second):
            for step, message in process.refusals:
                assert step == "open", f"{' '.join(script)}: {process.label} refused at {step}: {message}"
                assert message.startswith("RebuildAlreadyRunningError: another process is rebuilding or verifying "
                                          "projection stream_summary; wait for it to finish or stop it")
        assert all(refused_while_other_open), " ".join(script)
        assert len(first.refusals) + len(second.refusals) == len(refused_while_other_open)
        recorded = await log.pool.fetchval("SELECT version FROM agentlog.projections WHERE name = $1", NAME)
        assert recorded == swapped_last, " ".join(script)


@pytest.mark.parametrize("tampering", ["deleted", "moved back", "moved ahead", "moved to the start"])
async def test_a_swap_whose_rebuild_checkpoint_moved_refuses_and_leaves_the_live_projection_as_it_was(
    log: EventStore, tampering: str
) -> None:
    for start in range(0, 300, 30):
        await log.append(f"agent-{start}", ticks(30, start=start))
    await live_until_caught_up(log, 50, projections=(StreamSummary(),))
    await log.append("agent-late", ticks(20))  # the rebuild gets further than the live projection
    before = await live_state(log)
    build = ShadowBuild(log, StreamSummaryV2(), batch_size=64)
    async with build.opened():
        await build.prepare()
        await build.catch_up()
        events = await everything(log)
        assert build.position == events[-1].position
        if tampering == "deleted":
            await log.pool.execute("DELETE FROM agentlog.checkpoints WHERE name = $1", build.checkpoint)
        else:
            if tampering == "moved ahead":
                await log.append("agent-later", ticks(5))
                events = await everything(log)
            target = {"moved back": events[100], "moved ahead": events[-1]}.get(tampering)
            position = target.position if target else LogPosition(0, 0)
            await log.pool.execute(
                "UPDATE agentlog.checkpoints SET transaction_id = $2::xid8, global_position = $3 WHERE name = $1",
                build.checkpoint,
                *position,
            )
        with pytest.raises(AgentlogError, match="nothing was swapped"):
            await build.swap()
        assert await live_state(log) == before
        assert await build.connection.fetchval("SELECT 1") == 1  # the swap's transaction was rolled back cleanly
    assert await live_state(log) == before
    rerun = await rebuild(log, StreamSummaryV2())  # running the rebuild again starts afresh and succeeds
    assert rerun.events == len(await everything(log))
    assert await recorder.select_checkpoint(log.pool, NAME) == rerun.position
    await assert_live_is_consistent(log, "after the rerun")


class LogXHead(LogHead):
    """A projection whose name `log_head`'s rebuilds once matched as a LIKE pattern (`_` is any character)."""

    name = "logxhead"


async def test_a_rebuild_forgets_only_its_own_projections_rebuild_checkpoints(log: EventStore) -> None:
    await log.append("agent-1", ticks(200))
    interrupted = ShadowBuild(log, LogXHead(), batch_size=50)
    async with interrupted.opened():
        await interrupted.prepare()
        await interrupted.catch_up(until=(await everything(log))[99].position)
    await rebuild(log, LogHead())
    resumed = ShadowBuild(log, LogXHead(), batch_size=50)
    async with resumed.opened():
        assert await resumed.prepare(), "the rebuild of log_head forgot the checkpoint of logxhead's rebuild"
        assert resumed.events == 100
        await resumed.discard()
