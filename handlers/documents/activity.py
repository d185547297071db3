"""The document activity decider: people in → active; last one out → grace timer → idle, unless someone returns.

Who is present is the documents domain's rule (`domains.documents.presence`), folded here as the agent manager
folds it: per connection, each tagged with the document server that holds it, so that a server that restarts or is
lost takes its people with it.

Each event costs what it touches, whatever the number of documents known: the documents an event changed are the
only ones looked at again (`_settle`), and the documents that want a decision are kept in an index.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any, ClassVar, cast

from pydantic import BaseModel, Field, PrivateAttr, ValidationError

from agentlog.domains.agents.events import ManagerStarted, ManagerStopped
from agentlog.domains.deciders.events import DeciderConfigured, decider_stream
from agentlog.domains.documents.events import (
    DocumentActivated,
    DocumentIdled,
    PersonJoined,
    PersonLeft,
    document_stream,
)
from agentlog.domains.documents.presence import Presence, document_of
from agentlog.domains.timers.events import TimerCancelled, TimerDelay, TimerFired, TimerScheduled
from agentlog.handlers.decider import Decision, Fact
from agentlog.handlers.decider_state import KeyedState

IDLE_GRACE = "idle-grace"


class DocumentStatus(BaseModel):
    active: bool = False
    grace_timer: str | None = None


class ActivitySettings(BaseModel):
    idle_grace_s: TimerDelay = 30.0
    """How long a document stays active after the last person left."""


class ActivityState(KeyedState):
    keyed: ClassVar[dict[str, tuple[str, ...]]] = {"document": ("documents",), "presence": ("presence", "documents")}

    settings: ActivitySettings = Field(default_factory=ActivitySettings)
    """As last recorded in the log (`DeciderConfigured`), else as this process was configured."""
    documents: dict[str, DocumentStatus] = Field(default_factory=dict)
    """Active documents only: an idle one needs no state."""
    presence: Presence = Field(default_factory=Presence)
    _unsettled: set[str] = PrivateAttr(default_factory=set)

    @property
    def unsettled(self) -> set[str]:
        """Documents that want a decision (derived; empty between events, as every decision is made at once). (Read
        through the private dictionary: pydantic's own lookup of a private attribute is slow.)"""
        return cast(set[str], self.__pydantic_private__["_unsettled"])  # type: ignore[index]

    def model_post_init(self, context: Any, /) -> None:
        for document_id in {*self.documents, *self.presence.documents}:
            _settle(self, document_id)


class DocumentActivity:
    """Decides when a document becomes active and when it becomes idle."""

    name: ClassVar[str] = "document-activity"
    input_types: ClassVar[frozenset[str]] = frozenset(
        {"PersonJoined", "PersonLeft", "TimerFired", "ManagerStarted", "ManagerStopped", "DeciderConfigured"}
    )
    state_model: ClassVar[type[ActivityState]] = ActivityState
    state_version: ClassVar[int] = 3

    def __init__(self, idle_grace_s: float = 30.0) -> None:
        self.configured = ActivitySettings(idle_grace_s=idle_grace_s)

    def initial_state(self) -> ActivityState:
        return ActivityState(settings=self.configured.model_copy())

    def evolve(self, state: ActivityState, fact: Fact) -> ActivityState:
        event = fact.event
        touched: list[str] = []
        match event:
            case PersonJoined() | PersonLeft() | ManagerStarted() | ManagerStopped():
                for document_id in state.presence.fold(fact.stream_id, event):
                    state.changed("presence", document_id)
                    _settle(state, document_id)
            case DocumentActivated():
                state.documents.setdefault(event.document_id, DocumentStatus()).active = True
                touched = [event.document_id]
            case TimerScheduled():
                state.documents[event.subject].grace_timer = event.timer_id
                touched = [event.subject]
            case TimerCancelled():
                document_id = document_of(fact.stream_id)  # cancelled on the stream of the document it was for
                status = state.documents.get(document_id)
                if status is not None and status.grace_timer == event.timer_id:
                    status.grace_timer = None
                touched = [document_id]
            case DocumentIdled():
                status = state.documents[event.document_id]
                status.active, status.grace_timer = False, None
                touched = [event.document_id]
            case DeciderConfigured() if event.decider == self.name and fact.stream_id == decider_stream(self.name):
                # Settings this version cannot use (appended by hand, or by a newer version) are not adopted:
                # deciding on with the previous ones beats stopping at every later event.
                with contextlib.suppress(ValidationError):
                    state.settings = ActivitySettings.model_validate(event.settings)
        for document_id in touched:
            state.changed("document", document_id)
            _settle(state, document_id)
        return state

    def decide(self, state: ActivityState, fact: Fact) -> list[Decision]:
        # Each document's decisions are independent of the others': all of them at once.
        event = fact.event
        if isinstance(event, TimerFired):
            if event.purpose != IDLE_GRACE:
                return []
            status = state.documents.get(event.subject)
            if status is None or status.grace_timer != event.timer_id or state.presence.people_in(event.subject):
                return []  # cancelled, superseded, or someone is back
            reason = f"nobody came back within {state.settings.idle_grace_s:g} s after the last person left"
            return [Decision(document_stream(event.subject), DocumentIdled(document_id=event.subject, reason=reason))]
        decisions = (self._next(state, document_id, fact) for document_id in sorted(state.unsettled))
        return [decision for decision in decisions if decision is not None]

    def _next(self, state: ActivityState, document_id: str, fact: Fact) -> Decision | None:
        stream = document_stream(document_id)
        present = state.presence.people_in(document_id)
        status = state.documents.get(document_id) or DocumentStatus()
        if present and not status.active:
            server_id = state.presence.documents[document_id].last_server
            return Decision(
                stream, DocumentActivated(document_id=document_id, people_present=present, server_id=server_id)
            )
        if present and status.grace_timer is not None:
            return Decision(stream, TimerCancelled(timer_id=status.grace_timer))
        if not present and status.active and status.grace_timer is None:
            timer_id = "grace-" + uuid.uuid5(uuid.NAMESPACE_URL, f"{self.name}/{fact.event_id}/{document_id}").hex
            return Decision(
                stream,
                TimerScheduled(
                    timer_id=timer_id, delay_s=state.settings.idle_grace_s, purpose=IDLE_GRACE, subject=document_id
                ),
            )
        return None


def _settle(state: ActivityState, document_id: str) -> None:
    """Look at one document again: forget it once idle, and note whether it wants a decision."""
    status = state.documents.get(document_id)
    if status is not None and not status.active and status.grace_timer is None:
        del state.documents[document_id]  # idle and waiting for no timer: nothing to remember
        state.changed("document", document_id)
        status = None
    present = state.presence.people_in(document_id) > 0
    active = status is not None and status.active
    waiting = status is not None and status.grace_timer is not None
    if (present and (not active or waiting)) or (not present and active and not waiting):
        state.unsettled.add(document_id)
    else:
        state.unsettled.discard(document_id)
