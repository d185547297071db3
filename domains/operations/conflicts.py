"""Conflict detection: two agents must not do the same work on one entity key at once (seed 002).

An operation is registered on its key's stream; within its conflict window (seed: 30 s) another agent registering
an operation on that key is refused with `ConflictError`, which names the operation under way and its agent. The
operation ends when its agent finishes it, or by the log when its TTL (seed: 60 s) passes unfinished (the expiry
timer, and `OperationExpired` from the operation-expiry decider). Between the window's end and the operation's end
it is still listed as under way, but no longer refuses anyone: the window is how long a registration protects the
work, the TTL how long the log believes the work goes on without hearing it finished.

Time is the log's: the window closes when its timer fires (`TimerFired` on the key's stream, folded here), not
when a clock says so, so every fold of the stream — the API deciding a registration, the decider, the projection
— agrees on whether the window is open. It closes a little after `window_s` (the timer service's latency), never
before.

The same agent is never in conflict with itself: the window keeps two agents from duplicating work, and one agent
taking several steps on one key (classify an email, then answer it) is one piece of work, not two. Its second
operation is registered beside the first. Registering an operation id already under way is idempotent for the
agent that registered it (nothing is appended) and a conflict for any other.

Like locks (`domains.coordination.locks`), the check and the registration are one step because the command's
events are appended at exactly the stream version folded: of racing registrations that all saw the key free,
one appends; the others fold again, see it, and are refused.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from agentlog.domains.coordination.errors import Conflict, HeldError, NotFoundError, StaleGrantError
from agentlog.domains.coordination.names import check_agent_id
from agentlog.domains.operations.events import (
    MAX_OPERATION_TTL_S,
    OPERATION_ID_PATTERN,
    InvalidOperationError,
    OperationExpired,
    OperationFinished,
    OperationRegistered,
    normalise_key,
    operation_stream,
)
from agentlog.domains.timers.events import TimerFired, TimerScheduled
from agentlog.eventstore.events import Event

OPERATION_WINDOW = "operation-window"
"""The purpose of the timer that closes an operation's conflict window."""
OPERATION_EXPIRY = "operation-expiry"
"""The purpose of the timer that expires an unfinished operation."""
DEFAULT_WINDOW_S = 30.0
DEFAULT_TTL_S = 60.0
MAX_ACTION_CHARS = 200
MAX_OUTCOME_CHARS = 500
_OPERATION_ID = re.compile(OPERATION_ID_PATTERN)


class Operation(BaseModel):
    """One operation under way, as its key's stream says."""

    operation_id: str
    agent_id: str
    action: str
    window_s: float
    ttl_s: float
    in_window: bool
    """Registered less than `window_s` ago (its window timer has not fired): it refuses other agents."""
    window_timer_id: str | None = None
    expiry_timer_id: str
    registered_version: int = 0
    """The stream version of its `OperationRegistered`."""


class OperationsState(BaseModel):
    """An entity key's operations under way: the fold of its `operation-<key>` stream (ended ones are dropped)."""

    key: str | None = None
    version: int = 0
    open: dict[str, Operation] = Field(default_factory=dict)

    def fold(self, event: Event, version: int | None = None) -> bool:
        """Fold one event of the key's stream; True when it changed the operations under way."""
        if version is not None:
            self.version = version
        match event:
            case OperationRegistered():
                self.key = event.key
                self.open[event.operation_id] = Operation(
                    operation_id=event.operation_id, agent_id=event.agent_id, action=event.action,
                    window_s=event.window_s, ttl_s=event.ttl_s, in_window=event.window_timer_id is not None,
                    window_timer_id=event.window_timer_id, expiry_timer_id=event.expiry_timer_id,
                    registered_version=self.version,
                )  # fmt: skip
                return True
            case OperationFinished():
                current = self.open.get(event.operation_id)
                if current is not None and current.agent_id == event.agent_id:
                    del self.open[event.operation_id]
                    return True
            case OperationExpired():
                current = self.open.get(event.operation_id)
                if current is not None and current.expiry_timer_id == event.timer_id:
                    del self.open[event.operation_id]
                    return True
            case TimerFired() if event.purpose == OPERATION_WINDOW:
                current = self.open.get(event.subject)
                if current is not None and current.in_window and current.window_timer_id == event.timer_id:
                    current.in_window = False
                    return True
        return False

    def under_way(self) -> list[Operation]:
        """Every operation not ended yet, oldest first."""
        return sorted(self.open.values(), key=lambda operation: operation.registered_version)

    def conflicting(self, agent_id: str) -> list[Operation]:
        """Other agents' operations still inside their conflict window, oldest first: what refuses `agent_id`."""
        return [op for op in self.under_way() if op.in_window and op.agent_id != agent_id]


