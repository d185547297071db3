"""The program keeper decider: moves each agent program through its lifecycle (`domains.programs.lifecycle`) as
people's requests and the runner's reports arrive, starts a crashed program again on its restart timer, and
forgives a run's crashes once it has run for `proven_after_s` (another timer).

It folds every program stream and answers each event with the rule's decision, appended on the same stream. The
process itself is the runner's (an effector at the edge): the keeper never reads a clock or a pid, so
`replay --verify` can check every decision it made.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field

from agentlog.domains.programs.events import PROGRAM_PROVEN, PROGRAM_RESTART, PROGRAM_TYPES, agent_of, program_stream
from agentlog.domains.programs.lifecycle import ProgramLifecycle, decide
from agentlog.domains.timers.events import TimerFired, TimerScheduled
from agentlog.handlers.decider import Decision, Fact
from agentlog.handlers.decider_state import KeyedState


class KeeperSettings(BaseModel):
    """Nothing to set: each program's policy comes with its definition."""


class ProgramsState(KeyedState):
    keyed: ClassVar[dict[str, tuple[str, ...]]] = {"program": ("programs",)}

    programs: dict[str, ProgramLifecycle] = Field(default_factory=dict)


class ProgramKeeper:
    name: ClassVar[str] = "program-keeper"
    input_types: ClassVar[frozenset[str]] = PROGRAM_TYPES | {"TimerScheduled", "TimerFired"}
    state_model: ClassVar[type[ProgramsState]] = ProgramsState
    state_version: ClassVar[int] = 3

    def __init__(self) -> None:
        self.configured = KeeperSettings()

    def initial_state(self) -> ProgramsState:
        return ProgramsState()

    def evolve(self, state: ProgramsState, fact: Fact) -> ProgramsState:
        agent_id = self._program_of(fact)
        if agent_id is None:
            return state
        if fact.event.event_type == "ProgramDefined":
            state.programs.setdefault(agent_id, ProgramLifecycle(agent_id=agent_id))
        program = state.programs.get(agent_id)
        if program is not None:
            program.fold(fact.event)
            state.changed("program", agent_id)
        return state

    def decide(self, state: ProgramsState, fact: Fact) -> list[Decision]:
        agent_id = self._program_of(fact)
        program = None if agent_id is None else state.programs.get(agent_id)
        if program is None:
            return []
        return [Decision(fact.stream_id, event) for event in decide(program, fact.event)]

    @staticmethod
    def _program_of(fact: Fact) -> str | None:
        """The program an event is about: one of its own events, or its restart timer, on its stream."""
        if not fact.stream_id.startswith("program-"):
            return None
        event = fact.event
        if isinstance(event, TimerScheduled | TimerFired) and event.purpose not in {PROGRAM_RESTART, PROGRAM_PROVEN}:
            return None
        agent_id = agent_of(fact.stream_id)
        if getattr(event, "agent_id", agent_id) != agent_id or program_stream(agent_id) != fact.stream_id:
            return None
        return agent_id
