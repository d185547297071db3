"""Conflict detection's pure rules (`domains.operations`): keys, registration inside and outside the conflict
window, the same agent again, finishing, expiry by timer, and the operation-expiry decider (no database)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentlog.domains.coordination.errors import HeldError, NotFoundError, StaleGrantError
from agentlog.domains.coordination.names import InvalidNameError
from agentlog.domains.operations import conflicts
from agentlog.domains.operations.conflicts import (
    OPERATION_EXPIRY,
    OPERATION_WINDOW,
    ConflictError,
    OperationsState,
    finish,
    fold_all,
    register,
)
from agentlog.domains.operations.events import (
    InvalidOperationError,
    OperationExpired,
    OperationRegistered,
    normalise_key,
    operation_stream,
)
from agentlog.domains.timers.events import TimerFired, TimerScheduled
from agentlog.eventstore import Event
from agentlog.handlers.coordination.operations import OperationExpiry, OperationExpiryState
from agentlog.handlers.decider import Decision, Fact, step
from tests.unit.saved_rows import SavedRows

KEY = "email:1234"
STREAM = operation_stream(KEY)
DUE = datetime(2026, 1, 1, tzinfo=UTC)


def fired(events: list[Event], purpose: str) -> TimerFired:
    """The TimerFired of the last timer of `purpose` among `events`."""
    timer = [e for e in events if isinstance(e, TimerScheduled) and e.purpose == purpose][-1]
    return TimerFired(timer_id=timer.timer_id, purpose=timer.purpose, subject=timer.subject, due_at=DUE)


class Stream:
    """One key's stream: events appended as the API would (at the version folded), folded as every reader does."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    @property
    def state(self) -> OperationsState:
        return fold_all(self.events)

    def register(self, agent_id: str, operation_id: str, **options: float) -> list[Event]:
        new = register(self.state, KEY, agent_id, "respond", operation_id, **options)  # type: ignore[arg-type]
        self.events += new
        return new

    def append(self, *events: Event) -> None:
        self.events += events


# -- keys and input -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("given_key", "normal"), [(" email:1 ", "email:1"), ("cafe\u0301", "caf\u00e9"),
                                                    ("order/2026/17", "order/2026/17")])  # fmt: skip
def test_keys_are_normalised(given_key: str, normal: str) -> None:
    assert normalise_key(given_key) == normal


@pytest.mark.parametrize("bad", ["", "   ", "two words", "tab\there", "nul\x00", "x" * 191, "é" * 100])
def test_bad_keys_are_refused_naming_the_field(bad: str) -> None:
    with pytest.raises(InvalidOperationError) as refused:
        register(OperationsState(), bad, "ada", "respond", "op-1")
    assert refused.value.field == "key"
    assert str(refused.value).startswith("key: ")
    assert isinstance(refused.value, InvalidNameError)  # the API answers 422, as for other bad names


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"operation_id": ""}, "operation_id"),
        ({"operation_id": "has space"}, "operation_id"),
        ({"operation_id": "x" * 65}, "operation_id"),
        ({"action": " "}, "action"),
        ({"action": "x" * 201}, "action"),
        ({"ttl_s": 0}, "ttl_s"),
        ({"ttl_s": float("nan")}, "ttl_s"),
        ({"window_s": -1}, "window_s"),
        ({"window_s": 61, "ttl_s": 60}, "window_s"),
    ],
)
def test_bad_input_is_refused_naming_the_field(options: dict[str, object], field: str) -> None:
    arguments: dict[str, object] = {"action": "respond", "operation_id": "op-1", **options}
    with pytest.raises(InvalidOperationError) as refused:
        register(OperationsState(), KEY, "ada", **arguments)  # type: ignore[arg-type]
    assert refused.value.field == field


def test_a_bad_agent_id_is_refused() -> None:
    with pytest.raises(InvalidNameError, match="agent id"):
        register(OperationsState(), KEY, "not an id", "respond", "op-1")


# -- registration and conflicts ---------------------------------------------------------------------------------------


def test_a_registration_schedules_its_window_and_expiry_timers_in_the_same_append() -> None:
    events = register(OperationsState(), KEY, "ada", "respond", "op-1", window_s=30, ttl_s=60)
    assert [type(e).__name__ for e in events] == ["OperationRegistered", "TimerScheduled", "TimerScheduled"]
    registered, window, expiry = events
    assert isinstance(registered, OperationRegistered)
    assert isinstance(window, TimerScheduled) and isinstance(expiry, TimerScheduled)
    assert (window.purpose, window.delay_s, window.timer_id) == (OPERATION_WINDOW, 30, registered.window_timer_id)
    assert (expiry.purpose, expiry.delay_s, expiry.timer_id) == (OPERATION_EXPIRY, 60, registered.expiry_timer_id)
    assert len({window.timer_id, expiry.timer_id}) == 2
    assert all(len(t.timer_id) <= 100 for t in (window, expiry))


