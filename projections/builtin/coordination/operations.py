"""operations: one row per operation registered on an entity key — who is doing what to it, whether its conflict
window is still open, when it expires, and how it ended — folded by the operations domain's rule
(`domains.operations.conflicts`, the fold the API decides registrations with).

What may be registered is never decided from this table: the API folds the key's stream and appends at the
version it folded. The table is for people and tools asking what is under way (`state = 'open'`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from agentlog.domains.operations.conflicts import OPERATION_WINDOW, Operation, OperationsState
from agentlog.domains.operations.events import (
    OperationExpired,
    OperationFinished,
    OperationRegistered,
    key_of_stream,
)
from agentlog.domains.timers.events import TimerFired
from agentlog.eventstore import TypedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.eventstore.postgres.queries import load_queries

QUERIES = load_queries(Path(__file__).with_suffix(".sql"))


class Operations:
    name: ClassVar[str] = "operations"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("operations",)
    event_types: ClassVar[frozenset[str] | None] = frozenset(
        {"OperationRegistered", "OperationFinished", "OperationExpired", "TimerFired"}
    )

    async def apply(self, connection: Connection, events: Sequence[TypedEvent]) -> None:
        ours = [item for item in events if _key_of(item) is not None]
        if not ours:
            return
        keys = sorted({key for item in ours if (key := _key_of(item)) is not None})
        rows: dict[tuple[str, str], dict[str, Any]] = {
            (row["key"], row["operation_id"]): dict(row)
            for row in await connection.fetch(QUERIES["open_operations"], keys)
        }
        states: dict[str, OperationsState] = {key: OperationsState(key=key) for key in keys}
        for (key, open_id), row in rows.items():
            states[key].open[open_id] = Operation.model_validate(row["operation"])
        written: dict[tuple[str, str], dict[str, Any]] = {}
        for item in ours:
            key = _key_of(item)
            assert key is not None
            state, event = states[key], item.event
            if not state.fold(event, item.stream_version):
                continue
            match event:
                case TimerFired():
                    operation_id = event.subject
                case OperationRegistered() | OperationFinished() | OperationExpired():
                    operation_id = event.operation_id
                case _:
                    continue
            at = item.recorded_at
            if isinstance(event, OperationRegistered):
                rows[key, operation_id] = {
                    "key": key, "operation_id": operation_id, "agent_id": event.agent_id, "action": event.action,
                    "state": "open", "data": event.data, "registered_at": at,
                    "window_ends_at": at + timedelta(seconds=event.window_s),
                    "expires_at": at + timedelta(seconds=event.ttl_s), "ended_at": None, "end_reason": None,
                }  # fmt: skip
            row = rows[key, operation_id]
            current = state.open.get(operation_id)
            if current is not None:
                row.update(in_window=current.in_window, operation=current.model_dump(mode="json"))
            elif isinstance(event, OperationFinished):
                row.update(state="finished", in_window=False, ended_at=at, end_reason=event.outcome)
            elif isinstance(event, OperationExpired):
                row.update(state="expired", in_window=False, ended_at=at, end_reason=event.reason)
            row["updated_at"] = at
            written[key, operation_id] = row
        if written:
            await connection.execute(QUERIES["operation_upsert"], list(written.values()))


def _key_of(item: TypedEvent) -> str | None:
    """The key of an operation event, or of a window timer on a key's stream; None for anything else."""
    event = item.event
    if isinstance(event, TimerFired):
        return key_of_stream(item.stream_id) if event.purpose == OPERATION_WINDOW else None
    key = key_of_stream(item.stream_id)
    return key if key is not None and getattr(event, "key", None) == key else None


projection = Operations()
