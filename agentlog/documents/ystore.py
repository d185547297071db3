"""Document content in PostgreSQL: every Y.js update as received, folded into one when they pile up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import structlog
from pycrdt import Doc
from pycrdt._base import BaseType
from pycrdt.store import BaseYStore

from eventstore.errors import AgentlogError
from eventstore.postgres.connections import StatementPool
from eventstore.postgres.errors import CONNECTION_ERRORS

log = structlog.get_logger("agentlog.documents.ystore")

INSERT = "INSERT INTO agentlog.document_updates (document_id, body) VALUES ($1, $2)"
SELECT = "SELECT id, body FROM agentlog.document_updates WHERE document_id = $1 ORDER BY id"
COMPACT = """
WITH gone AS (DELETE FROM agentlog.document_updates WHERE document_id = $1 AND id = ANY ($2::bigint[]))
INSERT INTO agentlog.document_updates (document_id, body) VALUES ($1, $3)
"""

STORE_ERRORS: tuple[type[BaseException], ...] = (AgentlogError, *CONNECTION_ERRORS)

COMPACT_AFTER = 500
"""Updates a document may pile up before loading it folds them into one (a keystroke is an update)."""


class PostgresYStore(BaseYStore):
    """The store a room writes its updates to; `load_document` reads them back (rooms never read their store)."""

    def __init__(self, pool: StatementPool, document_id: str) -> None:
        self.path = document_id
        self.metadata_callback = None
        self._pool = pool
        self.document_id = document_id

    async def write(self, data: bytes) -> None:
        """Store one update, retrying for as long as PostgreSQL is away: the room sends it on only once stored,
        so its later updates wait behind it (nobody sees what is not stored, and nothing accepted is dropped)."""
        delay = 0.1
        attempt = 0
        while True:
            try:
                await self._pool.execute(INSERT, self.document_id, data)
                return
            except STORE_ERRORS as error:
                attempt += 1
                log.warning("document.update_not_stored", document=self.document_id, error=str(error),
                            attempt=attempt, retry_in_s=delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def read(self) -> AsyncIterator[tuple[bytes, bytes, float]]:
        for _, body in await self._pool.fetch(SELECT, self.document_id):
            yield bytes(body), b"", 0.0


async def load_document(pool: StatementPool, document_id: str) -> Doc[BaseType]:
    """The document as stored; compacted first when its updates piled up."""
    document: Doc[BaseType] = Doc()
    rows = await pool.fetch(SELECT, document_id)
    for _, body in rows:
        document.apply_update(bytes(body))
    if len(rows) > COMPACT_AFTER:
        # Exactly the rows folded in: an update another server stores meanwhile is kept.
        await pool.execute(COMPACT, document_id, [row[0] for row in rows], document.get_update())
        log.info("document.compacted", document=document_id, updates=len(rows))
    return document
