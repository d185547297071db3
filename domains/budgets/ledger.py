"""The reservation rule: what a budget may take, so that settled and open reservations never exceed its limit.

A `BudgetLedger` is the fold of one budget's stream. The commands (`reserve`, `settle`, `release`, `expire`,
`set_limit`) are pure: given the ledger as folded, they return the events to append, warnings included, or raise
a `BudgetError` saying what was wrong. The invariant holds whatever the concurrency because every command is
decided against the stream's version it read and appended at that version (several budgets at once in one
transaction, `reserve_all`): a racing writer's append fails and it decides again from the newer ledger. A
concurrent first request has no way around it (LiteLLM #34732, #40095): there is no check apart from the append.

Usage beyond the reservation is charged only as far as the budget has room; the rest is `unbudgeted`, reported
on the settlement, so the ledger never claims more than the limit. Warnings are one event per threshold per
period, each its own: a reservation that jumps from 40 % to 95 % gives three.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime

from pydantic import BaseModel, Field

from agentlog.domains.budgets.events import (
    THRESHOLDS,
    BudgetSet,
    BudgetWarning,
    ReservationExpired,
    ReservationReleased,
    ReservationSettled,
    TokensReserved,
    budget_stream,
)
from agentlog.domains.budgets.periods import period_of
from agentlog.domains.timers.events import TimerScheduled
from agentlog.domains.timers.zones import check_time_zone
from agentlog.eventstore.events import Event

RESERVATION_EXPIRY = "budget-reservation-expiry"


class BudgetError(Exception):
    """A budget command was refused; nothing was appended."""


class BudgetExceededError(BudgetError):
    """The reservation does not fit in what the budget has left."""

    def __init__(self, budget_id: str, asked: int, remaining: int, period: str) -> None:
        super().__init__(
            f"budget {budget_id} has {remaining:,} tokens left in the period of {period}; {asked:,} asked: "
            "reserve less, or wait for the next period"
        )
        self.budget_id, self.asked, self.remaining, self.period = budget_id, asked, remaining, period


class BudgetNotSetError(BudgetError):
    """No such budget: set its limit first."""


class ReservationOpenError(BudgetError):
    """A reservation by that id is open already (a request run again is answered as its first run was)."""


class UnknownReservationError(BudgetError):
    """No such open reservation (never made, or settled, released or expired already)."""


class ReservationNotYoursError(BudgetError):
    """The reservation is another agent's to settle or release."""


class BudgetBelowCommittedError(BudgetError):
    """limit_tokens: below what the period has already settled and holds open."""


class InvalidBudgetError(BudgetError):
    """A budget's setting that cannot be used; the message names the field (`time_zone: ...`)."""


class OpenReservation(BaseModel):
    tokens: int
    agent_id: str = ""
    timer_id: str = ""
    """The expiry timer scheduled with it: only that timer gives it back (a caller may reuse a closed id)."""


