"""The dispatcher decider: which agent runs which task, and everything the log does to tasks by itself.

It folds every task (`domains.tasks.lifecycle`) and the registry's agents (`domains.coordination`), and after each
event decides, one decision at a time (each changes what the next may be):

1. the answer to an agent's claim (`TaskClaimRequested`): the best task it can take, or `TaskClaimDeclined`;
2. what a task touched by the event asks for: a duplicate of a live task's dedupe key is cancelled, a task closing
   a cycle of dependencies or depending on a dead-lettered or cancelled one is dead-lettered, an attempt whose
   agent is gone fails, and the task's own follow-up (timers, timeouts, retry with back-off, dead letter);
3. an assignment: the ready task first by priority (10 highest), then age (creation order), that some available
   agent having its capabilities may take within the limits, to the least loaded such agent.

Limits: at most `max_concurrent_tasks` attempts assigned or running in all; per agent its registry metadata's
`max_concurrent_tasks` (else `per_agent_limit`); per concurrency key the task's own `concurrency_limit`. A claim
obeys the same limits: both paths are decisions of this one decider, so no race can overshoot them. An agent is
available while registered and not `offline` or `blocked`; one whose metadata says `"task_mode": "pull"` gets
tasks only when it claims them. Timers it schedules on the task's stream: one execution timer per attempt and a
heartbeat check every two heartbeat intervals; a timer of an attempt that ended is ignored, never cancelled (two
fewer events per task).

Its decisions share the task streams with the API: a completion can land after the execution timer fired and
before the dispatcher's failure of that attempt, which the lifecycle then refuses. So a task is kept as every other
fold keeps it, the log's order (`LoggedTask`), plus the decisions not yet read back from the log; when another
event of the task arrives first, it is folded into the logged task and the pending decisions are applied again on
top of it (`handlers.decider`, `recorded`). Folding in decision order instead made the dispatcher dead-letter the
dependents of a task the API had completed, assign a completed task again, and hold slots nobody held.
"""

from __future__ import annotations

import bisect
import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, cast

from pydantic import BaseModel, Field, PrivateAttr, ValidationError

from agentlog.domains.coordination.events import AgentDeregistered, AgentGone, AgentRegistered, AgentUpdated
from agentlog.domains.deciders.events import DeciderConfigured, decider_stream
from agentlog.domains.tasks.dependencies import blocked_by, dependencies_met, find_cycle
from agentlog.domains.tasks.events import (
    TaskAssigned,
    TaskAttemptRefused,
    TaskCancelled,
    TaskClaimDeclined,
    TaskClaimRequested,
    TaskCreated,
    TaskDeadLettered,
    TaskFailed,
    TaskRetryScheduled,
    claim_stream,
    task_stream,
)
from agentlog.domains.tasks.lifecycle import TASK_TIMER_PURPOSES, Status, TaskLifecycle, failed_with_agent, follow_up
from agentlog.domains.timers.events import TimerFired, TimerScheduled
from agentlog.eventstore import Event
from agentlog.handlers.decider import Decision, Fact
from agentlog.handlers.decider_state import KeyedState

UNAVAILABLE_STATUSES = frozenset({"offline", "blocked"})
RankKey = tuple[int, int, str]
"""(-priority, age, task id): the order tasks are assigned in."""
Lane = tuple[str, tuple[str, ...], str | None, int]
"""(task type, capabilities, concurrency key, its limit): ready tasks alike in whether an agent may take them. An
assignment looks at the best task of each lane, not at every ready task: ready tasks nobody can take yet (a
capability no free agent has, a full key) cost nothing per decision."""


class DispatcherSettings(BaseModel):
    max_concurrent_tasks: Annotated[int, Field(ge=1, le=1_000_000)] = 100
    """Attempts assigned or running at once, in all (`MAX_CONCURRENT_TASKS`)."""
    per_agent_limit: Annotated[int, Field(ge=1, le=10_000)] = 1
    """Attempts one agent holds at once, unless its registry metadata says `max_concurrent_tasks`."""


