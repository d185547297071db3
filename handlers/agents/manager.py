"""The agent manager decider: which active document gets an agent, on which manager, and which agent must go.

Rules, all decided from the log alone:

- An active document wants an agent; an idle one's agent is detached.
- A manager runs at most its `max_agents` agents at once, counting every agent from the spawn decision until its
  process exit is recorded (a detaching agent still holds its slot). Agents go to the live manager with the most
  free slots, so load spreads across managers.
- When every slot is taken, the agent of the least recently active document is evicted for a more recently
  active one; "recently" is the log position of the document's latest activity (joins, leaves, activation), a
  logical clock every replay agrees on. The newcomer waits for the evicted agent's exit, then takes its slot.
  A document that cannot get a slot (every slot is held by more recently active documents) is deferred, with
  the reason, and placed as soon as a slot frees.
- A worker that exits without being asked is restarted after a backoff timer (1, 2, 4 … s, at most 30), up to
  `max_restarts` times in a row; then the agent is marked failed until the document becomes active again. A
  restarted agent that stays joined for `proven_run_s` ends the streak (a timer says so): an agent that crashes
  once a day is restarted every time, one that crashes on every start is given up on. An agent reported
  unresponsive proves nothing (a hung worker stays joined until it is killed); `proven_run_s` should exceed the
  time the supervisor takes to notice a hang (two missed pongs: about 90 s with the default ping).
- An agent that has not joined its document `start_deadline_s` after its spawn was decided, or not exited
  `stop_deadline_s` after its detach, is abandoned (`AgentAbandoned`): its slot is free again (a late start
  counts as an abnormal exit) and its supervisor kills it if it ever shows up. A stalled supervisor can hold a
  slot only that long.
- A manager that stops or is lost takes its agents with it; a manager that starts again (new incarnation) has
  none of its previous agents. Their documents are placed again on whichever managers are alive.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import ClassVar, Literal

from pydantic import BaseModel, Field, ValidationError

from eventstore.event_types.agents import (
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
from eventstore.event_types.deciders import DeciderConfigured, decider_stream
from eventstore.event_types.documents import (
    DocumentActivated,
    DocumentIdled,
    PersonJoined,
    PersonLeft,
    document_stream,
)
from eventstore.event_types.timers import TimerDelay, TimerFired, TimerScheduled
from handlers.decider import Decision, Fact

AGENT_RESTART = "agent-restart"
START_DEADLINE = "agent-start-deadline"
STOP_DEADLINE = "agent-stop-deadline"
RUN_PROVEN = "agent-run-proven"
Stage = Literal["start", "stop", "run"]
STAGE_TIMERS: dict[Stage, str] = {"start": START_DEADLINE, "stop": STOP_DEADLINE, "run": RUN_PROVEN}
"""The purpose of the timer of each stage an agent can be in."""
AGENT_STAGES: dict[str, Stage] = {purpose: stage for stage, purpose in STAGE_TIMERS.items()}
MAX_BACKOFF_S = 30.0


class DocumentWants(BaseModel):
    active: bool = False
    last_activity: int = 0
    server_id: str = ""
    """The document server holding its people (most recent join)."""
    agent_id: str | None = None
    failures: int = 0
    """Abnormal exits in a row: since the document became active, or since an agent proved a run."""
    restart_due: bool = False
    """An abnormal exit waits for its backoff timer to be scheduled."""
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


class ManagerState(BaseModel):
    settings: ManagerSettings = Field(default_factory=ManagerSettings)
    """As last recorded in the log (`DeciderConfigured`), else as this process was configured."""
    documents: dict[str, DocumentWants] = Field(default_factory=dict)
    agents: dict[str, AgentSlot] = Field(default_factory=dict)
    """Agents holding a slot: from the spawn decision until their exit."""
    managers: dict[str, ManagerSeat] = Field(default_factory=dict)
    spawns: int = 0
    """Spawn decisions so far: part of each new agent's derived id."""


