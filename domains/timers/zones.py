"""Time zones, one rule for every domain that reads a clock in one (a budget's daily reset, a schedule's cron): an
IANA name, or `UTC`.

`ZoneInfo` loads any TZif file under the zone directories, and some of them are no place: `localtime` (the host's
own zone, another one on every machine, so two processes would disagree on a budget's day), `posixrules` (a
template of rules), `Factory` (the tz database's "zone not set", named `-00`), and the `posix/` and `right/`
copies of every zone (`right/` counts leap seconds: its clock is some 27 s off every other). The names
`zoneinfo.available_timezones()` lists (the IANA database; it leaves `posix/` and `right/` out) but those are
taken, and `UTC`.

The rule is for new input (`check_time_zone`, `TimeZone`): what the log recorded while any loadable name was taken
still reads as it was (a budget set in `localtime` keeps its limit after an upgrade, a schedule recorded so fires
and may still be changed in its other fields), so the events keep their older check.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated
from zoneinfo import available_timezones

from pydantic import AfterValidator, StringConstraints

NOT_PLACES = frozenset({"localtime", "posixrules", "Factory"})


@cache
def iana_zones() -> frozenset[str]:
    """Every name taken (read once: the list walks the zone directories)."""
    return frozenset((available_timezones() - NOT_PLACES) | {"UTC"})


def check_time_zone(name: str) -> str:
    """`name` when it is an IANA time zone, else a `ValueError` saying what is expected (the name shown escaped)."""
    if name not in iana_zones():
        raise ValueError(f"{name!a} is not an IANA time zone: give one like Europe/Paris, or UTC")
    return name


TimeZone = Annotated[str, StringConstraints(min_length=1, max_length=100), AfterValidator(check_time_zone)]
"""A time zone given as new input (a request's field): `check_time_zone`'s rule, refused naming the field."""
