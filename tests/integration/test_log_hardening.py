"""What a hostile review of issue 9 broke, each reproduced: the application role dropping the log through the
rebuild's DDL functions, payloads no reader can decode stopping every handler, the one-statement appends skipping
the checks and trusting a known version, a restore into a copy of the same cluster left unsealed, a rewound
checkpoint taken for a broken order, the CLI rendering names as markup."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from agentlog.database import LogOrderBrokenError, check_log_order, migrate
from agentlog.domains.documents.events import PersonJoined
from agentlog.eventstore import ANY, EventStore
from agentlog.eventstore.decoding import decode_wanted
from agentlog.eventstore.postgres import recorder
from agentlog.handlers import HandlerRunner
from agentlog.handlers.projection_handler import ProjectionHandler
from agentlog.projections import installed_projections

ROOT = Path(__file__).resolve().parents[2]
JOINED = {"user_id": "ada", "people_present": 1, "connection_id": "c1", "server_id": "s"}


@pytest.fixture
async def log(database_url: str) -> AsyncIterator[EventStore]:
    async with EventStore.open(database_url, poll_interval=0.1) as store:
        yield store


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT agentlog.swap_projection('projections', 'agentlog', '{}')",
        "SELECT agentlog.swap_projection('agentlog', 'agentlog_shadow_x', ARRAY['events'])",
        "SELECT agentlog.create_shadow('agentlog', 'agentlog_shadow_x', ARRAY['events'])",
        "SELECT agentlog.create_shadow('projections', 'agentlog_shadow_x', ARRAY['no_such_table'])",
        "SELECT agentlog.create_shadow_unchecked('agentlog', 'agentlog_shadow_x', ARRAY['events'])",
        "SELECT agentlog.swap_projection_unchecked('projections', 'agentlog', '{}')",
    ],
)
async def test_the_rebuild_functions_touch_projections_only(log: EventStore, statement: str) -> None:
    with pytest.raises(asyncpg.PostgresError):
        await log.pool.execute(statement)
    assert await log.pool.fetchval("SELECT to_regclass('agentlog.events') IS NOT NULL")
    assert await log.pool.fetchval("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'agentlog.events'::regclass") > 0


@pytest.mark.parametrize(
    ("field", "value"),
    [("data", '{"user_id": "ada", "people_present": 1e400, "connection_id": "c", "server_id": "s"}'),
     ("metadata", '{"deep": ' + "[" * 300 + "]" * 300 + "}")],
)  # fmt: skip
async def test_payloads_no_reader_can_decode_are_refused_on_every_path(
    log: EventStore, field: str, value: str
) -> None:
    data = value if field == "data" else json.dumps(JOINED)
    metadata = value if field == "metadata" else "{}"
    for statement in (
        "SELECT * FROM agentlog.append_event('document-p', 'PersonJoined', $1::text::jsonb,"
        " metadata => $2::text::jsonb)",
        "SELECT * FROM agentlog.append_one_to_stream('document-p', NULL, NULL, gen_random_uuid(), 'PersonJoined',"
        " 2, $1::text::jsonb, $2::text::jsonb)",
    ):
        with pytest.raises(asyncpg.PostgresError, match="JSON readers cannot read"):
            await log.pool.execute(statement, data, metadata)
    assert await log.read_all() == []


async def test_an_unreadable_event_written_around_the_checks_is_skipped_not_fatal(
    log: EventStore, owner_database_url: str
) -> None:
    owner = await asyncpg.connect(owner_database_url)
    try:
        await owner.execute(
            "INSERT INTO agentlog.events (event_id, stream_id, stream_version, event_type, schema_version, data)"
            " VALUES (gen_random_uuid(), 'document-p', 1, 'PersonJoined', 2, $1::text::jsonb)",
            '{"user_id": "ada", "people_present": 1e400, "connection_id": "c", "server_id": "s"}',
        )
    finally:
        await owner.close()
    await log.append("document-ok", [PersonJoined(**JOINED)], ANY)
    events = await log.read_all()  # reading never fails on it
    typed, undecodable = decode_wanted(log.catalogue, events, None)
    assert [event.stream_id for event in typed] == ["document-ok"]
    assert "cannot be read as JSON" in undecodable[0].reason
    projection = installed_projections().found["document_activity"]
    runner = HandlerRunner(log, [ProjectionHandler(projection)])
    task = asyncio.create_task(runner.run())
    async with asyncio.timeout(20):
        while await recorder.select_checkpoint(log.pool, "document_activity") != await log.head():
            await asyncio.sleep(0.02)
    runner.stop.set()
    await task
    (skipped,) = await recorder.select_skipped(log.pool, "document_activity")
    assert skipped.stream_id == "document-p"


async def test_the_one_statement_appends_check_payloads(log: EventStore) -> None:
    for data, schema_version in (('{"evil": true}', 2), (json.dumps(JOINED), 999)):
        with pytest.raises(asyncpg.PostgresError, match="schema"):
            await log.pool.execute(
                "SELECT * FROM agentlog.append_one_to_stream('document-q', NULL, NULL, gen_random_uuid(),"
                " 'PersonJoined', $2, $1::text::jsonb, '{}')",
                data,
                schema_version,
            )
        with pytest.raises(asyncpg.PostgresError, match="schema"):
            await log.pool.execute(
                "SELECT * FROM agentlog.append_to_stream('document-q', NULL, NULL, ARRAY[gen_random_uuid()],"
                " ARRAY['PersonJoined'], ARRAY[$2::integer], ARRAY[$1::text::jsonb], ARRAY['{}'::jsonb])",
                data,
                schema_version,
            )
    assert await log.read_all() == []


async def test_a_known_version_the_stream_does_not_have_is_not_trusted(log: EventStore) -> None:
    await log.append("document-k", [PersonJoined(**JOINED)], ANY)
    for known, expected in ((99, None), (9223372036854775806, None), (1, 0)):
        rows = await log.pool.fetch(
            "SELECT * FROM agentlog.append_one_to_stream('document-k', $2, $1, gen_random_uuid(), 'PersonJoined',"
            " 2, $3::text::jsonb, '{}')",
            known,
            expected,
            json.dumps(JOINED),
        )
        assert rows == [], f"known version {known} (expected {expected}) was trusted"
    # The client behind it still appends right after the real head.
    log._heads.reached("document-k", 40, log._heads.epoch)  # a head remembered wrongly
    appended = await log.append("document-k", [PersonJoined(**JOINED)], ANY)
    assert appended.stream_version == 2
    assert [e.stream_version for e in await log.read_stream("document-k")] == [1, 2]


async def test_the_sql_path_defaults_to_the_newest_schema_version(log: EventStore) -> None:
    await log.pool.execute("SELECT * FROM agentlog.append_event('document-v', 'PersonJoined', $1::text::jsonb)",
                           json.dumps(JOINED))  # fmt: skip
    (recorded,) = await log.read_stream("document-v")
    assert recorded.schema_version == 2
    assert log.decode(recorded) == PersonJoined(**JOINED)  # not upcast as if old (connection_id kept)


async def test_a_restore_into_a_copy_of_the_same_cluster_is_sealed_by_migrate(
    log: EventStore, owner_database_url: str
) -> None:
    """As a logical restore into a physical copy taken earlier would leave it: same system identifier, transaction
    ids below what the log recorded."""
    owner = await asyncpg.connect(owner_database_url)
    try:
        ahead = await owner.fetchval("SELECT pg_current_xact_id()::text::bigint + 1000000")
        await owner.execute(
            "INSERT INTO agentlog.events (transaction_id, event_id, stream_id, stream_version, event_type,"
            " schema_version, data) VALUES ($1::text::xid8, gen_random_uuid(), 'document-old', 1, 'PersonJoined', 2,"
            " $2::text::jsonb)",
            str(ahead),
            json.dumps(JOINED),
        )
    finally:
        await owner.close()
    with pytest.raises(LogOrderBrokenError, match="not sealed"):
        await asyncio.to_thread(check_log_order, log.url)
    await asyncio.to_thread(migrate, owner_database_url)
    await asyncio.to_thread(check_log_order, log.url)
    appended = await log.append("document-new", [PersonJoined(**JOINED)], ANY)
    (old,) = await log.read_stream("document-old")
    assert appended.events[0].position > old.position


async def test_a_rewound_checkpoint_is_not_a_broken_order(log: EventStore) -> None:
    await log.append("document-r", [PersonJoined(**JOINED)], ANY)
    await recorder.load_checkpoint(log.pool, "rewound")
    await log.pool.execute(
        "UPDATE agentlog.checkpoints SET events_applied = 5 WHERE name = 'rewound'"
    )  # passed more than lie before it: moved back by hand
    assert await log.pool.fetch("SELECT * FROM agentlog.checkpoints_out_of_order()") == []


def run_cli(*arguments: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTLOG_")}
    env["AGENTLOG_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "agentlog.cli", *arguments],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_handler_skipped_shows_names_as_they_are(log: EventStore, database_url: str) -> None:
    unknown = await asyncio.to_thread(run_cli, "handler", "skipped", "[/]", database_url=database_url)
    assert unknown.returncode == 3 and "no handler or projection named '[/]'" in unknown.stderr
    await log.pool.execute(
        "SELECT agentlog.append_event('document-[/]', 'PersonJoined', $1::text::jsonb)",
        json.dumps({**JOINED, "people_present": 0}),
    )
    projection = installed_projections().found["document_activity"]
    runner = HandlerRunner(log, [ProjectionHandler(projection)])
    task = asyncio.create_task(runner.run())
    async with asyncio.timeout(20):
        while not await recorder.select_skipped(log.pool, "document_activity"):
            await asyncio.sleep(0.02)
    runner.stop.set()
    await task
    listed = await asyncio.to_thread(run_cli, "handler", "skipped", "document_activity", database_url=database_url)
    assert listed.returncode == 0, listed.stderr
    assert "document-[/]" in listed.stdout


async def test_a_stale_event_id_collision_is_still_refused_whole(log: EventStore) -> None:
    """The one-statement path's new checks keep the old contract: one id twice in one call, nothing appended."""
    event_id = uuid.uuid4()
    with pytest.raises(asyncpg.PostgresError):
        await log.pool.execute(
            "SELECT * FROM agentlog.append_to_stream('document-i', NULL, NULL, ARRAY[$1::uuid, $1::uuid],"
            " ARRAY['PersonJoined', 'PersonJoined'], ARRAY[2, 2], ARRAY[$2::text::jsonb, $2::text::jsonb],"
            " ARRAY['{}'::jsonb, '{}'::jsonb])",
            event_id,
            json.dumps(JOINED),
        )
    assert await log.read_all() == []
