"""Fixtures shared by every kind of test.

One PostgreSQL server per session: AGENTLOG_TEST_DATABASE_URL when given (any server, user with CREATEDB),
otherwise the embedded server (as root too), tuned for tests with fsync off. The schema is migrated once into a
template database; each test gets a fresh `CREATE DATABASE ... TEMPLATE` of it through pytest-postgresql's
janitor, dropped afterwards. On the embedded server tests connect as the application role, as agentlog's own
processes do (`database_url`); `owner_database_url` is the same database as its owner, for what only migrations
and operators may do.

Temporary files, the server's data directory among them, are kept in memory when the machine has room there
(`tests/support/memory_tmp.py`); the project's modules are compiled once at the start, for the processes the tests
start (`tests/support/bytecode.py`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from agentlog.database import migrate
from agentlog.embedded import APPLICATION_ROLE, EmbeddedPostgres
from agentlog.eventstore import EventStore
from tests.support.bytecode import compile_the_project
from tests.support.memory_tmp import keep_temporary_files_in_memory

keep_temporary_files_in_memory()

TEST_SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_prepared_transactions": "10",  # tests leave one behind on purpose (test_barrier.py)
}


def pytest_sessionstart(session: pytest.Session) -> None:
    compile_the_project()  # once, for the Python processes the tests start


@dataclass(frozen=True)
class PostgresServer:
    url: str
    """The owner's (a superuser)."""
    embedded: EmbeddedPostgres | None = None

    def database_url(self, name: str) -> str:
        """The owner's URL of database `name`."""
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path=f"/{name}"))

    def application_url(self, name: str) -> str:
        """The application role's URL of database `name` (the owner's on an external test server)."""
        if self.embedded is None:
            return self.database_url(name)
        return self.embedded.role_url(APPLICATION_ROLE, name)

    def janitor(self, dbname: str, *, template: str | None = None, as_template: bool = False) -> DatabaseJanitor:
        parts = urlsplit(self.url)
        return DatabaseJanitor(
            user=parts.username or "postgres",
            password=parts.password,
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            dbname=dbname,
            template_dbname=template,
            as_template=as_template,
        )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    external = os.environ.get("AGENTLOG_TEST_DATABASE_URL")
    if external:
        yield PostgresServer(external)
        return
    # Not under pytest's basetemp: pytest deletes all but the newest three of those, so a few test runs started
    # meanwhile would delete this one's data directory under the running server (which then shuts down).
    home = Path(tempfile.mkdtemp(prefix="agentlog-test-postgres-"))
    server = EmbeddedPostgres(home, server_settings=TEST_SERVER_SETTINGS)
    try:
        url, _ = server.ensure_running()
        yield PostgresServer(url, server)
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def template_database(postgres_server: PostgresServer) -> Iterator[str]:
    name = f"agentlog_template_{uuid.uuid4().hex[:10]}"
    janitor = postgres_server.janitor(name, as_template=True)
    janitor.init()
    migrate(postgres_server.database_url(name))
    if postgres_server.embedded is not None:
        postgres_server.embedded.ensure_logins()
    yield name
    janitor.drop()


@pytest.fixture
def database_name(postgres_server: PostgresServer, template_database: str) -> Iterator[str]:
    name = f"agentlog_test_{uuid.uuid4().hex[:10]}"
    janitor = postgres_server.janitor(name, template=template_database)
    janitor.init()
    yield name
    janitor.drop()


@pytest.fixture
def database_url(postgres_server: PostgresServer, database_name: str) -> str:
    """A fresh migrated database, as the application role."""
    return postgres_server.application_url(database_name)


@pytest.fixture
def owner_database_url(postgres_server: PostgresServer, database_name: str) -> str:
    """The same database as `database_url`, as its owner."""
    return postgres_server.database_url(database_name)


@pytest.fixture
def empty_database_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A database with no schema at all (migration tests)."""
    name = f"agentlog_empty_{uuid.uuid4().hex[:10]}"
    janitor = postgres_server.janitor(name)
    janitor.init()
    yield postgres_server.database_url(name)
    janitor.drop()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    async with EventStore.open(database_url, notify_interval=0.001, poll_interval=0.2) as opened:
        yield opened


@pytest.fixture
def loop_and_store(database_url: str) -> Iterator[tuple[asyncio.AbstractEventLoop, EventStore]]:
    """A store on an event loop of its own, for synchronous tests (hypothesis) that drive it step by step."""
    from tests.support.events import test_catalogue

    loop = asyncio.new_event_loop()
    context = EventStore.open(database_url, catalogue=test_catalogue, notify_interval=0.001, poll_interval=0.1)
    store = loop.run_until_complete(context.__aenter__())
    try:
        yield loop, store
    finally:
        loop.run_until_complete(context.__aexit__(None, None, None))
        loop.close()
