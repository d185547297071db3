"""The coordination decider: what the log releases by itself — locks and claims whose TTL passed, agents whose
heartbeats stopped (gone), and everything a gone or deregistered agent held.

Every rule is the coordination domain's (`domains.coordination`): the same folds the API decides commands with
and the projections show. This decider only watches timers and departures. Its state holds what is in force now
(registered agents' liveness, held locks, claims), so it costs what an event touches.

A release it appends may land after the holder renewed or released meanwhile (it appends at any version); the
release names the grant and timer it ends, and the domain's fold ignores one that names another, so nothing is
ever released that was renewed.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from pydantic import BaseModel, Field

from agentlog.domains.coordination import claims as claim_rules
from agentlog.domains.coordination import locks as lock_rules
from agentlog.domains.coordination.claims import CLAIM_EXPIRY, Claim, ClaimsState
from agentlog.domains.coordination.events import (
    AgentDeregistered,
    AgentGone,
    AgentHeartbeat,
    AgentRegistered,
    AgentUpdated,
    ClaimExpired,
    ClaimHandedOff,
    ClaimMade,
    ClaimReleased,
    LockAcquired,
    LockExpired,
    LockReleased,
    LockRenewed,
)
from agentlog.domains.coordination.liveness import AGENT_LIVENESS, Liveness, fold_liveness, gone, next_check
from agentlog.domains.coordination.locks import LOCK_EXPIRY, LockState
from agentlog.domains.coordination.names import CLAIMS_STREAM, heartbeat_stream, member_stream
from agentlog.domains.timers.events import TimerFired, TimerScheduled
from agentlog.eventstore import Event
from agentlog.handlers.decider import Decision, Fact
from agentlog.handlers.decider_state import KeyedState

LIVENESS_NAMESPACE = uuid.UUID("0c7a3f52-9d1e-4b8a-a3c4-6f2e8d9b1a70")


class ExpirySettings(BaseModel):
    """Nothing to set: TTLs and heartbeat timeouts come with the events that set them."""


class ExpiryState(KeyedState):
    keyed: ClassVar[dict[str, tuple[str, ...]]] = {"agent": ("agents",), "lock": ("locks",), "claim": ("claims",)}

    agents: dict[str, Liveness] = Field(default_factory=dict)
    """Registered agents only."""
    locks: dict[str, LockState] = Field(default_factory=dict)
    """Held locks only, by lock stream."""
    claims: dict[str, Claim] = Field(default_factory=dict)
    """Claims in force, by id."""


class CoordinationExpiry:
    name: ClassVar[str] = "coordination-expiry"
    input_types: ClassVar[frozenset[str]] = frozenset(
        {
            "AgentRegistered", "AgentUpdated", "AgentHeartbeat", "AgentDeregistered", "AgentGone",
            "LockAcquired", "LockRenewed", "LockReleased", "LockExpired",
            "ClaimMade", "ClaimReleased", "ClaimExpired", "ClaimHandedOff", "TimerFired",
        }
    )  # fmt: skip
    state_model: ClassVar[type[ExpiryState]] = ExpiryState
    state_version: ClassVar[int] = 1

    def __init__(self) -> None:
        self.configured = ExpirySettings()

    def initial_state(self) -> ExpiryState:
        return ExpiryState()

    def evolve(self, state: ExpiryState, fact: Fact) -> ExpiryState:
        event = fact.event
        match event:
            case AgentRegistered() | AgentUpdated() | AgentHeartbeat() | AgentDeregistered() | AgentGone():
                _fold_agent(state, event.agent_id, event)
            case TimerScheduled() | TimerFired() if event.purpose == AGENT_LIVENESS:
                _fold_agent(state, event.subject, event)
            case LockAcquired() | LockRenewed() | LockReleased() | LockExpired():
                lock = state.locks.get(fact.stream_id) or LockState()
                if lock.fold(event):
                    if lock.grant is None:
                        state.locks.pop(fact.stream_id, None)
                    else:
                        state.locks[fact.stream_id] = lock
                    state.changed("lock", fact.stream_id)
            case ClaimMade() | ClaimReleased() | ClaimExpired() | ClaimHandedOff():
                held = ClaimsState(claims=state.claims)
                changed = held.fold(event)
                if changed is not None:
                    state.claims = held.claims
                    state.changed("claim", changed)
        return state

    def decide(self, state: ExpiryState, fact: Fact) -> list[Decision]:
        event = fact.event
        match event:
            case TimerFired() if event.purpose == LOCK_EXPIRY:
                lock = state.locks.get(fact.stream_id)
                expired = None if lock is None else lock_rules.expire_on_timer(lock, event.timer_id)
                return [] if expired is None else [Decision(fact.stream_id, expired)]
            case TimerFired() if event.purpose == CLAIM_EXPIRY:
                claim_expired = claim_rules.expire_on_timer(ClaimsState(claims=state.claims), event.subject,
                                                            event.timer_id)  # fmt: skip
                return [] if claim_expired is None else [Decision(CLAIMS_STREAM, claim_expired)]
            case TimerFired() if event.purpose == AGENT_LIVENESS:
                return self._check(state, event.subject, fact)
            case AgentRegistered():
                return self._check(state, event.agent_id, fact)
            case AgentDeregistered() if event.agent_id not in state.agents:
                why = f"holder {event.agent_id} deregistered" + (f": {event.reason}" if event.reason else "")
                return _releases(state, event.agent_id, why)
            case LockAcquired() | ClaimMade() if event.holder not in state.agents:
                return _releases(state, event.holder, f"holder {event.holder} is not a registered agent")
            case ClaimHandedOff() if event.to_agent not in state.agents:
                return _releases(state, event.to_agent, f"holder {event.to_agent} is not a registered agent")
        return []

    def _check(self, state: ExpiryState, agent_id: str, fact: Fact) -> list[Decision]:
        entry = state.agents.get(agent_id)
        timer_id = "liveness-" + uuid.uuid5(LIVENESS_NAMESPACE, f"{fact.event_id}/{agent_id}").hex
        scheduled = next_check(entry, agent_id, timer_id)
        if scheduled is not None:
            return [Decision(heartbeat_stream(agent_id), scheduled)]
        departed = gone(entry, agent_id)
        if departed is None:
            return []
        # The releases do not depend on the agent's departure being folded first: decided together.
        return [Decision(member_stream(agent_id), departed),
                *_releases(state, agent_id, f"holder {agent_id} is gone: {departed.reason}")]  # fmt: skip


def _fold_agent(state: ExpiryState, agent_id: str, event: Event) -> None:
    before = state.agents.get(agent_id)
    after = fold_liveness(before, event)
    if after is before:
        return
    if after is None:
        state.agents.pop(agent_id, None)
    else:
        state.agents[agent_id] = after
    state.changed("agent", agent_id)


def _releases(state: ExpiryState, agent_id: str, reason: str) -> list[Decision]:
    decisions: list[Decision] = []
    for stream_id in sorted(state.locks):
        expired = lock_rules.expire_for_holder(state.locks[stream_id], agent_id, reason)
        if expired is not None:
            decisions.append(Decision(stream_id, expired))
    for claim_expired in claim_rules.expire_for_holder(ClaimsState(claims=state.claims), agent_id, reason):
        decisions.append(Decision(CLAIMS_STREAM, claim_expired))
    return decisions
