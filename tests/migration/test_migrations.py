"""Alembic alone owns the schema: a database built by the migrations matches the snapshot, and migrating
forward again on a database that holds events keeps every event."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from agentlog.database import current_revision, head_revision, migrate

SNAPSHOT = Path(__file__).with_name("schema_snapshot.txt")

SCHEMA_QUERY = """
SELECT 'column ' || table_schema || '.' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable
  FROM information_schema.columns WHERE table_schema IN ('agentlog', 'projections', 'reports')
UNION ALL
SELECT 'index ' || schemaname || '.' || indexname || ': ' || indexdef FROM pg_indexes
 WHERE schemaname IN ('agentlog', 'projections')
UNION ALL
SELECT 'constraint ' || conrelid::regclass || '.' || conname || ': ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace IN ('agentlog'::regnamespace, 'projections'::regnamespace)
UNION ALL
SELECT 'function ' || p.oid::regprocedure::text || CASE WHEN p.prosecdef THEN ' security definer' ELSE '' END
  FROM pg_proc AS p WHERE p.pronamespace = 'agentlog'::regnamespace
UNION ALL
SELECT 'grant ' || grantee || ' ' || privilege_type || ' on ' || table_schema || '.' || table_name
  FROM information_schema.table_privileges
 WHERE grantee IN ('agentlog_application', 'agentlog_reporting', 'PUBLIC')
   AND table_schema IN ('agentlog', 'projections', 'reports')
UNION ALL
SELECT 'grant ' || grantee || ' EXECUTE on ' || specific_schema || '.' || routine_name
  FROM information_schema.routine_privileges
 WHERE grantee IN ('agentlog_application', 'agentlog_reporting', 'PUBLIC') AND specific_schema = 'agentlog'
UNION ALL
SELECT 'schema usage ' || n.nspname || ' ' || pg_get_userbyid(a.grantee)
  FROM pg_namespace AS n, aclexplode(n.nspacl) AS a
 WHERE n.nspname IN ('agentlog', 'projections', 'reports') AND a.grantee <> n.nspowner
UNION ALL
SELECT 'trigger ' || tgname || ' on ' || tgrelid::regclass FROM pg_trigger
 WHERE NOT tgisinternal AND tgrelid::regclass::text LIKE 'agentlog.%'
UNION ALL
SELECT 'storage ' || c.oid::regclass || ': ' || array_to_string(c.reloptions, ', ') FROM pg_class AS c
 WHERE c.relnamespace IN ('agentlog'::regnamespace, 'projections'::regnamespace) AND c.reloptions IS NOT NULL
UNION ALL
SELECT 'view ' || table_schema || '.' || table_name FROM information_schema.views
 WHERE table_schema IN ('agentlog', 'reports')
ORDER BY 1
"""


def schema_of(url: str) -> str:
    with psycopg.connect(url) as connection:
        return "\n".join(row[0] for row in connection.execute(SCHEMA_QUERY)) + "\n"


def test_migrations_build_the_expected_schema(empty_database_url: str) -> None:
    before, after = migrate(empty_database_url)
    assert (before, after) == (None, head_revision(empty_database_url))
    actual = schema_of(empty_database_url)
    if os.environ.get("AGENTLOG_UPDATE_SCHEMA_SNAPSHOT"):
        SNAPSHOT.write_text(actual)
    assert actual == SNAPSHOT.read_text(), "schema drifted: review, then AGENTLOG_UPDATE_SCHEMA_SNAPSHOT=1"


async def test_a_rebuild_leaves_the_schema_as_the_migrations_made_it(database_url: str) -> None:
    """The swap brings back index names, storage parameters and the report views: nothing drifts."""
    from agentlog.eventstore import EventStore
    from agentlog.projections import installed_projections
    from agentlog.projections.replay import rebuild

    before = schema_of(database_url)
    async with EventStore.open(database_url) as store:
        for projection in installed_projections().found.values():
            await rebuild(store, projection)
    assert schema_of(database_url) == before


def test_migrating_again_keeps_every_event(database_url: str, owner_database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as connection:
        for n in range(5):
            connection.execute(
                "SELECT * FROM agentlog.append_event('document-m', 'PersonJoined', %s::jsonb, schema_version => 1)",
                [f'{{"user_id": "u{n}", "people_present": {n + 1}}}'],
            )
    assert migrate(owner_database_url) == (head_revision(database_url), head_revision(database_url))
    with psycopg.connect(database_url) as connection:
        count = connection.execute("SELECT count(*) FROM agentlog.events").fetchone()
    assert count == (5,)
    assert current_revision(database_url) == head_revision(database_url)


def test_the_first_migration_keeps_events_when_the_next_one_runs(empty_database_url: str) -> None:
    """Upgrade step by step, with events and a checkpoint in between: nothing is lost, lag counts are right."""
    from agentlog.database import _alembic_config
    from alembic import command

    config = _alembic_config(empty_database_url)
    command.upgrade(config, "0001_event_log")
    with psycopg.connect(empty_database_url, autocommit=True) as connection:
        for n in range(7):
            connection.execute(
                "SELECT * FROM agentlog.append_event('document-m', 'PersonJoined', %s::jsonb)",
                [f'{{"user_id": "u{n}", "people_present": {n + 1}}}'],
            )
        connection.execute(
            "INSERT INTO agentlog.checkpoints (name, transaction_id, global_position) "
            "SELECT 'old-handler', transaction_id, global_position FROM agentlog.events WHERE stream_version = 3"
        )
    command.upgrade(config, "head")
    with psycopg.connect(empty_database_url) as connection:
        assert connection.execute("SELECT count(*) FROM agentlog.events").fetchone() == (7,)
        applied = connection.execute(
            "SELECT events_applied FROM agentlog.checkpoints WHERE name = 'old-handler'"
        ).fetchone()
    assert applied == (3,)


def test_the_event_log_migrations_refuse_to_go_down(empty_database_url: str) -> None:
    from agentlog.database import _alembic_config
    from alembic import command

    config = _alembic_config(empty_database_url)
    command.upgrade(config, "head")
    with pytest.raises(RuntimeError, match="by hand"):  # the roles
        command.downgrade(config, "0005_log_under_operators")
    assert current_revision(empty_database_url) == head_revision(empty_database_url)


def test_the_read_side_can_go_down_but_not_the_log(empty_database_url: str) -> None:
    from agentlog.database import _alembic_config
    from alembic import command

    config = _alembic_config(empty_database_url)
    command.upgrade(config, "0004_recorded_at_statement_time")
    command.downgrade(config, "0001_event_log")  # the read side can go
    with pytest.raises(RuntimeError, match="never dropped"):
        command.downgrade(config, "base")
