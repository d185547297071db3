"""What holds the visibility barrier back is visible: a forgotten prepared transaction freezes every subscriber,
and belongs to no session (issue 9, item 6)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from structlog.testing import capture_logs

from agentlog.config import Settings
from agentlog.eventstore import EventStore
from agentlog.eventstore.postgres import recorder
from agentlog.system import run_system
from tests.support.events import Tick, test_catalogue

ROOT = Path(__file__).resolve().parents[2]
GID = "agentlog-test-forgotten"


@pytest.fixture
async def forgotten(owner_database_url: str) -> AsyncIterator[None]:
    """A prepared transaction that appended an event and was never committed nor rolled back."""
    connection = await asyncpg.connect(owner_database_url)
    try:
        await connection.execute("BEGIN")
        await connection.execute(
            "SELECT * FROM agentlog.append_event('test-held', 'Tick', '{\"n\": 0}', notify => false)"
        )
        await connection.execute(f"PREPARE TRANSACTION '{GID}'")
        try:
            yield
        finally:
            await connection.execute(f"ROLLBACK PREPARED '{GID}'")
    finally:
        await connection.close()


async def test_a_prepared_transaction_holding_the_barrier_is_named(forgotten: None, database_url: str) -> None:
    async with EventStore.open(database_url, catalogue=test_catalogue) as store:
        await store.append("test-after", [Tick(n=1)])
        await asyncio.sleep(1.1)
        assert await store.read_all() == []  # held back: the prepared transaction's id is below it
        holders = await recorder.select_barrier_holders(store.pool)
        assert holders[0].kind == "prepared transaction"
        assert holders[0].prepared_gid == GID
        assert holders[0].age_seconds >= 1
        age = await store.pool.fetchval("SELECT barrier_age_seconds FROM agentlog.log_head")
        assert age >= 1

        settings = Settings(_env_file=None, lag_log_interval_s=0.1, barrier_warn_s=0.5, poll_interval_s=0.2)
        stop = asyncio.Event()
        with capture_logs() as logs:
            running = asyncio.create_task(run_system(settings, database_url, [], [], stop=stop))
            async with asyncio.timeout(10):
                while not [entry for entry in logs if entry["event"] == "log.barrier_held"]:
                    await asyncio.sleep(0.05)
            stop.set()
            await running
        (warning, *_) = [entry for entry in logs if entry["event"] == "log.barrier_held"]
        assert warning["log_level"] == "warning"
        assert warning["kind"] == "prepared transaction" and warning["prepared_gid"] == GID
        assert GID in warning["held_by"] and "ROLLBACK PREPARED" in warning["held_by"]

    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTLOG_")}
    env["AGENTLOG_DATABASE_URL"] = database_url
    for arguments, check in (
        (["handler", "lag"], lambda out: f"prepared transaction '{GID}'" in out),
        (["handler", "lag", "--json"], lambda out: json.loads(out)["barrier_held_by"]["prepared_gid"] == GID),
    ):
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "agentlog.cli", *arguments],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert check(result.stdout), result.stdout
