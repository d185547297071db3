"""Lock rules: one resource, at most one holder, a fencing token that only ever grows.

The state of a lock is the fold of its stream (`LockState.fold`), the same in the API that decides a command, the
decider that expires it and the `locks` projection. A command returns the events to append at the version folded;
appending at exactly that version is what makes the check and the grant one step: two acquirers that both saw
the lock free cannot both append.

A release or expiry names the grant it ends (fencing token and expiry timer); one that names another grant ends
nothing. So a decider's expiry that lands after the holder renewed, released or a new holder came in changes
nothing, however the appends interleave.
"""

from __future__ import annotations

from pydantic import BaseModel

from agentlog.domains.coordination.errors import Conflict, HeldError, StaleGrantError
from agentlog.domains.coordination.events import LockAcquired, LockExpired, LockReleased, LockRenewed
from agentlog.domains.timers.events import TimerScheduled
from agentlog.eventstore.events import Event

LOCK_EXPIRY = "lock-expiry"
"""The purpose of a lock's expiry timers."""


class LockGrant(BaseModel):
    holder: str
    fencing_token: int
    ttl_s: float
    reason: str = ""
    timer_id: str


class LockState(BaseModel):
    """A lock as its stream says: the current grant (None when free) and the last fencing token handed out."""

    resource: str | None = None
    version: int = 0
    last_fencing_token: int = 0
    grant: LockGrant | None = None

    def fold(self, event: Event, version: int | None = None) -> bool:
        """Fold one event of the lock's stream; True when it changed the lock."""
        if version is not None:
            self.version = version
        match event:
            case LockAcquired():
                self.resource = event.resource
                self.last_fencing_token = max(self.last_fencing_token, event.fencing_token)
                self.grant = LockGrant(
                    holder=event.holder, fencing_token=event.fencing_token, ttl_s=event.ttl_s,
                    reason=event.reason, timer_id=event.timer_id,
                )  # fmt: skip
                return True
            case LockRenewed() if self._current(event.holder, event.fencing_token):
                assert self.grant is not None
                self.grant = self.grant.model_copy(update={"ttl_s": event.ttl_s, "timer_id": event.timer_id})
                return True
            case LockReleased() if self._current(event.holder, event.fencing_token):
                self.grant = None
                return True
            case LockExpired() if self._current(event.holder, event.fencing_token) and (
                self.grant is not None and self.grant.timer_id == event.timer_id
            ):
                self.grant = None
                return True
        return False

    def _current(self, holder: str, fencing_token: int) -> bool:
        return self.grant is not None and self.grant.holder == holder and self.grant.fencing_token == fencing_token


def timer_id(stream_id: str, version: int) -> str:
    """The expiry timer of the grant or renewal appended at `version` of the lock's stream: unique in the log."""
    return f"{stream_id}@{version}"


def acquire(state: LockState, stream_id: str, resource: str, holder: str, ttl_s: float, reason: str) -> list[Event]:
    """The events granting the lock to `holder` (its expiry timer in the same append); `HeldError` when another
    agent holds it. The holder asking again renews its grant (same fencing token)."""
    if state.grant is not None:
        if state.grant.holder == holder:
            return renew(state, stream_id, holder, state.grant.fencing_token, ttl_s)
        raise HeldError(
            f"lock {resource!r} is held by {state.grant.holder}",
            [Conflict("lock", state.grant.holder, resource=resource, fencing_token=state.grant.fencing_token)],
        )
    timer = timer_id(stream_id, state.version + 1)
    return [
        LockAcquired(resource=resource, holder=holder, fencing_token=state.last_fencing_token + 1, ttl_s=ttl_s,
                     reason=reason, timer_id=timer),
        TimerScheduled(timer_id=timer, delay_s=ttl_s, purpose=LOCK_EXPIRY, subject=resource),
    ]  # fmt: skip


def check_grant(state: LockState, holder: str, fencing_token: int | None) -> LockGrant:
    """The current grant, if `holder` holds it under `fencing_token` (any of its own when None)."""
    grant = state.grant
    if grant is None:
        raise StaleGrantError(
            f"lock {state.resource!r} is not held (released or expired)",
            details={"last_fencing_token": state.last_fencing_token},
        )
    if grant.holder != holder:
        raise StaleGrantError(
            f"lock {state.resource!r} is held by {grant.holder}, not {holder}", grant.holder, grant.fencing_token
        )
    if fencing_token is not None and grant.fencing_token != fencing_token:
        raise StaleGrantError(
            f"fencing token {fencing_token} is stale: lock {state.resource!r} is held under token "
            f"{grant.fencing_token}",
            grant.holder,
            grant.fencing_token,
        )
    return grant


def renew(state: LockState, stream_id: str, holder: str, fencing_token: int | None, ttl_s: float) -> list[Event]:
    grant = check_grant(state, holder, fencing_token)
    assert state.resource is not None
    timer = timer_id(stream_id, state.version + 1)
    return [
        LockRenewed(resource=state.resource, holder=holder, fencing_token=grant.fencing_token, ttl_s=ttl_s,
                    timer_id=timer),
        TimerScheduled(timer_id=timer, delay_s=ttl_s, purpose=LOCK_EXPIRY, subject=state.resource),
    ]  # fmt: skip


def release(state: LockState, holder: str, fencing_token: int | None) -> list[Event]:
    grant = check_grant(state, holder, fencing_token)
    assert state.resource is not None
    return [LockReleased(resource=state.resource, holder=holder, fencing_token=grant.fencing_token)]


def expire_on_timer(state: LockState, fired_timer_id: str) -> LockExpired | None:
    """The expiry a fired timer means: only the current grant's own timer ends it."""
    grant = state.grant
    if grant is None or grant.timer_id != fired_timer_id or state.resource is None:
        return None
    return LockExpired(
        resource=state.resource, holder=grant.holder, fencing_token=grant.fencing_token, timer_id=grant.timer_id,
        reason=f"not renewed within its TTL of {grant.ttl_s:g} s",
    )  # fmt: skip


def expire_for_holder(state: LockState, holder: str, reason: str) -> LockExpired | None:
    grant = state.grant
    if grant is None or grant.holder != holder or state.resource is None:
        return None
    return LockExpired(
        resource=state.resource,
        holder=holder,
        fencing_token=grant.fencing_token,
        timer_id=grant.timer_id,
        reason=reason,
    )
