"""Events of `document-{document_id}` streams: people opening, editing and closing a collaborative document, and
the document's activity decided from that (active, then idle after a grace period nobody came back in)."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

from pydantic import Field, StringConstraints

from agentlog.eventstore.events import Event, catalogue

UserId = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
DocumentId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
ConnectionId = Annotated[str, StringConstraints(min_length=1, max_length=100)]
ServerId = Annotated[str, StringConstraints(min_length=0, max_length=100)]

DOCUMENT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""Use with `fullmatch` (`$` would accept a trailing newline)."""


def document_stream(document_id: str) -> str:
    return f"document-{document_id}"


class PersonJoinedV1(Event):
    """A person opened the document; `people_present` counts the people in it now, this one included."""

    event_type: ClassVar[str] = "PersonJoined"
    schema_version: ClassVar[int] = 1
    category: ClassVar[str] = "document"

    user_id: UserId
    people_present: Annotated[int, Field(ge=1)]


class PersonLeftV1(Event):
    """A person closed the document; `people_present` counts the people still in it."""

    event_type: ClassVar[str] = "PersonLeft"
    schema_version: ClassVar[int] = 1
    category: ClassVar[str] = "document"

    user_id: UserId
    people_present: Annotated[int, Field(ge=0)]


@catalogue.register
class PersonJoined(Event):
    """A person opened the document on one WebSocket connection of one document server.

    `people_present` is the number of people on that server's copy of the document, this one included. The
    connection and the server identify the presence, so that a server that restarts or dies takes its people with
    it (version 2; version 1 had only the user and the count).
    """

    event_type: ClassVar[str] = "PersonJoined"
    schema_version: ClassVar[int] = 2
    category: ClassVar[str] = "document"

    user_id: UserId
    people_present: Annotated[int, Field(ge=1)]
    connection_id: ConnectionId
    server_id: ServerId


@catalogue.register
class PersonLeft(Event):
    """A person closed the document (their connection ended); `people_present` counts the people still on that
    server's copy of it."""

    event_type: ClassVar[str] = "PersonLeft"
    schema_version: ClassVar[int] = 2
    category: ClassVar[str] = "document"

    user_id: UserId
    people_present: Annotated[int, Field(ge=0)]
    connection_id: ConnectionId
    server_id: ServerId


catalogue.register(PersonJoinedV1)
catalogue.register(PersonLeftV1)


@catalogue.upcaster("PersonJoined", 1)
@catalogue.upcaster("PersonLeft", 1)
def _presence_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # Version 1 knew one presence per user and no server: the user stands for the connection.
    return {**payload, "connection_id": payload["user_id"], "server_id": ""}


@catalogue.register
class DocumentActivated(Event):
    """The first person opened the document (or came back after it went idle): it wants an agent."""

    event_type: ClassVar[str] = "DocumentActivated"
    category: ClassVar[str] = "document"

    document_id: DocumentId
    people_present: Annotated[int, Field(ge=1)]
    server_id: ServerId
    """The document server of the most recent person in: the one an agent should join."""


@catalogue.register
class DocumentIdled(Event):
    """Nobody came back within the grace period after the last person left: the document's agent can go."""

    event_type: ClassVar[str] = "DocumentIdled"
    category: ClassVar[str] = "document"

    document_id: DocumentId
    reason: str


@catalogue.register
class DocumentEdited(Event):
    """People typed in the document. Recorded by the document server at most once per document per interval (a
    minute, say) while updates keep arriving, never once per keystroke: it tells deciders that a document is being
    worked on (recency for eviction is work, never leaving) at a cost the log can carry.

    `updates` counts the updates people's sockets sent to this server for this document since the server's
    previous `DocumentEdited` of it (an agent's own marks are not a person's work and are not counted).
    """

    event_type: ClassVar[str] = "DocumentEdited"
    category: ClassVar[str] = "document"

    document_id: DocumentId
    server_id: ServerId
    updates: Annotated[int, Field(ge=1)]