class AgentManager:
    """Decides spawns, detaches, evictions, restarts and failures."""

    name: ClassVar[str] = "agent-manager"
    input_types: ClassVar[frozenset[str]] = frozenset(
        {
            "DocumentActivated",
            "DocumentIdled",
            "PersonJoined",
            "PersonLeft",
            "AgentProcessStarted",
            "AgentConnected",
            "AgentUnresponsive",
            "AgentProcessExited",
            "ManagerStarted",
            "ManagerStopped",
            "TimerFired",
            "DeciderConfigured",
        }
    )
    state_model: ClassVar[type[ManagerState]] = ManagerState
    state_version: ClassVar[int] = 4

    def __init__(
        self,
        max_restarts: int = 5,
        restart_backoff_s: float = 1.0,
        start_deadline_s: float = 60.0,
        stop_deadline_s: float = 30.0,
        proven_run_s: float = 300.0,
    ) -> None:
        self.configured = ManagerSettings(
            max_restarts=max_restarts,
            restart_backoff_s=restart_backoff_s,
            start_deadline_s=start_deadline_s,
            stop_deadline_s=stop_deadline_s,
            proven_run_s=proven_run_s,
        )

    def initial_state(self) -> ManagerState:
        return ManagerState(settings=self.configured.model_copy())

    # -- evolve --------------------------------------------------------------------------------------------------

    def evolve(self, state: ManagerState, fact: Fact) -> ManagerState:
        event = fact.event
        match event:
            case PersonJoined() | PersonLeft():
                document = state.documents.get(fact.stream_id.removeprefix("document-"))
                if document is not None and fact.position is not None:
                    document.last_activity = fact.position
                    if isinstance(event, PersonJoined):
                        document.server_id = event.server_id
            case DocumentActivated():
                document = state.documents.setdefault(event.document_id, DocumentWants())
                document.active, document.failed, document.failures = True, False, 0
                document.server_id, document.restart_timer = event.server_id, None
                document.last_activity = max(document.last_activity, fact.position or 0)
            case DocumentIdled():
                if (document := state.documents.get(event.document_id)) is not None:
                    document.active, document.deferred, document.restart_due = False, False, False
                    document.restart_timer = None  # a backoff from before is not a reason to wait later
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
                self._exited(state, event.agent_id, abnormal=not event.expected)
            case ManagerStarted():
                for agent_id, agent in list(state.agents.items()):
                    if agent.manager_id == event.manager_id and agent.incarnation != event.incarnation:
                        self._exited(state, agent_id, abnormal=False)
                state.managers[event.manager_id] = ManagerSeat(
                    incarnation=event.incarnation, max_agents=event.max_agents, document_url=event.document_url
                )
            case ManagerStopped():
                seat = state.managers.get(event.manager_id)
                if seat is not None and seat.incarnation == event.incarnation:
                    seat.alive = False
                    for agent_id, agent in list(state.agents.items()):
                        if agent.manager_id == event.manager_id:
                            self._exited(state, agent_id, abnormal=False)
            case TimerFired():
                _timer_fired(state, event)
            case DeciderConfigured():
                if event.decider == self.name and fact.stream_id == decider_stream(self.name):
                    # Settings this version cannot use are not adopted (see DocumentActivity.evolve).
                    with contextlib.suppress(ValidationError):
                        state.settings = ManagerSettings.model_validate(event.settings)
            case _:
                self._record(state, fact)
        _forget_settled_documents(state)
        return state

    def _record(self, state: ManagerState, fact: Fact) -> None:
        """Fold one of the decider's own decisions."""
        event = fact.event
        match event:
            case AgentSpawnRequested():
                state.spawns += 1
                state.agents[event.agent_id] = AgentSlot(
                    document_id=event.document_id,
                    manager_id=event.manager_id,
                    incarnation=event.incarnation,
                    attempt=event.attempt,
                )
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
                document.failed, document.restart_due = True, False
            case TimerScheduled() if event.purpose in AGENT_STAGES:
                agent = state.agents[event.subject]
                agent.deadline, agent.deadline_stage = event.timer_id, AGENT_STAGES[event.purpose]
            case TimerScheduled():
                document = state.documents[event.subject]
                document.restart_timer, document.restart_due = event.timer_id, False
            case AgentAbandoned():
                self._exited(state, event.agent_id, abnormal=event.stage == "start")

    def _exited(self, state: ManagerState, agent_id: str, *, abnormal: bool) -> None:
        agent = state.agents.pop(agent_id, None)
        if agent is None:
            return
        document = state.documents.get(agent.document_id)
        if document is None or document.agent_id != agent_id:
            return
        document.agent_id = None
        if abnormal and document.active:
            document.failures += 1
            document.restart_due = True

    # -- decide --------------------------------------------------------------------------------------------------

    def decide(self, state: ManagerState, fact: Fact) -> list[Decision]:
        # One at a time: a spawn, a detach or an eviction changes what the next decision may be.
        decision = (
            self._deadline(state, fact)
            or self._failure(state, fact)
            or self._idle_detach(state)
            or self._placement(state, fact)
        )
        return [] if decision is None else [decision]

    def _deadline(self, state: ManagerState, fact: Fact) -> Decision | None:
        """Give each agent's current stage its timer; abandon an agent whose deadline fired in that stage.

        A joined agent has a stage only while its document has a streak of failures to end (`proven_run_s`)."""
        event = fact.event
        if isinstance(event, TimerFired) and event.purpose in (START_DEADLINE, STOP_DEADLINE):
            agent = state.agents.get(event.subject)
            if agent is not None and agent.deadline == event.timer_id and _in_stage(agent):
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
            stage = _stage(agent_id, agent, state.documents.get(agent.document_id))
            if stage is None or agent.deadline_stage == stage:
                continue
            timer_id = f"{stage}-" + _derived(self.name, fact.event_id, agent_id)
            return Decision(
                agent_stream(agent_id),
                TimerScheduled(
                    timer_id=timer_id,
                    delay_s=state.settings.stage_timer_s(stage),
                    purpose=STAGE_TIMERS[stage],
                    subject=agent_id,
                ),
            )
        return None

    def _failure(self, state: ManagerState, fact: Fact) -> Decision | None:
        for document_id in sorted(state.documents):
            document = state.documents[document_id]
            if not document.restart_due:
                continue
            last = _last_agent_of(fact, document_id)
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
            timer_id = "restart-" + _derived(self.name, fact.event_id, document_id)
            return Decision(
                agent_stream(last),
                TimerScheduled(timer_id=timer_id, delay_s=delay, purpose=AGENT_RESTART, subject=document_id),
            )
        return None

    def _idle_detach(self, state: ManagerState) -> Decision | None:
        for agent_id in sorted(state.agents):
            agent = state.agents[agent_id]
            if agent.status == "detaching":
                continue
            document = state.documents.get(agent.document_id)
            if document is None or not document.active:
                return _detach(agent_id, agent, "idle", "the document became idle")
        return None

    def _placement(self, state: ManagerState, fact: Fact) -> Decision | None:
        occupied: dict[str, int] = {}
        freeing = 0
        for agent in state.agents.values():
            occupied[agent.manager_id] = occupied.get(agent.manager_id, 0) + 1
            freeing += agent.status == "detaching"
        live = {manager_id: seat for manager_id, seat in state.managers.items() if seat.alive}
        wanting = sorted(
            (
                (document_id, document)
                for document_id, document in state.documents.items()
                if document.active
                and document.agent_id is None
                and not document.failed
                and document.restart_timer is None
                and not document.restart_due
            ),
            key=lambda item: (-item[1].last_activity, item[0]),
        )
        victims = sorted(
            (
                (state.documents[agent.document_id].last_activity, agent_id)
                for agent_id, agent in state.agents.items()
                if agent.status != "detaching" and agent.document_id in state.documents
            ),
        )
        for document_id, document in wanting:
            free = [
                (seat.max_agents - occupied.get(manager_id, 0), manager_id)
                for manager_id, seat in live.items()
                if occupied.get(manager_id, 0) < seat.max_agents
            ]
            if free:
                _, manager_id = min(free, key=lambda item: (-item[0], item[1]))
                attempt = document.failures + 1
                agent_id = _derived(self.name, fact.event_id, f"{document_id}/{state.spawns}")[:16]
                return Decision(
                    agent_stream(agent_id),
                    AgentSpawnRequested(
                        agent_id=agent_id,
                        document_id=document_id,
                        manager_id=manager_id,
                        incarnation=live[manager_id].incarnation,
                        document_url=_document_url(live, document.server_id, manager_id),
                        attempt=attempt,
                        reason=_spawn_reason(fact, attempt),
                    ),
                )
            if freeing:
                freeing -= 1  # a slot is on its way back; the most recently active waiting document gets it
                continue
            if victims and victims[0][0] < document.last_activity:
                _, victim_id = victims.pop(0)
                victim = state.agents[victim_id]
                return _detach(
                    victim_id,
                    victim,
                    "evicted",
                    f"evicted: every agent slot is taken and document {document_id} was active more recently than "
                    f"{victim.document_id}",
                )
            if not document.deferred:
                return Decision(
                    document_stream(document_id), AgentDeferred(document_id=document_id, reason=_why_not(live))
                )
        return None


