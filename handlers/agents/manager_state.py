"""The agent manager's state, and the indexes that let each event cost what it touches.

The state proper (documents, agents, managers, presence) is what is saved, row by row (`KeyedState`). The indexes
are derived from it: rebuilt when a state is loaded, and kept up to date by `settle`, which looks again at exactly
the documents and agents an event changed (`recheck_document`, `recheck_agent`). Every question the decider asks
after an event — which agent needs a stage timer, which document waits for a restart to be scheduled, which agent
must go because its document went idle, which document most deserves a slot, which agent least deserves one — is
then answered from an index, not by a pass over every document.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, PrivateAttr

from domains.documents.presence import Presence
from eventstore.event_types.timers import TimerDelay
from handlers.agents.ranking import Key, Ranking
from handlers.decider_state import KeyedState

Stage = Literal["start", "stop", "run"]


class DocumentWants(BaseModel):
    active: bool = False
    last_activity: int = 0
    """Log position of the document's latest work: a join, an edit, its activation. Never a leave: a document
    people left is not more deserving of an agent than one they stay in."""
    server_id: str = ""
    """The document server holding its people (most recent join)."""
    agent_id: str | None = None
    failures: int = 0
    """Abnormal exits in a row: since the document became active, or since an agent proved a run."""
    restart_due: str | None = None
    """The agent whose abnormal exit waits for its backoff timer to be scheduled (or for the document to be given
    up on): what both are recorded under."""
    restart_timer: str | None = None
    failed: bool = False
    deferred: bool = False


class AgentSlot(BaseModel):
    document_id: str
    manager_id: str
    incarnation: str
    status: Literal["requested", "running", "connected", "detaching"] = "requested"
    attempt: int = 1
    deadline: str | None = None
    """The timer of the stage it is in, once scheduled: start and stop are deadlines; run, after a restart, is
    the time it must stay joined to end its document's streak of failures."""
    deadline_stage: Stage | None = None
    unresponsive: bool = False
    """Reported hung: joined, but not running, so it cannot prove a run."""


class ManagerSeat(BaseModel):
    incarnation: str
    max_agents: int
    document_url: str
    alive: bool = True


class ManagerSettings(BaseModel):
    max_restarts: int = Field(default=5, ge=0, le=1_000)
    restart_backoff_s: TimerDelay = 1.0
    start_deadline_s: TimerDelay = 60.0
    stop_deadline_s: TimerDelay = 30.0
    proven_run_s: TimerDelay = 300.0

    def stage_timer_s(self, stage: Stage) -> float:
        return {"start": self.start_deadline_s, "stop": self.stop_deadline_s, "run": self.proven_run_s}[stage]


class ManagerState(KeyedState):
    keyed: ClassVar[dict[str, tuple[str, ...]]] = {
        "document": ("documents",),
        "agent": ("agents",),
        "presence": ("presence", "documents"),
    }

    settings: ManagerSettings = Field(default_factory=ManagerSettings)
    """As last recorded in the log (`DeciderConfigured`), else as this process was configured."""
    documents: dict[str, DocumentWants] = Field(default_factory=dict)
    agents: dict[str, AgentSlot] = Field(default_factory=dict)
    """Agents holding a slot: from the spawn decision until their exit."""
    managers: dict[str, ManagerSeat] = Field(default_factory=dict)
    spawns: int = 0
    """Spawn decisions so far: part of each new agent's derived id."""
    presence: Presence = Field(default_factory=Presence)
    """Who is in each document: a document people are in is never evicted in favour of one nobody is in."""

    # Derived, never saved.
    _agents_of_document: dict[str, set[str]] = PrivateAttr(default_factory=dict)
    _agents_of_manager: dict[str, set[str]] = PrivateAttr(default_factory=dict)
    _detaching: set[str] = PrivateAttr(default_factory=set)
    _wanting: Ranking = PrivateAttr(default_factory=Ranking)
    """Documents that want an agent and may get one, most deserving first."""
    _undeferred: Ranking = PrivateAttr(default_factory=Ranking)
    """The wanting documents not yet told they are deferred, in the same order."""
    _victims: Ranking = PrivateAttr(default_factory=Ranking)
    """Agents that could be evicted (not detaching), least deserving first."""
    _unscheduled: set[str] = PrivateAttr(default_factory=set)
    """Agents in a stage whose timer is not scheduled yet."""
    _restarts_due: set[str] = PrivateAttr(default_factory=set)
    _orphans: set[str] = PrivateAttr(default_factory=set)
    """Agents not detaching whose document is idle (or gone)."""
    _recheck_documents: set[str] = PrivateAttr(default_factory=set)
    _recheck_agents: set[str] = PrivateAttr(default_factory=set)

    def model_post_init(self, context: Any, /) -> None:
        for agent_id, agent in self.agents.items():
            self._index_agent(agent_id, agent)
        self._recheck_documents.update(self.documents)
        self._recheck_agents.update(self.agents)
        settle(self)

    # -- changes, as evolve makes them -------------------------------------------------------------------------

    def document(self, document_id: str) -> DocumentWants:
        """The document, to change: it is saved and looked at again."""
        self.changed("document", document_id)
        self._recheck_documents.add(document_id)
        return self.documents[document_id]

    def agent(self, agent_id: str) -> AgentSlot:
        """The agent, to change: it is saved and looked at again."""
        self.changed("agent", agent_id)
        self._recheck_agents.add(agent_id)
        return self.agents[agent_id]

    def recheck_document(self, document_id: str) -> None:
        """Something a document's ranking depends on changed outside it (its people, its agents)."""
        self._recheck_documents.add(document_id)

    def add_agent(self, agent_id: str, agent: AgentSlot) -> None:
        self.agents[agent_id] = agent
        self._index_agent(agent_id, agent)
        self.changed("agent", agent_id)
        self._recheck_agents.add(agent_id)
        self._recheck_documents.add(agent.document_id)

    def detaching(self, agent_id: str) -> None:
        self.agent(agent_id).status = "detaching"
        self._detaching.add(agent_id)

    def remove_agent(self, agent_id: str) -> AgentSlot | None:
        agent = self.agents.pop(agent_id, None)
        if agent is None:
            return None
        _unlink(self._agents_of_document, agent.document_id, agent_id)
        _unlink(self._agents_of_manager, agent.manager_id, agent_id)
        self._detaching.discard(agent_id)
        self.changed("agent", agent_id)
        self._recheck_agents.add(agent_id)
        self._recheck_documents.add(agent.document_id)
        return agent

    def _index_agent(self, agent_id: str, agent: AgentSlot) -> None:
        self._agents_of_document.setdefault(agent.document_id, set()).add(agent_id)
        self._agents_of_manager.setdefault(agent.manager_id, set()).add(agent_id)
        if agent.status == "detaching":
            self._detaching.add(agent_id)

    # -- what decide reads --------------------------------------------------------------------------------------

    def agents_of_manager(self, manager_id: str) -> list[str]:
        return sorted(self._agents_of_manager.get(manager_id, ()))

    def occupied(self, manager_id: str) -> int:
        """Slots taken on a manager: every agent from its spawn decision until its exit, detaching ones included."""
        return len(self._agents_of_manager.get(manager_id, ()))

    def freeing(self) -> int:
        """Slots on their way back: agents asked to detach that have not exited yet."""
        return len(self._detaching)

    def present(self, document_id: str) -> bool:
        return self.presence.people_in(document_id) > 0

    def rank(self, document_id: str) -> tuple[bool, int]:
        """How much a document deserves an agent: people in it first, then its most recent work."""
        return self.present(document_id), self.documents[document_id].last_activity

    def wanting(self) -> Ranking:
        return self._wanting

    def undeferred(self) -> Ranking:
        return self._undeferred

    def victims(self) -> Ranking:
        return self._victims

    def first_unscheduled(self) -> str | None:
        return min(self._unscheduled) if self._unscheduled else None

    def first_restart_due(self) -> str | None:
        return min(self._restarts_due) if self._restarts_due else None

    def first_orphan(self) -> str | None:
        return min(self._orphans) if self._orphans else None


