"""Cron arithmetic in a time zone, on `cronsim` (a maintained parser that follows Debian's cron), behind three typed
functions so that nothing else in the project depends on its API.

Expressions have five fields (minute hour day-of-month month day-of-week) or six with seconds first
(`*/5 * * * * *`, every five seconds). Slots are whole seconds, returned as aware UTC datetimes; the time zone is
an IANA name (`zoneinfo`).

Daylight saving, as Debian's cron does it (and cronsim with it):

- A five-field expression at a fixed time of day (its minute and hour fields do not start with `*`: `30 2 * * *`)
  is reckoned in local wall-clock time. A local time that does not exist (skipped when clocks move forward) fires
  at the first local time after the gap (`30 2` in Europe/Paris on the last Sunday of March fires at 03:00); a
  local time that happens twice (clocks move back) fires once, at its first occurrence.
- Any other expression (`*/15 * * * *`, `0 * * * *`, every six-field one) ticks in real time: a skipped local
  time never happens, so it does not fire, and a repeated local time fires at each occurrence (`0 * * * *` fires
  twice within the repeated hour, as real hours pass).

The results are guarded to be strictly after (`next_after`) or at or before (`latest_at_or_before`) the moment
asked about in real time, whatever the wall-clock folds do: the callers' "every slot once" rests on it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

MAX_EXPRESSION_CHARS = 200
_GUARD_STEPS = 4
"""Extra iterations allowed to step past a result on the wrong side of the moment (a wall-clock fold)."""


class CronError(ValueError):
    """A cron expression or time zone that cannot be used; the message names the field."""


def zone(time_zone: str) -> ZoneInfo:
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise CronError(f"time_zone: unknown time zone {time_zone!r} (an IANA name, like Europe/Paris)") from error


def check(expression: str, time_zone: str) -> None:
    """Raise `CronError` naming the field (`cron:`, `time_zone:`) unless the expression can be used in the zone."""
    where = zone(time_zone)
    if not expression.strip() or len(expression) > MAX_EXPRESSION_CHARS:
        raise CronError(f"cron: an expression of 5 or 6 fields, at most {MAX_EXPRESSION_CHARS} characters")
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise CronError(f"cron: {expression!r} has {len(fields)} fields; 5 (minute first) or 6 (seconds first)")
    try:
        CronSim(expression, datetime(2026, 1, 1, tzinfo=where))
    except CronSimError as error:
        raise CronError(f"cron: {expression!r}: {str(error).lower() or 'not a cron expression'}") from error


def next_after(expression: str, time_zone: str, after: datetime) -> datetime | None:
    """The first slot strictly after `after` (aware); None when none comes within cronsim's horizon (50 years)."""
    local = after.astimezone(zone(time_zone))
    slots = CronSim(expression, local)
    for _ in range(_GUARD_STEPS):
        try:
            found = next(slots).astimezone(UTC)
        except StopIteration:
            return None
        if found > after:
            return found
    return None


def latest_at_or_before(expression: str, time_zone: str, at: datetime) -> datetime | None:
    """The last slot at or before `at` (aware); None when none lies within cronsim's horizon (50 years back)."""
    # cronsim's reverse iteration yields slots strictly before a whole second: start one second after `at`'s.
    start = at.astimezone(zone(time_zone)).replace(microsecond=0) + timedelta(seconds=1)
    slots = CronSim(expression, start, reverse=True)
    for _ in range(_GUARD_STEPS):
        try:
            found = next(slots).astimezone(UTC)
        except StopIteration:
            return None
        if found <= at:
            return found
    return None


def slots_between(expression: str, time_zone: str, after: datetime, until: datetime, limit: int) -> list[datetime]:
    """The slots strictly after `after` and at or before `until`, in order, at most `limit` of them."""
    found: list[datetime] = []
    first = next_after(expression, time_zone, after)
    if first is None or first > until:
        return found
    found.append(first)
    slots = CronSim(expression, first.astimezone(zone(time_zone)))
    while len(found) < limit:
        try:
            slot = next(slots).astimezone(UTC)
        except StopIteration:
            break
        if slot > until:
            break
        if slot > found[-1]:  # a wall-clock fold may repeat a slot: each once
            found.append(slot)
    return found
