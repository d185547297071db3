"""The status rule: active while the agent does things, idle after `idle_after_s` of silence (seed: 10 minutes),
offline after `offline_after_s` (seed: 60 minutes), active again at the next thing it does.

What counts as activity (`active_agent`): what the agent itself does — on its registry entry (registering,
updating) and its heartbeats (every MCP call is one), the task attempts it works (start, heartbeat, complete,
fail, snooze, a pull), its messages and read receipts, checkpoints and memories, the locks, claims and operations
it takes, renews, hands off or ends. Not what is done *to* it: a task assigned by the dispatcher, a lock expired
by the log, a message received, a status inferred. The registry projection reads the same rule, so its
`last_active_at` is the last of these events.

Time is timers (a decider reads no clock). While an agent is heard from, one check timer at a time waits for it,
every `check_every_s` (seed: every minute). A check that finds the agent silent since the timer was scheduled
knows its last activity came before that moment (`silent_since`): from there one timer waits out the rest of
`idle_after_s`, and, if the agent stays silent, `AgentStatusInferred(idle)` and one more timer for the rest of
`offline_after_s`, then `offline` and no more timers until it is heard from again. Heard from meanwhile, the
agent gets a check timer at once (superseding the long one), so the next silence is measured from that activity.
So an agent is idle at least
`idle_after_s` after its last activity and at most `check_every_s` later (plus the timer service's latency), and
likewise offline. A timer that fires after the agent was heard from again is ignored: each record remembers the
one timer it waits for (`timer_id`), and any other fired timer changes nothing.

The rules here are pure: `fold_activity` folds one event into an agent's record and `next_decision` says the one
next event it calls for; the status-keeper decider (`handlers.activity`) hosts them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from agentlog.domains.activity.events import ActivityStatus, AgentStatusInferred
from agentlog.domains.coordination.events import (
    AgentHeartbeat,
    AgentRegistered,
    AgentUpdated,
    ChatPosted,
    CheckpointSaved,
    ClaimHandedOff,
    ClaimMade,
    ClaimReleased,
    DirectMessageAcknowledged,
    DirectMessageSent,
    LockAcquired,
    LockReleased,
    LockRenewed,
    MemoryForgotten,
    MemoryStored,
)
from agentlog.domains.operations.events import OperationFinished, OperationRegistered
from agentlog.domains.tasks.events import (
    TaskClaimRequested,
    TaskCompleted,
    TaskFailed,
    TaskHeartbeat,
    TaskSnoozed,
    TaskStarted,
)
from agentlog.domains.timers.events import MAX_TIMER_DELAY_S, TimerFired, TimerScheduled
from agentlog.eventstore.events import Event

STATUS_CHECK = "agent-status-check"
STATUS_IDLE = "agent-status-idle"
STATUS_OFFLINE = "agent-status-offline"
Waiting = Literal["check", "idle", "offline"]
PURPOSES: dict[str, Waiting] = {STATUS_CHECK: "check", STATUS_IDLE: "idle", STATUS_OFFLINE: "offline"}
_PURPOSE_OF: dict[Waiting, str] = {waiting: purpose for purpose, waiting in PURPOSES.items()}

ACTIVITY_TYPES: frozenset[str] = frozenset(
    {
        "AgentRegistered", "AgentUpdated", "AgentHeartbeat", "ChatPosted", "DirectMessageSent",
        "DirectMessageAcknowledged", "CheckpointSaved", "MemoryStored", "MemoryForgotten", "LockAcquired",
        "LockRenewed", "LockReleased", "ClaimMade", "ClaimReleased", "ClaimHandedOff", "TaskStarted",
        "TaskHeartbeat", "TaskCompleted", "TaskFailed", "TaskSnoozed", "TaskClaimRequested", "OperationRegistered",
        "OperationFinished",
    }
)  # fmt: skip
"""The event types `active_agent` may find an agent's activity in (some only for agents: a chat post by a person
is nobody's activity)."""


def active_agent(event: Event) -> str | None:
    """The agent this event shows doing something, if any."""
    match event:
        case (
            AgentRegistered() | AgentUpdated() | AgentHeartbeat() | DirectMessageAcknowledged() | CheckpointSaved()
            | MemoryStored() | MemoryForgotten() | TaskStarted() | TaskHeartbeat() | TaskCompleted() | TaskFailed()
            | TaskSnoozed() | TaskClaimRequested() | OperationRegistered() | OperationFinished()
        ):  # fmt: skip
            return event.agent_id
        case ChatPosted() if event.author_kind == "agent":
            return event.author
        case DirectMessageSent() if event.sender_kind == "agent":
            return event.sender
        case LockAcquired() | LockRenewed() | LockReleased() | ClaimMade() | ClaimReleased():
            return event.holder
        case ClaimHandedOff():
            return event.from_agent
    return None


