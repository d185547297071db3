"""The document activity decider: people in → active; last one out → grace timer → idle, unless someone returns.

Presence is counted per connection, each tagged with the document server that holds it, so several servers can
serve one document and a server that restarts or is lost takes its people with it (`ManagerStarted` with a new
incarnation, `ManagerStopped`): nobody stays "present" on a socket that no longer exists.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import ClassVar

from pydantic import BaseModel, Field, ValidationError

from eventstore.event_types.agents import ManagerStarted, ManagerStopped
from eventstore.event_types.deciders import DeciderConfigured, decider_stream
from eventstore.event_types.documents import (
    DocumentActivated,
    DocumentIdled,
    PersonJoined,
    PersonLeft,
    document_stream,
)
from eventstore.event_types.timers import TimerCancelled, TimerDelay, TimerFired, TimerScheduled
from handlers.decider import Decision, Fact

IDLE_GRACE = "idle-grace"


class DocumentPresence(BaseModel):
    connections: dict[str, str] = Field(default_factory=dict)
    """connection id → the server holding it."""
    last_server: str = ""
    """The server of the most recent person in (where an agent should join)."""
    active: bool = False
    grace_timer: str | None = None
    last_left_at: int | None = None
    """Global position of the event that emptied the document (for the reason people read)."""


class ActivitySettings(BaseModel):
    idle_grace_s: TimerDelay = 30.0
    """How long a document stays active after the last person left."""


class ActivityState(BaseModel):
    settings: ActivitySettings = Field(default_factory=ActivitySettings)
    """As last recorded in the log (`DeciderConfigured`), else as this process was configured."""
    documents: dict[str, DocumentPresence] = Field(default_factory=dict)
    servers: dict[str, str] = Field(default_factory=dict)
    """server id → its current incarnation."""


class DocumentActivity:
    """Decides when a document becomes active and when it becomes idle."""

    name: ClassVar[str] = "document-activity"
    input_types: ClassVar[frozenset[str]] = frozenset(
        {"PersonJoined", "PersonLeft", "TimerFired", "ManagerStarted", "ManagerStopped", "DeciderConfigured"}
    )
    state_model: ClassVar[type[ActivityState]] = ActivityState
    state_version: ClassVar[int] = 2

    def __init__(self, idle_grace_s: float = 30.0) -> None:
        self.configured = ActivitySettings(idle_grace_s=idle_grace_s)

    def initial_state(self) -> ActivityState:
        return ActivityState(settings=self.configured.model_copy())

    def evolve(self, state: ActivityState, fact: Fact) -> ActivityState:
        event = fact.event
        match event:
            case PersonJoined():
                document = state.documents.setdefault(_document_of(fact.stream_id), DocumentPresence())
                document.connections[event.connection_id] = event.server_id
                document.last_server = event.server_id
            case PersonLeft():
                document = state.documents.setdefault(_document_of(fact.stream_id), DocumentPresence())
                document.connections.pop(event.connection_id, None)
                if not document.connections:
                    document.last_left_at = fact.position
            case ManagerStarted():
                if state.servers.get(event.manager_id) != event.incarnation:
                    _drop_connections_of(state, event.manager_id, fact.position)
                state.servers[event.manager_id] = event.incarnation
            case ManagerStopped():
                if state.servers.get(event.manager_id) == event.incarnation:
                    _drop_connections_of(state, event.manager_id, fact.position)
                    del state.servers[event.manager_id]
            case DocumentActivated():
                state.documents[event.document_id].active = True
            case TimerScheduled():
                state.documents[event.subject].grace_timer = event.timer_id
            case TimerCancelled():
                for document in state.documents.values():
                    if document.grace_timer == event.timer_id:
                        document.grace_timer = None
            case DocumentIdled():
                document = state.documents[event.document_id]
                document.active, document.grace_timer = False, None
            case DeciderConfigured() if event.decider == self.name and fact.stream_id == decider_stream(self.name):
                # Settings this version cannot use (appended by hand, or by a newer version) are not adopted:
                # deciding on with the previous ones beats stopping at every later event.
                with contextlib.suppress(ValidationError):
                    state.settings = ActivitySettings.model_validate(event.settings)
        _forget_quiet_documents(state)
        return state

    def decide(self, state: ActivityState, fact: Fact) -> list[Decision]:
        # Each document's decisions are independent of the others': all of them at once.
        event = fact.event
        if isinstance(event, TimerFired):
            if event.purpose != IDLE_GRACE:
                return []
            document = state.documents.get(event.subject)
            if document is None or document.grace_timer != event.timer_id or document.connections:
                return []  # cancelled, superseded, or someone is back
            reason = f"nobody came back within {state.settings.idle_grace_s:g} s after the last person left"
            return [Decision(document_stream(event.subject), DocumentIdled(document_id=event.subject, reason=reason))]
        if isinstance(event, ManagerStarted | ManagerStopped):
            candidates = sorted(state.documents.items())
        else:
            document_id = _document_of(fact.stream_id)
            document = state.documents.get(document_id)
            candidates = [] if document is None else [(document_id, document)]
        decisions = (self._next(state, document_id, document, fact) for document_id, document in candidates)
        return [decision for decision in decisions if decision is not None]

    def _next(self, state: ActivityState, document_id: str, document: DocumentPresence, fact: Fact) -> Decision | None:
        stream = document_stream(document_id)
        present = len(document.connections)
        if present and not document.active:
            return Decision(
                stream,
                DocumentActivated(document_id=document_id, people_present=present, server_id=document.last_server),
            )
        if present and document.grace_timer is not None:
            return Decision(stream, TimerCancelled(timer_id=document.grace_timer))
        if not present and document.active and document.grace_timer is None:
            timer_id = "grace-" + uuid.uuid5(uuid.NAMESPACE_URL, f"{self.name}/{fact.event_id}/{document_id}").hex
            return Decision(
                stream,
                TimerScheduled(
                    timer_id=timer_id, delay_s=state.settings.idle_grace_s, purpose=IDLE_GRACE, subject=document_id
                ),
            )
        return None


def _document_of(stream_id: str) -> str:
    return stream_id.removeprefix("document-")


def _drop_connections_of(state: ActivityState, server_id: str, position: int | None) -> None:
    for document in state.documents.values():
        before = len(document.connections)
        document.connections = {c: s for c, s in document.connections.items() if s != server_id}
        if before and not document.connections:
            document.last_left_at = position


def _forget_quiet_documents(state: ActivityState) -> None:
    """A document nobody is in, that is idle and waits for no timer, needs no state: keep the snapshot small."""
    quiet = [
        document_id
        for document_id, document in state.documents.items()
        if not document.connections and not document.active and document.grace_timer is None
    ]
    for document_id in quiet:
        del state.documents[document_id]
