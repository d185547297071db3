"""Which database agentlog talks to, and bringing its schema to head with alembic."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

import agentlog
from agentlog.config import Settings
from agentlog.embedded import EmbeddedPostgres
from eventstore.errors import DatabaseUnavailableError

if TYPE_CHECKING:
    from alembic.config import Config

# alembic and SQLAlchemy are imported inside the functions that migrate: they cost a third of a second, and
# most commands (append, tail, db url) never migrate.


@dataclass(frozen=True, slots=True)
class Database:
    url: str
    embedded: EmbeddedPostgres | None
    started_here: bool
    """True when this process started the embedded server (and so stops it when it is done)."""


def open_database(settings: Settings) -> Database:
    """AGENTLOG_DATABASE_URL when set; otherwise the embedded server under AGENTLOG_HOME, started if needed."""
    if settings.database_url:
        return Database(settings.database_url, None, False)
    server = EmbeddedPostgres(settings.home)
    url, started = server.ensure_running()
    if started:
        migrate(url)  # a private database is always at head, whichever command started it
    return Database(url, server, started)


def check_reachable(url: str) -> None:
    try:
        with psycopg.connect(url, connect_timeout=5) as connection:
            connection.execute("SELECT 1")
    except psycopg.OperationalError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DatabaseUnavailableError(f"PostgreSQL is unreachable: {first_line}") from error


def _alembic_config(url: str) -> Config:
    from alembic.config import Config

    packaged = Path(agentlog.__file__).parent / "_migrations" / "alembic.ini"
    source_tree = Path(agentlog.__file__).parent.parent / "alembic.ini"
    config = Config(str(packaged if packaged.exists() else source_tree))
    config.attributes["database_url"] = url
    return config


def _sqlalchemy_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1]


def head_revision(url: str) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(url)).get_current_head()


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine, pool

    engine = create_engine(_sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def migrate(url: str) -> tuple[str | None, str | None]:
    """Upgrade to head; return (revision before, revision after). Safe to run from several processes at once."""
    from alembic import command

    check_reachable(url)
    before = current_revision(url)
    command.upgrade(_alembic_config(url), "head")
    return before, current_revision(url)
