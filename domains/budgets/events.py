"""Events of token budgets. A budget is a stream, `budget-<budget_id>` (`global`, or `agent-<agent id>`): its limit
and reset, every reservation and what became of it, and its warnings.

Every event names its period (the day it counts in, `periods`), so a fold needs no clock: the first event of a
later period starts it afresh (nothing settled, no warning given), while reservations still open carry over.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, StringConstraints, field_validator

from agentlog.domains.timers.events import TimerDelay
from agentlog.eventstore.events import Event, catalogue

BUDGET_ID_PATTERN = r"^(global|agent-[A-Za-z0-9][A-Za-z0-9._-]{0,63})$"
BudgetId = Annotated[str, StringConstraints(pattern=BUDGET_ID_PATTERN)]
ReservationId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Period = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$")]
"""The date (in the budget's time zone, shifted by its reset hour) a period began on: `2026-12-02`."""
Tokens = Annotated[int, Field(ge=0, le=10**12)]
ShortText = Annotated[str, StringConstraints(max_length=500)]
Threshold = Literal[50, 75, 90]
THRESHOLDS: tuple[Threshold, ...] = (50, 75, 90)


def budget_stream(budget_id: str) -> str:
    return f"budget-{budget_id}"


def agent_budget(agent_id: str) -> str:
    return f"agent-{agent_id}"


@catalogue.register
class BudgetSet(Event):
    """A budget's limit per period and when its period resets (every day at `reset_hour` in `time_zone`)."""

    event_type: ClassVar[str] = "BudgetSet"
    category: ClassVar[str] = "budget"

    budget_id: BudgetId
    limit_tokens: Tokens
    reset_hour: Annotated[int, Field(ge=0, le=23)] = 0
    time_zone: Annotated[str, StringConstraints(min_length=1, max_length=100)] = "UTC"
    period: Period
    set_by: ShortText = ""

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        """Any zone `ZoneInfo` loads, as older releases took: new input meets `zones.check_time_zone` first."""
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"time_zone: unknown time zone {value!r} (an IANA name, like Europe/Paris)") from error
        return value


class _ReservationEvent(Event):
    category: ClassVar[str] = "budget"

    budget_id: BudgetId
    reservation_id: ReservationId
    period: Period


@catalogue.register
class TokensReserved(_ReservationEvent):
    """`tokens` (an estimate, e.g. the call's `max_tokens`) are held for a call about to be made; released by a
    timer after `ttl_s` unless settled or released before (the caller died)."""

    event_type: ClassVar[str] = "TokensReserved"

    tokens: Annotated[int, Field(ge=1, le=10**12)]
    agent_id: ShortText = ""
    ttl_s: Annotated[TimerDelay, Field(gt=0)] = 600.0
    purpose: ShortText = ""


@catalogue.register
class ReservationSettled(_ReservationEvent):
    """The call used `used_tokens`: `charged` count against the budget (what fit), the rest of the reservation is
    released, and `unbudgeted` were used beyond what the budget had left (reported, never charged past it)."""

    event_type: ClassVar[str] = "ReservationSettled"

    used_tokens: Tokens
    charged: Tokens
    unbudgeted: Tokens = 0


@catalogue.register
class ReservationReleased(_ReservationEvent):
    """The reservation is given back unused (the call was not made)."""

    event_type: ClassVar[str] = "ReservationReleased"

    reason: ShortText = ""


@catalogue.register
class ReservationExpired(_ReservationEvent):
    """Neither settled nor released within its TTL: given back by its timer."""

    event_type: ClassVar[str] = "ReservationExpired"

    timer_id: Annotated[str, StringConstraints(min_length=1, max_length=100)]


@catalogue.register
class BudgetWarning(Event):
    """Settled and open reservations reached `threshold` % of the limit: once per threshold per budget per period."""

    event_type: ClassVar[str] = "BudgetWarning"
    category: ClassVar[str] = "budget"

    budget_id: BudgetId
    threshold: Threshold
    period: Period
    committed_tokens: Tokens
    limit_tokens: Tokens
