"""Token budgets (`domains.budgets`): periods, and the reservation rule under random and concurrent use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agentlog.domains.budgets.events import BudgetSet, BudgetWarning, ReservationExpired, ReservationSettled
from agentlog.domains.budgets.ledger import (
    BudgetBelowCommittedError,
    BudgetError,
    BudgetExceededError,
    BudgetLedger,
    UnknownReservationError,
    expire,
    fold_all,
    release,
    reserve,
    reserve_all,
    set_limit,
    settle,
)
from agentlog.domains.budgets.periods import period_of
from agentlog.domains.timers.events import TimerScheduled
from agentlog.eventstore import Event

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
DAY0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_a_period_begins_at_the_reset_hour_in_the_budgets_time_zone() -> None:
    paris = ZoneInfo("Europe/Paris")
    assert period_of(datetime(2026, 12, 3, 5, 59, tzinfo=paris), 6, "Europe/Paris") == "2026-12-02"
    assert period_of(datetime(2026, 12, 3, 6, 0, tzinfo=paris), 6, "Europe/Paris") == "2026-12-03"
    assert period_of(datetime(2026, 12, 3, 4, 30, tzinfo=UTC), 6, "Europe/Paris") == "2026-12-02"
    assert period_of(datetime(2026, 12, 3, 23, 30, tzinfo=UTC), 0, "Asia/Kolkata") == "2026-12-04"
    with pytest.raises(ValueError, match="aware"):
        period_of(datetime(2026, 12, 3), 0, "UTC")
    with pytest.raises(ValidationError, match="time_zone"):
        BudgetSet(budget_id="global", limit_tokens=1, time_zone="Mars/Olympus", period="2026-12-03")


@given(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
       st.integers(0, 23), st.sampled_from(ZONES), st.integers(1, 48 * 60))  # fmt: skip
@settings(max_examples=200, deadline=None)
def test_periods_follow_the_local_reset_hour_and_a_ledger_never_goes_back(
    naive: datetime, reset_hour: int, zone: str, minutes: int
) -> None:
    at = naive.replace(tzinfo=UTC)
    local = at.astimezone(ZoneInfo(zone))
    expected = local.date() if local.hour >= reset_hour else local.date() - timedelta(days=1)
    assert period_of(at, reset_hour, zone) == expected.isoformat()
    ledger = BudgetLedger(defined=True, reset_hour=reset_hour, time_zone=zone, period=period_of(at, reset_hour, zone))
    assert ledger.period_at(at + timedelta(minutes=minutes)) >= ledger.period


def budget(limit: int, period: str = "2026-03-01") -> BudgetLedger:
    return fold_all(set_limit(BudgetLedger(), "global", limit, period))


def test_a_reservation_that_does_not_fit_is_refused_naming_the_budget_and_what_is_left() -> None:
    ledger = budget(100_000)
    ledger = fold_all(reserve(ledger, "r1", 60_000, "2026-03-01"), ledger)
    with pytest.raises(BudgetExceededError, match=r"budget global has 40,000 tokens left .* 50,000 asked"):
        reserve(ledger, "r2", 50_000, "2026-03-01")
    with pytest.raises(BudgetBelowCommittedError, match="limit_tokens: 50,000 is below the 60,000"):
        set_limit(ledger, "global", 50_000, "2026-03-01")
    with pytest.raises(UnknownReservationError):
        release(ledger, "r9", "2026-03-01")
    with pytest.raises(BudgetExceededError, match="40,000 tokens left in the period of 2026-03-02"):
        reserve(ledger, "r2", 50_000, "2026-03-02")  # an open reservation carries over into the next period
    ledger = fold_all(settle(ledger, "r1", 60_000, "2026-03-01"), ledger)
    assert reserve(ledger, "r2", 50_000, "2026-03-02")[0].event_type == "TokensReserved"  # the next day: room


def test_one_warning_per_threshold_even_when_one_call_crosses_them_all() -> None:
    ledger = budget(1_000)
    events = reserve(ledger, "r1", 950, "2026-03-01")
    assert [e.threshold for e in events if isinstance(e, BudgetWarning)] == [50, 75, 90]
    ledger = fold_all(events, ledger)
    ledger = fold_all(release(ledger, "r1", "2026-03-01"), ledger)
    assert [e.event_type for e in reserve(ledger, "r2", 950, "2026-03-01")] == ["TokensReserved", "TimerScheduled"]
    assert len([e for e in reserve(ledger, "r2", 950, "2026-03-02") if isinstance(e, BudgetWarning)]) == 3


def test_usage_past_the_reservation_is_charged_only_as_far_as_there_is_room() -> None:
    ledger = fold_all(reserve(budget(1_000), "r1", 100, "2026-03-01"), budget(1_000))
    ledger = fold_all(reserve(ledger, "r2", 800, "2026-03-01"), ledger)
    (settled, *_) = settle(ledger, "r1", 400, "2026-03-01")
    assert isinstance(settled, ReservationSettled) and (settled.charged, settled.unbudgeted) == (200, 200)


def test_an_expiry_timer_gives_back_only_what_is_still_open() -> None:
    ledger = budget(1_000)
    events = reserve(ledger, "r1", 10, "2026-03-01", ttl_s=30)
    timer = events[-1]
    assert isinstance(timer, TimerScheduled) and timer.delay_s == 30
    ledger = fold_all(events, ledger)
    assert [e.event_type for e in expire(ledger, timer.subject, timer.timer_id)] == ["ReservationExpired"]
    assert expire(ledger, timer.subject, "another-timer") == []
    ledger = fold_all(release(ledger, "r1", "2026-03-01"), ledger)
    assert expire(ledger, timer.subject, timer.timer_id) == []


def test_a_reservation_id_closed_and_used_again_is_guarded_by_its_own_timer_only() -> None:
    ledger = budget(1_000)
    first = reserve(ledger, "r1", 10, "2026-03-01", ttl_s=30)
    ledger = fold_all([*first, *release(fold_all(first, ledger), "r1", "2026-03-01")], ledger)
    second = reserve(ledger, "r1", 20, "2026-03-01", ttl_s=600)
    ledger = fold_all(second, ledger)
    old, new = first[-1], second[-1]
    assert isinstance(old, TimerScheduled) and isinstance(new, TimerScheduled) and old.timer_id != new.timer_id
    assert expire(ledger, old.subject, old.timer_id) == [], "the first r1's timer gave back the second r1"
    assert [e.event_type for e in expire(ledger, new.subject, new.timer_id)] == ["ReservationExpired"]
    # An expiry decided from the first r1 (its keeper was behind) lands after the second was made: it ends nothing.
    late = ReservationExpired(budget_id="global", reservation_id="r1", period="2026-03-01", timer_id=old.timer_id)
    assert "r1" in fold_all([late], ledger).open


def test_a_reservation_against_the_global_and_the_agents_budget_is_all_or_nothing() -> None:
    ledgers = {"global": budget(1_000), "agent-a": fold_all(set_limit(BudgetLedger(), "agent-a", 100, "2026-03-01"))}
    with pytest.raises(BudgetExceededError, match="budget agent-a"):
        reserve_all(ledgers, "r1", 200, DAY0)
    made = reserve_all(ledgers, "r1", 100, DAY0, agent_id="a")
    assert sorted(made) == ["agent-a", "global"]


commands = st.one_of(
    st.tuples(st.just("reserve"), st.integers(1, 400)),
    st.tuples(st.just("reserve"), st.integers(1, 60)),
    st.tuples(st.just("settle"), st.integers(0, 20), st.integers(0, 500)),
    st.tuples(st.just("release"), st.integers(0, 20)),
    st.tuples(st.just("expire"), st.integers(0, 20)),
    st.tuples(st.just("fire"), st.integers(0, 60)),
    st.tuples(st.just("limit"), st.integers(0, 1_500)),
    st.tuples(st.just("day")),
)


def check_log(log: list[Event]) -> BudgetLedger:
    """Fold the log, checking at every event that nothing is overspent and no threshold's warning is missing or
    given twice in one period."""
    ledger = BudgetLedger()
    warned: set[tuple[str, int]] = set()
    for event in log:
        ledger.fold(event)
        if isinstance(event, BudgetWarning):
            assert (event.period, event.threshold) not in warned, "a threshold warned of twice in one period"
            warned.add((event.period, event.threshold))
        assert ledger.committed <= ledger.limit_tokens, "settled + open reservations exceed the budget"
    for threshold in (50, 75, 90):
        if ledger.limit_tokens and ledger.committed * 100 >= threshold * ledger.limit_tokens:
            assert (ledger.period, threshold) in warned, f"the {threshold} % warning was swallowed"
    return ledger


@given(st.lists(commands, min_size=1, max_size=60))
@settings(max_examples=200, deadline=None)
def test_settled_and_open_never_exceed_the_budget_and_every_threshold_warns_once(
    steps: list[tuple[object, ...]],
) -> None:
    log: list[Event] = list(set_limit(BudgetLedger(), "global", 1_000, "2026-03-01"))
    day, made = 1, 0
    for command in steps:
        ledger = fold_all(log)
        period = f"2026-03-{day:02d}"
        ids = sorted(ledger.open)
        pick = ids[command[1] % len(ids)] if ids and command[0] in {"settle", "release", "expire"} else None  # type: ignore[operator]
        try:
            match command:
                case ("reserve", tokens):
                    made += 1
                    reservation_id = f"r{made % 4}"  # ids closed are used again
                    fits = tokens <= ledger.remaining(period)  # type: ignore[operator]
                    if reservation_id in ledger.open:
                        with pytest.raises(BudgetError, match="open already"):
                            reserve(ledger, reservation_id, tokens, period)  # type: ignore[arg-type]
                        continue
                    try:
                        log += reserve(ledger, reservation_id, tokens, period)  # type: ignore[arg-type]
                        assert fits
                    except BudgetExceededError:
                        assert not fits
                case ("settle", _, used) if pick:
                    log += settle(ledger, pick, used, period)  # type: ignore[arg-type]
                case ("release", _) if pick:
                    log += release(ledger, pick, period)
                case ("expire", _) if pick:
                    timer = [e for e in log if isinstance(e, TimerScheduled) and e.subject == f"global/{pick}"][-1]
                    expired = expire(ledger, timer.subject, timer.timer_id)
                    assert [e.event_type for e in expired] == ["ReservationExpired"]
                    log += expired
                case ("fire", n):  # any timer ever scheduled fires (again): only an open reservation's own counts
                    timers = [e for e in log if isinstance(e, TimerScheduled)]
                    if timers:
                        timer = timers[n % len(timers)]  # type: ignore[operator]
                        reservation_id = timer.subject.partition("/")[2]
                        guarding = [e for e in timers if e.subject == timer.subject][-1] is timer
                        expired = expire(ledger, timer.subject, timer.timer_id)
                        assert bool(expired) == (guarding and reservation_id in ledger.open), timer
                        log += expired
                case ("limit", limit):
                    log += set_limit(ledger, "global", limit, period)  # type: ignore[arg-type]
                case ("day",):
                    day += 1
        except BudgetBelowCommittedError:
            assert command[1] < ledger.committed  # type: ignore[operator]
        check_log(log)


@given(st.lists(st.tuples(st.integers(0, 15), st.integers(1, 120)), min_size=1, max_size=120))
@settings(max_examples=100, deadline=None)
def test_sixteen_agents_racing_cannot_overspend(turns: list[tuple[int, int]]) -> None:
    """Each agent reads the ledger, decides, and appends at the version it read (as the API does); an append after
    someone else's fails, and that agent reads and decides again. Whatever the interleaving, nothing overspends."""
    log: list[Event] = list(set_limit(BudgetLedger(), "global", 2_000, "2026-03-01"))
    read: dict[int, int] = {}
    held: dict[int, str] = {}
    for turn, (agent, tokens) in enumerate(turns):
        if agent not in read:
            read[agent] = len(log)  # the agent reads the stream's version
            continue
        version = read.pop(agent)
        ledger = fold_all(log[:version])
        try:
            if agent in held:
                events = settle(ledger, held[agent], tokens, "2026-03-01")
            else:
                events = reserve(ledger, f"a{agent}-{turn}", tokens, "2026-03-01")
        except BudgetError:
            continue
        if version != len(log):
            continue  # wrong expected version: nothing appended; the agent will read again
        log += events
        if agent in held:
            del held[agent]
        else:
            held[agent] = f"a{agent}-{turn}"
    check_log(log)


def test_a_release_opening_a_new_period_warns_of_what_the_carried_over_reservations_hold() -> None:
    """Found by the property test: reservations of 500 carried over into the next day, where the first event was
    a release of another one; the new period's 50 % warning was never given."""
    ledger = budget(1_000)
    for reservation_id, tokens in (("r1", 1), ("r2", 100), ("r3", 400)):
        ledger = fold_all(reserve(ledger, reservation_id, tokens, "2026-03-01"), ledger)
    events = release(ledger, "r1", "2026-03-02")
    assert [(e.threshold, e.period) for e in events if isinstance(e, BudgetWarning)] == [(50, "2026-03-02")]
