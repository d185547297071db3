"""Connections to the log's database: codecs, session settings, and the pool."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import orjson

from agentlog.eventstore.postgres.errors import translated_errors
from agentlog.eventstore.postgres.queries import QUERIES
from agentlog.eventstore.records import UnreadableJSON

APPLICATION_NAME = "agentlog"

SESSION_SETTINGS = {
    "application_name": APPLICATION_NAME,
    # A transaction left open holds back every subscriber (the visibility barrier): never let one idle long.
    "idle_in_transaction_session_timeout": "60000",
    # Our statements are index lookups whose best plan does not depend on the values: plan them once per
    # session, not at every call (PostgreSQL re-planned the subscription read each time, 0.1 ms of latency).
    "plan_cache_mode": "force_generic_plan",
    # A handler's lock lives as long as its session: notice a vanished client machine in seconds, not hours.
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
}

Connection = asyncpg.Connection


def _encode_jsonb(value: Any) -> bytes:
    if isinstance(value, bytes):  # already JSON: the append path encodes each payload once, to check its size
        return b"\x01" + value
    return b"\x01" + orjson.dumps(value)


def _decode_jsonb(value: bytes) -> Any:
    try:
        return orjson.loads(value[1:])
    except orjson.JSONDecodeError as error:  # never fail a whole read (a handler's batch) on one value
        return UnreadableJSON(str(error))


async def configure_connection(connection: asyncpg.Connection) -> None:
    """jsonb in binary form through orjson: the payload codec is on the hot path of every read and write."""
    await connection.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=_encode_jsonb, decoder=_decode_jsonb, format="binary"
    )


async def connect(url: str, **settings: str) -> asyncpg.Connection:
    """One dedicated connection (listeners, handler instances holding their lock)."""
    with translated_errors():
        connection = await asyncpg.connect(
            url, server_settings={**SESSION_SETTINGS, **settings}, statement_cache_size=256
        )
    await configure_connection(connection)
    return connection


class StatementPool:
    """A small pool of connections for statements and short transactions.

    asyncpg's own pool costs tens of microseconds of client CPU per acquire and release, and resets every
    released connection with a round trip of four statements — both on the path of every append. Nothing agentlog
    runs here leaves session state behind (listeners and handler locks have dedicated connections), so this pool
    only keeps asyncpg's rules for failures: an error the server reported leaves the connection as good as new, a
    transaction left open is rolled back, and any other failure (a lost socket, a cancelled query) terminates the
    connection so that a fresh one replaces it.
    """

    def __init__(
        self, url: str, max_size: int, settings: dict[str, str], on_connect: Callable[[], None] | None = None
    ) -> None:
        self._url = url
        self._max_size = max_size
        self._settings = settings
        self._on_connect = on_connect
        """Called with each new connection before it is used: what a client remembers of the database may be
        stale once a connection had to be opened again (the server may have restarted, or been restored)."""
        self._idle: list[asyncpg.Connection] = []
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._size = 0
        self._closed = False

    async def _take(self) -> asyncpg.Connection:
        while True:
            if self._closed:
                raise asyncpg.InterfaceError("the pool is closed")
            while self._idle:
                connection = self._idle.pop()
                if not connection.is_closed():
                    return connection
                self._size -= 1
            if self._size < self._max_size:
                self._size += 1
                try:
                    connection = await connect(self._url, **self._settings)
                except BaseException:
                    self._size -= 1
                    self._wake_one()
                    raise
                if self._on_connect is not None:
                    self._on_connect()
                return connection
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if not waiter.cancelled() and waiter.done():
                    self._wake_one()  # pass on a wake-up we will not use
                raise
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _give_back(self, connection: asyncpg.Connection) -> None:
        if self._closed or connection.is_closed():
            connection.terminate()
            self._size -= 1
        else:
            if connection.is_in_transaction():
                await connection.execute(QUERIES["rollback_given_back"])
            self._idle.append(connection)
        self._wake_one()

    def _discard(self, connection: asyncpg.Connection) -> None:
        connection.terminate()
        self._size -= 1
        self._wake_one()

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        connection = await self._take()
        try:
            yield connection
        except asyncpg.PostgresError:
            await self._give_back(connection)
            raise
        except BaseException:
            self._discard(connection)
            raise
        await self._give_back(connection)

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[asyncpg.Record]:
        async with self.acquire() as connection:
            return await connection.fetch(query, *args, timeout=timeout)

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> asyncpg.Record | None:
        async with self.acquire() as connection:
            return await connection.fetchrow(query, *args, timeout=timeout)

    async def fetchval(self, query: str, *args: Any, column: int = 0, timeout: float | None = None) -> Any:
        async with self.acquire() as connection:
            return await connection.fetchval(query, *args, column=column, timeout=timeout)

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        async with self.acquire() as connection:
            return await connection.execute(query, *args, timeout=timeout)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            self._size -= 1
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), timeout=2)
            connection.terminate()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)


async def create_pool(url: str, *, max_size: int = 10, on_connect: Callable[[], None] | None = None) -> StatementPool:
    """A pool whose first connection is opened now, so a wrong URL fails here with a clear error."""
    pool = StatementPool(url, max_size, {}, on_connect)
    async with pool.acquire():
        pass
    return pool
