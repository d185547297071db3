"""Compaction on a real database, attacked: it replaces only rows wholly in the document it folded, whatever arrives
meanwhile and whatever the rows hold."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pycrdt import Doc, Text

from agentlog.documents.updates import load_document
from agentlog.eventstore import EventStore


@pytest.fixture
async def log(database_url: str) -> AsyncIterator[EventStore]:
    async with EventStore.open(database_url, poll_interval=0.2, notify_interval=0.001) as store:
        yield store


def typed(text: str, doc: Doc[Any]) -> list[bytes]:
    updates: list[bytes] = []
    subscription = doc.observe(lambda event: updates.append(event.update))
    node = doc.get("text", type=Text)
    for character in text:
        node.insert(len(node), character)
    doc.unobserve(subscription)
    return updates


async def store(log: EventStore, document_id: str, rows: list[bytes]) -> None:
    await log.pool.execute(
        "INSERT INTO agentlog.document_updates (document_id, body) SELECT $1, unnest($2::bytea[])", document_id, rows
    )


async def stored_text(log: EventStore, document_id: str) -> str:
    return str((await load_document(log.pool, document_id, "test-reader")).document.get("text", type=Text))


async def test_compaction_keeps_a_deletion_of_text_it_does_not_hold(log: EventStore) -> None:
    """Hostile review: a row that only deletes counted as applied (it has no operations to wait for), so compaction
    deleted it even when the text it deletes was not there; the folded document leaves such a deletion out, and once
    the text came it was back for good."""
    doc: Doc[Any] = Doc()
    keystrokes = typed("a" * 600 + "b", doc)
    node = doc.get("text", type=Text)
    deletion: list[bytes] = []
    subscription = doc.observe(lambda event: deletion.append(event.update))
    del node[600:601]  # someone deletes the "b" (they had it; this server does not yet)
    doc.unobserve(subscription)
    await store(log, "deleted", [*keystrokes[:600], *deletion])
    assert await stored_text(log, "deleted") == "a" * 600  # loading compacts the 600 keystrokes into one row
    assert await log.pool.fetchval("SELECT count(*) FROM agentlog.document_updates WHERE document_id = 'deleted'") == 2
    await store(log, "deleted", [keystrokes[600]])  # the "b" comes
    assert await stored_text(log, "deleted") == "a" * 600, "the deletion was compacted away"
