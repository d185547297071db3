"""orders: one row per order, its status and amount, rebuilt from the log by `agentlog replay orders`.

A projection gets the events decoded and upcast: a version-1 `OrderPlaced` arrives here with its currency."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from agentlog.eventstore import TypedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.eventstore.postgres.queries import load_queries
from agentlog_orders.events import OrderCancelled, OrderPlaced

QUERIES = load_queries(Path(__file__).with_suffix(".sql"))


class Orders:
    name: ClassVar[str] = "orders"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("orders",)
    event_types: ClassVar[frozenset[str] | None] = frozenset({"OrderPlaced", "OrderCancelled"})

    async def apply(self, connection: Connection, events: Sequence[TypedEvent]) -> None:
        for item in events:
            event = item.event
            if isinstance(event, OrderPlaced):
                await connection.execute(
                    QUERIES["placed"], event.order_id, event.customer, event.amount_cents, event.currency,
                    item.recorded_at,
                )  # fmt: skip
            elif isinstance(event, OrderCancelled):
                await connection.execute(QUERIES["cancelled"], event.order_id, event.reason)


projection = Orders()
