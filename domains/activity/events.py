"""The event of status inference, on the agent's registry stream (`member-<agent>`), and the stream of the timers
that lead to it (`activity-<agent>`: kept off the registry stream, so that a check every minute does not move
the entry's version, which clients use for `If-Match`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import StringConstraints

from agentlog.domains.coordination.names import AgentId
from agentlog.eventstore.events import Event, catalogue

ActivityStatus = Literal["active", "idle", "offline"]
ACTIVITY_STATUSES: tuple[ActivityStatus, ...] = ("active", "idle", "offline")


def activity_stream(agent_id: str) -> str:
    return f"activity-{agent_id}"


@catalogue.register
class AgentStatusInferred(Event):
    """The status keeper's inference: the agent is `active` again (something it did, named in `reason`), or
    `idle` / `offline` after a silence. `since`: for idle and offline, the moment since which nothing was heard
    from the agent (its last activity was no later); None for active, which began with this event."""

    event_type: ClassVar[str] = "AgentStatusInferred"
    category: ClassVar[str] = "member"

    agent_id: AgentId
    status: ActivityStatus
    since: datetime | None = None
    reason: Annotated[str, StringConstraints(max_length=500)] = ""