def test_another_agent_inside_the_window_is_answered_with_the_operation_under_way_and_its_agent() -> None:
    stream = Stream()
    stream.register("ada", "op-1")
    with pytest.raises(ConflictError) as refused:
        stream.register("bob", "op-2")
    assert (refused.value.operation.operation_id, refused.value.operation.agent_id) == ("op-1", "ada")
    assert refused.value.operation.action == "respond"
    assert "ada" in str(refused.value) and "op-1" in str(refused.value)
    assert isinstance(refused.value, HeldError)  # the API's 409
    assert [(c.kind, c.holder, c.resource) for c in refused.value.conflicts] == [("operation", "ada", KEY)]


def test_once_the_window_timer_fired_another_agent_may_register_beside_the_first() -> None:
    stream = Stream()
    first = stream.register("ada", "op-1")
    stream.append(fired(first, OPERATION_WINDOW))
    assert not stream.state.open["op-1"].in_window
    stream.register("bob", "op-2")
    assert [op.operation_id for op in stream.state.under_way()] == ["op-1", "op-2"]
    with pytest.raises(ConflictError) as refused:  # now bob's window refuses a third agent, ada's no longer does
        stream.register("cy", "op-3")
    assert refused.value.operation.agent_id == "bob"


def test_a_window_timer_of_another_registration_closes_nothing() -> None:
    stream = Stream()
    stream.register("ada", "op-1")
    stream.append(TimerFired(timer_id="op-elsewhere-window", purpose=OPERATION_WINDOW, subject="op-1", due_at=DUE))
    assert stream.state.open["op-1"].in_window


def test_the_same_agent_is_not_in_conflict_with_itself() -> None:
    stream = Stream()
    stream.register("ada", "op-1")
    assert stream.register("ada", "op-2")  # another step of its own work on the key
    assert stream.register("ada", "op-1") == []  # the same operation again: under way already, nothing appended
    with pytest.raises(ConflictError):
        stream.register("bob", "op-3")


def test_another_agent_reusing_an_operation_id_under_way_conflicts_even_after_the_window() -> None:
    stream = Stream()
    first = stream.register("ada", "op-1")
    stream.append(fired(first, OPERATION_WINDOW))
    with pytest.raises(ConflictError):
        stream.register("bob", "op-1")


def test_a_zero_window_never_refuses_anyone() -> None:
    stream = Stream()
    events = stream.register("ada", "op-1", window_s=0)
    assert [e.purpose for e in events if isinstance(e, TimerScheduled)] == [OPERATION_EXPIRY]
    stream.register("bob", "op-2")


def test_finished_operations_refuse_nobody_and_only_their_agent_finishes_them() -> None:
    stream = Stream()
    stream.register("ada", "op-1")
    with pytest.raises(StaleGrantError) as refused:
        finish(stream.state, KEY, "bob", "op-1")
    assert refused.value.current_holder == "ada"
    stream.append(*finish(stream.state, KEY, "ada", "op-1", outcome="answered"))
    assert stream.state.open == {}
    with pytest.raises(NotFoundError):
        finish(stream.state, KEY, "ada", "op-1")
    with pytest.raises(InvalidOperationError) as refused_outcome:
        finish(stream.state, KEY, "ada", "op-1", outcome="x" * 501)
    assert refused_outcome.value.field == "outcome"
    stream.register("bob", "op-2")
    stream.register("bob", "op-1")  # an ended operation's id may be used again


# -- expiry ------------------------------------------------------------------------------------------------------


def test_the_expiry_timer_ends_an_open_operation_once_and_a_finished_one_not_at_all() -> None:
    stream = Stream()
    first = stream.register("ada", "op-1")
    expired = conflicts.expire_on_timer(stream.state, fired(first, OPERATION_EXPIRY).timer_id, "op-1")
    assert isinstance(expired, OperationExpired) and expired.agent_id == "ada"
    stream.append(expired)
    assert stream.state.open == {}
    assert conflicts.expire_on_timer(stream.state, expired.timer_id, "op-1") is None
    stream.register("bob", "op-2")  # an expired operation refuses nobody
    second = stream.events[-3:]
    stream.append(*finish(stream.state, KEY, "bob", "op-2"))
    assert conflicts.expire_on_timer(stream.state, fired(second, OPERATION_EXPIRY).timer_id, "op-2") is None


