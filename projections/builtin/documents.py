"""document_activity: each document's activity now (`documents`) and its history (`document_activity`): people
joining and leaving, the document becoming active and idle.

`people_present` is counted from joins and leaves across every document server, and reset when the document goes
idle (a server that died never sent its leaves; the activity decider already dropped its people then). The
deciders' presence rule (`domains.documents.presence`) is not folded here: it needs every connection and server
incarnation as state across events, which a projection keeps only in its tables.

`last_activity_at` is the latest work in the document, as the agent manager counts it for eviction: a person
joining, people typing (`DocumentEdited`, at most one a minute or so per document), the document becoming active.
Leaving and going idle are not work. Edits are not history rows: `document_activity` records who came and went.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from agentlog.domains.documents.events import DocumentActivated, PersonJoined, PersonLeft
from agentlog.eventstore import TypedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.eventstore.postgres.queries import load_queries

QUERIES = load_queries(Path(__file__).with_suffix(".sql"))

KINDS = {
    "PersonJoined": "user_joined",
    "PersonLeft": "user_left",
    "DocumentEdited": "edited",
    "DocumentActivated": "active",
    "DocumentIdled": "idle",
}
HISTORY_KINDS = frozenset({"user_joined", "user_left", "active", "idle"})


class DocumentActivityProjection:
    name: ClassVar[str] = "document_activity"
    version: ClassVar[int] = 2
    tables: ClassVar[tuple[str, ...]] = ("documents", "document_activity")
    event_types: ClassVar[frozenset[str] | None] = frozenset(KINDS)

    async def apply(self, connection: Connection, events: Sequence[TypedEvent]) -> None:
        history: list[tuple[object, ...]] = []
        for item in events:
            event = item.event
            kind = KINDS[item.event_type]
            document_id = item.stream_id.removeprefix("document-")
            if kind in HISTORY_KINDS:
                user_id = event.user_id if isinstance(event, PersonJoined | PersonLeft) else None
                count = event.people_present if isinstance(event, PersonJoined | PersonLeft | DocumentActivated) else 0
                history.append((item.global_position, document_id, kind, user_id, count, item.recorded_at))
            change = {"user_joined": 1, "user_left": -1}.get(kind, 0)
            await connection.execute(QUERIES["upsert_document"], document_id, kind, change, item.recorded_at)
        if history:
            await connection.execute(QUERIES["insert_history"], *map(list, zip(*history, strict=True)))


projection = DocumentActivityProjection()
