"""What a handler receives of a batch: the events it wants, decoded and upcast, and the ones it cannot decode.

A pure rule, shared by everything that feeds events to handlers and projections (the handler runner, rebuilds,
decider folds and `replay --verify`), so that a live handler, a rebuild and a refold skip exactly the same events.

- An event of a type the handler does not want is not delivered (nothing to say about it).
- With `wanted` None (every type), events of types the catalogue does not know are not delivered either: other
  writers may append their own types, which this handler cannot read.
- An event that fails its schema, or that no upcaster can take, is *undecodable*: it is skipped, with the reason,
  and the handler goes on with the next one (the runner records the skip; see `agentlog handler skipped`).
  One malformed event from any writer must not stop a handler for good.
- An event whose schema version is newer than the catalogue knows is not the event's fault but this process's
  (an older release reading a newer one's events): decoding raises `NewerSchemaVersionError`, and the handler holds
  there until a newer release takes over, rather than skipping what it could read once upgraded. Likewise a type
  the handler asks for by name that the catalogue does not know (`UnknownEventTypeError`): a plugin is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agentlog.eventstore.errors import EventSchemaError, UnknownEventTypeError
from agentlog.eventstore.events import EventCatalogue
from agentlog.eventstore.records import RecordedEvent, TypedEvent, UnreadableJSON


@dataclass(frozen=True, slots=True)
class UndecodableEvent:
    """An event a handler skipped because it cannot be decoded, and why."""

    recorded: RecordedEvent
    reason: str


def takes_raw_events(consumer: object) -> bool:
    """Whether a handler or projection asked for events as stored (`raw_events = True`) rather than decoded."""
    return bool(getattr(consumer, "raw_events", False))


def wanted_records(events: Sequence[RecordedEvent], wanted: frozenset[str] | None) -> list[RecordedEvent]:
    """The events of the wanted types, as stored (for handlers that read raw payloads)."""
    if wanted is None:
        return list(events)
    return [event for event in events if event.event_type in wanted]


def decode_wanted(
    catalogue: EventCatalogue, events: Sequence[RecordedEvent], wanted: frozenset[str] | None
) -> tuple[list[TypedEvent], list[UndecodableEvent]]:
    """The wanted events decoded, in order, and the undecodable ones (see the module's rules)."""
    decoded: list[TypedEvent] = []
    undecodable: list[UndecodableEvent] = []
    for event in events:
        if wanted is None:
            if event.event_type not in catalogue:
                continue
        elif event.event_type not in wanted:
            continue
        elif event.event_type not in catalogue:
            raise UnknownEventTypeError(
                f"a handler wants {event.event_type} events, which no installed event type defines: "
                "install the package that defines it"
            )
        unreadable = next((v for v in (event.data, event.metadata) if isinstance(v, UnreadableJSON)), None)
        if unreadable is not None:
            part = "data" if unreadable is event.data else "metadata"
            undecodable.append(UndecodableEvent(event, f"its {part} cannot be read as JSON: {unreadable.error}"))
            continue
        try:
            typed = catalogue.decode(event.event_type, event.schema_version, event.data)
        except EventSchemaError as error:
            undecodable.append(UndecodableEvent(event, str(error)))
            continue
        decoded.append(TypedEvent(typed, event))
    return decoded, undecodable