@dataclass
class Indexes:
    """What the dispatcher derives from its tasks to decide in time independent of how many it knows."""

    lanes: dict[Lane, list[RankKey]] = field(default_factory=dict)
    """Ready tasks, in assignment order within each lane."""
    ranks: dict[str, tuple[Lane, RankKey]] = field(default_factory=dict)
    holding_agent: dict[str, set[str]] = field(default_factory=dict)
    holding_key: dict[str, int] = field(default_factory=dict)
    holders: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    """Tasks holding a slot → (agent, concurrency key)."""
    dependents: dict[str, set[str]] = field(default_factory=dict)
    """Task → the tasks that name it in `depends_on` (it may not exist yet)."""
    dedupe: dict[str, str] = field(default_factory=dict)
    """Dedupe key → the live task holding it."""
    unsettled: set[str] = field(default_factory=set)
    """Tasks touched by the event being decided, to look at again (empty between events)."""


DECIDED_TYPES: dict[str, type[Event]] = {
    model.event_type: model
    for model in (TaskAssigned, TaskCancelled, TaskDeadLettered, TaskFailed, TaskRetryScheduled, TimerScheduled)
}
"""What the dispatcher decides on a task's stream."""
LIFECYCLE_FIELDS = tuple(TaskLifecycle.model_fields)


class PendingDecision(BaseModel):
    """A decision folded into a task before the log recorded it."""

    event_id: uuid.UUID
    event_type: str
    data: dict[str, Any]

    def event(self) -> Event:
        return DECIDED_TYPES[self.event_type].model_validate(self.data)


class DispatchedTask(TaskLifecycle):
    """A task as the dispatcher keeps it: its lifecycle (without the payload) with the decisions still on their way
    to the log, its age, and what it was found."""

    logged: TaskLifecycle | None = None
    """The lifecycle as the log's order folds it, while decisions are pending (else the task itself is that)."""
    pending: list[PendingDecision] = Field(default_factory=list)
    """Decisions folded into the task, in order, that the log has not given back yet."""
    age: int = 0
    holds_dedupe_key: bool = False
    """It is the live task its dedupe key names (others created with the key meanwhile are its duplicates)."""
    duplicate_of: str | None = None
    cycle: list[str] | None = None


class AgentSlot(BaseModel):
    """A registered agent as the dispatcher sees it."""

    capabilities: list[str] = Field(default_factory=list)
    limit: int = 1
    available: bool = True
    pull_only: bool = False


class DispatcherState(KeyedState):
    keyed: ClassVar[dict[str, tuple[str, ...]]] = {"task": ("tasks",), "agent": ("agents",)}

    settings: DispatcherSettings = Field(default_factory=DispatcherSettings)
    tasks: dict[str, DispatchedTask] = Field(default_factory=dict)
    """Every task ever created (dependents may name a finished one)."""
    agents: dict[str, AgentSlot] = Field(default_factory=dict)
    """Registered agents only."""
    created: int = 0
    claim: TaskClaimRequested | None = None
    """The claim being answered (between its arrival and its answer only)."""

    _indexes: Indexes = PrivateAttr(default_factory=Indexes)
    """Derived, rebuilt from `tasks` on load (`_index`)."""

    @property
    def ix(self) -> Indexes:
        """The derived indexes (read through the private dictionary: pydantic's own lookup of a private attribute
        is slow, on a path taken many times per event)."""
        return cast(Indexes, self.__pydantic_private__["_indexes"])  # type: ignore[index]

    def model_post_init(self, context: Any, /) -> None:
        for task_id, task in self.tasks.items():
            if task.spec is not None:
                for dependency in task.spec.depends_on:
                    self.ix.dependents.setdefault(dependency, set()).add(task_id)
                if task.holds_dedupe_key and task.spec.dedupe_key is not None:
                    self.ix.dedupe[task.spec.dedupe_key] = task_id
        for task_id in self.tasks:
            _index(self, task_id)

    @property
    def holding_total(self) -> int:
        return len(self.ix.holders)

    def holding_of(self, agent_id: str) -> int:
        return len(self.ix.holding_agent.get(agent_id, ()))

    def holding_key(self, key: str) -> int:
        return self.ix.holding_key.get(key, 0)

    def ready(self) -> list[str]:
        """Ready tasks in the order they are assigned."""
        return [rank[2] for rank in sorted(rank for lane in self.ix.lanes.values() for rank in lane)]

    def status_of(self, task_id: str) -> Status | None:
        """The task's status as decided (the log's, then the decisions on their way)."""
        task = self.tasks.get(task_id)
        return None if task is None else task.status

    def logged_status_of(self, task_id: str) -> Status | None:
        """The task's status as the log has it: what its dependents are told (a dead letter on its way may still
        turn out a cancel the log recorded first)."""
        task = self.tasks.get(task_id)
        if task is None:
            return None
        return task.status if task.logged is None else task.logged.status


