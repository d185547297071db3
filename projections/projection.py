"""What a projection is: tables (made by an alembic migration), the events it reads, a version, and `apply`.

`apply` writes SQL through the connection it is given, inside the transaction that also moves its checkpoint.
Its SQL names its tables without a schema: the caller points `search_path` at the live schema (`projections`)
or at a shadow schema during a rebuild, so one `apply` serves both. Bump `version` whenever the tables' shape or
what `apply` writes changes; `agentlog up` then rebuilds the projection from the log.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from agentlog.eventstore.postgres.connections import Connection

LIVE_SCHEMA = "projections"
PROJECTION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,45}$")


@runtime_checkable
class Projection(Protocol):
    """A read model. `apply` receives the wanted events decoded and upcast to their newest schema version
    (`TypedEvent`s: `item.event` is the typed event, the envelope reads as on the recorded event); an event of a
    wanted type that cannot be decoded is skipped and recorded, by the live runner and by a rebuild alike
    (`eventstore.decoding`). A projection that sets `raw_events = True` receives `RecordedEvent`s as stored
    instead: every type, known to the catalogue or not (counting events, say), nothing decoded or skipped."""

    name: str
    version: int
    tables: tuple[str, ...]
    event_types: frozenset[str] | None
    """The event types `apply` receives; None for every type the catalogue knows (every type at all, raw)."""

    async def apply(self, connection: Connection, events: Sequence[Any]) -> None:
        """Write what `events` (in canonical order; `TypedEvent`s, or `RecordedEvent`s when raw) change.
        Unqualified table names; no commit."""
        ...


def shadow_schema(projection_name: str) -> str:
    """The schema a rebuild of `projection_name` writes into while the live tables keep serving."""
    return f"agentlog_shadow_{projection_name}"


def replay_checkpoint(projection: Projection) -> str:
    """The rebuild's own checkpoint; the version in it keeps a rebuild from resuming another version's work."""
    return f"{replay_checkpoint_prefix(projection.name)}{projection.version}"


def replay_checkpoint_prefix(projection_name: str) -> str:
    """What the rebuild checkpoints of every version of `projection_name` start with (and no other name does)."""
    return f"replay.{projection_name}.v"


def rebuild_lock(projection_name: str) -> str:
    """The lock every rebuild (and verify) of `projection_name` holds, whatever its version.

    Per name, not per version: all versions share one shadow schema, and a rebuild that starts afresh drops it and
    forgets every version's checkpoint, so two rebuilds of different versions at once would each destroy the
    other's work, and one could swap in the other's half-built tables.
    """
    return f"replay.{projection_name}"


def check_projection(projection: Projection) -> Projection:
    if not PROJECTION_NAME.match(projection.name):
        raise ValueError(f"projection name {projection.name!r} must match {PROJECTION_NAME.pattern}")
    if projection.version < 1 or not projection.tables:
        raise ValueError(f"projection {projection.name} needs a version >= 1 and at least one table")
    return projection