def _timer_fired(state: ManagerState, event: TimerFired) -> None:
    if event.purpose == RUN_PROVEN:  # the row of failures ends if the agent it was set for is still joined
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
        return
    for document in state.documents.values():
        if document.restart_timer == event.timer_id:
            document.restart_timer = None


def _document_url(live: dict[str, ManagerSeat], server_id: str, manager_id: str) -> str:
    """The server holding the document's people if it is alive, else the agent's own manager's."""
    seat = live.get(server_id) or live[manager_id]
    return seat.document_url


def _detach(agent_id: str, agent: AgentSlot, cause: Literal["idle", "evicted"], reason: str) -> Decision:
    return Decision(
        agent_stream(agent_id),
        AgentDetachRequested(
            agent_id=agent_id, document_id=agent.document_id, manager_id=agent.manager_id, cause=cause, reason=reason
        ),
    )


def _stage(agent_id: str, agent: AgentSlot, document: DocumentWants | None) -> Stage | None:
    if agent.status == "detaching":
        return "stop"
    if agent.status != "connected":
        return "start"
    if document is not None and document.failures and document.agent_id == agent_id and not agent.unresponsive:
        return "run"
    return None


def _in_stage(agent: AgentSlot) -> bool:
    """Still where its deadline was set: not yet joined (start), or not yet exited (stop)."""
    if agent.deadline_stage == "stop":
        return agent.status == "detaching"
    return agent.status in ("requested", "running")


def _why_not(live: dict[str, ManagerSeat]) -> str:
    if not live:
        return "no agent manager is running"
    capacity = sum(seat.max_agents for seat in live.values())
    if capacity == 0:
        return "the running managers allow no agents"
    return f"all {capacity} agent slots are held by more recently active documents"


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


def _last_agent_of(fact: Fact, document_id: str) -> str:
    event = fact.event
    if isinstance(event, AgentProcessExited) and event.document_id == document_id:
        return event.agent_id
    return document_id[:64]


def _derived(name: str, cause: uuid.UUID, document_id: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{cause}/{document_id}").hex


def _forget_settled_documents(state: ManagerState) -> None:
    """An idle document with no agent and nothing pending needs no state: keep the snapshot small."""
    settled = [
        document_id
        for document_id, document in state.documents.items()
        if not document.active
        and document.agent_id is None
        and document.restart_timer is None
        and not any(agent.document_id == document_id for agent in state.agents.values())
    ]
    for document_id in settled:
        del state.documents[document_id]
