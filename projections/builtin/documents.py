"""document_activity: each document's activity now (`documents`) and its history (`document_activity`): people
joining and leaving, the document becoming active and idle.

Who is present is the documents domain's rule (`domains.documents.presence`), the very one the deciders fold: a
connection counts from its join to its leave, and a document server that restarts (a new incarnation) or stops
takes its people with it, though it never sent their leaves. The projection keeps that rule's state in its own
tables (`document_connections`, `document_servers`); each batch loads the part its events touch, folds them with
the domain's `Presence`, and writes that part back.

`last_activity_at` is the latest work in the document, as the agent manager counts it for eviction: a person
joining, people typing (`DocumentEdited`, at most one a minute or so per document), the document becoming active.
Leaving and going idle are not work. Edits are not history rows: `document_activity` records who came and went.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from agentlog.domains.agents.events import ManagerStarted, ManagerStopped
from agentlog.domains.documents.events import DocumentActivated, PersonJoined, PersonLeft
from agentlog.domains.documents.presence import PeopleIn, Presence, document_of
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
SERVER_EVENTS = frozenset({"ManagerStarted", "ManagerStopped"})


class DocumentActivityProjection:
    name: ClassVar[str] = "document_activity"
    version: ClassVar[int] = 3
    tables: ClassVar[tuple[str, ...]] = ("documents", "document_activity", "document_connections", "document_servers")
    event_types: ClassVar[frozenset[str] | None] = frozenset(KINDS) | SERVER_EVENTS

    async def apply(self, connection: Connection, events: Sequence[TypedEvent]) -> None:
        documents = sorted({document_of(e.stream_id) for e in events if e.event_type not in SERVER_EVENTS})
        servers = sorted({e.event.manager_id for e in events if isinstance(e.event, ManagerStarted | ManagerStopped)})
        presence, loaded = await _load_presence(connection, documents, servers)
        history: list[tuple[object, ...]] = []
        for item in events:
            event = item.event
            if isinstance(event, ManagerStarted | ManagerStopped):
                for document_id in presence.fold(item.stream_id, event):  # the people a lost server took away
                    await connection.execute(
                        QUERIES["upsert_document"], document_id, "people", presence.people_in(document_id),
                        item.recorded_at,
                    )  # fmt: skip
                continue
            kind = KINDS[item.event_type]
            document_id = document_of(item.stream_id)
            presence.fold(item.stream_id, event)
            if kind in HISTORY_KINDS:
                user_id = event.user_id if isinstance(event, PersonJoined | PersonLeft) else None
                count = event.people_present if isinstance(event, PersonJoined | PersonLeft | DocumentActivated) else 0
                history.append((item.global_position, document_id, kind, user_id, count, item.recorded_at))
            await connection.execute(
                QUERIES["upsert_document"], document_id, kind, presence.people_in(document_id), item.recorded_at
            )
        if history:
            await connection.execute(QUERIES["insert_history"], *map(list, zip(*history, strict=True)))
        await _save_presence(connection, presence, sorted({*loaded, *documents}), servers)


async def _load_presence(
    connection: Connection, documents: list[str], servers: list[str]
) -> tuple[Presence, list[str]]:
    """The part of the presence state a batch touches: every connection of its documents and of the documents its
    servers hold people in, and those servers' incarnations. Returns it and the documents loaded."""
    if not documents and not servers:
        return Presence(), []
    people: dict[str, PeopleIn] = {}
    for row in await connection.fetch(QUERIES["select_connections"], documents, servers):
        people.setdefault(row["document_id"], PeopleIn()).connections[row["connection_id"]] = row["server_id"]
    incarnations = {row["server_id"]: row["incarnation"] for row in await connection.fetch(
        QUERIES["select_servers"], servers
    )}  # fmt: skip
    return Presence(documents=people, servers=incarnations), sorted(people)


async def _save_presence(connection: Connection, presence: Presence, documents: list[str], servers: list[str]) -> None:
    """Write back the part loaded: the documents' connections as they are now, the servers' incarnations."""
    if documents:
        await connection.execute(QUERIES["delete_connections"], documents)
        rows = [
            (document_id, connection_id, server_id)
            for document_id in documents
            if (people := presence.documents.get(document_id)) is not None
            for connection_id, server_id in people.connections.items()
        ]
        if rows:
            columns = (list(column) for column in zip(*rows, strict=True))
            await connection.execute(QUERIES["insert_connections"], *columns)
    if servers:
        await connection.execute(QUERIES["delete_servers"], servers)
        running = [server for server in servers if server in presence.servers]
        if running:
            await connection.execute(QUERIES["insert_servers"], running, [presence.servers[s] for s in running])


projection = DocumentActivityProjection()
