"""budgets: one row per token budget — its limit and reset, and its current period as the budgets domain folds
its stream (`domains.budgets.ledger`): settled, reserved and open reservations, what is left, the warnings given
and the usage beyond what it had left (`unbudgeted`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from agentlog.domains.budgets.ledger import BudgetLedger, budget_of
from agentlog.eventstore import TypedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.projections.builtin.orchestration.queries import QUERIES


class Budgets:
    name: ClassVar[str] = "budgets"
    version: ClassVar[int] = 3
    """2: the ledger folds `unbudgeted` itself (the projection kept its own count). 3: and each open reservation's
    expiry timer, so an expiry decided from an older reservation under the same id changes nothing."""
    tables: ClassVar[tuple[str, ...]] = ("budgets",)
    event_types: ClassVar[frozenset[str] | None] = frozenset(
        {"BudgetSet", "TokensReserved", "ReservationSettled", "ReservationReleased", "ReservationExpired",
         "BudgetWarning", "TimerScheduled"}
    )  # fmt: skip

    async def apply(self, connection: Connection, events: Sequence[TypedEvent]) -> None:
        mine = [(budget_id, item) for item in events if (budget_id := budget_of(item.stream_id, item.event))]
        if not mine:
            return
        budget_ids = sorted({budget_id for budget_id, _ in mine})
        rows = {row["budget_id"]: dict(row) for row in await connection.fetch(QUERIES["budget_rows"], budget_ids)}
        ledgers = {budget_id: BudgetLedger.model_validate(row["ledger"]) for budget_id, row in rows.items()}
        updated: dict[str, Any] = {}
        for budget_id, item in mine:
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
