"""token_revocations: every token taken back (`agentlog token revoke`), for people asking "who was shut out, and
why" from SQL. The document servers enforce revocations from the log itself, not from this table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import ClassVar

from agentlog.domains.tokens.events import TokenRevoked
from agentlog.eventstore import TypedEvent
from agentlog.eventstore.postgres.connections import Connection

INSERT = """
INSERT INTO token_revocations (global_position, token_id, kind, subject, issued_before, reason, revoked_at)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
                     $7::timestamptz[])
ON CONFLICT (global_position) DO NOTHING
"""


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
            await connection.execute(INSERT, *map(list, zip(*rows, strict=True)))


projection = TokenRevocations()
