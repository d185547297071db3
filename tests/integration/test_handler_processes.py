"""Handler processes: SIGKILL mid-batch, a standby taking over, SIGTERM finishing its batch, lost connections."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from agentlog.eventstore import EventStore
from agentlog.eventstore.postgres import recorder
from tests.support.events import test_catalogue, ticks
from tests.support.owner import create_handler_table
from tests.support.probe import CREATE_PROBE_TABLE

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 1_000


@pytest.fixture
async def log(database_url: str, owner_database_url: str) -> EventStore:
    await create_handler_table(owner_database_url, CREATE_PROBE_TABLE, "probe_applied")
    async with EventStore.open(database_url, catalogue=test_catalogue, notify_interval=0.001) as store:
        for start in range(0, EVENTS, 100):
            await store.append(f"test-{start // 100}", ticks(100, start=start))
        yield store


@pytest.fixture
def spawn(database_url: str) -> Iterator[object]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(*arguments: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.probe", database_url, *arguments],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stderr:
            process.stderr.close()


async def applied(store: EventStore) -> int:
    return int(await store.pool.fetchval("SELECT count(*) FROM probe_applied"))


async def wait_for(condition, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.02)


async def assert_each_event_applied_once(store: EventStore) -> None:
    repeated = await store.pool.fetchval(
        "SELECT count(*) FROM (SELECT event_id FROM probe_applied GROUP BY 1 HAVING count(*) > 1) AS r"
    )
    assert repeated == 0, "an event was applied twice"
    assert await applied(store) == EVENTS, "an event was lost"
    (lag,) = await recorder.select_handler_lag(store.pool, ["probe"])
    assert lag.events_behind == 0


async def checkpoint_matches_effects(store: EventStore) -> None:
    """Everything up to the checkpoint is applied, nothing after it: the effect and checkpoint are atomic."""
    (lag,) = await recorder.select_handler_lag(store.pool, ["probe"])
    assert await applied(store) == EVENTS - lag.events_behind


async def handler_in_transaction(store: EventStore) -> bool:
    state = await store.pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'agentlog handler probe' "
        "AND state = 'idle in transaction' AND datname = current_database()"
    )
    return bool(state)


@pytest.mark.slow
async def test_a_handler_killed_mid_batch_resumes_without_loss_or_repeat(log: EventStore, spawn) -> None:  # type: ignore[no-untyped-def]
    process = spawn("--sleep-mid-batch", "0.05", "--batch-size", "40")

    async def midway_in_a_batch() -> bool:
        return await applied(log) >= 200 and await handler_in_transaction(log)

    await wait_for(midway_in_a_batch)
    process.send_signal(signal.SIGKILL)
    process.wait()
    await asyncio.sleep(0.3)  # the server notices the dead session and rolls its transaction back
    await checkpoint_matches_effects(log)
    assert 200 <= await applied(log) < EVENTS

    spawn("--batch-size", "40")
    await wait_for(lambda: _caught_up(log))
    await assert_each_event_applied_once(log)


async def _caught_up(store: EventStore) -> bool:
    lags = await recorder.select_handler_lag(store.pool, ["probe"])
    return bool(lags) and lags[0].events_behind == 0 and lags[0].position.global_position > 0


@pytest.mark.slow
async def test_a_standby_takes_over_when_the_active_instance_dies(log: EventStore, spawn) -> None:  # type: ignore[no-untyped-def]
    first = spawn("--sleep-mid-batch", "0.05", "--batch-size", "20")
    await wait_for(lambda: _applied_at_least(log, 100))
    second = spawn("--sleep-mid-batch", "0.05", "--batch-size", "20")
    await asyncio.sleep(1.0)
    writers = await log.pool.fetchval("SELECT count(DISTINCT applied_by) FROM probe_applied")
    assert writers == 1, "two instances of one handler were active at once"

    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = asyncio.get_running_loop().time()
    before = await applied(log)
    await wait_for(lambda: _applied_at_least(log, before + 20), timeout=10)
    takeover_s = asyncio.get_running_loop().time() - killed_at
    assert takeover_s < 5, f"the standby took {takeover_s:.1f} s to take over"
    await wait_for(lambda: _caught_up(log), timeout=60)
    await assert_each_event_applied_once(log)
    assert second.poll() is None


async def _applied_at_least(store: EventStore, count: int) -> bool:
    return await applied(store) >= count


@pytest.mark.slow
async def test_sigterm_finishes_the_batch_in_progress_and_exits_cleanly(log: EventStore, spawn) -> None:  # type: ignore[no-untyped-def]
    process = spawn("--sleep-mid-batch", "0.3", "--batch-size", "50")

    async def midway_in_a_batch() -> bool:
        return await applied(log) >= 50 and await handler_in_transaction(log)

    await wait_for(midway_in_a_batch)
    committed_before = await applied(log)  # the batch in progress is not visible yet
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    await checkpoint_matches_effects(log)
    assert await applied(log) == committed_before + 50, "the batch in progress was not finished"


async def test_a_handler_resumes_after_its_connection_is_cut(log: EventStore, spawn) -> None:  # type: ignore[no-untyped-def]
    spawn("--sleep-mid-batch", "0.02", "--batch-size", "25")
    await wait_for(lambda: _applied_at_least(log, 100))
    cut = await log.pool.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = 'agentlog handler probe' AND datname = current_database()"
    )
    assert cut == 1
    await wait_for(lambda: _caught_up(log), timeout=60)
    await assert_each_event_applied_once(log)


async def test_the_handler_lock_admits_one_session(database_url: str) -> None:
    first, second = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        assert await recorder.try_lock_handler(first, "probe")
        assert not await recorder.try_lock_handler(second, "probe")
        assert await recorder.try_lock_handler(second, "another")
        await first.close()
        assert await recorder.try_lock_handler(second, "probe")
    finally:
        for connection in (first, second):
            if not connection.is_closed():
                await connection.close()
