"""locks: each lock resource's current grant, folded by the domain's lock rule (so an expiry that names an
older grant ends nothing here either), with its counters. A lock's history is its stream."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, ClassVar

from agentlog.domains.coordination.events import LockAcquired, LockExpired, LockReleased, LockRenewed
from agentlog.domains.coordination.locks import LockGrant, LockState
from agentlog.eventstore import TypedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.projections.builtin.coordination.queries import QUERIES

COUNTERS = {LockAcquired: "acquisitions", LockRenewed: "renewals", LockReleased: "releases", LockExpired: "expirations"}


def _state_of(row: dict[str, Any]) -> LockState:
    grant = None
    if row["holder"] is not None:
        grant = LockGrant(holder=row["holder"], fencing_token=row["fencing_token"], ttl_s=row["ttl_s"],
                          reason=row["reason"] or "", timer_id=row["timer_id"])  # fmt: skip
    return LockState(resource=row["resource"], last_fencing_token=row["last_fencing_token"], grant=grant)


class Locks:
    name: ClassVar[str] = "locks"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("locks",)
    event_types: ClassVar[frozenset[str] | None] = frozenset(
        {"LockAcquired", "LockRenewed", "LockReleased", "LockExpired"}
    )

    async def apply(self, connection: Connection, events: Sequence[TypedEvent]) -> None:
        streams = sorted({item.stream_id for item in events})
        rows: dict[str, dict[str, Any]] = {
            row["stream_id"]: dict(row) for row in await connection.fetch(QUERIES["lock_rows"], streams)
        }
        touched: set[str] = set()
        for item in events:
            event = item.event
            assert isinstance(event, LockAcquired | LockRenewed | LockReleased | LockExpired)
            row = rows.get(item.stream_id)
            if row is None:
                row = {"stream_id": item.stream_id, "resource": event.resource, "holder": None,
                       "fencing_token": None, "last_fencing_token": 0, "ttl_s": None, "reason": None,
                       "timer_id": None, "acquired_at": None, "expires_at": None, "acquisitions": 0, "renewals": 0,
                       "releases": 0, "expirations": 0, "last_end_reason": None}  # fmt: skip
                rows[item.stream_id] = row
            state = _state_of(row)
            if not state.fold(event):
                continue  # names a grant that is over: nothing changes
            touched.add(item.stream_id)
            row[COUNTERS[type(event)]] += 1
            row["updated_at"] = item.recorded_at
            row["last_fencing_token"] = state.last_fencing_token
            grant = state.grant
            if grant is None:
                row.update(
                    holder=None,
                    fencing_token=None,
                    ttl_s=None,
                    reason=None,
                    timer_id=None,
                    acquired_at=None,
                    expires_at=None,
                    last_end_reason=getattr(event, "reason", "released by its holder"),
                )
                continue
            row.update(holder=grant.holder, fencing_token=grant.fencing_token, ttl_s=grant.ttl_s,
                       reason=grant.reason, timer_id=grant.timer_id,
                       expires_at=item.recorded_at + timedelta(seconds=grant.ttl_s))  # fmt: skip
            if isinstance(event, LockAcquired):
                row["acquired_at"] = item.recorded_at
        if touched:
            await connection.execute(QUERIES["lock_upsert"], [rows[stream_id] for stream_id in sorted(touched)])


projection = Locks()