def test_an_expiry_naming_another_registrations_timer_ends_nothing() -> None:
    stream = Stream()
    stream.register("ada", "op-1")
    stream.append(OperationExpired(key=KEY, operation_id="op-1", agent_id="ada", timer_id="op-x-expiry", reason="?"))
    assert "op-1" in stream.state.open


class Log:
    """The operation-expiry decider driven as the handler drives it, its state saved and loaded after each feed."""

    def __init__(self) -> None:
        self.decider = OperationExpiry()
        self.state = self.decider.initial_state()
        self.count = 0

    def feed(self, *events: Event, stream_id: str = STREAM) -> list[Decision]:
        decided: list[Decision] = []
        for event in events:
            self.count += 1
            fact = Fact(event, uuid.UUID(int=self.count), stream_id, self.count)
            self.state, decisions = step(self.decider, self.state, fact)
            decided += decisions
        saved = SavedRows()
        saved.save(self.state, everything=True)
        assert saved.load(OperationExpiryState).model_dump() == self.state.model_dump()
        return decided


def test_the_decider_expires_an_open_operation_when_its_timer_fires_and_forgets_the_key() -> None:
    stream, log = Stream(), Log()
    first = stream.register("ada", "op-1")
    log.feed(*first)
    second = stream.register("ada", "op-2")
    log.feed(*second)
    log.feed(*finish(stream.state, KEY, "ada", "op-2"))
    decided = log.feed(fired(first, OPERATION_EXPIRY), fired(second, OPERATION_EXPIRY))
    assert [(d.stream_id, type(d.event).__name__, d.event.to_data()["operation_id"]) for d in decided] == [
        (STREAM, "OperationExpired", "op-1")
    ]
    assert log.state.keys == {}  # nothing under way: nothing kept
    assert log.feed(fired(first, OPERATION_EXPIRY)) == []  # fired again (a takeover): decided once


def test_the_decider_ignores_operation_events_on_a_stream_not_their_keys() -> None:
    log = Log()
    log.feed(*register(OperationsState(), KEY, "ada", "respond", "op-1"), stream_id="operation-other")
    assert log.state.keys == {}


# -- properties ----------------------------------------------------------------------------------------------------

AGENTS = st.sampled_from(["ada", "bob", "cy"])
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("register"), AGENTS, st.integers(0, 5)),
        st.tuples(st.just("finish"), AGENTS, st.integers(0, 5)),
        st.tuples(st.just("window"), AGENTS, st.integers(0, 5)),
        st.tuples(st.just("expire"), AGENTS, st.integers(0, 5)),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(STEPS)
def test_two_agents_never_both_hold_a_key_inside_their_windows(steps: list[tuple[str, str, int]]) -> None:
    """Whatever the order of registrations, finishes, window timers and expiries: at most one agent has operations
    inside their window on a key, every registration refused names an operation under way of another agent, and a
    finish or expiry ends only an operation under way."""
    stream = Stream()
    for kind, agent_id, number in steps:
        state, operation_id = stream.state, f"op-{number}"
        if kind == "register":
            try:
                stream.register(agent_id, operation_id)
            except ConflictError as refused:
                assert refused.operation.agent_id != agent_id
                assert refused.operation.operation_id in state.open
                assert refused.operation.in_window or refused.operation.operation_id == operation_id
        elif kind == "finish":
            try:
                stream.append(*finish(state, KEY, agent_id, operation_id))
            except (NotFoundError, StaleGrantError):
                assert operation_id not in state.open or state.open[operation_id].agent_id != agent_id
        else:
            registered = [e for e in stream.events if isinstance(e, OperationRegistered)]
            if not registered:
                continue
            chosen = registered[number % len(registered)]
            timer = chosen.window_timer_id if kind == "window" else chosen.expiry_timer_id
            if timer is None:
                continue
            if kind == "window":
                stream.append(TimerFired(timer_id=timer, purpose=OPERATION_WINDOW, subject=chosen.operation_id,
                                         due_at=DUE))  # fmt: skip
            else:
                expired = conflicts.expire_on_timer(state, timer, chosen.operation_id)
                if expired is not None:
                    stream.append(expired)
        holders = {op.agent_id for op in stream.state.under_way() if op.in_window}
        assert len(holders) <= 1
