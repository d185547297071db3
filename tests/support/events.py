"""Event types used by tests, in their own catalogue beside agentlog's."""

from __future__ import annotations

from typing import ClassVar

from agentlog.domains.documents.events import PersonJoined, PersonLeft
from agentlog.eventstore import Event, EventCatalogue

test_catalogue = EventCatalogue()
test_catalogue.register(PersonJoined)
test_catalogue.register(PersonLeft)


@test_catalogue.register
class Tick(Event):
    """A numbered test event."""

    event_type: ClassVar[str] = "Tick"
    category: ClassVar[str] = "test"

    n: int
    writer: int = 0


def ticks(count: int, *, writer: int = 0, start: int = 0) -> list[Tick]:
    return [Tick(n=start + index, writer=writer) for index in range(count)]
