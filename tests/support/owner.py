"""What only the database's owner may do, for tests: tables of the tests' own handlers (a user's handler gets its
tables from the user's migrations, run as the owner), and statements the application role is refused."""

from __future__ import annotations

import asyncpg


async def as_owner(owner_url: str, *statements: str) -> None:
    # The owner is the `agentlog` role, so "$user" in the default search path would put new tables in the log's own
    # schema, where the application role (another user) does not look for them.
    connection = await asyncpg.connect(owner_url, server_settings={"search_path": "public"})
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def create_handler_table(owner_url: str, create_table: str, table: str) -> None:
    """Create a test handler's table and let the application role (which runs handlers) use it."""
    await as_owner(
        owner_url, create_table, f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO agentlog_application"
    )
