"""The coordination domain's pure rules: names, glob overlap, locks with fencing, claims, liveness, and the
expiry decider folding them (no database)."""

from __future__ import annotations

import uuid

import pytest

from agentlog.domains.coordination import claims, locks
from agentlog.domains.coordination.errors import HeldError, NotFoundError, StaleGrantError
from agentlog.domains.coordination.events import (
    AgentDeregistered,
    AgentGone,
    AgentHeartbeat,
    AgentRegistered,
    ClaimExpired,
    LockAcquired,
    LockExpired,
    LockReleased,
    LockRenewed,
)
from agentlog.domains.coordination.globs import overlaps
from agentlog.domains.coordination.liveness import AGENT_LIVENESS
from agentlog.domains.coordination.names import (
    CLAIMS_STREAM,
    InvalidNameError,
    check_agent_id,
    heartbeat_stream,
    lock_stream,
    member_stream,
    normalise_resource,
)
from agentlog.domains.timers.events import TimerFired, TimerScheduled
from agentlog.eventstore import Event
from agentlog.handlers.coordination.expiry import CoordinationExpiry, ExpiryState
from agentlog.handlers.decider import Decision, Fact, step


@pytest.mark.parametrize(
    ("given", "normal"),
    [("src/./a.py", "src/a.py"), ("src//a.py", "src/a.py"), ("./src/a.py", "src/a.py"), ("src/b/../a.py", "src/a.py")],
)
def test_resources_are_normalised(given: str, normal: str) -> None:
    assert normalise_resource(given) == normal


@pytest.mark.parametrize("bad", ["", "  ", "/etc/passwd", "../x", "src/../../x", ".", "a\\b", "a\x00b", "x" * 600])
def test_bad_resources_are_refused(bad: str) -> None:
    with pytest.raises(InvalidNameError):
        normalise_resource(bad)


def test_agent_ids() -> None:
    assert check_agent_id("claude-1.a_b") == "claude-1.a_b"
    for bad in ["", "-x", "a/b", "a b", "x" * 65, "é"]:
        with pytest.raises(InvalidNameError):
            check_agent_id(bad)


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("src/**", "src/a.py", True),
        ("src/**", "src", True),
        ("src/**", "docs/a.md", False),
        ("src/*.py", "src/a.py", True),
        ("src/*.py", "src/sub/a.py", False),
        ("src/**/*.py", "src/a/b/c.py", True),
        ("src/*.py", "src/*.md", False),
        ("src/a*", "src/*b", True),
        ("*.py", "*.md", False),
        ("src/?.py", "src/ab.py", False),
        ("**", "anything/at/all", True),
        ("docs/**", "**/*.md", True),
    ],
)
def test_glob_overlap(first: str, second: str, expected: bool) -> None:
    assert overlaps(first, second) is expected
    assert overlaps(second, first) is expected


def test_a_locked_resource_is_literal() -> None:
    assert overlaps("src/*", "src/*", second_literal=True)
    assert not overlaps("src/a.py", "src/*", second_literal=True), "a lock on a file named '*' is not a glob"


def fold_lock(state: locks.LockState, events: list[Event]) -> locks.LockState:
    for event in events:
        if not isinstance(event, TimerScheduled):
            state.version += 1
            state.fold(event)
        else:
            state.version += 1
    return state


def test_lock_grant_renew_release_and_fencing() -> None:
    stream = lock_stream("src/a.py")
    state = locks.LockState()
    granted = locks.acquire(state, stream, "src/a.py", "ada", 30, "editing")
    assert isinstance(granted[0], LockAcquired) and granted[0].fencing_token == 1
    assert isinstance(granted[1], TimerScheduled) and granted[1].timer_id == granted[0].timer_id
    fold_lock(state, granted)
    with pytest.raises(HeldError) as held:
        locks.acquire(state, stream, "src/a.py", "bob", 30, "")
    assert held.value.conflicts[0].holder == "ada"
    again = locks.acquire(state, stream, "src/a.py", "ada", 60, "")
    assert isinstance(again[0], LockRenewed) and again[0].fencing_token == 1
    fold_lock(state, again)
    fold_lock(state, locks.release(state, "ada", 1))
    assert state.grant is None
    with pytest.raises(StaleGrantError):
        locks.release(state, "ada", 1)
    second = locks.acquire(state, stream, "src/a.py", "bob", 30, "")
    assert isinstance(second[0], LockAcquired) and second[0].fencing_token == 2, "fencing tokens only grow"
    fold_lock(state, second)
    with pytest.raises(StaleGrantError) as stale:
        locks.release(state, "bob", 1)
    assert stale.value.current_fencing_token == 2