class Dispatcher:
    """Assigns ready tasks to agents and decides what the log does to tasks by itself (`handlers.tasks`)."""

    name: ClassVar[str] = "task-dispatcher"
    input_types: ClassVar[frozenset[str]] = frozenset(
        {
            "TaskCreated", "TaskAssigned", "TaskStarted", "TaskHeartbeat", "TaskCompleted", "TaskFailed",
            "TaskSnoozed", "TaskRetryScheduled", "TaskDeadLettered", "TaskRequeued", "TaskCancelled",
            "TaskClaimRequested", "TaskClaimDeclined", "TimerScheduled", "TimerFired",
            "AgentRegistered", "AgentUpdated", "AgentDeregistered", "AgentGone", "DeciderConfigured",
        }
    )  # fmt: skip
    state_model: ClassVar[type[DispatcherState]] = DispatcherState
    state_version: ClassVar[int] = 2

    def __init__(self, max_concurrent_tasks: int = 100, per_agent_limit: int = 1) -> None:
        self.configured = DispatcherSettings(max_concurrent_tasks=max_concurrent_tasks, per_agent_limit=per_agent_limit)

    def initial_state(self) -> DispatcherState:
        return DispatcherState(settings=self.configured.model_copy())

    # -- evolve ----------------------------------------------------------------------------------------------------

    def evolve(self, state: DispatcherState, fact: Fact) -> DispatcherState:
        event = fact.event
        match event:
            case TaskClaimRequested():
                state.claim = event
            case TaskClaimDeclined() if state.claim is not None and state.claim.claim_id == event.claim_id:
                state.claim = None
            case AgentRegistered() | AgentUpdated() | AgentDeregistered() | AgentGone():
                self._fold_agent(state, event)
            case TimerScheduled() | TimerFired():
                if event.purpose in TASK_TIMER_PURPOSES and fact.stream_id == task_stream(event.subject):
                    self._fold_task(state, event.subject, fact)
            case TaskAttemptRefused():
                pass
            case DeciderConfigured() if event.decider == self.name and fact.stream_id == decider_stream(self.name):
                with contextlib.suppress(ValidationError):  # settings this version cannot use are not adopted
                    state.settings = DispatcherSettings.model_validate(event.settings)
            case _ if hasattr(event, "task_id") and fact.stream_id == task_stream(event.task_id):
                self._fold_task(state, event.task_id, fact)
                if isinstance(event, TaskAssigned) and state.claim and event.claim_id == state.claim.claim_id:
                    state.claim = None
        return state

    def recorded(self, state: DispatcherState, fact: Fact) -> DispatcherState:
        """One of the dispatcher's decisions, now in the log: the logged task catches up with it (the task as
        decided stays what it is: the log has reached what was folded ahead of it)."""
        event = fact.event
        task_id = event.subject if isinstance(event, TimerScheduled) else getattr(event, "task_id", None)
        task = state.tasks.get(task_id) if isinstance(task_id, str) else None
        if task is None or task.logged is None or fact.stream_id != task_stream(task.task_id):
            return state  # a claim's answer
        for index, pending in enumerate(task.pending):
            if pending.event_id == fact.event_id:
                before = task.logged.status
                del task.pending[index]
                task.logged.fold(event)
                if not task.pending:
                    task.logged = None
                state.changed("task", task.task_id)
                if state.logged_status_of(task.task_id) != before:
                    self._unsettle_dependents(state, task.task_id)
                break
        return state

    def _unsettle_dependents(self, state: DispatcherState, task_id: str) -> None:
        for dependent in state.ix.dependents.get(task_id, ()):
            _index(state, dependent)
            state.ix.unsettled.add(dependent)

    def _fold_task(self, state: DispatcherState, task_id: str, fact: Fact) -> None:
        event = fact.event
        task = state.tasks.get(task_id)
        created = task is None
        if task is None:
            if not isinstance(event, TaskCreated):
                return  # an event of a task never created: the lifecycle refuses it anyway
            task = DispatchedTask()
        before, logged_before = task.status, state.logged_status_of(task_id) if not created else None
        if fact.position is None:  # a decision, folded ahead of the log
            if task.logged is None:
                task.logged = TaskLifecycle.model_construct(**{name: getattr(task, name) for name in LIFECYCLE_FIELDS})
            decided = PendingDecision(event_id=fact.event_id, event_type=event.event_type, data=event.to_data())
            task.pending.append(decided)
            if not task.fold(event):
                return
        elif task.logged is not None:  # the log has something before decisions on their way: fold them again after
            if not task.logged.fold(event):
                return
            _replay_pending(task)
        elif not task.fold(event):
            return
        if created and isinstance(event, TaskCreated):
            assert task.spec is not None
            task.spec = task.spec.model_copy(update={"payload": {}})  # the payload is the worker's, not ours
            task.age, state.created = state.created, state.created + 1
            state.tasks[task_id] = task
            self._created(state, task_id, task, event)
        key = None if task.spec is None else task.spec.dedupe_key
        if key is not None and task.holds_dedupe_key and task.terminal:
            task.holds_dedupe_key = False
            del state.ix.dedupe[key]
        elif key is not None and not task.terminal and task.duplicate_of is None and key not in state.ix.dedupe:
            task.holds_dedupe_key = True  # created, or requeued while no other live task holds the key
            state.ix.dedupe[key] = task_id
        state.changed("task", task_id)
        _index(state, task_id)
        state.ix.unsettled.add(task_id)
        if (task.status != before and task.status in {"completed", "dead_lettered", "cancelled", "queued"}) or (
            state.logged_status_of(task_id) != logged_before
        ):
            self._unsettle_dependents(state, task_id)

    def _created(self, state: DispatcherState, task_id: str, task: DispatchedTask, event: TaskCreated) -> None:
        if event.dedupe_key is not None:
            holder = state.ix.dedupe.get(event.dedupe_key)
            if holder is not None:
                task.duplicate_of = holder

        def depends_on_of(other: str) -> Sequence[str]:
            found = state.tasks.get(other)
            return () if found is None or found.spec is None or other == task_id else found.spec.depends_on

        task.cycle = find_cycle(depends_on_of, task_id, event.depends_on)
        for dependency in event.depends_on:
            state.ix.dependents.setdefault(dependency, set()).add(task_id)

    def _fold_agent(self, state: DispatcherState, event: Event) -> None:
        agent_id: str = getattr(event, "agent_id")  # noqa: B009 - every registry event names its agent
        slot = state.agents.get(agent_id)
        match event:
            case AgentRegistered():
                slot = AgentSlot(limit=state.settings.per_agent_limit)
                self._describe(state, slot, event.capabilities, event.status, event.metadata)
            case AgentUpdated() if slot is not None:
                slot = slot.model_copy()
                self._describe(state, slot, event.capabilities, event.status, event.metadata)
            case AgentDeregistered() | AgentGone():
                slot = None
            case _:
                return
        if slot is None:
            state.agents.pop(agent_id, None)
        else:
            state.agents[agent_id] = slot
        state.changed("agent", agent_id)
        state.ix.unsettled.update(state.ix.holding_agent.get(agent_id, ()))

    def _describe(
        self,
        state: DispatcherState,
        slot: AgentSlot,
        capabilities: list[str] | None,
        status: str | None,
        metadata: dict[str, Any] | None,
    ) -> None:
        if capabilities is not None:
            slot.capabilities = sorted(set(capabilities))
        if status is not None:
            slot.available = status not in UNAVAILABLE_STATUSES
        if metadata is not None:
            limit = metadata.get("max_concurrent_tasks")
            ok = isinstance(limit, int) and not isinstance(limit, bool) and 1 <= limit <= 10_000
            slot.limit = limit if ok and isinstance(limit, int) else state.settings.per_agent_limit
            slot.pull_only = metadata.get("task_mode") == "pull"

    # -- decide ----------------------------------------------------------------------------------------------------

    def decide(self, state: DispatcherState, fact: Fact) -> list[Decision]:
        if state.claim is not None:
            return [self._answer(state, state.claim)]
        while state.ix.unsettled:
            task_id = min(state.ix.unsettled)
            decision = self._next(state, state.tasks[task_id])
            if decision is not None:
                return [Decision(task_stream(task_id), decision)]
            state.ix.unsettled.discard(task_id)
        assignment = _assignment(state, None)
        return [] if assignment is None else [Decision(task_stream(assignment.task_id), assignment)]

    def _answer(self, state: DispatcherState, claim: TaskClaimRequested) -> Decision:
        slot = state.agents.get(claim.agent_id)
        if slot is None or not slot.available:
            reason = f"agent {claim.agent_id} is not registered and available"
        else:
            assignment = _assignment(state, claim)
            if assignment is not None:
                return Decision(task_stream(assignment.task_id), assignment)
            reason = "no ready task this agent may take within the limits"
        declined = TaskClaimDeclined(claim_id=claim.claim_id, agent_id=claim.agent_id, reason=reason)
        return Decision(claim_stream(claim.agent_id), declined)

    def _next(self, state: DispatcherState, task: DispatchedTask) -> Event | None:
        if task.spec is None or task.terminal:
            return None
        if task.duplicate_of is not None and not task.holding:
            return TaskCancelled(
                task_id=task.task_id, duplicate_of=task.duplicate_of, cancelled_by=self.name,
                reason=f"a duplicate of task {task.duplicate_of} (dedupe key {task.spec.dedupe_key})",
            )  # fmt: skip
        if task.cycle is not None and not task.holding:
            cycle = " -> ".join(task.cycle)
            return TaskDeadLettered(
                task_id=task.task_id, attempt=task.attempt, reason=f"a cycle of dependencies {cycle}"
            )
        if task.holding and task.agent_id not in state.agents:
            return failed_with_agent(task, f"agent {task.agent_id} is gone or deregistered")
        wanted = follow_up(task)
        if wanted is not None:
            return wanted
        if task.status in {"queued", "waiting"}:
            blocked = blocked_by(task.spec.depends_on, state.logged_status_of)
            if blocked is not None:
                return TaskDeadLettered(task_id=task.task_id, attempt=task.attempt, reason=blocked.reason)
        return None


