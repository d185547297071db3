"""`agentlog replay --verify` for planner sessions: every session's stream refolded, and each event the runtime
recorded checked against the session's rule (`domains.planning.session.departures`). Model answers and tool
results are what they were (they came from outside); what is checked is that the runtime did, at each point, what
the rule says: the same transcript rebuilt from the log."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from agentlog.domains.planning.session import departures
from agentlog.eventstore import EventStore
from agentlog.eventstore.events import Event


@dataclass(frozen=True, slots=True)
class SessionDeparture:
    session_id: str
    stream_version: int
    event_type: str
    expected: str

    def describe(self) -> str:
        return (f"session {self.session_id} version {self.stream_version}: {self.event_type} recorded where the "
                f"rule says {self.expected}")  # fmt: skip


async def verify_sessions(store: EventStore) -> tuple[int, list[SessionDeparture]]:
    """(sessions checked, departures found)."""
    streams: dict[str, list[tuple[int, Event]]] = defaultdict(list)
    after = None
    while True:
        page = await (store.read_category("session", limit=5_000) if after is None
                      else store.read_category("session", after=after, limit=5_000))  # fmt: skip
        for recorded in page:
            streams[recorded.stream_id].append((recorded.stream_version, store.decode(recorded)))
        if len(page) < 5_000:
            break
        after = page[-1].position
    found: list[SessionDeparture] = []
    for stream_id, versioned in streams.items():
        versioned.sort(key=lambda pair: pair[0])
        session_id = stream_id.removeprefix("session-")
        for index, event, expected in departures(session_id, [event for _, event in versioned]):
            wanted = "nothing" if expected is None else type(expected).__name__
            found.append(SessionDeparture(session_id, versioned[index][0], event.event_type, wanted))
    return len(streams), found