def test_an_expiry_naming_an_older_grant_or_timer_ends_nothing() -> None:
    stream = lock_stream("a")
    state = fold_lock(locks.LockState(), locks.acquire(locks.LockState(), stream, "a", "ada", 30, ""))
    first_timer = state.grant.timer_id if state.grant else ""
    expiry = locks.expire_on_timer(state, first_timer)
    assert expiry is not None
    fold_lock(state, locks.renew(state, stream, "ada", 1, 30))  # renewed before the expiry landed
    assert not state.fold(expiry), "an expiry decided before a renewal released the renewed lock"
    assert state.grant is not None and state.grant.holder == "ada"
    assert locks.expire_on_timer(state, first_timer) is None, "the old timer expired the renewed grant"


def test_claims_conflict_by_overlap_and_exclusivity() -> None:
    state = claims.ClaimsState()
    made = claims.claim(state, claim_id="c1", holder="ada", pattern="src/**", kind="path", exclusive=True,
                        ttl_s=60, reason="")  # fmt: skip
    for event in made:
        state.version += 1
        state.fold(event)
    with pytest.raises(HeldError) as held:
        claims.claim(state, claim_id="c2", holder="bob", pattern="src/a.py", kind="path", exclusive=False,
                     ttl_s=60, reason="")  # fmt: skip
    assert held.value.conflicts[0].claim_id == "c1"
    assert claims.claim(state, claim_id="c3", holder="bob", pattern="docs/**", kind="path", exclusive=True,
                        ttl_s=60, reason="")  # fmt: skip
    assert claims.claim(state, claim_id="c4", holder="bob", pattern="src/**", kind="topic", exclusive=True,
                        ttl_s=60, reason="")  # fmt: skip
    with pytest.raises(HeldError) as locked:
        claims.claim(state, claim_id="c5", holder="bob", pattern="lib/**", kind="path", exclusive=True, ttl_s=60,
                     reason="", held_locks=[("lib/x.py", "carol", 3)])  # fmt: skip
    assert locked.value.conflicts[0].resource == "lib/x.py"


def test_handoff_moves_the_claim_and_messages_the_new_holder() -> None:
    state = claims.ClaimsState()
    for event in claims.claim(state, claim_id="c1", holder="ada", pattern="src/**", kind="path", exclusive=True,
                              ttl_s=60, reason=""):  # fmt: skip
        state.version += 1
        state.fold(event)
    old_timer = state.claims["c1"].timer_id
    events, message = claims.hand_off(state, "c1", "ada", "bob", note="yours", context={"step": 3}, ttl_s=None,
                                      message_id="m1")  # fmt: skip
    assert message.recipient == "bob" and message.data["handoff"]["claim_id"] == "c1"
    for event in events:
        state.version += 1
        state.fold(event)
    assert state.claims["c1"].holder == "bob"
    assert claims.expire_on_timer(state, "c1", old_timer) is None, "the handed-off claim expired on the old timer"
    with pytest.raises(StaleGrantError):
        claims.release(state, "c1", "ada")
    with pytest.raises(NotFoundError):
        claims.release(state, "nope", "ada")


# -- the decider ----------------------------------------------------------------------------------------------


class Log:
    """Feeds the decider like the handler does: inputs in order, its own decisions folded as it makes them."""

    def __init__(self) -> None:
        self.decider = CoordinationExpiry()
        self.state: ExpiryState = self.decider.initial_state()
        self.position = 0

    def feed(self, stream_id: str, event: Event) -> list[Decision]:
        self.position += 1
        fact = Fact(event, uuid.uuid4(), stream_id, self.position)
        self.state, decisions = step(self.decider, self.state, fact)
        return decisions


