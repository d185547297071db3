"""Least privilege: the application role appends only through the functions and cannot forge the log; the
reporting role reads projections and reports and nothing else; a database made before the roles migrates forward.
"""

from __future__ import annotations

import asyncpg
import psycopg
import pytest

from agentlog.database import _alembic_config, migrate
from agentlog.embedded import REPORTING_ROLE
from agentlog.eventstore import EventStore
from tests.conftest import PostgresServer
from tests.support.events import Tick, test_catalogue

FORGERIES = [
    "INSERT INTO agentlog.events (event_id, stream_id, stream_version, event_type, schema_version, data) "
    "VALUES (gen_random_uuid(), 'test-forged', 1, 'Tick', 1, '{\"n\": 1}')",
    "INSERT INTO agentlog.events (transaction_id, event_id, stream_id, stream_version, event_type, schema_version, "
    "data) VALUES ('3', gen_random_uuid(), 'test-forged', 1, 'Tick', 1, '{\"n\": 1}')",
    "INSERT INTO agentlog.events (global_position, event_id, stream_id, stream_version, event_type, "
    "schema_version, data) OVERRIDING SYSTEM VALUE "
    "VALUES (-5, gen_random_uuid(), 'test-forged', 1, 'Tick', 1, '{\"n\": 1}')",
    "UPDATE agentlog.events SET data = '{\"n\": 99}'",
    "DELETE FROM agentlog.events",
    "TRUNCATE agentlog.events",
    "SET session_replication_role = replica",
    "ALTER TABLE agentlog.events DISABLE TRIGGER USER",
    "UPDATE agentlog.log_epoch SET transaction_id_offset = 0",
    "DELETE FROM agentlog.event_schemas",
    "SELECT * FROM agentlog.advance_transaction_epoch()",
    "SELECT agentlog.grant_privileges()",
    "SELECT setval(pg_get_serial_sequence('agentlog.events', 'global_position'), 1)",
    "CREATE TABLE agentlog.sneaky (n int)",
]


@pytest.fixture
async def log(database_url: str) -> EventStore:
    async with EventStore.open(database_url, catalogue=test_catalogue) as store:
        yield store


async def refused(url: str, statement: str) -> str:
    """Run `statement` as the URL's role; return the SQLSTATE it was refused with (fails if it was not)."""
    connection = await asyncpg.connect(url)
    try:
        with pytest.raises(asyncpg.PostgresError) as raised:
            await connection.execute(statement)
        return str(raised.value.sqlstate)
    finally:
        await connection.close()


@pytest.mark.parametrize("statement", FORGERIES)
async def test_the_application_role_cannot_forge_the_log(log: EventStore, database_url: str, statement: str) -> None:
    await log.append("test-1", [Tick(n=0)])
    sqlstate = await refused(database_url, statement)
    assert sqlstate in {"42501", "AL000"}, sqlstate  # insufficient privilege (or the log's own trigger)
    assert [event.data for event in await log.read_stream("test-1")] == [{"n": 0, "writer": 0}]
    assert await log.pool.fetchval("SELECT count(*) FROM agentlog.events") == 1


async def test_the_application_role_is_no_superuser_and_appends_with_pinned_positions(
    log: EventStore, database_url: str
) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        assert await connection.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is False
        row = await connection.fetchrow(
            "SELECT * FROM agentlog.append_event('test-sql', 'Tick', '{\"n\": 1}', expected_version => 0)"
        )
        own = await connection.fetchval("SELECT agentlog.current_transaction_id()")
    finally:
        await connection.close()
    assert row is not None and row["stream_version"] == 1
    assert 0 < int(row["transaction_id"]) < int(own)  # the function chose it, from the server's own id
    appended = await log.append("test-py", [Tick(n=2)])
    assert appended.stream_version == 1


async def test_the_reporting_role_reads_projections_and_reports_only(
    log: EventStore, postgres_server: PostgresServer, database_name: str
) -> None:
    assert postgres_server.embedded is not None
    reader = postgres_server.embedded.role_url(REPORTING_ROLE, database_name)
    connection = await asyncpg.connect(reader)
    try:
        await connection.fetch("SELECT * FROM reports.categories")
        await connection.fetch("SELECT * FROM projections.stream_summary")
    finally:
        await connection.close()
    for statement in [
        "SELECT * FROM agentlog.events",
        "SELECT * FROM agentlog.checkpoints",
        "SELECT * FROM agentlog.secrets",
        "SELECT * FROM agentlog.append_event('test-r', 'Tick', '{\"n\": 1}')",
        "INSERT INTO projections.log_head VALUES (true, 1, '1', 1, now())",
        "DELETE FROM projections.stream_summary",
        "CREATE TABLE projections.sneaky (n int)",
    ]:
        assert await refused(reader, statement) == "42501", statement


def test_a_database_from_before_the_roles_migrates_forward(
    empty_database_url: str, postgres_server: PostgresServer
) -> None:
    """A log made by the superuser-only versions (up to 0004), with events and a checkpoint, migrates to head;
    then the application role appends, reads, and still cannot write the log directly."""
    from alembic import command

    command.upgrade(_alembic_config(empty_database_url), "0004_recorded_at_statement_time")
    with psycopg.connect(empty_database_url, autocommit=True) as connection:
        for n in range(3):
            connection.execute(
                "SELECT * FROM agentlog.append_event('document-old', 'PersonJoined', %s::jsonb)",
                [f'{{"user_id": "u{n}", "people_present": {n + 1}}}'],
            )
        connection.execute(
            "INSERT INTO agentlog.checkpoints (name, transaction_id, global_position) "
            "SELECT 'old-handler', transaction_id, global_position FROM agentlog.events WHERE stream_version = 3"
        )
    migrate(empty_database_url)
    assert postgres_server.embedded is not None
    postgres_server.embedded.ensure_logins()
    application = postgres_server.application_url(empty_database_url.rsplit("/", 1)[1])
    with psycopg.connect(application, autocommit=True) as connection:
        old_head = connection.execute(
            "SELECT transaction_id::text::bigint FROM agentlog.events ORDER BY global_position DESC LIMIT 1"
        ).fetchone()
        new = connection.execute(
            "SELECT stream_version, transaction_id::text::bigint FROM agentlog.append_event('document-old', "
            "'PersonLeft', '{\"user_id\": \"u0\", \"people_present\": 2}', expected_version => 3, schema_version => 1)"
        ).fetchone()
        assert connection.execute("SELECT count(*) FROM agentlog.events").fetchone() == (4,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute("DELETE FROM agentlog.events")
    assert old_head is not None and new is not None
    assert new[0] == 4 and new[1] > old_head[0]
