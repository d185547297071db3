"""Translate driver errors into agentlog's exceptions, in one place."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from agentlog.eventstore.errors import (
    AgentlogError,
    DatabaseUnavailableError,
    EventIdConflictError,
    EventTooLargeError,
    InvalidEventError,
    LogMovedError,
    SchemaNotReadyError,
    WrongExpectedVersionError,
)

IN_FAILED_TRANSACTION = "25P02"
"""A statement refused because an earlier one failed in the same transaction: it names no cause of its own."""
WRONG_EXPECTED_VERSION = "AL001"
EVENT_ID_CONFLICT = "AL002"
MALFORMED_APPEND = "AL003"
LOG_MOVED = "AL005"
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
"""Serialization failure (including the stream-order guard of append_events) and deadlock: retry the transaction."""
_MISSING_SCHEMA_SQLSTATES = frozenset({"3F000", "42P01", "42883"})
_TOO_LARGE = re.compile(
    r"event \d+(?: \((?P<event_type>\S+) v\d+\):)? (?:it )?has (?P<size>\d+) bytes of (?:data|metadata); "
    r"the limit is (?P<limit>\d+) "
)
"""The size refusal of the SQL append paths (`agentlog.event_problem`, `append_events`): PostgreSQL measures the
event as `jsonb::text`, with a space after every `:` and `,` and numbers written out, so an event the store's own
check (compact JSON) let through can still be refused there; either way it is an `EventTooLargeError`."""

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseUnavailableError,  # what `translated_errors` makes of the ones below (a failed `connect`, say)
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InternalClientError,  # a connection left mid-operation by a lost socket
)
"""Errors after which the connection (or the server) is gone: back off, reconnect, resume."""


def is_unique_violation(error: BaseException) -> bool:
    """A key the statement would have duplicated: another append got there first, or the id is recorded."""
    return isinstance(error, asyncpg.UniqueViolationError)


def is_taken_version(error: BaseException) -> bool:
    """Another append took the stream version this statement wanted."""
    return is_unique_violation(error) and getattr(error, "constraint_name", None) == "events_stream_version_key"


def is_in_failed_transaction(error: BaseException) -> bool:
    """The statement ran in a transaction that an earlier error had failed: only a rollback is possible there."""
    return isinstance(error, asyncpg.PostgresError) and error.sqlstate == IN_FAILED_TRANSACTION


class FailedStatementWatch:
    """The last error the server reported for a statement on one connection, seen through asyncpg's query logger.

    A transaction in which a statement failed can only roll back, and PostgreSQL answers its COMMIT with ROLLBACK,
    not with an error. When a caller caught that statement's error and carried on, the COMMIT's answer says that
    the work was lost but not why: this remembers why. Statements refused because the transaction had already
    failed (25P02) are passed over, as they name no cause. asyncpg reports each statement from the event loop just
    after it finished, so the report is in before the result of any later statement on the connection is read.
    Statements asyncpg does not report (prepared statements, cursors, COPY) leave it empty.
    """

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.sqlstate: str | None = None
        self.message: str | None = None
        connection.add_query_logger(self._logged)

    def clear(self) -> None:
        self.sqlstate = self.message = None

    def _logged(self, record: asyncpg.connection.LoggedQuery) -> None:
        error = record.exception
        if isinstance(error, asyncpg.PostgresError) and error.sqlstate != IN_FAILED_TRANSACTION:
            self.sqlstate, self.message = error.sqlstate, str(getattr(error, "message", None) or error)


def is_retryable(error: BaseException) -> bool:
    """True for errors a fresh transaction may not hit again: the order guard, deadlocks, a racing duplicate."""
    if not isinstance(error, asyncpg.PostgresError):
        return False
    if error.sqlstate in RETRYABLE_SQLSTATES:
        return True
    constraint = getattr(error, "constraint_name", None)
    return error.sqlstate == "23505" and constraint == "events_event_id_key"


def translate(error: BaseException) -> AgentlogError | None:
    """The agentlog exception for a driver error, or None when it has no better name than its own."""
    if isinstance(error, AgentlogError):
        return error
    if isinstance(error, CONNECTION_ERRORS):
        return DatabaseUnavailableError(f"PostgreSQL is unreachable: {error}")
    if not isinstance(error, asyncpg.PostgresError):
        return None
    sqlstate = error.sqlstate
    message = str(getattr(error, "message", None) or error)
    if sqlstate == WRONG_EXPECTED_VERSION:
        detail = json.loads(getattr(error, "detail", None) or "{}")
        return WrongExpectedVersionError(
            detail.get("stream_id", "?"), detail.get("expected_version", -1), detail.get("actual_version", -1)
        )
    if sqlstate == EVENT_ID_CONFLICT:
        return EventIdConflictError(message + "; nothing was appended")
    if sqlstate == LOG_MOVED:
        return LogMovedError()
    if sqlstate == MALFORMED_APPEND and (too_large := _TOO_LARGE.match(message)) is not None:
        return EventTooLargeError(too_large["event_type"] or "", int(too_large["size"]), int(too_large["limit"]))
    if sqlstate in {MALFORMED_APPEND, "23502", "23514", "22P02", "22023"}:
        return InvalidEventError(message + "; nothing was appended")
    if sqlstate in _MISSING_SCHEMA_SQLSTATES and "agentlog" in message:
        return SchemaNotReadyError()
    return None


@contextmanager
def translated_errors() -> Iterator[None]:
    """Re-raise driver errors as agentlog exceptions where there is a better name for them."""
    try:
        yield
    except Exception as error:
        better = translate(error)
        if better is None or better is error:
            raise
        raise better from error
