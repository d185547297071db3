"""Timer events: time enters the log as events, never as a clock read inside a decider.

A decider schedules a timer with a delay; the timer service appends `TimerFired` to the same stream once the
database clock has passed the scheduling event's `recorded_at` plus the delay. A fired timer the decider no longer
waits for (cancelled, superseded) is ignored by it, so firing and cancelling may race harmlessly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar

from pydantic import Field, StringConstraints

from agentlog.eventstore.events import Event, catalogue

TimerId = Annotated[str, StringConstraints(min_length=1, max_length=100)]
MAX_TIMER_DELAY_S = 366 * 24 * 3600
TimerDelay = Annotated[float, Field(ge=0, le=MAX_TIMER_DELAY_S)]
"""A delay a timer can have: deciders' settings that become timer delays are bounded by the same."""


@catalogue.register
class TimerScheduled(Event):
    """Wake the scheduling decider `delay_s` after this event was recorded; `purpose` says what for."""

    event_type: ClassVar[str] = "TimerScheduled"
    category: ClassVar[str] = "timer"

    timer_id: TimerId
    delay_s: TimerDelay
    purpose: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    subject: str = ""
    """What the timer is about (a document id, an agent id), for the decider and for people reading the log."""


@catalogue.register
class TimerCancelled(Event):
    """The decider no longer waits for this timer; the timer service will not fire it."""

    event_type: ClassVar[str] = "TimerCancelled"
    category: ClassVar[str] = "timer"

    timer_id: TimerId


@catalogue.register
class TimerFired(Event):
    """The database clock passed the timer's due time."""

    event_type: ClassVar[str] = "TimerFired"
    category: ClassVar[str] = "timer"

    timer_id: TimerId
    purpose: str
    subject: str = ""
    due_at: datetime
