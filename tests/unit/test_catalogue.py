"""The event catalogue: registration, validation, upcasting across schema versions."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from agentlog.eventstore import (
    Event,
    EventCatalogue,
    EventSchemaError,
    InvalidEventError,
    UnknownEventTypeError,
    catalogue,
)


def make_catalogue() -> EventCatalogue:
    """A type whose shape changed twice: v1 name, v2 split name, v3 adds a default field."""
    events = EventCatalogue()

    @events.register
    class RenamedV1(Event):
        event_type: ClassVar[str] = "Renamed"
        schema_version: ClassVar[int] = 1
        name: str

    @events.register
    class RenamedV2(Event):
        event_type: ClassVar[str] = "Renamed"
        schema_version: ClassVar[int] = 2
        first_name: str
        last_name: str

    @events.register
    class Renamed(Event):
        event_type: ClassVar[str] = "Renamed"
        schema_version: ClassVar[int] = 3
        first_name: str
        last_name: str
        source: str

    @events.upcaster("Renamed", from_version=1)
    def split_name(data: dict[str, Any]) -> dict[str, Any]:
        first, _, last = data["name"].partition(" ")
        return {"first_name": first, "last_name": last}

    @events.upcaster("Renamed", from_version=2)
    def add_source(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "source": "unknown"}

    return events


def test_old_payloads_are_upcast_to_the_newest_version() -> None:
    events = make_catalogue()
    decoded = events.decode("Renamed", 1, {"name": "Ada Lovelace"})
    assert decoded.schema_version == 3
    assert decoded.model_dump() == {"first_name": "Ada", "last_name": "Lovelace", "source": "unknown"}
    assert events.decode("Renamed", 3, {"first_name": "A", "last_name": "B", "source": "cli"}).model_dump()[
        "source"
    ] == "cli"


def test_every_schema_version_is_listed_with_its_json_schema() -> None:
    listed = [(entry.event_type, entry.schema_version) for entry in make_catalogue()]
    assert listed == [("Renamed", 1), ("Renamed", 2), ("Renamed", 3)]
    (latest,) = [entry for entry in make_catalogue() if entry.schema_version == 3]
    assert set(latest.json_schema()["required"]) == {"first_name", "last_name", "source"}


def test_a_missing_upcaster_is_an_error_that_names_the_version() -> None:
    events = make_catalogue()
    events._upcasters.pop(("Renamed", 2))
    with pytest.raises(EventSchemaError, match="no upcaster from schema version 2"):
        events.decode("Renamed", 1, {"name": "Ada Lovelace"})


def test_unknown_types_and_bad_payloads_are_named() -> None:
    with pytest.raises(UnknownEventTypeError, match="'Nope'"):
        catalogue.parse("Nope", {})
    with pytest.raises(EventSchemaError, match="people_present: Field required"):
        catalogue.parse("PersonJoined", {"user_id": "ada"})
    with pytest.raises(EventSchemaError, match="Extra inputs"):
        catalogue.parse("PersonJoined", {"user_id": "ada", "people_present": 1, "surprise": True})


def test_a_type_version_cannot_be_registered_twice() -> None:
    events = make_catalogue()

    class Impostor(Event):
        event_type: ClassVar[str] = "Renamed"
        schema_version: ClassVar[int] = 2
        other: int

    with pytest.raises(InvalidEventError, match="already registered"):
        events.register(Impostor)


def test_type_names_are_checked() -> None:
    class Bad(Event):
        event_type: ClassVar[str] = "has space"

    with pytest.raises(InvalidEventError, match="event_type"):
        EventCatalogue().register(Bad)


def test_events_are_frozen_values() -> None:
    payload = {"user_id": "ada", "people_present": 2, "connection_id": "c1", "server_id": "s1"}
    event = catalogue.parse("PersonJoined", payload)
    with pytest.raises(Exception, match="frozen"):
        event.people_present = 3  # type: ignore[misc]
    assert event.to_data() == payload


def test_version_1_presence_is_upcast_to_version_2() -> None:
    joined = catalogue.decode("PersonJoined", 1, {"user_id": "ada", "people_present": 1})
    assert joined.to_data() == {"user_id": "ada", "people_present": 1, "connection_id": "ada", "server_id": ""}


def test_a_specific_schema_version_is_looked_up_exactly() -> None:
    events = make_catalogue()
    assert events.version("Renamed", 2).model.__name__ == "RenamedV2"
    with pytest.raises(UnknownEventTypeError, match="no schema version 9"):
        events.version("Renamed", 9)
    with pytest.raises(UnknownEventTypeError, match="unknown event type"):
        events.version("Nope", 1)