def _replay_pending(task: DispatchedTask) -> None:
    """The task as decided again: its logged lifecycle, then each pending decision (refused ones change nothing)."""
    assert task.logged is not None
    for name in LIFECYCLE_FIELDS:
        setattr(task, name, getattr(task.logged, name))
    for pending in task.pending:
        task.fold(pending.event())


def _index(state: DispatcherState, task_id: str) -> None:
    """Put one task in the indexes as it is now (ready, holding a slot of its agent and key), out of the rest."""
    task = state.tasks[task_id]
    old = state.ix.ranks.pop(task_id, None)
    if old is not None:
        old_lane, old_rank = old
        ranks = state.ix.lanes[old_lane]
        del ranks[bisect.bisect_left(ranks, old_rank)]
        if not ranks:
            del state.ix.lanes[old_lane]
    holder = state.ix.holders.pop(task_id, None)
    if holder is not None:
        agent_id, key = holder
        if agent_id is not None:
            state.ix.holding_agent[agent_id].discard(task_id)
            if not state.ix.holding_agent[agent_id]:
                del state.ix.holding_agent[agent_id]
        if key is not None:
            state.ix.holding_key[key] -= 1
            if not state.ix.holding_key[key]:
                del state.ix.holding_key[key]
    spec = task.spec
    if spec is None:
        return
    if task.holding:
        state.ix.holders[task_id] = (task.agent_id, spec.concurrency_key)
        if task.agent_id is not None:
            state.ix.holding_agent.setdefault(task.agent_id, set()).add(task_id)
        if spec.concurrency_key is not None:
            state.ix.holding_key[spec.concurrency_key] = state.ix.holding_key.get(spec.concurrency_key, 0) + 1
    elif (
        task.status == "queued"
        and task.duplicate_of is None
        and task.cycle is None
        and dependencies_met(spec.depends_on, state.status_of)
    ):
        rank = (-spec.priority, task.age, task_id)
        lane = (spec.task_type, tuple(sorted(spec.capabilities)), spec.concurrency_key, spec.concurrency_limit)
        state.ix.ranks[task_id] = (lane, rank)
        bisect.insort(state.ix.lanes.setdefault(lane, []), rank)


