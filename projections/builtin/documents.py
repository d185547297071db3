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
from typing import ClassVar

from agentlog.domains.documents.events import DocumentActivated, PersonJoined, PersonLeft
from agentlog.eventstore import TypedEvent
from agentlog.eventstore.postgres.connections import Connection

HISTORY = """
INSERT INTO document_activity (global_position, document_id, event_type, user_id, user_count, recorded_at)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::integer[], $6::timestamptz[])
ON CONFLICT (global_position) DO NOTHING
"""

NOW = """
INSERT INTO documents AS d (document_id, status, people_present, activations, last_activity_at, became_active_at,
                            became_idle_at)
SELECT $1::text, CASE WHEN $2::text = 'active' THEN 'active' ELSE 'idle' END, greatest($3::integer, 0),
       CASE WHEN $2::text = 'active' THEN 1 ELSE 0 END, $4::timestamptz,
       CASE WHEN $2::text = 'active' THEN $4::timestamptz END, CASE WHEN $2::text = 'idle' THEN $4::timestamptz END
ON CONFLICT (document_id) DO UPDATE
   SET status           = CASE $2::text WHEN 'active' THEN 'active' WHEN 'idle' THEN 'idle' ELSE d.status END,
       people_present   = CASE $2::text WHEN 'idle' THEN 0 ELSE greatest(d.people_present + $3::integer, 0) END,
       activations      = d.activations + CASE WHEN $2::text = 'active' THEN 1 ELSE 0 END,
       last_activity_at = CASE WHEN $2::text IN ('user_joined', 'edited', 'active') THEN $4::timestamptz
                               ELSE d.last_activity_at END,
       became_active_at = CASE WHEN $2::text = 'active' THEN $4::timestamptz ELSE d.became_active_at END,
       became_idle_at   = CASE WHEN $2::text = 'idle' THEN $4::timestamptz ELSE d.became_idle_at END
"""

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
            await connection.execute(NOW, document_id, kind, change, item.recorded_at)
        if history:
            await connection.execute(HISTORY, *map(list, zip(*history, strict=True)))


projection = DocumentActivityProjection()
