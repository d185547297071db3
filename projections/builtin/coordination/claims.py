"""claims: every claim, in force or ended, folded by the domain's claim rule."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, ClassVar

from agentlog.domains.coordination.claims import Claim, ClaimsState
from agentlog.domains.coordination.events import ClaimExpired, ClaimHandedOff, ClaimMade, ClaimReleased
from agentlog.eventstore import TypedEvent
from agentlog.eventstore.postgres.connections import Connection
from agentlog.projections.builtin.coordination.queries import QUERIES

CLAIM_FIELDS = ("claim_id", "holder", "pattern", "kind", "exclusive", "ttl_s", "reason", "timer_id", "context",
                "handed_off_from")  # fmt: skip


class Claims:
    name: ClassVar[str] = "claims"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("claims",)
    event_types: ClassVar[frozenset[str] | None] = frozenset(
        {"ClaimMade", "ClaimReleased", "ClaimExpired", "ClaimHandedOff"}
    )

    async def apply(self, connection: Connection, events: Sequence[TypedEvent]) -> None:
        claim_ids = sorted({item.event.claim_id for item in events})  # type: ignore[attr-defined]
        rows: dict[str, dict[str, Any]] = {
            row["claim_id"]: dict(row) for row in await connection.fetch(QUERIES["claim_rows"], claim_ids)
        }
        state = ClaimsState(claims={claim_id: Claim(**{name: row[name] for name in CLAIM_FIELDS})
                                    for claim_id, row in rows.items()})  # fmt: skip
        written: dict[str, dict[str, Any]] = {}
        for item in events:
            event = item.event
            assert isinstance(event, ClaimMade | ClaimReleased | ClaimExpired | ClaimHandedOff)
            before = rows.get(event.claim_id)
            if state.fold(event) is None:
                continue
            claim = state.claims.get(event.claim_id)
            if claim is None:  # ended
                assert before is not None
                before.update(state="released" if isinstance(event, ClaimReleased) else "expired",
                              ended_at=item.recorded_at,
                              end_reason=getattr(event, "reason", "released by its holder"))  # fmt: skip
                written[event.claim_id] = before
                continue
            row = {**(before or {"made_at": item.recorded_at}), **claim.model_dump(), "state": "held",
                   "expires_at": item.recorded_at + timedelta(seconds=claim.ttl_s), "ended_at": None,
                   "end_reason": None}  # fmt: skip
            rows[event.claim_id] = written[event.claim_id] = row
        if written:
            await connection.execute(QUERIES["claim_upsert"], list(written.values()))


projection = Claims()