def test_a_silent_agent_is_gone_and_its_locks_and_claims_are_released_with_the_reason() -> None:
    log = Log()
    (timer,) = log.feed(member_stream("ada"), AgentRegistered(agent_id="ada", heartbeat_timeout_s=60))
    assert isinstance(timer.event, TimerScheduled) and timer.stream_id == heartbeat_stream("ada")
    assert timer.event.delay_s == 30 and timer.event.purpose == AGENT_LIVENESS
    stream = lock_stream("src/a.py")
    acquired = locks.acquire(locks.LockState(), stream, "src/a.py", "ada", 300, "")[0]
    assert log.feed(stream, acquired) == []
    made = claims.claim(claims.ClaimsState(), claim_id="c1", holder="ada", pattern="src/**", kind="path",
                        exclusive=True, ttl_s=300, reason="")[0]  # fmt: skip
    assert log.feed(CLAIMS_STREAM, made) == []
    # A heartbeat within the period: the next timer, not gone.
    log.feed(heartbeat_stream("ada"), AgentHeartbeat(agent_id="ada"))
    fired = TimerFired(timer_id=timer.event.timer_id, purpose=AGENT_LIVENESS, subject="ada", due_at="2026-01-01T00:00Z")
    (next_timer,) = log.feed(heartbeat_stream("ada"), fired)
    assert isinstance(next_timer.event, TimerScheduled)
    # Silence for a whole period: gone, and everything it held released, saying why.
    fired = fired.model_copy(update={"timer_id": next_timer.event.timer_id})
    decisions = log.feed(heartbeat_stream("ada"), fired)
    kinds = [(d.stream_id, type(d.event)) for d in decisions]
    assert kinds == [(member_stream("ada"), AgentGone), (stream, LockExpired), (CLAIMS_STREAM, ClaimExpired)]
    assert all("gone" in d.event.reason for d in decisions[1:])  # type: ignore[attr-defined]
    assert log.state.locks == {} and log.state.claims == {} and log.state.agents == {}


def test_ttl_expiry_and_a_release_that_came_first() -> None:
    log = Log()
    log.feed(member_stream("ada"), AgentRegistered(agent_id="ada"))
    stream = lock_stream("a")
    acquired = locks.acquire(locks.LockState(), stream, "a", "ada", 5, "")[0]
    assert isinstance(acquired, LockAcquired)
    log.feed(stream, acquired)
    fired = TimerFired(timer_id=acquired.timer_id, purpose=locks.LOCK_EXPIRY, subject="a", due_at="2026-01-01T00:00Z")
    (expired,) = log.feed(stream, fired)
    assert isinstance(expired.event, LockExpired) and "TTL" in expired.event.reason
    # Another lock released before its timer fired: nothing to expire.
    other = lock_stream("b")
    acquired_b = locks.acquire(locks.LockState(), other, "b", "ada", 5, "")[0]
    assert isinstance(acquired_b, LockAcquired)
    log.feed(other, acquired_b)
    log.feed(other, LockReleased(resource="b", holder="ada", fencing_token=1))
    assert log.feed(other, fired.model_copy(update={"timer_id": acquired_b.timer_id, "subject": "b"})) == []


def test_a_lock_of_an_unregistered_or_deregistered_agent_is_released() -> None:
    log = Log()
    stream = lock_stream("a")
    (released,) = log.feed(stream, locks.acquire(locks.LockState(), stream, "a", "ghost", 60, "")[0])
    assert isinstance(released.event, LockExpired) and "not a registered agent" in released.event.reason
    log.feed(stream, released.event)
    log.feed(member_stream("ada"), AgentRegistered(agent_id="ada"))
    log.feed(stream, locks.acquire(locks.LockState(last_fencing_token=1), stream, "a", "ada", 60, "")[0])
    (freed,) = log.feed(member_stream("ada"), AgentDeregistered(agent_id="ada", reason="done"))
    assert isinstance(freed.event, LockExpired) and freed.event.reason == "holder ada deregistered: done"
