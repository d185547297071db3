"""Projections: live batch by batch = rebuilt from scratch = an in-memory fold; rebuilds under load; --verify."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentlog.eventstore import EventStore, RecordedEvent
from agentlog.eventstore.postgres import recorder
from agentlog.handlers import HandlerRunner
from agentlog.handlers.projection_handler import ProjectionHandler
from agentlog.projections.builtin.event_counts import projection as event_counts
from agentlog.projections.builtin.log_head import projection as log_head
from agentlog.projections.builtin.stream_summary import StreamSummary
from agentlog.projections.builtin.stream_summary import projection as stream_summary
from agentlog.projections.replay import rebuild, verify
from agentlog.projections.reports import fetch_report, list_reports
from tests.support.events import test_catalogue, ticks
from tests.support.projection_model import fold, tables

BUILTINS = (stream_summary, event_counts, log_head)
NAMES = [projection.name for projection in BUILTINS]
DAY_ZERO = datetime(2026, 11, 1, tzinfo=UTC)


async def everything(store: EventStore) -> list[RecordedEvent]:
    found: list[RecordedEvent] = []
    while page := await store.read_all(after=found[-1].position if found else (0, 0), limit=10_000):  # type: ignore[arg-type]
        found.extend(page)
    return found


async def live_until_caught_up(store: EventStore, batch_size: int, projections=BUILTINS) -> None:  # type: ignore[no-untyped-def]
    runner = HandlerRunner(store, [ProjectionHandler(p) for p in projections], batch_size=batch_size)
    task = asyncio.create_task(runner.run())
    async with asyncio.timeout(30):
        while not await caught_up(store, [p.name for p in projections]):
            await asyncio.sleep(0.02)
    runner.stop.set()
    await task


async def caught_up(store: EventStore, names: list[str]) -> bool:
    """Every named checkpoint is at the head. The head is read afresh each time: it is the newest event below the
    barrier, so while any transaction holds an older transaction id it lags and checkpoints may pass it."""
    head = await store.head()
    return all([await recorder.select_checkpoint(store.pool, name) == head for name in names])


async def insert_directly(connection: asyncpg.Connection, transactions: list[list[tuple[int, int, int, int]]]) -> None:
    """Events with chosen recorded times (days apart, out of order): the append functions would stamp now()."""
    for transaction in transactions:
        async with connection.transaction():
            for stream, category, event_type, minutes in transaction:
                stream_id = f"{['agent', 'document', 'task'][category]}-{stream}"
                version = await connection.fetchval(
                    "SELECT coalesce(max(stream_version), 0) + 1 FROM agentlog.events WHERE stream_id = $1", stream_id
                )
                await connection.execute(
                    "INSERT INTO agentlog.events (event_id, stream_id, stream_version, event_type, schema_version, "
                    "data, recorded_at) VALUES ($1, $2, $3, $4, 1, '{}', $5)",
                    uuid.uuid4(),
                    stream_id,
                    version,
                    ["Opened", "Closed", "Noted"][event_type],
                    DAY_ZERO + timedelta(minutes=minutes),
                )


EVENT = st.tuples(st.integers(0, 4), st.integers(0, 2), st.integers(0, 2), st.integers(0, 4 * 24 * 60))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(transactions=st.lists(st.lists(EVENT, min_size=1, max_size=6), min_size=1, max_size=8), batch=st.integers(1, 9))
def test_live_rebuilt_and_folded_projections_agree(
    loop_and_store: tuple[asyncio.AbstractEventLoop, EventStore],
    owner_database_url: str,
    transactions: list[list[tuple[int, int, int, int]]],
    batch: int,
) -> None:
    loop, store = loop_and_store

    async def check() -> None:
        owner = await asyncpg.connect(owner_database_url)  # only the owner may write the log directly
        try:
            await insert_directly(owner, transactions)
        finally:
            await owner.close()
        await live_until_caught_up(store, batch)
        expected = fold(await everything(store))
        assert await tables(store.pool, NAMES) == expected
        for projection in BUILTINS:
            await rebuild(store, projection, batch_size=batch + 3)
        assert await tables(store.pool, NAMES) == expected

    loop.run_until_complete(check())


@pytest.fixture
async def log(database_url: str) -> AsyncIterator[EventStore]:
    async with EventStore.open(database_url, catalogue=test_catalogue, notify_interval=0.001, poll_interval=0.1) as s:
        yield s


async def append_load(store: EventStore, stop: asyncio.Event, seed: int, pause_s: float = 0) -> int:
    """Appends of 1 to 20 events until `stop`, `pause_s` apart (0: as fast as the store takes them)."""
    rng = random.Random(seed)
    written = 0
    while not stop.is_set():
        count = rng.randint(1, 20)
        await store.append(f"{rng.choice(['agent', 'task'])}-{rng.randrange(30)}", ticks(count, writer=seed))
        written += count
        await asyncio.sleep(pause_s)
    return written


@pytest.mark.slow
async def test_a_rebuild_under_load_swaps_in_without_losing_or_repeating_events(log: EventStore) -> None:
    for start in range(0, 20_000, 1_000):
        await log.append(f"seed-{start // 1_000}", ticks(1_000, start=start))
    await live_until_caught_up(log, 500)

    runner = HandlerRunner(log, [ProjectionHandler(p) for p in BUILTINS], batch_size=200)
    live = asyncio.create_task(runner.run())
    stop = asyncio.Event()
    # Paced: some 10,000 events arrive while the three rebuilds run (45,000 at full speed, for nothing more).
    writers = [asyncio.create_task(append_load(log, stop, seed, pause_s=0.002)) for seed in range(3)]
    progress: list[int] = []
    for projection in BUILTINS:
        outcome = await rebuild(log, projection, batch_size=300, on_progress=lambda p: progress.append(p.done))
        assert outcome.events >= 20_000
    stop.set()
    written = sum(await asyncio.gather(*writers))
    assert written > 0 and len(progress) > 60
    async with asyncio.timeout(30):
        while not await caught_up(log, NAMES):
            await asyncio.sleep(0.05)
    runner.stop.set()
    await live
    events = await everything(log)
    assert len(events) == 20_000 + written
    assert await tables(log.pool, NAMES) == fold(events)
    versions = {row["name"]: row["rebuilt_at"] for row in await log.pool.fetch("SELECT * FROM agentlog.projections")}
    assert all(versions.get(name) is not None for name in NAMES)


async def test_verify_finds_a_planted_difference_and_nothing_otherwise(log: EventStore) -> None:
    for start in range(0, 600, 100):
        await log.append(f"task-{start}", ticks(100, start=start))
    await live_until_caught_up(log, 64)
    for projection in BUILTINS:
        assert (await verify(log, projection, batch_size=50)).differences == []

    await log.pool.execute("UPDATE projections.stream_summary SET event_count = 7 WHERE stream_id = 'task-200'")
    await log.pool.execute("DELETE FROM projections.event_counts_daily")
    summary = await verify(log, stream_summary, batch_size=50)
    assert {(d.table, d.side, d.row["stream_id"], d.row["event_count"]) for d in summary.differences} == {
        ("stream_summary", "live only", "task-200", 7),
        ("stream_summary", "rebuilt only", "task-200", 100),
    }
    counts = await verify(log, event_counts, batch_size=50)
    assert {d.side for d in counts.differences} == {"rebuilt only"} and len(counts.differences) == 1
    assert (await verify(log, log_head)).differences == []
    # verify never changes the live tables, and leaves no shadow behind
    planted = "SELECT event_count FROM projections.stream_summary WHERE stream_id = 'task-200'"
    assert await log.pool.fetchval(planted) == 7
    assert not await log.pool.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'agentlog_shadow_%'")


@pytest.mark.slow
async def test_verify_while_the_live_projection_keeps_moving_reports_no_false_difference(log: EventStore) -> None:
    runner = HandlerRunner(log, [ProjectionHandler(p) for p in BUILTINS], batch_size=50)
    live = asyncio.create_task(runner.run())
    stop = asyncio.Event()
    # Paced: at full speed the log grew to 60,000 events, each verify rebuilding all of it from the start (12-15 s
    # in all); paced, it grows by some 10,000 and the live projection still moves on under every verify.
    writers = [asyncio.create_task(append_load(log, stop, seed, pause_s=0.002)) for seed in range(2)]
    await asyncio.sleep(0.5)
    try:
        for _ in range(2):
            for projection in BUILTINS:
                assert (await verify(log, projection, batch_size=100)).differences == []
    finally:
        stop.set()
        await asyncio.gather(*writers)
        runner.stop.set()
        await live


async def test_reports_read_projections_only(log: EventStore) -> None:
    await log.append("agent-1", ticks(3))
    await log.append("task-1", ticks(2))
    await live_until_caught_up(log, 10)
    names = {report.name for report in await list_reports(log.pool)}
    assert {"categories", "recent_streams", "event_types_daily", "categories_daily", "handler_lag"} <= names
    categories = await fetch_report(log.pool, "categories")
    assert categories.columns[:3] == ["category", "streams", "events"]
    summary = {(row["category"], row["streams"], row["events"]) for row in categories.rows}
    assert summary == {("agent", 1, 3), ("task", 1, 2)}
    lag = await fetch_report(log.pool, "handler_lag")
    assert {row["handler"]: row["events_behind"] for row in lag.rows} == {name: 0 for name in NAMES}
    scanning = await log.pool.fetch(
        "SELECT DISTINCT v.relname FROM pg_depend AS d JOIN pg_rewrite AS r ON r.oid = d.objid "
        "JOIN pg_class AS v ON v.oid = r.ev_class JOIN pg_namespace AS n ON n.oid = v.relnamespace "
        "WHERE n.nspname = 'reports' AND d.refobjid = 'agentlog.events'::regclass"
    )
    assert scanning == []


async def test_handler_lag_report_counts_events_behind_without_scanning_the_log(log: EventStore) -> None:
    await log.append("agent-1", ticks(5))
    await live_until_caught_up(log, 10)
    await recorder.load_checkpoint(log.pool, "late-handler")
    await log.append("agent-1", ticks(4))
    await live_until_caught_up(log, 10, projections=(log_head,))
    lag = {row["handler"]: row for row in (await fetch_report(log.pool, "handler_lag")).rows}
    assert lag["late-handler"]["events_behind"] == 9
    assert lag["stream_summary"]["events_behind"] == 4
    assert lag["log_head"]["events_behind"] == 0


class StreamSummaryV2(StreamSummary):
    """The same projection with a bumped version, as after a change of its code."""

    version = 2


async def test_a_changed_version_is_rebuilt_by_up_while_the_others_keep_serving(log: EventStore) -> None:
    from agentlog.config import Settings
    from agentlog.system import run_system

    await log.append("agent-1", ticks(50))
    await live_until_caught_up(log, 10)
    await log.pool.execute("INSERT INTO agentlog.projections (name, version) VALUES ('stream_summary', 1), "
                           "('event_counts_daily', 1), ('log_head', 1) ON CONFLICT DO NOTHING")
    await log.pool.execute("UPDATE projections.stream_summary SET event_count = 1")  # what v1 got wrong
    stop = asyncio.Event()
    system = asyncio.create_task(
        run_system(Settings(poll_interval_s=0.1), log.url, [], [StreamSummaryV2(), event_counts, log_head], stop=stop)
    )
    async with asyncio.timeout(20):
        while await log.pool.fetchval("SELECT version FROM agentlog.projections WHERE name = 'stream_summary'") != 2:
            await asyncio.sleep(0.05)
    await log.append("agent-2", ticks(3))
    async with asyncio.timeout(20):
        while not await caught_up(log, NAMES):
            await asyncio.sleep(0.05)
    stop.set()
    await system
    assert await tables(log.pool, NAMES) == fold(await everything(log))
