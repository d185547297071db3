"""The orders vocabulary. Importing this module registers its types in agentlog's catalogue (the entry point
`agentlog.event_types` names it), so `agentlog types` lists them and `agentlog append` accepts them."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from agentlog.eventstore import Event, catalogue

ORDER_ID = r"^[A-Za-z0-9_-]{1,64}$"


@catalogue.register
class OrderPlacedV1(Event):
    """An order as first recorded: no currency (every order was in euros then)."""

    event_type = "OrderPlaced"
    schema_version = 1
    category = "order"

    order_id: str = Field(pattern=ORDER_ID)
    customer: str = Field(min_length=1, max_length=200)
    amount_cents: int = Field(ge=0)


@catalogue.register
class OrderPlaced(Event):
    """A customer placed an order."""

    event_type = "OrderPlaced"
    schema_version = 2
    category = "order"

    order_id: str = Field(pattern=ORDER_ID)
    customer: str = Field(min_length=1, max_length=200)
    amount_cents: int = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


@catalogue.upcaster("OrderPlaced", 1)
def _currency_was_euros(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "currency": "EUR"}


@catalogue.register
class OrderCancelled(Event):
    """The order was cancelled: it no longer counts in its customer's totals."""

    event_type = "OrderCancelled"
    schema_version = 1
    category = "order"

    order_id: str = Field(pattern=ORDER_ID)
    reason: str = Field(default="", max_length=500)


def order_stream(order_id: str) -> str:
    return f"order-{order_id}"
