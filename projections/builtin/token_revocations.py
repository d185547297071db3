"""token_revocations: every token taken back (`agentlog token revoke`), for people asking "who was shut out, and
why" from SQL. The document servers enforce revocations from the log itself, not from this table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from agentlog.domains.tokens.events import TokenRevoked
from agentlog.eventstore import TypedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.eventstore.postgres.queries import load_queries

QUERIES = load_queries(Path(__file__).with_suffix(".sql"))


class TokenRevocations:
    name: ClassVar[str] = "token_revocations"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("token_revocations",)
    event_types: ClassVar[frozenset[str] | None] = frozenset({"TokenRevoked"})

    async def apply(self, connection: Connection, events: Sequence[TypedEvent]) -> None:
        rows = []
        for item in events:
            event = item.event
            assert isinstance(event, TokenRevoked)
            before = None if event.issued_before is None else datetime.fromtimestamp(event.issued_before, UTC)
            rows.append((item.global_position, event.token_id, event.kind, event.subject, before, event.reason,
                         item.recorded_at))  # fmt: skip
        if rows:
            await connection.execute(QUERIES["insert_revocations"], *map(list, zip(*rows, strict=True)))


projection = TokenRevocations()
