"""Time zones of budgets and schedules (`domains.timers.zones`): only IANA names, one rule for both domains. Zone
files that load but are not places (`localtime`, `posixrules`, `Factory`, `right/`, `posix/`) are refused as new
input, while events recorded with them before still read."""

from __future__ import annotations

import pytest

from agentlog.domains.budgets.events import BudgetSet
from agentlog.domains.budgets.ledger import BudgetLedger, InvalidBudgetError, set_limit
from agentlog.domains.schedules.events import ScheduleCreated, ScheduleSpec
from agentlog.domains.schedules.schedule import InvalidScheduleError, Schedule, change, create
from agentlog.domains.timers.zones import check_time_zone, iana_zones

TASK = {"kind": "task", "task": {"task_type": "report"}}
NOT_ZONES = ["localtime", "posixrules", "Factory", "right/UTC", "posix/Europe/Paris", "Mars/Olympus", "", "UTC\x00",
             "../../etc/passwd", "/usr/share/zoneinfo/UTC", "europe/paris"]  # fmt: skip


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "America/Argentina/Buenos_Aires", "Etc/GMT+5", "US/Eastern"])
def test_iana_names_are_taken(zone: str) -> None:
    assert check_time_zone(zone) == zone
    assert zone in iana_zones()


@pytest.mark.parametrize("zone", NOT_ZONES)
def test_anything_else_is_refused_saying_what_is_expected(zone: str) -> None:
    with pytest.raises(ValueError, match="IANA") as refused:
        check_time_zone(zone)
    assert "\x00" not in str(refused.value)


@pytest.mark.parametrize("zone", ["localtime", "posixrules", "Factory", "right/UTC"])
def test_both_domains_refuse_them_as_new_input(zone: str) -> None:
    with pytest.raises(InvalidBudgetError, match=r"^time_zone: "):
        set_limit(BudgetLedger(), "global", 5, "2026-12-02", time_zone=zone)
    with pytest.raises(InvalidScheduleError, match=r"^time_zone: "):
        create(Schedule(), "s", {"cron": "0 9 * * *", "time_zone": zone, "action": TASK})
    live = Schedule()
    live.fold(
        ScheduleCreated(schedule_id="s", spec=ScheduleSpec.model_validate({"cron": "0 9 * * *", "action": TASK})), 1
    )
    with pytest.raises(InvalidScheduleError, match=r"^time_zone: "):
        change(live, "s", {"time_zone": zone})


def test_what_the_log_recorded_with_such_a_zone_still_reads_and_can_be_changed() -> None:
    """Older releases took `localtime`: their events must still decode (a budget or a schedule would vanish), and
    a change that leaves the zone alone is not refused for it."""
    assert BudgetSet(budget_id="global", limit_tokens=5, time_zone="localtime", period="2026-12-02").time_zone
    legacy = ScheduleSpec.model_validate({"cron": "0 9 * * *", "time_zone": "localtime", "action": TASK})
    schedule = Schedule()
    schedule.fold(ScheduleCreated(schedule_id="s", spec=legacy), 1)
    (changed,) = change(schedule, "s", {"cron": "0 10 * * *"})
    assert changed.spec.time_zone == "localtime"  # type: ignore[attr-defined]
