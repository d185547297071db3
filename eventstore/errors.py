"""One exception hierarchy for the log. Driver errors are translated in one place (`postgres.errors`).

Each exception's docstring is its default message; messages say what was wrong and what to do.
"""

from __future__ import annotations

from agentlog.eventstore.storable import Unstorable


class AgentlogError(Exception):
    """agentlog failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class InvalidEventError(AgentlogError):
    """The event is not valid; nothing was appended."""


class UnstorableValueError(InvalidEventError):
    """The event holds a value the log cannot keep as given (`storable`); nothing was appended."""

    def __init__(self, event_type: str, where: str, unstorable: Unstorable) -> None:
        self.event_type, self.where, self.unstorable = event_type, where, unstorable
        super().__init__(f"{where} of {event_type}: {unstorable}; nothing was appended")


class EventTooLargeError(InvalidEventError):
    """The event is over the log's size limit; nothing was appended. Keep large content elsewhere (a file, an object
    store) and put its reference in the event."""

    def __init__(self, event_type: str, size: int, limit: int) -> None:
        self.event_type, self.size, self.limit = event_type, size, limit
        """`event_type` is empty when the database refused it in a batch without saying which type."""
        super().__init__(
            f"{event_type or 'an event'} would be {size:,} bytes of JSON; the log keeps events of up to {limit:,} "
            "bytes: keep large content elsewhere and reference it from the event; nothing was appended"
        )


class UnknownEventTypeError(InvalidEventError):
    """No event type of that name is in the catalogue; run `agentlog types` to list them."""


class EventSchemaError(InvalidEventError):
    """The payload does not match the event type's schema."""


class NewerSchemaVersionError(AgentlogError):
    """The event was written with a schema version newer than this process knows: run the newer release here.

    Not a bad event (a newer release wrote it), so a handler holds at it rather than skipping it."""


class InvalidStreamIdError(InvalidEventError):
    """Stream ids are 1 to 200 bytes of UTF-8 without whitespace or control characters."""


class NotFoundError(AgentlogError):
    """Nothing of that name exists."""


class WrongExpectedVersionError(AgentlogError):
    """The stream is not at the version the append expected; read it again and retry."""

    def __init__(self, stream_id: str, expected_version: int, actual_version: int) -> None:
        self.stream_id = stream_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        super().__init__(
            f"wrong expected version for stream {stream_id!r}: expected {expected_version}, "
            f"actual {actual_version}; nothing was appended"
        )


class EventIdConflictError(AgentlogError):
    """An event id is already in the log with different content; nothing was appended."""


class ConcurrencyRetryError(AgentlogError):
    """The append kept losing the race for its stream's order; retry later."""


class DatabaseUnavailableError(AgentlogError):
    """PostgreSQL cannot be reached; check AGENTLOG_DATABASE_URL or that the embedded server can start."""


class SchemaNotReadyError(AgentlogError):
    """The database has no agentlog schema yet; run `agentlog migrate`."""


class LogMovedError(AgentlogError):
    """This log was restored or moved into another PostgreSQL cluster and its order is not sealed there yet;
    run `agentlog migrate` (or `agentlog up`) before appending."""


class ClosedError(AgentlogError):
    """The object is closed."""
