"""The log: append, read and subscribe to one immutable stream of events in PostgreSQL.

    async with EventStore.open(url) as store:
        joined = PersonJoined(user_id="ada", people_present=1, connection_id="c1", server_id="laptop")
        await store.append("document-plan", [joined], NO_STREAM)
        async for batch in await store.subscribe():
            ...
"""

from agentlog.eventstore.errors import (
    AgentlogError,
    ConcurrencyRetryError,
    DatabaseUnavailableError,
    EventIdConflictError,
    EventSchemaError,
    InvalidEventError,
    InvalidStreamIdError,
    NewerSchemaVersionError,
    SchemaNotReadyError,
    UnknownEventTypeError,
    WrongExpectedVersionError,
)
from agentlog.eventstore.events import Event, EventCatalogue, EventTypeVersion, catalogue
from agentlog.eventstore.identifiers import category_of, derived_event_id, new_event_id, validate_stream_id
from agentlog.eventstore.loading import PluginError
from agentlog.eventstore.records import (
    START,
    AppendedEvent,
    AppendResult,
    ExpectedVersion,
    LogPosition,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    TypedEvent,
)
from agentlog.eventstore.store import EventStore
from agentlog.eventstore.subscription import Subscription, SubscriptionState

ANY = ExpectedVersion.ANY
NO_STREAM = ExpectedVersion.NO_STREAM

__all__ = [
    "ANY",
    "NO_STREAM",
    "START",
    "AgentlogError",
    "AppendResult",
    "AppendedEvent",
    "ConcurrencyRetryError",
    "DatabaseUnavailableError",
    "Event",
    "EventCatalogue",
    "EventIdConflictError",
    "EventSchemaError",
    "EventStore",
    "EventTypeVersion",
    "ExpectedVersion",
    "InvalidEventError",
    "InvalidStreamIdError",
    "LogPosition",
    "NewEvent",
    "NewerSchemaVersionError",
    "PluginError",
    "RecordedEvent",
    "SchemaNotReadyError",
    "StreamAppend",
    "Subscription",
    "SubscriptionState",
    "TypedEvent",
    "UnknownEventTypeError",
    "WrongExpectedVersionError",
    "catalogue",
    "category_of",
    "derived_event_id",
    "new_event_id",
    "validate_stream_id",
]
