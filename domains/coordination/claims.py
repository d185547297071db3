"""Claim rules: path globs or topics claimed exclusively or shared, conflicts by overlap, handoffs, expiry.

Every claim lives on one stream (`claims`): claims conflict with each other across patterns, so their check and
their grant are one append at the version folded, as a lock's are on its own stream. A claim also conflicts
with a lock another agent holds on a path the claim's glob covers (`held_locks`, as the caller reads them).
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, Field

from agentlog.domains.coordination.errors import Conflict, HeldError, NotFoundError, StaleGrantError
from agentlog.domains.coordination.events import (
    ClaimExpired,
    ClaimHandedOff,
    ClaimKind,
    ClaimMade,
    ClaimReleased,
    DirectMessageSent,
)
from agentlog.domains.coordination.globs import overlaps
from agentlog.domains.timers.events import TimerScheduled
from agentlog.eventstore.events import Event

CLAIM_EXPIRY = "claim-expiry"


class Claim(BaseModel):
    claim_id: str
    holder: str
    pattern: str
    kind: ClaimKind = "path"
    exclusive: bool = True
    ttl_s: float
    reason: str = ""
    timer_id: str
    context: dict[str, object] = Field(default_factory=dict)
    handed_off_from: str | None = None


class ClaimsState(BaseModel):
    version: int = 0
    claims: dict[str, Claim] = Field(default_factory=dict)
    """Claims in force, by id."""

    def fold(self, event: Event, version: int | None = None) -> str | None:
        """Fold one event of the claims stream; the id of the claim it changed, if any."""
        if version is not None:
            self.version = version
        match event:
            case ClaimMade():
                self.claims[event.claim_id] = Claim(
                    claim_id=event.claim_id, holder=event.holder, pattern=event.pattern, kind=event.kind,
                    exclusive=event.exclusive, ttl_s=event.ttl_s, reason=event.reason, timer_id=event.timer_id,
                )  # fmt: skip
                return event.claim_id
            case ClaimReleased() if self._held(event.claim_id, event.holder):
                del self.claims[event.claim_id]
                return event.claim_id
            case ClaimExpired() if self._held(event.claim_id, event.holder) and (
                self.claims[event.claim_id].timer_id == event.timer_id
            ):
                del self.claims[event.claim_id]
                return event.claim_id
            case ClaimHandedOff() if self._held(event.claim_id, event.from_agent):
                claim = self.claims[event.claim_id]
                self.claims[event.claim_id] = claim.model_copy(
                    update={"holder": event.to_agent, "ttl_s": event.ttl_s, "timer_id": event.timer_id,
                            "context": event.context, "handed_off_from": event.from_agent}
                )  # fmt: skip
                return event.claim_id
        return None

    def _held(self, claim_id: str, holder: str) -> bool:
        claim = self.claims.get(claim_id)
        return claim is not None and claim.holder == holder


def claims_conflict(first: Claim, second_pattern: str, second_kind: str, second_exclusive: bool) -> bool:
    if first.kind != second_kind or not (first.exclusive or second_exclusive):
        return False
    return overlaps(first.pattern, second_pattern)


def lock_conflicts(pattern: str, resource: str) -> bool:
    """A path claim covers a locked resource when its glob matches the resource's path."""
    return overlaps(pattern, resource, second_literal=True)


def timer_id(version: int) -> str:
    return f"claims@{version}"


def claim(
    state: ClaimsState,
    *,
    claim_id: str,
    holder: str,
    pattern: str,
    kind: ClaimKind,
    exclusive: bool,
    ttl_s: float,
    reason: str,
    held_locks: Iterable[tuple[str, str, int]] = (),
) -> list[Event]:
    """The events making the claim (its expiry timer in the same append); `HeldError` naming every claim and lock
    of other agents it conflicts with. `held_locks`: (resource, holder, fencing token) of locks held now."""
    conflicts = [
        Conflict("claim", other.holder, claim_id=other.claim_id, pattern=other.pattern, exclusive=other.exclusive)
        for other in state.claims.values()
        if other.holder != holder and claims_conflict(other, pattern, kind, exclusive)
    ]
    if kind == "path":
        conflicts += [
            Conflict("lock", lock_holder, resource=resource, fencing_token=token)
            for resource, lock_holder, token in held_locks
            if lock_holder != holder and lock_conflicts(pattern, resource)
        ]
    if conflicts:
        names = ", ".join(f"{item.kind} {item.pattern or item.resource} held by {item.holder}" for item in conflicts)
        raise HeldError(f"{kind} {pattern!r} conflicts with {names}", conflicts)
    timer = timer_id(state.version + 1)
    return [
        ClaimMade(claim_id=claim_id, holder=holder, pattern=pattern, kind=kind, exclusive=exclusive, ttl_s=ttl_s,
                  reason=reason, timer_id=timer),
        TimerScheduled(timer_id=timer, delay_s=ttl_s, purpose=CLAIM_EXPIRY, subject=claim_id),
    ]  # fmt: skip


def held_claim(state: ClaimsState, claim_id: str, holder: str) -> Claim:
    claim_ = state.claims.get(claim_id)
    if claim_ is None:
        raise NotFoundError(f"no claim {claim_id!r} in force (released, expired or never made)")
    if claim_.holder != holder:
        raise StaleGrantError(f"claim {claim_id!r} is held by {claim_.holder}, not {holder}", claim_.holder)
    return claim_


def release(state: ClaimsState, claim_id: str, holder: str) -> list[Event]:
    held_claim(state, claim_id, holder)
    return [ClaimReleased(claim_id=claim_id, holder=holder)]


def hand_off(
    state: ClaimsState,
    claim_id: str,
    from_agent: str,
    to_agent: str,
    *,
    note: str,
    context: dict[str, object],
    ttl_s: float | None,
    message_id: str,
) -> tuple[list[Event], DirectMessageSent]:
    """The claim's handoff on the claims stream (a new timer), and the direct message telling the new holder."""
    current = held_claim(state, claim_id, from_agent)
    ttl = current.ttl_s if ttl_s is None else ttl_s
    timer = timer_id(state.version + 1)
    message = DirectMessageSent(
        message_id=message_id, sender=from_agent, sender_kind="agent", recipient=to_agent,
        body=note or f"{from_agent} handed claim {current.pattern!r} over to you",
        data={"handoff": {"claim_id": claim_id, "pattern": current.pattern, "context": context}},
    )  # fmt: skip
    return [
        ClaimHandedOff(claim_id=claim_id, from_agent=from_agent, to_agent=to_agent, note=note, context=context,
                       ttl_s=ttl, timer_id=timer),
        TimerScheduled(timer_id=timer, delay_s=ttl, purpose=CLAIM_EXPIRY, subject=claim_id),
    ], message  # fmt: skip


def expire_on_timer(state: ClaimsState, claim_id: str, fired_timer_id: str) -> ClaimExpired | None:
    claim_ = state.claims.get(claim_id)
    if claim_ is None or claim_.timer_id != fired_timer_id:
        return None
    return ClaimExpired(
        claim_id=claim_id, holder=claim_.holder, timer_id=claim_.timer_id,
        reason=f"its TTL of {claim_.ttl_s:g} s passed",
    )  # fmt: skip


def expire_for_holder(state: ClaimsState, holder: str, reason: str) -> list[ClaimExpired]:
    return [
        ClaimExpired(claim_id=item.claim_id, holder=holder, timer_id=item.timer_id, reason=reason)
        for item in sorted(state.claims.values(), key=lambda held: held.claim_id)
        if item.holder == holder
    ]
