"""Value objects at the edge of the log: what goes in (`NewEvent`), what comes out (`RecordedEvent`), where."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from agentlog.eventstore.events import Event
from agentlog.eventstore.identifiers import new_event_id


class UnreadableJSON(dict[str, Any]):
    """Stands for a payload or metadata the log holds but no JSON reader here can decode (written around agentlog's
    checks: a number beyond a double's range, nesting thousands of levels deep). An empty mapping, so that reading
    the log never fails on one event; handlers skip such an event (`eventstore.decoding`)."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class LogPosition(NamedTuple):
    """A place in the canonical order of the log: (transaction_id, global_position), compared as a tuple."""

    transaction_id: int
    global_position: int

    def __str__(self) -> str:
        return f"{self.transaction_id}/{self.global_position}"


START = LogPosition(0, 0)
"""Before the first event: subscribing after START reads the whole log."""


class ExpectedVersion(enum.Enum):
    """What an append expects of its stream, besides an exact version number."""

    ANY = "any"
    """Append whatever the stream's version."""
    NO_STREAM = "no_stream"
    """The stream must not exist yet (same as expecting version 0)."""


StreamVersionExpectation = ExpectedVersion | int


def expected_version_argument(expected: StreamVersionExpectation) -> int | None:
    """The SQL form: NULL for any, 0 for no stream, n for exactly n."""
    if expected is ExpectedVersion.ANY:
        return None
    if expected is ExpectedVersion.NO_STREAM:
        return 0
    if isinstance(expected, bool) or not isinstance(expected, int) or expected < 0:
        raise ValueError(f"expected version must be ANY, NO_STREAM or a version >= 0, not {expected!r}")
    return expected


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append, with its id (time-ordered by default) and metadata (correlation, causation, actor)."""

    event: Event
    event_id: UUID = field(default_factory=new_event_id)
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """Events for one stream within an atomic multi-stream batch."""

    stream_id: str
    events: tuple[Event | NewEvent, ...]
    expected_version: StreamVersionExpectation = ExpectedVersion.ANY


class AppendedEvent(NamedTuple):
    """Where one appended event landed. `duplicate` is true when its id was already recorded."""

    event_id: UUID
    stream_id: str
    stream_version: int
    position: LogPosition
    duplicate: bool


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The outcome of appending to one stream."""

    stream_id: str
    events: tuple[AppendedEvent, ...]

    @property
    def stream_version(self) -> int:
        """The stream's version after this append (the last appended event's version)."""
        return max(event.stream_version for event in self.events)

    @property
    def duplicate(self) -> bool:
        """True when every event was already recorded and nothing was appended."""
        return all(event.duplicate for event in self.events)


class RecordedEvent(NamedTuple):
    """An event as the log holds it. `data` is the payload as stored (its own schema version).

    A named tuple: as immutable as a frozen dataclass, and several times cheaper to build, which counts here:
    one is built for every event every reader reads.
    """

    global_position: int
    transaction_id: int
    event_id: UUID
    stream_id: str
    stream_version: int
    category: str
    event_type: str
    schema_version: int
    data: Mapping[str, Any]
    metadata: Mapping[str, Any]
    recorded_at: datetime

    @property
    def position(self) -> LogPosition:
        return LogPosition(self.transaction_id, self.global_position)

    def as_json(self) -> dict[str, Any]:
        """The event as one JSON object, in the log's own vocabulary (used by `agentlog tail --json`)."""
        return {
            "global_position": self.global_position,
            "transaction_id": self.transaction_id,
            "event_id": str(self.event_id),
            "stream_id": self.stream_id,
            "stream_version": self.stream_version,
            "category": self.category,
            "event_type": self.event_type,
            "schema_version": self.schema_version,
            "data": self.data,
            "metadata": self.metadata,
            "recorded_at": self.recorded_at.isoformat(),
        }


class TypedEvent(NamedTuple):
    """A recorded event with its payload decoded by the catalogue and upcast to the newest schema version: what
    handlers and projections receive. The envelope (position, stream, metadata, time) reads as on the recorded
    event; `recorded` is the event as stored, raw payload and stored schema version included."""

    event: Event
    recorded: RecordedEvent

    @property
    def event_type(self) -> str:
        return self.recorded.event_type

    @property
    def event_id(self) -> UUID:
        return self.recorded.event_id

    @property
    def stream_id(self) -> str:
        return self.recorded.stream_id

    @property
    def stream_version(self) -> int:
        return self.recorded.stream_version

    @property
    def category(self) -> str:
        return self.recorded.category

    @property
    def global_position(self) -> int:
        return self.recorded.global_position

    @property
    def transaction_id(self) -> int:
        return self.recorded.transaction_id

    @property
    def position(self) -> LogPosition:
        return LogPosition(self.recorded.transaction_id, self.recorded.global_position)

    @property
    def metadata(self) -> Mapping[str, Any]:
        return self.recorded.metadata

    @property
    def recorded_at(self) -> datetime:
        return self.recorded.recorded_at
