"""budgets: one row per token budget — its limit and reset, and its current period as the budgets domain folds
its stream (`domains.budgets.ledger`): settled, reserved and open reservations, what is left, the warnings given
and the usage beyond what it had left (`unbudgeted`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from agentlog.domains.budgets.ledger import BudgetLedger
from agentlog.eventstore import TypedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.projections.builtin.orchestration.queries import QUERIES


class Budgets:
    name: ClassVar[str] = "budgets"
    version: ClassVar[int] = 2
    """2: the ledger folds `unbudgeted` itself (the projection kept its own count)."""
    tables: ClassVar[tuple[str, ...]] = ("budgets",)
    event_types: ClassVar[frozenset[str] | None] = frozenset(
        {"BudgetSet", "TokensReserved", "ReservationSettled", "ReservationReleased", "ReservationExpired",
         "BudgetWarning"}
    )  # fmt: skip

    async def apply(self, connection: Connection, events: Sequence[TypedEvent]) -> None:
        budget_ids = sorted({item.event.budget_id for item in events})  # type: ignore[attr-defined]
        rows = {row["budget_id"]: dict(row) for row in await connection.fetch(QUERIES["budget_rows"], budget_ids)}
        ledgers = {budget_id: BudgetLedger.model_validate(row["ledger"]) for budget_id, row in rows.items()}
        updated: dict[str, Any] = {}
        for item in events:
            budget_id: str = item.event.budget_id  # type: ignore[attr-defined]
            ledger = ledgers.setdefault(budget_id, BudgetLedger(budget_id=budget_id))
            ledger.fold(item.event)
            updated[budget_id] = item.recorded_at
        out = []
        for budget_id in sorted(updated):
            ledger = ledgers[budget_id]
            out.append({
                "budget_id": budget_id, "limit_tokens": ledger.limit_tokens, "reset_hour": ledger.reset_hour,
                "time_zone": ledger.time_zone, "period": ledger.period, "settled_tokens": ledger.settled,
                "reserved_tokens": ledger.reserved, "open_reservations": len(ledger.open),
                "remaining_tokens": ledger.remaining(ledger.period), "warned": sorted(ledger.warned),
                "unbudgeted_tokens": ledger.unbudgeted, "updated_at": updated[budget_id],
                "ledger": ledger.model_dump(mode="json"),
            })  # fmt: skip
        await connection.execute(QUERIES["budget_upsert"], out)


projection = Budgets()