class BudgetLedger(BaseModel):
    """One budget as the fold of its stream."""

    budget_id: str = ""
    defined: bool = False
    limit_tokens: int = 0
    reset_hour: int = 0
    time_zone: str = "UTC"
    period: str = ""
    settled: int = 0
    """Charged in the current period."""
    open: dict[str, OpenReservation] = Field(default_factory=dict)
    warned: list[int] = Field(default_factory=list)
    """Thresholds warned of in the current period."""
    unbudgeted: int = 0
    """Used in the current period beyond what the budget had left (not charged)."""
    reservations_made: int = 0
    """Reservations ever made on the budget: what makes each expiry timer's id unique in the log."""

    @property
    def reserved(self) -> int:
        return sum(reservation.tokens for reservation in self.open.values())

    @property
    def committed(self) -> int:
        return self.settled + self.reserved

    def remaining(self, period: str) -> int:
        settled = self.settled if period <= self.period else 0
        return max(self.limit_tokens - settled - self.reserved, 0)

    def period_at(self, at: datetime) -> str:
        """The period a moment counts in, by this budget's reset hour and time zone (never one already passed)."""
        return max(period_of(at, self.reset_hour, self.time_zone), self.period)

    def fold(self, event: Event) -> None:
        period = getattr(event, "period", None)
        if isinstance(period, str) and period > self.period:
            self.period, self.settled, self.warned, self.unbudgeted = period, 0, [], 0  # open reservations carry over
        match event:
            case BudgetSet():
                self.budget_id, self.defined = event.budget_id, True
                self.limit_tokens, self.reset_hour, self.time_zone = (
                    event.limit_tokens,
                    event.reset_hour,
                    event.time_zone,
                )
            case TokensReserved():
                self.open[event.reservation_id] = OpenReservation(tokens=event.tokens, agent_id=event.agent_id)
                self.reservations_made += 1
            case TimerScheduled(purpose=purpose) if purpose == RESERVATION_EXPIRY:
                held = self.open.get(event.subject.partition("/")[2])
                if held is not None:
                    held.timer_id = event.timer_id
            case ReservationSettled():
                self.open.pop(event.reservation_id, None)
                self.settled += event.charged
                self.unbudgeted += event.unbudgeted
            case ReservationReleased():
                self.open.pop(event.reservation_id, None)
            case ReservationExpired():
                held = self.open.get(event.reservation_id)
                if held is not None and held.timer_id in {event.timer_id, ""}:
                    # Only its own timer's expiry ends it: one decided from an older reservation under the same id
                    # may land after this one was made (the keeper was behind), and must change nothing.
                    del self.open[event.reservation_id]
            case BudgetWarning():
                if event.threshold not in self.warned:
                    self.warned.append(event.threshold)


def _with_warnings(ledger: BudgetLedger, event: Event) -> list[Event]:
    """`event` and the warnings it brings: every threshold reached and not warned of in the period yet."""
    after = ledger.model_copy(deep=True)
    after.fold(event)
    events: list[Event] = [event]
    if after.limit_tokens <= 0:
        return events
    for threshold in THRESHOLDS:
        if after.committed * 100 >= threshold * after.limit_tokens and threshold not in after.warned:
            events.append(
                BudgetWarning(
                    budget_id=after.budget_id, threshold=threshold, period=after.period,
                    committed_tokens=after.committed, limit_tokens=after.limit_tokens,
                )
            )  # fmt: skip
    return events


def _defined(ledger: BudgetLedger, budget_id: str) -> None:
    if not ledger.defined:
        raise BudgetNotSetError(f"no budget {budget_id}: set its limit first (agentlog budget set)")


def set_limit(
    ledger: BudgetLedger, budget_id: str, limit_tokens: int, period: str, *, reset_hour: int = 0,
    time_zone: str = "UTC", set_by: str = "",
) -> list[Event]:  # fmt: skip
    """Set or change a budget; refused below what its period already settled and holds open, or in a time zone
    that is no IANA zone (`zones`: the check of new input; `BudgetSet` still reads what older releases took)."""
    try:
        check_time_zone(time_zone)
    except ValueError as error:
        raise InvalidBudgetError(f"time_zone: {error}") from error
    committed = (ledger.settled if period <= ledger.period else 0) + ledger.reserved
    if limit_tokens < committed:
        raise BudgetBelowCommittedError(
            f"limit_tokens: {limit_tokens:,} is below the {committed:,} tokens budget {budget_id} has already "
            "settled and holds open in this period"
        )
    event = BudgetSet(
        budget_id=budget_id, limit_tokens=limit_tokens, reset_hour=reset_hour, time_zone=time_zone,
        period=max(period, ledger.period), set_by=set_by,
    )  # fmt: skip
    return _with_warnings(ledger, event)


def reserve(
    ledger: BudgetLedger, reservation_id: str, tokens: int, period: str, *, agent_id: str = "", ttl_s: float = 600.0,
    purpose: str = "",
) -> list[Event]:  # fmt: skip
    """Hold `tokens` for a call; refused with what is left when they do not fit. The events are the reservation,
    the warnings it brings and, last, its expiry timer."""
    _defined(ledger, ledger.budget_id)
    if reservation_id in ledger.open:
        raise ReservationOpenError(f"reservation {reservation_id} is open already on budget {ledger.budget_id}")
    period = max(period, ledger.period)
    remaining = ledger.remaining(period)
    if tokens > remaining:
        raise BudgetExceededError(ledger.budget_id, tokens, remaining, period)
    event = TokensReserved(
        budget_id=ledger.budget_id, reservation_id=reservation_id, period=period, tokens=tokens,
        agent_id=agent_id, ttl_s=ttl_s, purpose=purpose,
    )  # fmt: skip
    return [*_with_warnings(ledger, event), expiry_timer(event, ledger.reservations_made)]


