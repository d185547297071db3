"""What a projection is: tables (made by an alembic migration), the events it reads, a version, and `apply`.

`apply` writes SQL through the connection it is given, inside the transaction that also moves its checkpoint.
Its SQL names its tables without a schema: the caller points `search_path` at the live schema (`projections`)
or at a shadow schema during a rebuild, so one `apply` serves both. Bump `version` whenever the tables' shape or
what `apply` writes changes; `agentlog up` then rebuilds the projection from the log.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from eventstore import RecordedEvent
from eventstore.postgres.connections import Connection

LIVE_SCHEMA = "projections"
PROJECTION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,45}$")


@runtime_checkable
class Projection(Protocol):
    name: str
    version: int
    tables: tuple[str, ...]
    event_types: frozenset[str] | None
    """The event types `apply` receives; None for all. Other types are skipped, never an error."""

    async def apply(self, connection: Connection, events: Sequence[RecordedEvent]) -> None:
        """Write what `events` (in canonical order) change. Unqualified table names; no commit."""
        ...


def shadow_schema(projection_name: str) -> str:
    """The schema a rebuild of `projection_name` writes into while the live tables keep serving."""
    return f"agentlog_shadow_{projection_name}"


def replay_checkpoint(projection: Projection) -> str:
    """The rebuild's own checkpoint; the version in it keeps a rebuild from resuming another version's work."""
    return f"replay.{projection.name}.v{projection.version}"


def check_projection(projection: Projection) -> Projection:
    if not PROJECTION_NAME.match(projection.name):
        raise ValueError(f"projection name {projection.name!r} must match {PROJECTION_NAME.pattern}")
    if projection.version < 1 or not projection.tables:
        raise ValueError(f"projection {projection.name} needs a version >= 1 and at least one table")
    return projection
