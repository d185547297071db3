"""Events of `document-{document_id}` streams: people opening and closing a collaborative document."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, StringConstraints

from eventstore.events import Event, catalogue

UserId = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


@catalogue.register
class PersonJoined(Event):
    """A person opened the document; `people_present` counts the people in it now, this one included."""

    event_type: ClassVar[str] = "PersonJoined"
    schema_version: ClassVar[int] = 1
    category: ClassVar[str] = "document"

    user_id: UserId
    people_present: Annotated[int, Field(ge=1)]


@catalogue.register
class PersonLeft(Event):
    """A person closed the document; `people_present` counts the people still in it."""

    event_type: ClassVar[str] = "PersonLeft"
    schema_version: ClassVar[int] = 1
    category: ClassVar[str] = "document"

    user_id: UserId
    people_present: Annotated[int, Field(ge=0)]
