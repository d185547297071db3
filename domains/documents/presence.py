"""Who is in each document: the presence rule that the document-activity decider and the agent manager both fold.

A person is present on one connection of one document server, from its `PersonJoined` to its `PersonLeft`. Each
connection is tagged with its server, so that several servers can serve one document and a server that restarts
(`ManagerStarted` with a new incarnation) or is gone (`ManagerStopped` of the incarnation recorded) takes its
people with it: nobody stays present on a socket that no longer exists. A document nobody is in is not kept.

Pure and deterministic, like the deciders that fold it. Each event costs what it touches: a server's documents are
indexed, so a lost server with thousands of documents costs those documents, not every document known.
"""

from __future__ import annotations

from typing import Any, cast

from pydantic import BaseModel, Field, PrivateAttr

from agentlog.domains.agents.events import ManagerStarted, ManagerStopped
from agentlog.domains.documents.events import PersonJoined, PersonLeft
from agentlog.eventstore import Event

DOCUMENT_STREAM_PREFIX = "document-"


def document_of(stream_id: str) -> str:
    """The document a `document-{id}` stream is about."""
    return stream_id.removeprefix(DOCUMENT_STREAM_PREFIX)


class PeopleIn(BaseModel):
    """The people in one document."""

    connections: dict[str, str] = Field(default_factory=dict)
    """connection id → the document server holding it."""
    last_server: str = ""
    """The server of the most recent person in: the one an agent should join."""


class Presence(BaseModel):
    documents: dict[str, PeopleIn] = Field(default_factory=dict)
    """Only documents someone is in."""
    servers: dict[str, str] = Field(default_factory=dict)
    """server id → its current incarnation."""
    _documents_of_server: dict[str, dict[str, int]] = PrivateAttr(default_factory=dict)

    @property
    def documents_of_server(self) -> dict[str, dict[str, int]]:
        """server id → document → how many of the document's connections it holds. Derived: rebuilt when loaded.
        (Read through the private dictionary: pydantic's own lookup of a private attribute is slow.)"""
        return cast(dict[str, dict[str, int]], self.__pydantic_private__["_documents_of_server"])  # type: ignore[index]

    def model_post_init(self, context: Any, /) -> None:
        for document_id, people in self.documents.items():
            for server_id in people.connections.values():
                self._count(server_id, document_id, +1)

    def people_in(self, document_id: str) -> int:
        people = self.documents.get(document_id)
        return 0 if people is None else len(people.connections)

    def fold(self, stream_id: str, event: Event) -> list[str]:
        """Fold one event; return the documents whose people changed (sorted), for the caller to look at again."""
        match event:
            case PersonJoined():
                document_id = document_of(stream_id)
                self._joined(document_id, event.connection_id, event.server_id)
                return [document_id]
            case PersonLeft():
                document_id = document_of(stream_id)
                self._left(document_id, event.connection_id)
                return [document_id]
            case ManagerStarted():
                dropped = []
                if self.servers.get(event.manager_id) != event.incarnation:
                    dropped = self._drop_server(event.manager_id)
                self.servers[event.manager_id] = event.incarnation
                return dropped
            case ManagerStopped() if self.servers.get(event.manager_id) == event.incarnation:
                del self.servers[event.manager_id]
                return self._drop_server(event.manager_id)
        return []

    def _joined(self, document_id: str, connection_id: str, server_id: str) -> None:
        people = self.documents.setdefault(document_id, PeopleIn())
        before = people.connections.get(connection_id)
        if before is not None:
            self._count(before, document_id, -1)
        people.connections[connection_id] = server_id
        people.last_server = server_id
        self._count(server_id, document_id, +1)

    def _left(self, document_id: str, connection_id: str) -> None:
        people = self.documents.get(document_id)
        if people is None or (server_id := people.connections.pop(connection_id, None)) is None:
            return
        self._count(server_id, document_id, -1)
        if not people.connections:
            del self.documents[document_id]

    def _drop_server(self, server_id: str) -> list[str]:
        documents = sorted(self.documents_of_server.pop(server_id, {}))
        for document_id in documents:
            people = self.documents[document_id]
            people.connections = {c: s for c, s in people.connections.items() if s != server_id}
            if not people.connections:
                del self.documents[document_id]
        return documents

    def _count(self, server_id: str, document_id: str, change: int) -> None:
        documents_of_server = self.documents_of_server
        counts = documents_of_server.setdefault(server_id, {})
        counts[document_id] = counts.get(document_id, 0) + change
        if counts[document_id] <= 0:
            del counts[document_id]
            if not counts:
                del documents_of_server[server_id]
