"""The status keeper decider: infers whether each registered agent is active, idle or offline, and records each
change as `AgentStatusInferred` on the agent's registry stream (`member-<agent>`), which the registry projection
shows (`activity`, `last_active_at`).

The rule is the activity domain's (`domains.activity.status`): this decider folds each registered agent's record
from the agent's own doings and its status timers (on `activity-<agent>`), and asks the rule for one decision at
a time. Its state is one small record per registered agent, marked changed only when it changes (the first thing
an agent does after a check was scheduled, a timer scheduled or fired, a status inferred), so a busy agent costs
about one saved row per check, not one per event. A deregistered agent is forgotten (its pending timer, when it
fires, is ignored); a gone one (heartbeats stopped) is still watched, and becomes idle and offline as its silence
goes on.

Settings (`StatusSettings`: idle after, offline after, check every) are recorded with `DeciderConfigured` by the
process that hosts the keeper (`record_settings`) and folded from the log, as for the other deciders.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import ClassVar

from pydantic import Field, ValidationError

from agentlog.domains.activity.events import AgentStatusInferred, activity_stream
from agentlog.domains.activity.status import (
    ACTIVITY_TYPES,
    PURPOSES,
    AgentActivity,
    StatusSettings,
    active_agent,
    fold_activity,
    next_decision,
)
from agentlog.domains.coordination.events import AgentDeregistered, AgentRegistered
from agentlog.domains.coordination.names import member_stream
from agentlog.domains.deciders.events import DeciderConfigured, decider_stream
from agentlog.domains.timers.events import TimerFired, TimerScheduled
from agentlog.handlers.decider import Decision, Fact
from agentlog.handlers.decider_state import KeyedState

STATUS_NAMESPACE = uuid.UUID("8d3f6a1e-52c4-4b7e-9e0a-1f6c2b7d4e93")


class StatusState(KeyedState):
    keyed: ClassVar[dict[str, tuple[str, ...]]] = {"agent": ("agents",)}

    settings: StatusSettings = Field(default_factory=StatusSettings)
    """As last recorded in the log (`DeciderConfigured`), else as this process was configured."""
    agents: dict[str, AgentActivity] = Field(default_factory=dict)
    """Registered agents only."""


class StatusKeeper:
    """Decides when an agent is idle, offline, and active again."""

    name: ClassVar[str] = "status-keeper"
    input_types: ClassVar[frozenset[str]] = ACTIVITY_TYPES | {"AgentDeregistered", "TimerFired", "DeciderConfigured"}
    state_model: ClassVar[type[StatusState]] = StatusState
    state_version: ClassVar[int] = 1

    def __init__(
        self, idle_after_s: float = 600.0, offline_after_s: float = 3600.0, check_every_s: float = 60.0
    ) -> None:
        self.configured = StatusSettings(
            idle_after_s=idle_after_s, offline_after_s=offline_after_s, check_every_s=check_every_s
        )

    def initial_state(self) -> StatusState:
        return StatusState(settings=self.configured.model_copy())

    def evolve(self, state: StatusState, fact: Fact) -> StatusState:
        event = fact.event
        match event:
            case DeciderConfigured() if event.decider == self.name and fact.stream_id == decider_stream(self.name):
                # Settings this version cannot use (appended by hand, or by a newer version) are not adopted:
                # deciding on with the previous ones beats stopping at every later event.
                with contextlib.suppress(ValidationError):
                    state.settings = StatusSettings.model_validate(event.settings)
            case AgentRegistered() if event.agent_id not in state.agents:
                state.agents[event.agent_id] = AgentActivity()
                state.changed("agent", event.agent_id)
            case AgentDeregistered():
                if state.agents.pop(event.agent_id, None) is not None:
                    state.changed("agent", event.agent_id)
            case TimerScheduled() | TimerFired() if event.purpose in PURPOSES:
                self._fold(state, event.subject, fact, activity=False, stream=activity_stream(event.subject))
            case AgentStatusInferred():
                self._fold(state, event.agent_id, fact, activity=False, stream=member_stream(event.agent_id))
            case _:
                agent_id = active_agent(event)
                if agent_id is not None:
                    self._fold(state, agent_id, fact, activity=True, stream=None)
        return state

    def _fold(self, state: StatusState, agent_id: str, fact: Fact, *, activity: bool, stream: str | None) -> None:
        record = state.agents.get(agent_id)
        if record is None or (stream is not None and fact.stream_id != stream):
            return  # not a registered agent, or a timer or status on a stream it does not belong to
        if fold_activity(record, fact.event, activity=activity):
            state.changed("agent", agent_id)

    def decide(self, state: StatusState, fact: Fact) -> list[Decision]:
        event = fact.event
        if isinstance(event, TimerFired):
            agent_id: str | None = event.subject if event.purpose in PURPOSES else None
        elif isinstance(event, AgentDeregistered | DeciderConfigured | AgentStatusInferred | TimerScheduled):
            agent_id = None
        else:
            agent_id = active_agent(event)
        record = None if agent_id is None else state.agents.get(agent_id)
        if agent_id is None or record is None:
            return []
        timer_id = "status-" + uuid.uuid5(STATUS_NAMESPACE, f"{fact.event_id}/{agent_id}").hex
        decided = next_decision(record, state.settings, agent_id, timer_id, event.event_type)
        if decided is None:
            return []
        stream = member_stream(agent_id) if isinstance(decided, AgentStatusInferred) else activity_stream(agent_id)
        return [Decision(stream, decided)]
