"""Which period a moment counts in: a day that begins at the budget's reset hour in its time zone.

The period is named by the local date it began on: with a reset at 06:00 in Europe/Paris, 05:59 local on the 3rd
still counts in the period of the 2nd. Wall-clock arithmetic, so a daylight-saving change moves nothing: the
period begins at the first local moment at or after the reset hour.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo


def period_of(at: datetime, reset_hour: int, time_zone: str) -> str:
    """The period `at` (an aware datetime) counts in, as `YYYY-MM-DD`."""
    if at.tzinfo is None:
        raise ValueError("period_of needs an aware datetime (the database clock's, with its time zone)")
    local = at.astimezone(ZoneInfo(time_zone)).replace(tzinfo=None)
    return (local - timedelta(hours=reset_hour)).date().isoformat()