class StatusSettings(BaseModel):
    """When silence makes an agent idle and offline, and how often an agent heard from is checked (how late, at
    most, idle and offline are inferred)."""

    idle_after_s: float = Field(default=600.0, gt=0, le=MAX_TIMER_DELAY_S)
    offline_after_s: float = Field(default=3600.0, gt=0, le=MAX_TIMER_DELAY_S)
    check_every_s: float = Field(default=60.0, gt=0, le=MAX_TIMER_DELAY_S)

    @model_validator(mode="after")
    def _ordered(self) -> StatusSettings:
        if self.check_every_s > self.idle_after_s:
            raise ValueError(
                f"check_every_s ({self.check_every_s:g}) may not exceed idle_after_s ({self.idle_after_s:g})"
            )
        if self.offline_after_s <= self.idle_after_s:
            raise ValueError(
                f"offline_after_s ({self.offline_after_s:g}) must exceed idle_after_s ({self.idle_after_s:g})"
            )
        return self


def status_after(silence_s: float, settings: StatusSettings) -> ActivityStatus:
    """The status an agent silent for `silence_s` has by the rule (what the timers approximate, late by at most
    one check)."""
    if silence_s >= settings.offline_after_s:
        return "offline"
    if silence_s >= settings.idle_after_s:
        return "idle"
    return "active"


class AgentActivity(BaseModel):
    """What the rule remembers of one registered agent."""

    status: ActivityStatus = "active"
    heard: bool = True
    """Heard from since the pending timer was scheduled (or since it registered, before the first timer)."""
    timer_id: str | None = None
    """The one timer waited for; any other that fires is ignored."""
    waiting_for: Waiting | None = None
    delay_s: float = 0.0
    """The pending (or just fired) timer's delay."""
    fired: Waiting | None = None
    """Set by the waited-for timer firing, until the decision it calls for is folded."""
    silent_since: datetime | None = None
    """Nothing heard from the agent since then (its last activity came no later); None while heard from."""


def fold_activity(record: AgentActivity, event: Event, *, activity: bool = False) -> bool:
    """Fold one event about the agent into its record (`activity`: the event is something the agent did);
    True when the record changed."""
    if activity:
        if record.heard:
            return False
        record.heard = True
        return True
    match event:
        case TimerScheduled() if event.purpose in PURPOSES:
            record.timer_id, record.waiting_for, record.delay_s = event.timer_id, PURPOSES[event.purpose], event.delay_s
            record.heard, record.fired = False, None
            return True
        case TimerFired() if event.purpose in PURPOSES and event.timer_id == record.timer_id:
            record.fired, record.timer_id = record.waiting_for, None
            if record.heard:
                record.silent_since = None
            elif record.fired == "check":
                record.silent_since = event.due_at - timedelta(seconds=record.delay_s)
            return True
        case AgentStatusInferred():
            record.status = event.status
            if event.status == "active":
                record.silent_since = None
            elif event.status == "offline":
                record.fired = None
            return True
    return False


def next_decision(record: AgentActivity, settings: StatusSettings, agent_id: str, timer_id: str,
                  cause: str) -> Event | None:  # fmt: skip
    """The one next event the record calls for (None when nothing): a status inferred or a timer scheduled (with
    id `timer_id`). `cause` is the type of the event being decided, named when the agent is active again.

    Asked again after each decision is folded, until it answers None (one decision at a time: each depends on
    the one before).
    """
    if record.status != "active" and record.heard:
        return AgentStatusInferred(agent_id=agent_id, status="active", reason=f"{cause} after being {record.status}")
    if record.fired is not None and record.heard:
        return _timer(agent_id, timer_id, "check", settings.check_every_s)
    if record.fired is not None:
        if record.fired == "check" and settings.idle_after_s > record.delay_s and record.status == "active":
            return _timer(agent_id, timer_id, "idle", settings.idle_after_s - record.delay_s)
        if record.status == "active":
            return AgentStatusInferred(agent_id=agent_id, status="idle", since=record.silent_since,
                                       reason=f"no activity for at least {settings.idle_after_s:g} s")  # fmt: skip
        if record.status == "idle" and record.fired != "offline":
            return _timer(agent_id, timer_id, "offline", settings.offline_after_s - settings.idle_after_s)
        if record.status == "idle":
            return AgentStatusInferred(agent_id=agent_id, status="offline", since=record.silent_since,
                                       reason=f"no activity for at least {settings.offline_after_s:g} s")  # fmt: skip
        return None
    if record.status == "active" and record.heard and (record.timer_id is None or record.waiting_for != "check"):
        # Heard from while a silence was being waited out (or with no timer at all): checks start again from now,
        # so the next silence is measured from this activity, not from the end of a long timer.
        return _timer(agent_id, timer_id, "check", settings.check_every_s)
    return None


def _timer(agent_id: str, timer_id: str, waiting: Waiting, delay_s: float) -> TimerScheduled:
    return TimerScheduled(timer_id=timer_id, delay_s=delay_s, purpose=_PURPOSE_OF[waiting], subject=agent_id)