@dataclass
class OperationConflict(Conflict):
    """An operation under way on the key (`resource`) by `holder`."""

    operation_id: str | None = None
    action: str | None = None


class ConflictError(HeldError):
    """Another agent's operation on this key is under way inside its conflict window; `operation` is that one
    (the oldest when there are several), `operations` all of them."""

    def __init__(self, key: str, operations: list[Operation]) -> None:
        first = operations[0]
        super().__init__(
            f"key {key!r} has an operation under way: {first.action!r} ({first.operation_id}) by {first.agent_id}, "
            f"registered less than {first.window_s:g} s ago; wait for it to finish or expire, or ask "
            f"{first.agent_id}",
            [OperationConflict("operation", op.agent_id, resource=key, operation_id=op.operation_id,
                               action=op.action) for op in operations],
        )  # fmt: skip
        self.key = key
        self.operation = first
        self.operations = operations


def timer_id(stream_id: str, version: int, purpose: str) -> str:
    """A timer of the registration appended at `version` of the key's stream: unique in the log (a stream
    version is appended once), and short whatever the key's length."""
    digest = hashlib.sha256(f"{stream_id}@{version}".encode()).hexdigest()[:40]
    return f"op-{digest}-{purpose.removeprefix('operation-')}"


def _check_operation_id(operation_id: object) -> str:
    if not isinstance(operation_id, str) or not _OPERATION_ID.fullmatch(operation_id):
        shown = operation_id[:80] if isinstance(operation_id, str) else type(operation_id).__name__
        raise InvalidOperationError(
            "operation_id",
            f"{shown!r} must be 1-64 letters, digits, '.', '_', ':' or '-', starting with a letter or digit",
        )
    return operation_id


def _check_durations(window_s: float, ttl_s: float) -> None:
    if not isinstance(ttl_s, int | float) or not math.isfinite(ttl_s) or not 0 < ttl_s <= MAX_OPERATION_TTL_S:
        raise InvalidOperationError("ttl_s", f"must be more than 0 and at most {MAX_OPERATION_TTL_S} s")
    if not isinstance(window_s, int | float) or not math.isfinite(window_s) or window_s < 0:
        raise InvalidOperationError("window_s", "must be 0 (no conflict window) or more")
    if window_s > ttl_s:
        raise InvalidOperationError(
            "window_s", f"{window_s:g} s is longer than the operation's TTL ({ttl_s:g} s): it would end first"
        )