def _assignment(state: DispatcherState, claim: TaskClaimRequested | None) -> TaskAssigned | None:
    """The next assignment within every limit: to the claiming agent, or pushed to the least loaded one able.

    The best ready task some free agent may take is the best of the lanes' first tasks that one may take."""
    ix = state.ix
    lanes, holding_agent = ix.lanes, ix.holding_agent
    if len(ix.holders) >= state.settings.max_concurrent_tasks or not lanes:
        return None
    if claim is not None:
        slot = state.agents[claim.agent_id]
        free = [claim.agent_id] if len(holding_agent.get(claim.agent_id, ())) < slot.limit else []
    else:
        free = sorted(
            (agent_id for agent_id, slot in state.agents.items()
             if slot.available and not slot.pull_only and len(holding_agent.get(agent_id, ())) < slot.limit),
            key=lambda agent_id: (len(holding_agent.get(agent_id, ())), agent_id),
        )  # fmt: skip
    if not free:
        return None
    types = frozenset(claim.task_types) if claim is not None else frozenset()
    holding_key = ix.holding_key
    best: tuple[RankKey, str] | None = None
    for (task_type, needed, key, limit), ranks in lanes.items():
        if best is not None and ranks[0] >= best[0]:
            continue
        if types and task_type not in types:
            continue
        if key is not None and holding_key.get(key, 0) >= limit:
            continue
        for agent_id in free:
            capabilities = state.agents[agent_id].capabilities
            if all(capability in capabilities for capability in needed):
                best = (ranks[0], agent_id)
                break
    if best is None:
        return None
    (_, _, task_id), agent_id = best
    claim_id = None if claim is None else claim.claim_id
    return TaskAssigned(task_id=task_id, attempt=state.tasks[task_id].attempt + 1, agent_id=agent_id, claim_id=claim_id)
