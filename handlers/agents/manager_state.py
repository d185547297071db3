"""The agent manager's state, and the indexes that let each event cost what it touches.

The state proper (documents, agents, managers, presence) is what is saved, row by row (`KeyedState`). The indexes
are derived from it: rebuilt when a state is loaded, and kept up to date by `settle`, which looks again at exactly
the documents and agents an event changed (`recheck_document`, `recheck_agent`). Every question the decider asks
after an event — which agent needs a stage timer, which document waits for a restart to be scheduled, which agent
must go because its document went idle, which document most deserves a slot, which agent least deserves one — is
then answered from an index, not by a pass over every document.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, cast

from pydantic import BaseModel, Field, PrivateAttr

from agentlog.domains.documents.presence import Presence
from agentlog.domains.timers.events import TimerDelay
from agentlog.handlers.agents.ranking import Key, Ranking
from agentlog.handlers.decider_state import KeyedState

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


class ManagerIndex:
    """What the decider looks up after every event, kept up to date by `settle` (a plain object, see `index`)."""

    __slots__ = (
        "agents_of_document",
        "agents_of_manager",
        "detaching",
        "orphans",
        "recheck_agents",
        "recheck_documents",
        "restarts_due",
        "undeferred",
        "unscheduled",
        "victims",
        "wanting",
    )

    def __init__(self) -> None:
        self.agents_of_document: dict[str, set[str]] = {}
        self.agents_of_manager: dict[str, set[str]] = {}
        self.detaching: set[str] = set()
        self.wanting = Ranking()
        """Documents that want an agent and may get one, most deserving first."""
        self.undeferred = Ranking()
        """The wanting documents not yet told they are deferred, in the same order."""
        self.victims = Ranking()
        """Agents that could be evicted (not detaching), least deserving first."""
        self.unscheduled: set[str] = set()
        """Agents in a stage whose timer is not scheduled yet."""
        self.restarts_due: set[str] = set()
        self.orphans: set[str] = set()
        """Agents not detaching whose document is idle (or gone)."""
        self.recheck_documents: set[str] = set()
        self.recheck_agents: set[str] = set()

    def link(self, agent_id: str, agent: AgentSlot) -> None:
        self.agents_of_document.setdefault(agent.document_id, set()).add(agent_id)
        self.agents_of_manager.setdefault(agent.manager_id, set()).add(agent_id)
        if agent.status == "detaching":
            self.detaching.add(agent_id)

    def comparable(self) -> dict[str, Any]:
        """Every index as plain values (what tests compare between a live state and one loaded)."""
        return {
            name: list(value) if isinstance(value, Ranking) else value
            for name in self.__slots__
            if not name.startswith("recheck") and (value := getattr(self, name)) is not None
        }


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

    _index: ManagerIndex = PrivateAttr(default_factory=ManagerIndex)

    @property
    def index(self) -> ManagerIndex:
        """The derived indexes: never saved, rebuilt when a state is loaded. (Read through the private dictionary:
        pydantic's own lookup of a private attribute costs ~6 µs, on a path taken dozens of times per event.)"""
        return cast(ManagerIndex, self.__pydantic_private__["_index"])  # type: ignore[index]

    def model_post_init(self, context: Any, /) -> None:
        index = self.index
        for agent_id, agent in self.agents.items():
            index.link(agent_id, agent)
        index.recheck_documents.update(self.documents)
        index.recheck_agents.update(self.agents)
        rankings = (index.wanting, index.undeferred, index.victims)
        for ranking in rankings:
            ranking.gather()
        settle(self)
        for ranking in rankings:
            ranking.order()

    # -- changes, as evolve makes them -------------------------------------------------------------------------

    def document(self, document_id: str) -> DocumentWants:
        """The document, to change: it is saved and looked at again."""
        self.changed("document", document_id)
        self.index.recheck_documents.add(document_id)
        return self.documents[document_id]

    def agent(self, agent_id: str) -> AgentSlot:
        """The agent, to change: it is saved and looked at again."""
        self.changed("agent", agent_id)
        self.index.recheck_agents.add(agent_id)
        return self.agents[agent_id]

    def recheck_document(self, document_id: str) -> None:
        """Something a document's ranking depends on changed outside it (its people, its agents)."""
        self.index.recheck_documents.add(document_id)

    def add_agent(self, agent_id: str, agent: AgentSlot) -> None:
        self.agents[agent_id] = agent
        index = self.index
        index.link(agent_id, agent)
        self.changed("agent", agent_id)
        index.recheck_agents.add(agent_id)
        index.recheck_documents.add(agent.document_id)

    def detaching(self, agent_id: str) -> None:
        self.agent(agent_id).status = "detaching"
        self.index.detaching.add(agent_id)

    def remove_agent(self, agent_id: str) -> AgentSlot | None:
        agent = self.agents.pop(agent_id, None)
        if agent is None:
            return None
        index = self.index
        _unlink(index.agents_of_document, agent.document_id, agent_id)
        _unlink(index.agents_of_manager, agent.manager_id, agent_id)
        index.detaching.discard(agent_id)
        self.changed("agent", agent_id)
        index.recheck_agents.add(agent_id)
        index.recheck_documents.add(agent.document_id)
        return agent

    # -- what decide reads --------------------------------------------------------------------------------------

    def agents_of_manager(self, manager_id: str) -> list[str]:
        return sorted(self.index.agents_of_manager.get(manager_id, ()))

    def occupied(self, manager_id: str) -> int:
        """Slots taken on a manager: every agent from its spawn decision until its exit, detaching ones included."""
        return len(self.index.agents_of_manager.get(manager_id, ()))

    def freeing(self) -> int:
        """Slots on their way back: agents asked to detach that have not exited yet."""
        return len(self.index.detaching)

    def present(self, document_id: str) -> bool:
        return self.presence.people_in(document_id) > 0

    def rank(self, document_id: str) -> tuple[bool, int]:
        """How much a document deserves an agent: people in it first, then its most recent work."""
        return self.present(document_id), self.documents[document_id].last_activity


def settle(state: ManagerState) -> None:
    """Bring the indexes up to date with what changed: documents first (they may be forgotten, and their agents'
    rankings follow theirs), then agents. Called at the end of every evolve."""
    index = state.index
    # Taken whole and replaced, never popped one by one: a set keeps the table it grew to, and popping from the
    # one a loaded state filled with every document scans that whole table again for each pop.
    documents, index.recheck_documents = index.recheck_documents, set()
    for document_id in documents:
        _settle_document(state, index, document_id)
    agents, index.recheck_agents = index.recheck_agents, set()
    for agent_id in agents:
        _settle_agent(state, index, agent_id)


def stage(agent_id: str, agent: AgentSlot, document: DocumentWants | None) -> Stage | None:
    """The stage an agent is in, if it has one that wants a timer."""
    if agent.status == "detaching":
        return "stop"
    if agent.status != "connected":
        return "start"
    if document is not None and document.failures and document.agent_id == agent_id and not agent.unresponsive:
        return "run"
    return None


def _settle_document(state: ManagerState, index: ManagerIndex, document_id: str) -> None:
    document = state.documents.get(document_id)
    agents = index.agents_of_document.get(document_id, set())
    index.recheck_agents.update(agents)
    if document is not None and _settled(document, agents):
        del state.documents[document_id]  # idle, no agent, nothing pending: nothing to remember
        state.changed("document", document_id)
        document = None
    if document is None:
        index.wanting.discard(document_id)
        index.undeferred.discard(document_id)
        index.restarts_due.discard(document_id)
        return
    if (
        document.active
        and document.agent_id is None
        and not agents  # one agent per document, always: a new one waits until the last one has exited
        and not document.failed
        and document.restart_timer is None
        and document.restart_due is None
    ):
        key: Key = (not state.present(document_id), -document.last_activity, document_id)
        index.wanting.put(document_id, key)
        if document.deferred:
            index.undeferred.discard(document_id)
        else:
            index.undeferred.put(document_id, key)
    else:
        index.wanting.discard(document_id)
        index.undeferred.discard(document_id)
    if document.restart_due is not None:
        index.restarts_due.add(document_id)
    else:
        index.restarts_due.discard(document_id)


def _settled(document: DocumentWants, agents: set[str]) -> bool:
    return not document.active and document.agent_id is None and document.restart_timer is None and not agents


def _settle_agent(state: ManagerState, index: ManagerIndex, agent_id: str) -> None:
    agent = state.agents.get(agent_id)
    if agent is None:
        index.victims.discard(agent_id)
        index.unscheduled.discard(agent_id)
        index.orphans.discard(agent_id)
        return
    document = state.documents.get(agent.document_id)
    if agent.status != "detaching" and document is not None:
        index.victims.put(agent_id, (state.present(agent.document_id), document.last_activity, agent_id))
    else:
        index.victims.discard(agent_id)
    wanted = stage(agent_id, agent, document)
    if wanted is not None and agent.deadline_stage != wanted:
        index.unscheduled.add(agent_id)
    else:
        index.unscheduled.discard(agent_id)
    if agent.status != "detaching" and (document is None or not document.active):
        index.orphans.add(agent_id)
    else:
        index.orphans.discard(agent_id)


def _unlink(members_of: dict[str, set[str]], key: str, agent_id: str) -> None:
    members = members_of.get(key)
    if members is not None:
        members.discard(agent_id)
        if not members:
            del members_of[key]
