"""The agent manager decider: which active document gets an agent, on which manager, and which agent must go.

Rules, all decided from the log alone:

- An active document wants an agent; an idle one's agent is detached. One agent per document, always: a document
  whose previous agent is still detaching (it went idle and came back quickly) waits for that agent's exit.
- A manager runs at most its `max_agents` agents at once, counting every agent from the spawn decision until its
  process exit is recorded (a detaching agent still holds its slot). Agents go to the live manager with the most
  free slots, so load spreads across managers.
- When every slot is taken, the agent of the least deserving document is evicted for a more deserving one. A
  document people are in deserves more than one nobody is in (an empty document in its grace period never takes
  the agent of a document someone is working in); between two alike, the more recently worked in deserves more.
  Work is joins and edits (`DocumentEdited`, recorded at most once a minute or so per document), never leaving;
  "recently" is the log position of the latest, a logical clock every replay agrees on. The newcomer waits for
  the evicted agent's exit, then takes its slot. A document that cannot get a slot (every slot is held by more
  deserving documents) is deferred, with the reason, and placed as soon as a slot frees.
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

Each event costs what it touches (and O(log n) in the number of documents known): the state keeps indexes of
what every decision looks for (`manager_state`).
"""

from __future__ import annotations

import contextlib
import uuid
from itertools import islice
from typing import ClassVar, Literal

from pydantic import ValidationError

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
from agentlog.domains.deciders.events import DeciderConfigured, decider_stream
from agentlog.domains.documents.events import (
    DocumentActivated,
    DocumentEdited,
    DocumentIdled,
    PersonJoined,
    PersonLeft,
    document_stream,
)
from agentlog.domains.documents.presence import document_of
from agentlog.domains.timers.events import TimerFired, TimerScheduled
from agentlog.handlers.agents.manager_state import (
    AgentSlot,
    DocumentWants,
    ManagerSeat,
    ManagerSettings,
    ManagerState,
    Stage,
    settle,
    stage,
)
from agentlog.handlers.decider import Decision, Fact

__all__ = [
    "AGENT_RESTART",
    "RUN_PROVEN",
    "START_DEADLINE",
    "STOP_DEADLINE",
    "AgentManager",
    "AgentSlot",
    "DocumentWants",
    "ManagerSeat",
    "ManagerSettings",
    "ManagerState",
]

AGENT_RESTART = "agent-restart"
START_DEADLINE = "agent-start-deadline"
STOP_DEADLINE = "agent-stop-deadline"
RUN_PROVEN = "agent-run-proven"
STAGE_TIMERS: dict[Stage, str] = {"start": START_DEADLINE, "stop": STOP_DEADLINE, "run": RUN_PROVEN}
"""The purpose of the timer of each stage an agent can be in."""
AGENT_STAGES: dict[str, Stage] = {purpose: stage for stage, purpose in STAGE_TIMERS.items()}
MAX_BACKOFF_S = 30.0