def reserve_all(
    ledgers: Mapping[str, BudgetLedger], reservation_id: str, tokens: int, at: datetime, *, agent_id: str = "",
    ttl_s: float = 600.0, purpose: str = "",
) -> dict[str, list[Event]]:  # fmt: skip
    """One reservation against several budgets (the global one and the agent's): all fit, or none is made."""
    return {
        budget_id: reserve(
            ledger, reservation_id, tokens, ledger.period_at(at), agent_id=agent_id, ttl_s=ttl_s, purpose=purpose
        )
        for budget_id, ledger in sorted(ledgers.items())
    }


def settle(ledger: BudgetLedger, reservation_id: str, used_tokens: int, period: str) -> list[Event]:
    """Charge what the call used (as far as the budget has room) and release the rest of the reservation."""
    held = ledger.open.get(reservation_id)
    if held is None:
        raise UnknownReservationError(
            f"reservation {reservation_id} is not open on budget {ledger.budget_id} (settled, released or expired)"
        )
    period = max(period, ledger.period)
    room = ledger.remaining(period) + held.tokens
    charged = min(used_tokens, room)
    event = ReservationSettled(
        budget_id=ledger.budget_id, reservation_id=reservation_id, period=period, used_tokens=used_tokens,
        charged=charged, unbudgeted=used_tokens - charged,
    )  # fmt: skip
    return _with_warnings(ledger, event)


def release(ledger: BudgetLedger, reservation_id: str, period: str, reason: str = "") -> list[Event]:
    if reservation_id not in ledger.open:
        raise UnknownReservationError(f"reservation {reservation_id} is not open on budget {ledger.budget_id}")
    period = max(period, ledger.period)
    released = ReservationReleased(budget_id=ledger.budget_id, reservation_id=reservation_id, period=period,
                                   reason=reason)  # fmt: skip
    # The first event of a new period: what the reservations carried over still hold counts in it, and warns.
    return _with_warnings(ledger, released)


def expiry_timer(reserved: TokensReserved, sequence: int) -> TimerScheduled:
    """The timer that gives the reservation back after its TTL (appended with it). `sequence` is how many
    reservations the budget had made before: a reservation id names one reservation only while it is open, so
    the timer's id (and its firing's event id) must tell apart every reservation ever made under that id."""
    key = f"{reserved.budget_id}/{reserved.reservation_id}#{sequence}"
    return TimerScheduled(
        timer_id="reservation-" + hashlib.sha256(key.encode()).hexdigest()[:40], delay_s=reserved.ttl_s,
        purpose=RESERVATION_EXPIRY, subject=f"{reserved.budget_id}/{reserved.reservation_id}",
    )  # fmt: skip


def expire(ledger: BudgetLedger, subject: str, timer_id: str) -> list[Event]:
    """On the expiry timer: the reservation back if still open under that timer (nothing when settled or released
    meanwhile, or when the id was closed and reused since: the new reservation has a timer of its own)."""
    budget_id, _, reservation_id = subject.partition("/")
    held = ledger.open.get(reservation_id)
    if held is None or held.timer_id != timer_id:
        return []
    return [ReservationExpired(budget_id=budget_id, reservation_id=reservation_id, period=ledger.period,
                               timer_id=timer_id)]  # fmt: skip


def budget_of(stream_id: str, event: Event) -> str | None:
    """The budget an event of the log counts in: a budget's own event, or a reservation's expiry timer on its
    stream (the ledger needs it, to know which timer guards each open reservation). None for any other event."""
    budget_id = getattr(event, "budget_id", None)
    if budget_id is None and isinstance(event, TimerScheduled) and event.purpose == RESERVATION_EXPIRY:
        budget_id = event.subject.partition("/")[0]
    if not isinstance(budget_id, str) or stream_id != budget_stream(budget_id):
        return None
    return budget_id


def fold_all(events: Sequence[Event], ledger: BudgetLedger | None = None) -> BudgetLedger:
    ledger = ledger or BudgetLedger()
    for event in events:
        ledger.fold(event)
    return ledger