def register(
    state: OperationsState,
    key: str,
    agent_id: str,
    action: str,
    operation_id: str,
    window_s: float = DEFAULT_WINDOW_S,
    ttl_s: float = DEFAULT_TTL_S,
    data: dict[str, Any] | None = None,
) -> list[Event]:
    """The events registering the operation, its timers in the same append, to be appended to
    `operation_stream(key)` at `state.version`; `[]` when the agent registered this operation id already (it is
    under way); `ConflictError` when another agent's operation on the key is inside its window, or holds the id.

    Bad input raises `InvalidOperationError` naming the field (`key`, `operation_id`, `action`, `window_s`,
    `ttl_s`) or the coordination domain's `InvalidNameError` for the agent id.
    """
    key = normalise_key(key)
    check_agent_id(agent_id)
    operation_id = _check_operation_id(operation_id)
    if not isinstance(action, str) or not action.strip() or len(action.strip()) > MAX_ACTION_CHARS:
        raise InvalidOperationError("action", f"say what the operation does in 1-{MAX_ACTION_CHARS} characters")
    action = action.strip()
    _check_durations(window_s, ttl_s)
    if state.key is not None and state.key != key:
        raise ValueError(f"the state folded is key {state.key!r}'s, not {key!r}'s")
    existing = state.open.get(operation_id)
    if existing is not None:
        if existing.agent_id == agent_id:
            return []
        raise ConflictError(key, [existing])
    conflicting = state.conflicting(agent_id)
    if conflicting:
        raise ConflictError(key, conflicting)
    stream = operation_stream(key)
    version = state.version + 1
    window_timer = timer_id(stream, version, OPERATION_WINDOW) if window_s > 0 else None
    expiry_timer = timer_id(stream, version, OPERATION_EXPIRY)
    events: list[Event] = [
        OperationRegistered(
            key=key, operation_id=operation_id, agent_id=agent_id, action=action, window_s=float(window_s),
            ttl_s=float(ttl_s), window_timer_id=window_timer, expiry_timer_id=expiry_timer, data=dict(data or {}),
        )
    ]  # fmt: skip
    if window_timer is not None:
        events.append(TimerScheduled(timer_id=window_timer, delay_s=window_s, purpose=OPERATION_WINDOW,
                                     subject=operation_id))  # fmt: skip
    events.append(TimerScheduled(timer_id=expiry_timer, delay_s=ttl_s, purpose=OPERATION_EXPIRY, subject=operation_id))
    return events


def finish(state: OperationsState, key: str, agent_id: str, operation_id: str, outcome: str = "") -> list[Event]:
    """The event finishing the operation; `NotFoundError` when it is not under way (finished, expired or never
    registered), `StaleGrantError` when another agent registered it; an outcome over 500 characters is refused
    (`InvalidOperationError` naming `outcome`)."""
    key = normalise_key(key)
    if not isinstance(outcome, str) or len(outcome) > MAX_OUTCOME_CHARS:
        raise InvalidOperationError("outcome", f"say how it ended in at most {MAX_OUTCOME_CHARS} characters")
    current = state.open.get(_check_operation_id(operation_id))
    if current is None:
        raise NotFoundError(
            f"operation {operation_id!r} on key {key!r} is not under way (finished, expired or never registered)"
        )
    if current.agent_id != agent_id:
        raise StaleGrantError(
            f"operation {operation_id!r} on key {key!r} is {current.agent_id}'s, not {agent_id}'s",
            current_holder=current.agent_id,
        )
    return [OperationFinished(key=key, operation_id=operation_id, agent_id=agent_id, outcome=outcome)]


def expire_on_timer(state: OperationsState, fired_timer_id: str, operation_id: str) -> OperationExpired | None:
    """The expiry a fired timer means: only the expiry timer of an operation still under way ends it (one finished
    meanwhile, or a timer of another registration, ends nothing)."""
    current = state.open.get(operation_id)
    if current is None or current.expiry_timer_id != fired_timer_id or state.key is None:
        return None
    return OperationExpired(
        key=state.key, operation_id=operation_id, agent_id=current.agent_id, timer_id=fired_timer_id,
        reason=f"not finished within its TTL of {current.ttl_s:g} s",
    )  # fmt: skip


def fold_all(events: list[Event], state: OperationsState | None = None) -> OperationsState:
    """The state after `events` of one key's stream, in order (versions counted from the state's)."""
    state = state or OperationsState()
    for event in events:
        state.fold(event, state.version + 1)
    return state
