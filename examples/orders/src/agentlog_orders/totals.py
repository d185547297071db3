"""order_totals: a handler keeping its own table, `orders.customer_totals` (made by this plugin's migration).

Its writes commit in the runner's transaction together with its checkpoint, so each event counts exactly once,
through crashes and restarts alike. A cancellation needs the order it cancels: the handler keeps what it needs in
its own table too (`orders.placed`), never in memory."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from agentlog.eventstore.postgres.queries import load_queries
from agentlog.handlers import HandlerBatch
from agentlog_orders.events import OrderCancelled, OrderPlaced

QUERIES = load_queries(Path(__file__).with_suffix(".sql"))


class OrderTotals:
    name: ClassVar[str] = "order_totals"
    event_types: ClassVar[frozenset[str] | None] = frozenset({"OrderPlaced", "OrderCancelled"})

    async def handle(self, batch: HandlerBatch) -> None:
        for item in batch.events:
            event = item.event
            if isinstance(event, OrderPlaced):
                await batch.connection.execute(
                    QUERIES["order_placed"], event.order_id, event.customer, event.amount_cents, event.currency
                )
            elif isinstance(event, OrderCancelled):
                await batch.connection.execute(QUERIES["order_cancelled"], event.order_id)
