"""Status inference's pure rules (`domains.activity.status`) and the status-keeper decider over a simulated clock:
idle and offline after the silences the settings say (never early, at most one check late), active again at the
next thing the agent does, and timers that fire after it was heard from again ignored (no database)."""

from __future__ import annotations

import heapq
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agentlog.domains.activity.events import AgentStatusInferred, activity_stream
from agentlog.domains.activity.status import (
    ACTIVITY_TYPES,
    StatusSettings,
    active_agent,
    status_after,
)
from agentlog.domains.coordination.events import (
    AgentDeregistered,
    AgentHeartbeat,
    AgentRegistered,
    ChatPosted,
    DirectMessageSent,
    LockAcquired,
)
from agentlog.domains.coordination.names import heartbeat_stream, member_stream
from agentlog.domains.deciders.events import DeciderConfigured, decider_stream
from agentlog.domains.tasks.events import TaskAssigned, TaskHeartbeat
from agentlog.domains.timers.events import TimerFired, TimerScheduled
from agentlog.eventstore import Event
from agentlog.handlers.activity.status_keeper import StatusKeeper, StatusState
from agentlog.handlers.decider import Decision, Fact, step
from tests.unit.saved_rows import SavedRows

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SEED = StatusSettings(idle_after_s=600, offline_after_s=3600, check_every_s=60)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# -- the rule -------------------------------------------------------------------------------------------------------


def test_the_seed_thresholds() -> None:
    assert [status_after(s, SEED) for s in (0, 599.9, 600, 3599, 3600, 10**6)] == [
        "active", "active", "idle", "idle", "offline", "offline"]  # fmt: skip


@pytest.mark.parametrize(
    "bad",
    [{"idle_after_s": 0}, {"check_every_s": 700}, {"offline_after_s": 600}, {"offline_after_s": 10}],
)
def test_settings_that_cannot_work_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        StatusSettings(**{**SEED.model_dump(), **bad})


def test_what_counts_as_activity() -> None:
    assert active_agent(AgentHeartbeat(agent_id="ada")) == "ada"
    assert active_agent(TaskHeartbeat(task_id="t1", attempt=1, agent_id="ada")) == "ada"
    assert active_agent(LockAcquired(resource="a.py", holder="ada", fencing_token=1, ttl_s=5, timer_id="x")) == "ada"
    assert active_agent(ChatPosted(message_id="m", author="ada", author_kind="agent", body="hi")) == "ada"
    assert active_agent(ChatPosted(message_id="m", author="Ada L.", author_kind="person", body="hi")) is None
    assert active_agent(DirectMessageSent(message_id="m", sender="bob", sender_kind="agent", recipient="ada",
                                          body="hi")) == "bob"  # fmt: skip
    # done to the agent, not by it
    assert active_agent(TaskAssigned(task_id="t1", attempt=1, agent_id="ada")) is None
    assert active_agent(AgentStatusInferred(agent_id="ada", status="idle")) is None
    assert active_agent(AgentDeregistered(agent_id="ada")) is None
    assert {"AgentHeartbeat", "TaskHeartbeat", "ChatPosted", "OperationRegistered"} <= ACTIVITY_TYPES
    assert "TaskAssigned" not in ACTIVITY_TYPES


# -- the decider over a simulated clock ----------------------------------------------------------------------------


@dataclass(order=True)
class Due:
    time: float
    order: int
    fired: TimerFired = field(compare=False)


class Fleet:
    """The decider, a timer service and a clock: each event is decided the moment it happens, each timer fires at
    its due time (scheduled at the time of the event that scheduled it)."""

    def __init__(self, keeper: StatusKeeper | None = None) -> None:
        self.keeper = keeper or StatusKeeper(idle_after_s=600, offline_after_s=3600, check_every_s=60)
        self.state = self.keeper.initial_state()
        self.now = 0.0
        self.timers: list[Due] = []
        self.count = 0
        self.inferred: list[tuple[float, AgentStatusInferred]] = []
        self.scheduled: list[tuple[float, TimerScheduled]] = []
        self.saved = SavedRows()

    def feed(self, event: Event, stream_id: str) -> list[Decision]:
        self.count += 1
        fact = Fact(event, uuid.UUID(int=self.count), stream_id, self.count)
        self.state, decisions = step(self.keeper, self.state, fact)
        for decision in decisions:
            if isinstance(decision.event, TimerScheduled):
                assert decision.stream_id == activity_stream(decision.event.subject)
                due = self.now + decision.event.delay_s
                fired = TimerFired(timer_id=decision.event.timer_id, purpose=decision.event.purpose,
                                   subject=decision.event.subject, due_at=at(due))  # fmt: skip
                heapq.heappush(self.timers, Due(due, self.count, fired))
                self.scheduled.append((self.now, decision.event))
            else:
                assert isinstance(decision.event, AgentStatusInferred)
                assert decision.stream_id == member_stream(decision.event.agent_id)
                self.inferred.append((self.now, decision.event))
        self.saved.save(self.state)
        assert self.saved.load(StatusState).model_dump() == self.state.model_dump()  # nothing changed unmarked
        return decisions

    def until(self, time: float) -> None:
        """Fire every timer due up to `time`, in order, and move the clock there."""
        while self.timers and self.timers[0].time <= time:
            due = heapq.heappop(self.timers)
            self.now = due.time
            self.feed(due.fired, activity_stream(due.fired.subject))
        self.now = time

    def act(self, time: float, agent_id: str = "ada") -> None:
        self.until(time)
        self.feed(AgentHeartbeat(agent_id=agent_id), heartbeat_stream(agent_id))

    def register(self, agent_id: str = "ada") -> None:
        self.feed(AgentRegistered(agent_id=agent_id), member_stream(agent_id))

    def statuses(self, agent_id: str = "ada") -> list[tuple[float, str]]:
        return [(time, event.status) for time, event in self.inferred if event.agent_id == agent_id]


