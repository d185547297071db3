"""Connections to the log's database: codecs, session settings, and the pool."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from eventstore.postgres.errors import translated_errors

APPLICATION_NAME = "agentlog"

SESSION_SETTINGS = {
    "application_name": APPLICATION_NAME,
    # A transaction left open holds back every subscriber (the visibility barrier): never let one idle long.
    "idle_in_transaction_session_timeout": "60000",
    # A handler's lock lives as long as its session: notice a vanished client machine in seconds, not hours.
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
}

Connection = asyncpg.Connection


def _encode_jsonb(value: Any) -> bytes:
    return b"\x01" + orjson.dumps(value)


def _decode_jsonb(value: bytes) -> Any:
    return orjson.loads(value[1:])


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


class StatementConnection(asyncpg.Connection):
    """A pooled connection that carries statements and transactions, never session state.

    asyncpg resets a pooled connection on release with four statements (unlock advisory locks, close cursors,
    UNLISTEN, RESET ALL): one more round trip and server work on every append. Nothing agentlog runs on its pool
    leaves such state (listeners and handler locks have dedicated connections), so the reset is skipped; asyncpg
    still rolls back a transaction left open. Code that borrows `EventStore.pool` must keep to the same rule.
    """

    def get_reset_query(self) -> str:
        return ""


class StatementPool:
    """asyncpg's pool of `StatementConnection`s, with asyncpg's rule for a connection that failed kept by hand.

    Without the reset round trip nothing would notice a connection left broken by a client-side failure (a lost
    socket, a cancelled query) before lending it out again. So: an error the server reported leaves the
    connection as good as new; any other failure terminates it, and the pool opens a fresh one.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
        connection = await self._pool.acquire()
        try:
            yield connection
        except asyncpg.PostgresError:
            raise
        except BaseException:
            connection.terminate()
            raise
        finally:
            await self._pool.release(connection)

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
        await self._pool.close()


Pool = StatementPool


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> StatementPool:
    with translated_errors():
        pool = await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            init=configure_connection,
            server_settings=SESSION_SETTINGS,
            connection_class=StatementConnection,
        )
    return StatementPool(pool)
