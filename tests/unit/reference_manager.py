"""A reference agent manager: the rules of `handlers.agents.manager` written as plainly as possible.

Every question is answered by a pass over every document and agent (as the first version of the decider did),
presence is its own dictionary (not `domains.documents.presence`), and nothing is indexed. It is slow on purpose:
the property tests feed it the same events as the real decider and require the very same decisions, so the real
one's indexes can only ever be a faster way to the same answers.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Literal

from agentlog.domains.agents.events import (
    AgentAbandoned,
    AgentConnected,
    AgentDeferred,
    AgentDetachRequested,
    AgentFailed,
    AgentProcessExited,
    AgentProcessStarted,
    AgentSpawnRequested,
    AgentUnresponsive,
    ManagerStarted,
    ManagerStopped,
    agent_stream,
)
from agentlog.domains.deciders.events import DeciderConfigured
from agentlog.domains.documents.events import (
    DocumentActivated,
    DocumentEdited,
    DocumentIdled,
    PersonJoined,
    PersonLeft,
    document_stream,
)
from agentlog.domains.timers.events import TimerFired, TimerScheduled
from agentlog.handlers.agents.manager import AGENT_RESTART, MAX_BACKOFF_S, RUN_PROVEN, START_DEADLINE, STOP_DEADLINE
from agentlog.handlers.agents.manager_state import ManagerSettings
from agentlog.handlers.decider import Decision, Fact, decision_id

NAME = "agent-manager"
STAGES = {START_DEADLINE: "start", STOP_DEADLINE: "stop", RUN_PROVEN: "run"}
PURPOSES = {stage: purpose for purpose, stage in STAGES.items()}


@dataclass
class Document:
    active: bool = False
    last_activity: int = 0
    server_id: str = ""
    agent_id: str | None = None
    failures: int = 0
    restart_due: str | None = None
    restart_timer: str | None = None
    failed: bool = False
    deferred: bool = False


@dataclass
class Agent:
    document_id: str
    manager_id: str
    incarnation: str
    status: str = "requested"
    deadline: str | None = None
    deadline_stage: str | None = None
    unresponsive: bool = False


@dataclass
class Seat:
    incarnation: str
    max_agents: int
    document_url: str
    alive: bool = True


@dataclass
class State:
    settings: ManagerSettings
    documents: dict[str, Document] = field(default_factory=dict)
    agents: dict[str, Agent] = field(default_factory=dict)
    managers: dict[str, Seat] = field(default_factory=dict)
    spawns: int = 0
    connections: dict[str, dict[str, str]] = field(default_factory=dict)
    """document → connection → server."""
    servers: dict[str, str] = field(default_factory=dict)

    def present(self, document_id: str) -> bool:
        return bool(self.connections.get(document_id))

    def rank(self, document_id: str) -> tuple[bool, int]:
        return self.present(document_id), self.documents[document_id].last_activity


class ReferenceManager:
    def __init__(self, settings: ManagerSettings) -> None:
        self.state = State(settings=settings.model_copy())

    def step(self, fact: Fact) -> list[Decision]:
        self.evolve(fact)
        decisions: list[Decision] = []
        while (decision := self.decide(fact)) is not None:
            own = Fact(decision.event, decision_id(NAME, fact.event_id, len(decisions)), decision.stream_id, None)
            self.evolve(own)
            decisions.append(decision)
        return decisions

    # -- evolve ----------------------------------------------------------------------------------------------

    def evolve(self, fact: Fact) -> None:  # noqa: PLR0915
        state, event = self.state, fact.event
        match event:
            case PersonJoined():
                document_id = fact.stream_id.removeprefix("document-")
                state.connections.setdefault(document_id, {})[event.connection_id] = event.server_id
                if document_id in state.documents and fact.position is not None:
                    state.documents[document_id].last_activity = fact.position
                    state.documents[document_id].server_id = event.server_id
            case PersonLeft():
                document_id = fact.stream_id.removeprefix("document-")
                state.connections.get(document_id, {}).pop(event.connection_id, None)
            case DocumentEdited():
                if event.document_id in state.documents and fact.position is not None:
                    state.documents[event.document_id].last_activity = fact.position
            case DocumentActivated():
                document = state.documents.setdefault(event.document_id, Document())
                document.active, document.failed, document.failures = True, False, 0
                document.server_id, document.restart_timer = event.server_id, None
                document.last_activity = max(document.last_activity, fact.position or 0)
            case DocumentIdled():
                if (document := state.documents.get(event.document_id)) is not None:
                    document.active, document.deferred, document.restart_due = False, False, None
                    document.restart_timer = None
            case AgentProcessStarted():
                if (agent := state.agents.get(event.agent_id)) is not None and agent.status == "requested":
                    agent.status = "running"
            case AgentConnected():
                if (agent := state.agents.get(event.agent_id)) is not None and agent.status != "detaching":
                    agent.status = "connected"
            case AgentUnresponsive():
                if (agent := state.agents.get(event.agent_id)) is not None:
                    agent.unresponsive = True
            case AgentProcessExited():
                self._exited(event.agent_id, abnormal=not event.expected)
            case ManagerStarted():
                if state.servers.get(event.manager_id) != event.incarnation:
                    self._drop_connections_of(event.manager_id)
                state.servers[event.manager_id] = event.incarnation
                for agent_id, agent in list(state.agents.items()):
                    if agent.manager_id == event.manager_id and agent.incarnation != event.incarnation:
                        self._exited(agent_id, abnormal=False)
                state.managers[event.manager_id] = Seat(event.incarnation, event.max_agents, event.document_url)
            case ManagerStopped():
                if state.servers.get(event.manager_id) == event.incarnation:
                    self._drop_connections_of(event.manager_id)
                    del state.servers[event.manager_id]
                seat = state.managers.get(event.manager_id)
                if seat is not None and seat.incarnation == event.incarnation:
                    seat.alive = False
                    for agent_id, agent in list(state.agents.items()):
                        if agent.manager_id == event.manager_id:
                            self._exited(agent_id, abnormal=False)
            case TimerFired() if event.purpose == RUN_PROVEN:
                agent = state.agents.get(event.subject)
                document = state.documents.get(agent.document_id) if agent is not None else None
                if (
                    agent is not None
                    and document is not None
                    and document.agent_id == event.subject
                    and agent.deadline == event.timer_id
                    and agent.status == "connected"
                    and not agent.unresponsive
                ):
                    document.failures = 0
            case TimerFired():
                for document in state.documents.values():
                    if document.restart_timer == event.timer_id:
                        document.restart_timer = None
            case DeciderConfigured():
                if event.decider == NAME and fact.stream_id == f"decider-{NAME}":
                    with contextlib.suppress(ValueError):
                        state.settings = ManagerSettings.model_validate(event.settings)
            case AgentSpawnRequested():
                state.spawns += 1
                state.agents[event.agent_id] = Agent(event.document_id, event.manager_id, event.incarnation)
                document = state.documents[event.document_id]
                document.agent_id, document.deferred = event.agent_id, False
            case AgentDetachRequested():
                state.agents[event.agent_id].status = "detaching"
                document = state.documents[event.document_id]
                if document.agent_id == event.agent_id:
                    document.agent_id = None
            case AgentDeferred():
                state.documents[event.document_id].deferred = True
            case AgentFailed():
                document = state.documents[event.document_id]
                document.failed, document.restart_due = True, None
            case TimerScheduled() if event.purpose in STAGES:
                agent = state.agents[event.subject]
                agent.deadline, agent.deadline_stage = event.timer_id, STAGES[event.purpose]
            case TimerScheduled():
                document = state.documents[event.subject]
                document.restart_timer, document.restart_due = event.timer_id, None
            case AgentAbandoned():
                self._exited(event.agent_id, abnormal=event.stage == "start")
        for document_id in list(state.documents):
            document = state.documents[document_id]
            if (
                not document.active
                and document.agent_id is None
                and document.restart_timer is None
                and not any(agent.document_id == document_id for agent in state.agents.values())
            ):
                del state.documents[document_id]

    def _drop_connections_of(self, server_id: str) -> None:
        for connections in self.state.connections.values():
            for connection_id in [c for c, s in connections.items() if s == server_id]:
                del connections[connection_id]

    def _exited(self, agent_id: str, *, abnormal: bool) -> None:
        agent = self.state.agents.pop(agent_id, None)
        if agent is None:
            return
        document = self.state.documents.get(agent.document_id)
        if document is None or document.agent_id != agent_id:
            return
        document.agent_id = None
        if abnormal and document.active:
            document.failures += 1
            document.restart_due = agent_id

    # -- decide ----------------------------------------------------------------------------------------------

    def decide(self, fact: Fact) -> Decision | None:
        return self._deadline(fact) or self._failure(fact) or self._idle_detach() or self._placement(fact)

    def _stage(self, agent_id: str, agent: Agent) -> str | None:
        document = self.state.documents.get(agent.document_id)
        if agent.status == "detaching":
            return "stop"
        if agent.status != "connected":
            return "start"
        if document is not None and document.failures and document.agent_id == agent_id and not agent.unresponsive:
            return "run"
        return None

    def _deadline(self, fact: Fact) -> Decision | None:
        state, event = self.state, fact.event
        if isinstance(event, TimerFired) and event.purpose in (START_DEADLINE, STOP_DEADLINE):
            agent = state.agents.get(event.subject)
            in_stage = agent is not None and (
                agent.status == "detaching"
                if agent.deadline_stage == "stop"
                else agent.status in ("requested", "running")
            )
            if agent is not None and agent.deadline == event.timer_id and in_stage:
                missed: Literal["start", "stop"] = "stop" if agent.deadline_stage == "stop" else "start"
                limit = state.settings.stage_timer_s(missed)
                return Decision(
                    agent_stream(event.subject),
                    AgentAbandoned(
                        agent_id=event.subject,
                        document_id=agent.document_id,
                        manager_id=agent.manager_id,
                        stage=missed,
                        reason=f"it did not {'join its document' if missed == 'start' else 'exit'} within "
                        f"{limit:g} s (a stalled supervisor or worker); its slot is free again",
                    ),
                )
        for agent_id in sorted(state.agents):
            agent = state.agents[agent_id]
            stage = self._stage(agent_id, agent)
            if stage is None or agent.deadline_stage == stage:
                continue
            return Decision(
                agent_stream(agent_id),
                TimerScheduled(
                    timer_id=f"{stage}-" + _derived(fact.event_id, agent_id),
                    delay_s=state.settings.stage_timer_s(stage),  # type: ignore[arg-type]
                    purpose=PURPOSES[stage],
                    subject=agent_id,
                ),
            )
        return None

    def _failure(self, fact: Fact) -> Decision | None:
        state = self.state
        for document_id in sorted(state.documents):
            document = state.documents[document_id]
            if document.restart_due is None:
                continue
            last = document.restart_due
            if document.failures > state.settings.max_restarts:
                return Decision(
                    agent_stream(last),
                    AgentFailed(
                        agent_id=last,
                        document_id=document_id,
                        attempts=document.failures,
                        reason=f"the worker exited abnormally {document.failures} times in a row "
                        f"(the limit is {state.settings.max_restarts} restarts)",
                    ),
                )
            delay = min(state.settings.restart_backoff_s * 2 ** (document.failures - 1), MAX_BACKOFF_S)
            return Decision(
                agent_stream(last),
                TimerScheduled(
                    timer_id="restart-" + _derived(fact.event_id, document_id),
                    delay_s=delay,
                    purpose=AGENT_RESTART,
                    subject=document_id,
                ),
            )
        return None

    def _idle_detach(self) -> Decision | None:
        for agent_id in sorted(self.state.agents):
            agent = self.state.agents[agent_id]
            if agent.status == "detaching":
                continue
            document = self.state.documents.get(agent.document_id)
            if document is None or not document.active:
                return _detach(agent_id, agent, "idle", "the document became idle")
        return None

    def _placement(self, fact: Fact) -> Decision | None:
        state = self.state
        occupied: dict[str, int] = {}
        freeing = 0
        for agent in state.agents.values():
            occupied[agent.manager_id] = occupied.get(agent.manager_id, 0) + 1
            freeing += agent.status == "detaching"
        live = {manager_id: seat for manager_id, seat in state.managers.items() if seat.alive}
        wanting = sorted(
            (
                document_id
                for document_id, document in state.documents.items()
                if document.active
                and document.agent_id is None
                and not any(agent.document_id == document_id for agent in state.agents.values())
                and not document.failed
                and document.restart_timer is None
                and document.restart_due is None
            ),
            key=lambda document_id: (tuple(-value for value in state.rank(document_id)), document_id),
        )
        victims = sorted(
            (state.rank(agent.document_id), agent_id)
            for agent_id, agent in state.agents.items()
            if agent.status != "detaching" and agent.document_id in state.documents
        )
        for document_id in wanting:
            document = state.documents[document_id]
            free = [
                (seat.max_agents - occupied.get(manager_id, 0), manager_id)
                for manager_id, seat in live.items()
                if occupied.get(manager_id, 0) < seat.max_agents
            ]
            if free:
                _, manager_id = min(free, key=lambda item: (-item[0], item[1]))
                attempt = document.failures + 1
                agent_id = _derived(fact.event_id, f"{document_id}/{state.spawns}")[:16]
                seat = live.get(document.server_id) or live[manager_id]
                return Decision(
                    agent_stream(agent_id),
                    AgentSpawnRequested(
                        agent_id=agent_id,
                        document_id=document_id,
                        manager_id=manager_id,
                        incarnation=live[manager_id].incarnation,
                        document_url=seat.document_url,
                        attempt=attempt,
                        reason=_spawn_reason(fact, attempt),
                    ),
                )
            if freeing:
                freeing -= 1
                continue
            if victims and victims[0][0] < state.rank(document_id):
                _, victim_id = victims[0]
                victim = state.agents[victim_id]
                if state.present(document_id) and not state.present(victim.document_id):
                    why = f"people are in document {document_id} and nobody is in {victim.document_id}"
                else:
                    why = f"document {document_id} was active more recently than {victim.document_id}"
                return _detach(victim_id, victim, "evicted", f"evicted: every agent slot is taken and {why}")
            if not document.deferred:
                capacity = sum(seat.max_agents for seat in live.values())
                reason = (
                    "no agent manager is running"
                    if not live
                    else "the running managers allow no agents"
                    if capacity == 0
                    else f"all {capacity} agent slots are held by more recently active documents or ones people are in"
                )
                return Decision(document_stream(document_id), AgentDeferred(document_id=document_id, reason=reason))
        return None


def _detach(agent_id: str, agent: Agent, cause: Literal["idle", "evicted"], reason: str) -> Decision:
    return Decision(
        agent_stream(agent_id),
        AgentDetachRequested(
            agent_id=agent_id, document_id=agent.document_id, manager_id=agent.manager_id, cause=cause, reason=reason
        ),
    )


def _spawn_reason(fact: Fact, attempt: int) -> str:
    match fact.event:
        case DocumentActivated():
            why = "the document became active"
        case AgentProcessExited() | AgentDetachRequested():
            why = "a slot became free"
        case ManagerStarted():
            why = "a manager started"
        case ManagerStopped():
            why = "its manager stopped"
        case TimerFired():
            why = "restart after the worker exited abnormally"
        case _:
            why = f"after {fact.event.event_type}"
    return why if attempt == 1 else f"{why} (attempt {attempt})"


def _derived(cause: uuid.UUID, key: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{NAME}/{cause}/{key}").hex