def test_silence_makes_an_agent_idle_then_offline_and_activity_makes_it_active_again() -> None:
    fleet = Fleet()
    fleet.register()
    fleet.act(30)
    fleet.until(5_000)
    assert fleet.statuses() == [(660, "idle"), (3660, "offline")]
    idle = fleet.inferred[0][1]
    assert idle.since == at(60) and idle.reason == "no activity for at least 600 s"  # silent since the check began
    assert fleet.timers == []  # offline: no more timers until it is heard from
    fleet.act(6_000)
    assert fleet.statuses()[-1] == (6_000, "active")
    assert fleet.inferred[-1][1].reason == "AgentHeartbeat after being offline"
    fleet.until(6_000 + 660)
    assert fleet.statuses()[-1] == (6_600, "idle")  # checks began again at the activity: idle 600 s after it


def test_a_timer_that_fires_after_the_agent_was_heard_from_again_is_ignored() -> None:
    fleet = Fleet()
    fleet.register()
    fleet.until(700)  # idle at 600 (silent since it registered), an offline timer pending (due 3600)
    assert fleet.statuses() == [(600, "idle")]
    fleet.act(1_000)  # active again: a check timer supersedes the offline one
    assert fleet.statuses()[-1] == (1_000, "active")
    for time in (1_500, 2_000, 2_500, 3_000, 3_500):
        fleet.act(time)
    fleet.until(3_601)  # the superseded offline timer fired at 3600: nothing
    assert fleet.statuses() == [(600, "idle"), (1_000, "active")]


def test_an_agent_heard_from_keeps_one_check_pending_and_is_never_idle() -> None:
    fleet = Fleet()
    fleet.register()
    for minute in range(1, 60):
        fleet.act(minute * 55)
    assert fleet.statuses() == []
    assert len(fleet.timers) == 1


def test_a_deregistered_agent_is_forgotten_and_an_unknown_one_never_watched() -> None:
    fleet = Fleet()
    fleet.register()
    fleet.feed(AgentDeregistered(agent_id="ada"), member_stream("ada"))
    fleet.act(10, "zed")  # never registered
    fleet.until(10_000)
    assert fleet.inferred == []
    assert fleet.state.agents == {}


def test_a_forged_timer_on_another_stream_changes_nothing() -> None:
    fleet = Fleet()
    fleet.register()
    pending = fleet.timers[0].fired
    assert fleet.feed(pending, "somewhere-else") == []
    fleet.until(10)
    assert fleet.state.agents["ada"].timer_id == pending.timer_id


def test_settings_come_from_the_log() -> None:
    fleet = Fleet()
    faster = {"idle_after_s": 100.0, "offline_after_s": 200.0, "check_every_s": 10.0}
    fleet.feed(DeciderConfigured(decider="status-keeper", settings=faster), decider_stream("status-keeper"))
    fleet.feed(DeciderConfigured(decider="status-keeper", settings={"idle_after_s": -1}),
               decider_stream("status-keeper"))  # fmt: skip  (not adopted)
    fleet.register()
    fleet.until(1_000)
    assert fleet.statuses() == [(100, "idle"), (200, "offline")]


@settings(max_examples=150, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0.5, max_value=5_000), max_size=12),
    check_every=st.sampled_from([1.0, 30.0, 60.0, 600.0]),
)
def test_inferences_follow_the_rule_never_early_and_at_most_one_check_late(
    gaps: list[float], check_every: float
) -> None:
    """Random silences between activities: every idle (offline) comes at least `idle_after_s` (`offline_after_s`)
    after the last activity and at most one check later, with nothing heard in between; every active follows an
    activity; statuses alternate (never idle twice in a row); and when the silence is long enough the agent ends
    in the status the rule says."""
    rules = StatusSettings(idle_after_s=600, offline_after_s=3600, check_every_s=check_every)
    fleet = Fleet(StatusKeeper(**rules.model_dump()))
    fleet.register()
    activity = [0.0]
    for gap in gaps:
        activity.append(activity[-1] + gap)
        fleet.act(activity[-1])
    horizon = activity[-1] + 4_000 + check_every
    fleet.until(horizon)
    previous = "active"
    for time, event in fleet.inferred:
        last = max(a for a in activity if a < time or (a == time and event.status == "active"))
        assert event.status != previous
        if event.status == "active":
            assert time in activity and previous in {"idle", "offline"}
        else:
            threshold = rules.idle_after_s if event.status == "idle" else rules.offline_after_s
            assert threshold - 1e-6 <= time - last <= threshold + check_every + 1e-6
            assert event.since is not None and at(last) <= event.since <= at(time)
        previous = event.status
    assert previous == status_after(horizon - activity[-1], rules) == "offline"
    assert len(fleet.timers) == 0
