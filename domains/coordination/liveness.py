"""Liveness and the registry entry: who is registered, who is gone, and when a silent agent becomes gone.

Time is a timer: while an agent is registered one liveness timer waits for it, due half its heartbeat timeout
after it was scheduled. When it fires, an agent heard from since (a heartbeat, a registration or an update) gets
the next timer; one not heard from is gone, and everything it held is released by the log with that reason. So an
agent that keeps silent is gone at most `heartbeat_timeout_s` after the last sign of life, and at least half of
it: send heartbeats at least every `heartbeat_timeout_s / 2`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from agentlog.domains.activity.events import AgentStatusInferred
from agentlog.domains.coordination.events import (
    AgentDeregistered,
    AgentGone,
    AgentHeartbeat,
    AgentRegistered,
    AgentUpdated,
)
from agentlog.domains.timers.events import TimerFired, TimerScheduled
from agentlog.eventstore.events import Event

AGENT_LIVENESS = "agent-liveness"

MemberState = Literal["unknown", "registered", "deregistered", "gone"]


class RegistryEntry(BaseModel):
    """An agent's registry entry as the fold of its `member-` stream."""

    agent_id: str = ""
    state: MemberState = "unknown"
    version: int = 0
    name: str = ""
    status: str = "active"
    working_on: str = ""
    capabilities: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    heartbeat_timeout_s: float = 120.0
    reason: str = ""
    activity: Literal["active", "idle", "offline"] = "active"
    """As the status keeper last inferred it (`domains.activity`)."""

    @property
    def registered(self) -> bool:
        return self.state == "registered"

    def fold(self, event: Event, version: int | None = None) -> None:
        if version is not None:
            self.version = version
        match event:
            case AgentRegistered():
                self.agent_id, self.state, self.reason = event.agent_id, "registered", ""
                self.name, self.status, self.working_on = event.name, event.status, event.working_on
                self.capabilities, self.metadata = list(event.capabilities), dict(event.metadata)
                self.heartbeat_timeout_s = event.heartbeat_timeout_s
            case AgentUpdated():
                if event.status is not None:
                    self.status = event.status
                if event.working_on is not None:
                    self.working_on = event.working_on
                if event.capabilities is not None:
                    self.capabilities = list(event.capabilities)
                if event.metadata is not None:
                    self.metadata = dict(event.metadata)
            case AgentDeregistered():
                self.state, self.reason = "deregistered", event.reason
            case AgentGone():
                self.state, self.reason = "gone", event.reason
            case AgentStatusInferred():
                self.activity = event.status


class Liveness(BaseModel):
    """What the liveness rule remembers of one registered agent."""

    timeout_s: float
    timer_id: str | None = None
    heard: bool = True
    """Heard from since the pending timer was scheduled."""


def fold_liveness(entry: Liveness | None, event: Event) -> Liveness | None:
    """The liveness after `event` (None once the agent is not registered: nothing to watch)."""
    match event:
        case AgentRegistered():
            if entry is None:
                return Liveness(timeout_s=event.heartbeat_timeout_s)
            return entry.model_copy(update={"timeout_s": event.heartbeat_timeout_s, "heard": True})
        case AgentHeartbeat() | AgentUpdated() if entry is not None:
            return entry if entry.heard else entry.model_copy(update={"heard": True})
        case AgentDeregistered() | AgentGone():
            return None
        case TimerScheduled() if entry is not None and event.purpose == AGENT_LIVENESS:
            return entry.model_copy(update={"timer_id": event.timer_id, "heard": False})
        case TimerFired() if entry is not None and event.purpose == AGENT_LIVENESS and event.timer_id == entry.timer_id:
            return entry.model_copy(update={"timer_id": None})
    return entry


def next_check(entry: Liveness | None, agent_id: str, timer_id: str) -> TimerScheduled | None:
    """The next liveness timer when none is pending and the agent was heard from."""
    if entry is None or entry.timer_id is not None or not entry.heard:
        return None
    return TimerScheduled(timer_id=timer_id, delay_s=entry.timeout_s / 2, purpose=AGENT_LIVENESS, subject=agent_id)


def gone(entry: Liveness | None, agent_id: str) -> AgentGone | None:
    """Gone when the timer fired (none pending) with nothing heard since it was scheduled."""
    if entry is None or entry.timer_id is not None or entry.heard:
        return None
    return AgentGone(
        agent_id=agent_id,
        reason=f"no heartbeat within {entry.timeout_s / 2:g} s (heartbeat timeout {entry.timeout_s:g} s)",
    )
