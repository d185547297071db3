"""Connections to the log's database: codecs, session settings, and the pool."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

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
Pool = asyncpg.Pool


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


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    with translated_errors():
        pool = await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            init=configure_connection,
            server_settings=SESSION_SETTINGS,
        )
    return pool
