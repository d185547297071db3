"""Alembic environment: run migrations online, one migrator at a time.

Several `agentlog up` processes may start together against one database, so the migration runs under a
transaction-level advisory lock; the ones that wait find the schema already at head and do nothing.
"""

from __future__ import annotations

from sqlalchemy import create_engine, pool, text

from alembic import context

MIGRATION_LOCK_KEY = 1095524684  # shared by every agentlog migrator, distinct from the stream locks

config = context.config


def _database_url() -> str:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: run migrations through `agentlog migrate`")
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return str(url)


def run_migrations_online() -> None:
    engine = create_engine(_database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        context.configure(connection=connection, transaction_per_migration=False)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("agentlog migrations run online only")
run_migrations_online()
