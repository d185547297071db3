"""The PostgreSQL server a benchmark measures on (the one given by URL, or agentlog's embedded one), and a fresh,
migrated database on it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from agentlog.database import migrate
from agentlog.embedded import EmbeddedPostgres


@contextmanager
def server_url(database_url: str | None, home: Path) -> Iterator[str]:
    """The server's URL; an embedded server under `home` is started if needed, and stopped after if it was."""
    if database_url:
        yield database_url
        return
    server = EmbeddedPostgres(home)
    url, started_here = server.ensure_running()
    try:
        yield url
    finally:
        if started_here:
            server.stop()


def with_database(url: str, dbname: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + dbname))


def fresh_database(url: str, dbname: str) -> str:
    """Drop and create `dbname` on the server of `url`, migrate it; return its URL."""
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {dbname}")
    database_url = with_database(url, dbname)
    migrate(database_url)
    return database_url
