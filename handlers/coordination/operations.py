"""The operation-expiry decider: ends operations whose TTL passed unfinished (`OperationExpired`).

The API appends a registration with its window and expiry timers (`domains.operations.conflicts.register`) at the
key stream's version it decided from; the timer service fires them on the same stream. The window timer needs no
decision (every fold of the stream closes the window when it sees it fire, so this decider does not even fold
it); the expiry timer does: this decider
folds every key's operations under way (`OperationsState`, the same fold the API decides with) and, when the
expiry timer of one still under way fires, appends `OperationExpired`. It appends at any version: a finish that
lands between the timer and the expiry comes first in the log, and the fold of an expiry naming a timer of an
operation no longer under way changes nothing, so no operation ends twice.

A sibling of `CoordinationExpiry` rather than a part of it: operations are a domain of their own, and keeping the
expiry of locks and claims as it was spares every hosted log a refold of that decider's state.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field

from agentlog.domains.operations.conflicts import OPERATION_EXPIRY, OperationsState, expire_on_timer
from agentlog.domains.operations.events import (
    OperationExpired,
    OperationFinished,
    OperationRegistered,
    operation_stream,
)
from agentlog.domains.timers.events import TimerFired
from agentlog.handlers.decider import Decision, Fact
from agentlog.handlers.decider_state import KeyedState


class OperationExpirySettings(BaseModel):
    """Nothing to set: windows and TTLs come with the registrations."""


class OperationExpiryState(KeyedState):
    keyed: ClassVar[dict[str, tuple[str, ...]]] = {"key": ("keys",)}

    keys: dict[str, OperationsState] = Field(default_factory=dict)
    """Keys with operations under way only, by stream id."""


class OperationExpiry:
    name: ClassVar[str] = "operation-expiry"
    input_types: ClassVar[frozenset[str]] = frozenset(
        {"OperationRegistered", "OperationFinished", "OperationExpired", "TimerFired"}
    )
    state_model: ClassVar[type[OperationExpiryState]] = OperationExpiryState
    state_version: ClassVar[int] = 1

    def __init__(self) -> None:
        self.configured = OperationExpirySettings()

    def initial_state(self) -> OperationExpiryState:
        return OperationExpiryState()

    def evolve(self, state: OperationExpiryState, fact: Fact) -> OperationExpiryState:
        event = fact.event
        match event:
            case OperationRegistered() | OperationFinished() | OperationExpired():
                if fact.stream_id != operation_stream(event.key):
                    return state  # an operation event appended elsewhere is no operation of that key
            case _:
                return state
        current = state.keys.get(fact.stream_id) or OperationsState()
        if current.fold(event):
            if current.open:
                state.keys[fact.stream_id] = current
            else:
                state.keys.pop(fact.stream_id, None)
            state.changed("key", fact.stream_id)
        return state

    def decide(self, state: OperationExpiryState, fact: Fact) -> list[Decision]:
        event = fact.event
        if not isinstance(event, TimerFired) or event.purpose != OPERATION_EXPIRY:
            return []
        current = state.keys.get(fact.stream_id)
        expired = None if current is None else expire_on_timer(current, event.timer_id, event.subject)
        return [] if expired is None else [Decision(fact.stream_id, expired)]