class AgentManager:
    """Decides spawns, detaches, evictions, restarts and failures."""

    name: ClassVar[str] = "agent-manager"
    input_types: ClassVar[frozenset[str]] = frozenset(
        {
            "DocumentActivated",
            "DocumentIdled",
            "PersonJoined",
            "PersonLeft",
            "DocumentEdited",
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
    state_version: ClassVar[int] = 5

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
                _people_changed(state, fact)
                document_id = document_of(fact.stream_id)
                if isinstance(event, PersonJoined) and document_id in state.documents and fact.position is not None:
                    document = state.document(document_id)
                    document.last_activity, document.server_id = fact.position, event.server_id
            case DocumentEdited():
                if event.document_id in state.documents and fact.position is not None:
                    state.document(event.document_id).last_activity = fact.position
            case DocumentActivated():
                state.documents.setdefault(event.document_id, DocumentWants())
                document = state.document(event.document_id)
                document.active, document.failed, document.failures = True, False, 0
                document.server_id, document.restart_timer = event.server_id, None
                document.last_activity = max(document.last_activity, fact.position or 0)
            case DocumentIdled():
                if event.document_id in state.documents:
                    document = state.document(event.document_id)
                    document.active, document.deferred, document.restart_due = False, False, None
                    document.restart_timer = None  # a backoff from before is not a reason to wait later
            case AgentProcessStarted() | AgentConnected() | AgentUnresponsive() | AgentProcessExited():
                _process_reported(state, event)
            case ManagerStarted():
                _people_changed(state, fact)
                for agent_id in state.agents_of_manager(event.manager_id):
                    if state.agents[agent_id].incarnation != event.incarnation:
                        _exited(state, agent_id, abnormal=False)
                state.managers[event.manager_id] = ManagerSeat(
                    incarnation=event.incarnation, max_agents=event.max_agents, document_url=event.document_url
                )
            case ManagerStopped():
                _people_changed(state, fact)
                seat = state.managers.get(event.manager_id)
                if seat is not None and seat.incarnation == event.incarnation:
                    seat.alive = False
                    for agent_id in state.agents_of_manager(event.manager_id):
                        _exited(state, agent_id, abnormal=False)
            case TimerFired():
                _timer_fired(state, event)
            case DeciderConfigured():
                if event.decider == self.name and fact.stream_id == decider_stream(self.name):
                    # Settings this version cannot use are not adopted (see DocumentActivity.evolve).
                    with contextlib.suppress(ValidationError):
                        state.settings = ManagerSettings.model_validate(event.settings)
            case _:
                _record(state, fact)
        settle(state)
        return state

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
        unscheduled = state.index.unscheduled
        if not unscheduled:
            return None
        agent_id = min(unscheduled)
        agent = state.agents[agent_id]
        wanted = _stage_of(state, agent_id, agent)
        assert wanted is not None, "the index of unscheduled stages is out of date"
        timer_id = f"{wanted}-" + _derived(self.name, fact.event_id, agent_id)
        return Decision(
            agent_stream(agent_id),
            TimerScheduled(
                timer_id=timer_id,
                delay_s=state.settings.stage_timer_s(wanted),
                purpose=STAGE_TIMERS[wanted],
                subject=agent_id,
            ),
        )

    def _failure(self, state: ManagerState, fact: Fact) -> Decision | None:
        restarts_due = state.index.restarts_due
        if not restarts_due:
            return None
        document_id = min(restarts_due)
        document = state.documents[document_id]
        last = document.restart_due
        assert last is not None, "the index of restarts due is out of date"
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

    def _idle_detach(self, state: ManagerState) -> Decision | None:
        orphans = state.index.orphans
        if not orphans:
            return None
        agent_id = min(orphans)
        return _detach(agent_id, state.agents[agent_id], "idle", "the document became idle")

    def _placement(self, state: ManagerState, fact: Fact) -> Decision | None:
        """The most deserving waiting document gets a free slot; else, past the documents that slots on their way
        back are for, the next one evicts a less deserving agent, or is told it is deferred."""
        wanting = state.index.wanting
        top = wanting.first()
        if top is None:
            return None
        live = {manager_id: seat for manager_id, seat in state.managers.items() if seat.alive}
        free = [
            (seat.max_agents - state.occupied(manager_id), manager_id)
            for manager_id, seat in live.items()
            if state.occupied(manager_id) < seat.max_agents
        ]
        if free:
            _, manager_id = min(free, key=lambda item: (-item[0], item[1]))
            document_id = top[-1]
            document = state.documents[document_id]
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
        # A slot on its way back goes to the most deserving waiting document: skip as many as are coming.
        freeing = state.freeing()
        boundary = next(islice(wanting, freeing, None), None)
        if boundary is None:
            return None
        document_id = boundary[-1]
        victim = state.index.victims.first()
        if victim is not None:
            victim_id = victim[-1]
            agent = state.agents[victim_id]
            if state.rank(agent.document_id) < state.rank(document_id):
                return _detach(victim_id, agent, "evicted", _eviction_reason(state, document_id, agent.document_id))
        # Every document from the boundary on is deferred, once.
        for key in state.index.undeferred:
            if key >= boundary:
                return Decision(document_stream(key[-1]), AgentDeferred(document_id=key[-1], reason=_why_not(live)))
        return None


def _people_changed(state: ManagerState, fact: Fact) -> None:
    for document_id in state.presence.fold(fact.stream_id, fact.event):
        state.changed("presence", document_id)
        state.recheck_document(document_id)


def _process_reported(
    state: ManagerState, event: AgentProcessStarted | AgentConnected | AgentUnresponsive | AgentProcessExited
) -> None:
    """Fold what a supervisor recorded about an agent's worker process."""
    agent = state.agents.get(event.agent_id)
    match event:
        case AgentProcessStarted() if agent is not None and agent.status == "requested":
            state.agent(event.agent_id).status = "running"
        case AgentConnected() if agent is not None and agent.status != "detaching":
            state.agent(event.agent_id).status = "connected"
        case AgentUnresponsive() if agent is not None:
            state.agent(event.agent_id).unresponsive = True
        case AgentProcessExited():
            _exited(state, event.agent_id, abnormal=not event.expected)


def _record(state: ManagerState, fact: Fact) -> None:
    """Fold one of the decider's own decisions."""
    event = fact.event
    match event:
        case AgentSpawnRequested():
            state.spawns += 1
            state.add_agent(
                event.agent_id,
                AgentSlot(
                    document_id=event.document_id,
                    manager_id=event.manager_id,
                    incarnation=event.incarnation,
                    attempt=event.attempt,
                ),
            )
            document = state.document(event.document_id)
            document.agent_id, document.deferred = event.agent_id, False
        case AgentDetachRequested():
            state.detaching(event.agent_id)
            document = state.document(event.document_id)
            if document.agent_id == event.agent_id:
                document.agent_id = None
        case AgentDeferred():
            state.document(event.document_id).deferred = True
        case AgentFailed():
            document = state.document(event.document_id)
            document.failed, document.restart_due = True, None
        case TimerScheduled() if event.purpose in AGENT_STAGES:
            agent = state.agent(event.subject)
            agent.deadline, agent.deadline_stage = event.timer_id, AGENT_STAGES[event.purpose]
        case TimerScheduled():
            document = state.document(event.subject)
            document.restart_timer, document.restart_due = event.timer_id, None
        case AgentAbandoned():
            _exited(state, event.agent_id, abnormal=event.stage == "start")


def _exited(state: ManagerState, agent_id: str, *, abnormal: bool) -> None:
    agent = state.remove_agent(agent_id)
    if agent is None:
        return
    wants = state.documents.get(agent.document_id)
    if wants is None or wants.agent_id != agent_id:
        return
    document = state.document(agent.document_id)
    document.agent_id = None
    if abnormal and document.active:
        document.failures += 1
        document.restart_due = agent_id


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
            state.document(agent.document_id).failures = 0
    elif event.purpose == AGENT_RESTART:  # restart timers are about their document
        document = state.documents.get(event.subject)
        if document is not None and document.restart_timer == event.timer_id:
            state.document(event.subject).restart_timer = None


def _stage_of(state: ManagerState, agent_id: str, agent: AgentSlot) -> Stage | None:
    return stage(agent_id, agent, state.documents.get(agent.document_id))


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


def _in_stage(agent: AgentSlot) -> bool:
    """Still where its deadline was set: not yet joined (start), or not yet exited (stop)."""
    if agent.deadline_stage == "stop":
        return agent.status == "detaching"
    return agent.status in ("requested", "running")


def _eviction_reason(state: ManagerState, newcomer: str, victim: str) -> str:
    if state.present(newcomer) and not state.present(victim):
        why = f"people are in document {newcomer} and nobody is in {victim}"
    else:
        why = f"document {newcomer} was active more recently than {victim}"
    return f"evicted: every agent slot is taken and {why}"


def _why_not(live: dict[str, ManagerSeat]) -> str:
    if not live:
        return "no agent manager is running"
    capacity = sum(seat.max_agents for seat in live.values())
    if capacity == 0:
        return "the running managers allow no agents"
    return f"all {capacity} agent slots are held by more recently active documents or ones people are in"


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


def _derived(name: str, cause: uuid.UUID, document_id: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{cause}/{document_id}").hex
