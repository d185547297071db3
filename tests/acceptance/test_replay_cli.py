"""`agentlog replay` and `agentlog report` as a person runs them, including a rebuild killed half way."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import signal
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentlog.domains.documents.events import PersonJoined
from agentlog.eventstore import EventStore
from agentlog.eventstore.postgres import recorder
from agentlog.handlers import HandlerRunner
from agentlog.handlers.decider import DecisionHandler, record_settings
from agentlog.handlers.documents.activity import DocumentActivity
from agentlog.projections import installed_projections
from agentlog.projections.replay import ShadowBuild
from tests.acceptance.test_cli import AGENTLOG, ROOT, agentlog, environment
from tests.integration.test_projections import NAMES, StreamSummaryV2, everything, live_until_caught_up
from tests.support.events import test_catalogue, ticks
from tests.support.projection_model import fold, tables

EVENTS = 30_000


@pytest.fixture
async def built(database_url: str) -> AsyncIterator[EventStore]:
    """A log of 30,000 events with its projections built live."""
    async with EventStore.open(database_url, catalogue=test_catalogue, notify_interval=0.001) as store:
        for start in range(0, EVENTS, 1_000):
            await store.append(f"agent-{start // 1_000}", ticks(1_000, start=start))
        await live_until_caught_up(store, 2_000)
        yield store


async def live_state(store: EventStore) -> tuple[dict[str, set[Any]], list[Any]]:
    checkpoints = [await recorder.select_checkpoint(store.pool, name) for name in NAMES]
    return await tables(store.pool, NAMES), checkpoints


async def rebuild_progress(store: EventStore) -> int:
    value = await store.pool.fetchval(
        "SELECT events_applied FROM agentlog.checkpoints WHERE name LIKE 'replay.stream_summary.v%'"
    )
    return int(value or 0)


def start_replay(env: dict[str, str], *arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*AGENTLOG, "replay", *arguments], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
@pytest.mark.parametrize("interruption", [signal.SIGKILL, signal.SIGINT])
async def test_an_interrupted_rebuild_leaves_the_live_projection_untouched_and_a_rerun_succeeds(
    built: EventStore, database_url: str, interruption: signal.Signals
) -> None:
    env = environment(AGENTLOG_DATABASE_URL=database_url)
    before = await live_state(built)
    replay = start_replay(env, "stream_summary", "--batch-size", "100")
    try:
        async with asyncio.timeout(60):
            while await rebuild_progress(built) < 3_000:
                await asyncio.sleep(0.02)
        replay.send_signal(interruption)
        _, stderr = replay.communicate(timeout=30)
    finally:
        if replay.poll() is None:
            replay.kill()
    assert replay.returncode != 0
    if interruption == signal.SIGINT:
        assert "interrupted: the live projections are untouched" in stderr
    assert await rebuild_progress(built) < EVENTS
    assert await live_state(built) == before

    rerun = agentlog("replay", "stream_summary", env=env, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    resumed_from = int(rerun.stdout.split("rebuilt from ")[1].split(" events")[0].replace(",", ""))
    assert resumed_from < EVENTS, "the rerun started over instead of resuming"
    assert await tables(built.pool, NAMES) == fold(await everything(built))
    checked = agentlog("replay", "--verify", env=env, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("live matches") == len(installed_projections().found)


async def test_a_second_replay_of_a_projection_being_rebuilt_exits_with_one_line(database_url: str) -> None:
    """The lock is the projection's, whatever the version: a rebuild of version 2 holds off a replay of version 1."""
    env = environment(AGENTLOG_DATABASE_URL=database_url)
    async with EventStore.open(database_url, catalogue=test_catalogue) as store:
        await store.append("agent-1", ticks(100))
        await live_until_caught_up(store, 50)
        before = await live_state(store)
        holder = ShadowBuild(store, StreamSummaryV2(), batch_size=10)
        async with holder.opened():
            await holder.prepare()
            await holder.catch_up(until=(await everything(store))[49].position)
            second = agentlog("replay", "stream_summary", env=env)
        assert second.returncode == 1
        assert second.stderr.splitlines() == [
            "agentlog: error: another process is rebuilding or verifying projection stream_summary; "
            "wait for it to finish or stop it, then run this again"
        ]
        assert await live_state(store) == before


async def test_verify_exits_non_zero_on_a_difference(built: EventStore, database_url: str) -> None:
    env = environment(AGENTLOG_DATABASE_URL=database_url)
    await built.pool.execute("UPDATE projections.log_head SET events = events + 1")
    result = agentlog("replay", "--verify", "log_head", env=env, timeout=120)
    assert result.returncode == 6
    assert "log_head: rebuilt 30,000 events; live 2 difference(s)" in result.stdout
    assert '"events": 30001' in result.stdout and '"events": 30000' in result.stdout


async def test_reports_print_as_table_json_and_csv(built: EventStore, database_url: str) -> None:
    env = environment(AGENTLOG_DATABASE_URL=database_url)
    listing = agentlog("report", env=env)
    assert listing.returncode == 0 and "categories" in listing.stdout and "handler_lag" in listing.stdout
    as_json = json.loads(agentlog("report", "categories", "--format", "json", env=env).stdout)
    assert as_json == [
        {
            "category": "agent",
            "streams": 30,
            "events": EVENTS,
            "longest_stream": 1_000,
            "first_recorded_at": as_json[0]["first_recorded_at"],
            "last_recorded_at": as_json[0]["last_recorded_at"],
        }
    ]
    rows = list(csv.reader(io.StringIO(agentlog("report", "event_types_daily", "--format", "csv", env=env).stdout)))
    assert rows[0] == ["day", "event_type", "events"] and rows[1][1:] == ["Tick", str(EVENTS)]
    table = agentlog("report", "handler_lag", env=env)
    assert all(name in table.stdout for name in NAMES)
    missing = agentlog("report", "nope", env=env)
    assert missing.returncode == 3 and missing.stderr.strip() == (
        "agentlog: error: no report named 'nope'; `agentlog report` lists them"
    )


def test_replay_needs_names_or_all(database_url: str) -> None:
    env = environment(AGENTLOG_DATABASE_URL=database_url)
    assert agentlog("replay", env=env).returncode == 2
    unknown = agentlog("replay", "nope", env=env)
    assert unknown.returncode == 3 and "no projection named 'nope'" in unknown.stderr


async def test_verify_refolds_a_decider_past_an_event_it_skipped_as_undecidable(database_url: str) -> None:
    async with EventStore.open(database_url, poll_interval=0.1) as store:
        await record_settings(store, DocumentActivity(idle_grace_s=5))
        for stream in ("document-a", "document-a/b", "document-c"):  # no document can be called "a/b"
            await store.append(
                stream, [PersonJoined(user_id="ada", people_present=1, connection_id=stream, server_id="s")]
            )
        runner = HandlerRunner(store, [DecisionHandler(DocumentActivity(idle_grace_s=5))], batch_size=10)
        task = asyncio.create_task(runner.run())
        async with asyncio.timeout(20):
            while await recorder.select_checkpoint(store.pool, DocumentActivity.name) != await store.head():
                await asyncio.sleep(0.02)
        runner.stop.set()
        await task
        assert [skip.stream_id for skip in await recorder.select_skipped(store.pool, DocumentActivity.name)] == [
            "document-a/b"
        ]
    result = agentlog("replay", "--verify", "document-activity", env=environment(AGENTLOG_DATABASE_URL=database_url))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "decider document-activity: refolded over the log; every decision matches" in result.stdout