def settle(state: ManagerState) -> None:
    """Bring the indexes up to date with what changed: documents first (they may be forgotten, and their agents'
    rankings follow theirs), then agents. Called at the end of every evolve."""
    while state._recheck_documents:
        _settle_document(state, state._recheck_documents.pop())
    while state._recheck_agents:
        _settle_agent(state, state._recheck_agents.pop())


def stage(agent_id: str, agent: AgentSlot, document: DocumentWants | None) -> Stage | None:
    """The stage an agent is in, if it has one that wants a timer."""
    if agent.status == "detaching":
        return "stop"
    if agent.status != "connected":
        return "start"
    if document is not None and document.failures and document.agent_id == agent_id and not agent.unresponsive:
        return "run"
    return None


def _settle_document(state: ManagerState, document_id: str) -> None:
    document = state.documents.get(document_id)
    agents = state._agents_of_document.get(document_id, set())
    state._recheck_agents.update(agents)
    if document is not None and _settled(document, agents):
        del state.documents[document_id]  # idle, no agent, nothing pending: nothing to remember
        state.changed("document", document_id)
        document = None
    if document is None:
        state._wanting.discard(document_id)
        state._undeferred.discard(document_id)
        state._restarts_due.discard(document_id)
        return
    if (
        document.active
        and document.agent_id is None
        and not agents  # one agent per document, always: a new one waits until the last one has exited
        and not document.failed
        and document.restart_timer is None
        and document.restart_due is None
    ):
        present, last_activity = state.rank(document_id)
        key: Key = (not present, -last_activity, document_id)
        state._wanting.put(document_id, key)
        if document.deferred:
            state._undeferred.discard(document_id)
        else:
            state._undeferred.put(document_id, key)
    else:
        state._wanting.discard(document_id)
        state._undeferred.discard(document_id)
    if document.restart_due is not None:
        state._restarts_due.add(document_id)
    else:
        state._restarts_due.discard(document_id)


def _settled(document: DocumentWants, agents: set[str]) -> bool:
    return not document.active and document.agent_id is None and document.restart_timer is None and not agents


def _settle_agent(state: ManagerState, agent_id: str) -> None:
    agent = state.agents.get(agent_id)
    if agent is None:
        state._victims.discard(agent_id)
        state._unscheduled.discard(agent_id)
        state._orphans.discard(agent_id)
        return
    document = state.documents.get(agent.document_id)
    if agent.status != "detaching" and document is not None:
        present, last_activity = state.rank(agent.document_id)
        state._victims.put(agent_id, (present, last_activity, agent_id))
    else:
        state._victims.discard(agent_id)
    wanted = stage(agent_id, agent, document)
    if wanted is not None and agent.deadline_stage != wanted:
        state._unscheduled.add(agent_id)
    else:
        state._unscheduled.discard(agent_id)
    if agent.status != "detaching" and (document is None or not document.active):
        state._orphans.add(agent_id)
    else:
        state._orphans.discard(agent_id)


def _unlink(index: dict[str, set[str]], key: str, agent_id: str) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(agent_id)
        if not members:
            del index[key]
