"""The task dispatcher decider, against a simulated world of agents working (and failing) on tasks.

Hypothesis drives random sequences of what the world does — tasks created with priorities, capabilities,
dependencies (forward references and cycles included), concurrency keys, dedupe keys and delays; agents starting,
heart-beating, completing, failing and snoozing, sometimes with a stale attempt, sometimes past the API; people
cancelling and requeueing; agents going and coming back, going offline, claiming; timers firing — then drains the
world until nothing moves. The checks use the world's own fold of the log (`TaskLifecycle` per stream), never the
decider's state: after every event no concurrency limit is exceeded (global, per agent, per key); every assignment
goes to an available agent having the capabilities, of a task whose dependencies all completed, and no better
ranked ready task was one that agent could take; the decider's tasks agree with the world's; a stale attempt's
completion never lands; in the end every task is in exactly one terminal state; the same events always give the
same decisions, also when the state is saved and loaded row by row after every event.

In the lagged world the decisions do not land in the log at once, as they do not live (they are appended when the
handler's batch commits): the world goes on acting meanwhile — an agent completes the attempt whose execution timer
fired, a person cancels what was just assigned — and the decisions land later, in order, after those events. The
world's fold is then the truth every other fold of the streams (the API's, the projections') sees, and the
dispatcher must end up agreeing with it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from agentlog.domains.coordination.events import AgentGone, AgentRegistered, AgentUpdated
from agentlog.domains.tasks.events import (
    TaskAssigned,
    TaskCancelled,
    TaskClaimRequested,
    TaskCompleted,
    TaskCreated,
    TaskFailed,
    TaskHeartbeat,
    TaskRequeued,
    TaskSnoozed,
    TaskStarted,
    claim_stream,
    task_stream,
)
from agentlog.domains.tasks.lifecycle import TERMINAL, TaskLifecycle, check, refusal_event
from agentlog.domains.timers.events import TimerFired, TimerScheduled
from agentlog.eventstore import Event
from agentlog.handlers.decider import Decision, Fact, step
from agentlog.handlers.decisions import decision_id
from agentlog.handlers.tasks.dispatcher import Dispatcher, DispatcherState
from tests.unit.saved_rows import SavedRows, private_indexes

MAX_CONCURRENT = 3
KEY_LIMITS = {"k1": 1, "k2": 2}
AGENTS = {"a0": ({"x"}, 1, False), "a1": ({"x", "y"}, 2, False), "a2": ({"y"}, 1, True)}
"""agent → (capabilities, limit, pull only)."""
TASKS = [f"t{i}" for i in range(8)]
DUE = datetime(2026, 1, 1, tzinfo=UTC)


def registered(agent_id: str) -> AgentRegistered:
    capabilities, limit, pull = AGENTS[agent_id]
    metadata = {"max_concurrent_tasks": limit, **({"task_mode": "pull"} if pull else {})}
    return AgentRegistered(agent_id=agent_id, capabilities=sorted(capabilities), metadata=metadata)


@dataclass
class World:
    lagged: bool = False
    """Decisions land when the world says (`land`), not right after the event they were made after."""
    decider: Dispatcher = field(default_factory=lambda: Dispatcher(max_concurrent_tasks=MAX_CONCURRENT))
    state: DispatcherState = field(init=False)
    facts: list[Fact] = field(default_factory=list)
    """The log: the world's events and the decisions as they landed."""
    decisions: list[list[Decision]] = field(default_factory=list)
    """Per entry of the log: the decisions made after it."""
    own: list[bool] = field(default_factory=list)
    """Per entry of the log: whether it is one of the dispatcher's decisions, landed."""
    inflight: list[Fact] = field(default_factory=list)
    """Decisions made, not landed yet."""
    tasks: dict[str, TaskLifecycle] = field(default_factory=dict)
    ages: dict[str, int] = field(default_factory=dict)
    agents: dict[str, bool] = field(default_factory=dict)
    """Registered agents → available."""
    timers: dict[str, tuple[str, TimerScheduled]] = field(default_factory=dict)
    completions: dict[str, list[int]] = field(default_factory=dict)
    """Task → attempts whose completion the world's fold accepted."""
    saved: SavedRows = field(default_factory=SavedRows)
    claims: int = 0

    def __post_init__(self) -> None:
        self.state = self.decider.initial_state()

    # -- feeding -----------------------------------------------------------------------------------------------

    def feed(self, stream_id: str, event: Event) -> None:
        position = len(self.facts) + 1
        fact = Fact(event, uuid.UUID(int=position), stream_id, position)
        self.facts.append(fact)
        self.observe(stream_id, event, decided=False)
        self.decide(fact, recorded=False)
        while self.inflight and not self.lagged:
            self.land(1)
        self.checked()

    def decide(self, fact: Fact, *, recorded: bool) -> None:
        self.state, decisions = step(self.decider, self.state, fact, recorded=recorded)
        self.decisions.append(decisions)
        self.own.append(recorded)
        for index, decision in enumerate(decisions):
            own_id = decision_id(self.decider.name, fact.event_id, index)
            self.inflight.append(Fact(decision.event, own_id, decision.stream_id, None))

    def land(self, count: int) -> None:
        """The first `count` decisions in flight land in the log, in the order they were made (and the
        dispatcher, reading them back, may decide more)."""
        for _ in range(min(count, len(self.inflight))):
            own = self.inflight.pop(0)
            landed = Fact(own.event, own.event_id, own.stream_id, len(self.facts) + 1)
            self.facts.append(landed)
            self.observe(landed.stream_id, landed.event, decided=True)
            self.decide(landed, recorded=True)
        self.checked()

    def checked(self) -> None:
        self.check_invariants()
        self.saved.save(self.state)
        loaded = self.saved.load(DispatcherState)
        assert loaded.model_dump() == self.state.model_dump()
        assert private_indexes(loaded) == private_indexes(self.state)

    def command(self, event: TaskStarted | TaskHeartbeat | TaskCompleted | TaskFailed | TaskSnoozed | TaskCancelled,
                *, past_the_api: bool = False) -> None:  # fmt: skip
        """As the API does: a refused command is recorded as refused (or, past the API, appended as it is)."""
        task = self.tasks[event.task_id]
        refusal = check(task, event)
        if refusal is not None and not past_the_api:
            self.feed(task_stream(event.task_id), refusal_event(task, event, refusal))
        else:
            self.feed(task_stream(event.task_id), event)

    def observe(self, stream_id: str, event: Event, *, decided: bool) -> None:
        if isinstance(event, TaskAssigned):
            self.check_assignment(event)
        if isinstance(event, AgentRegistered):
            self.agents[event.agent_id] = True
        elif isinstance(event, AgentUpdated) and event.agent_id in self.agents and event.status is not None:
            self.agents[event.agent_id] = event.status not in {"offline", "blocked"}
        elif isinstance(event, AgentGone):
            self.agents.pop(event.agent_id, None)
        elif isinstance(event, TimerScheduled):
            self.timers[event.timer_id] = (stream_id, event)
            self.tasks[event.subject].fold(event)
        elif isinstance(event, TimerFired):
            self.tasks[event.subject].fold(event)
        elif stream_id.startswith("task-"):
            task_id = stream_id.removeprefix("task-")
            task = self.tasks.setdefault(task_id, TaskLifecycle())
            if isinstance(event, TaskCreated) and task.status == "new":
                self.ages[task_id] = len(self.ages)
            if task.fold(event) and isinstance(event, TaskCompleted):
                self.completions.setdefault(task_id, []).append(event.attempt)
            if task.status == "new":
                del self.tasks[task_id]

    # -- checks ------------------------------------------------------------------------------------------------

    def holding(self) -> list[TaskLifecycle]:
        return [task for task in self.tasks.values() if task.holding]

    def key_room(self, task: TaskLifecycle) -> bool:
        assert task.spec is not None
        key = task.spec.concurrency_key
        held = sum(1 for other in self.holding() if other.spec and other.spec.concurrency_key == key)
        return key is None or held < KEY_LIMITS[key]

    def ready(self, task: TaskLifecycle) -> bool:
        assert task.spec is not None
        deps = task.spec.depends_on
        return task.status == "queued" and all(d in self.tasks and self.tasks[d].status == "completed" for d in deps)

    def check_assignment(self, assigned: TaskAssigned) -> None:
        task = self.tasks[assigned.task_id]
        assert task.spec is not None
        agent = assigned.agent_id
        capabilities, limit, pull = AGENTS[agent]
        if self.lagged and check(task, assigned) is not None:
            return  # the log moved the task since (cancelled, say): the lifecycle refuses the assignment
        assert self.ready(task), "a task is assigned before all its dependencies completed"
        assert set(task.spec.capabilities) <= capabilities
        assert pull == (assigned.claim_id is not None) or assigned.claim_id is not None
        assert len(self.holding()) < MAX_CONCURRENT
        assert sum(1 for other in self.holding() if other.agent_id == agent) < limit
        assert self.key_room(task)
        if self.lagged:
            return  # which agents are available and which tasks ready are as of the decision, not of its landing
        assert self.agents.get(agent), "assigned to an agent not registered and available"
        rank = (-task.spec.priority, self.ages[assigned.task_id])
        for other_id, other in self.tasks.items():
            if other_id == assigned.task_id or other.spec is None or not self.ready(other):
                continue
            if (-other.spec.priority, self.ages[other_id]) < rank:
                able = set(other.spec.capabilities) <= capabilities and self.key_room(other)
                assert not able, f"{assigned.task_id} went to {agent} before the better ranked {other_id}"

    def check_invariants(self) -> None:
        holding = self.holding()
        assert len(holding) <= MAX_CONCURRENT
        for agent_id, (_, limit, _) in AGENTS.items():
            assert sum(1 for task in holding if task.agent_id == agent_id) <= limit
        for key, limit in KEY_LIMITS.items():
            assert sum(1 for task in holding if task.spec and task.spec.concurrency_key == key) <= limit
        for task_id, task in self.tasks.items():
            if self.inflight:
                break  # the dispatcher is ahead of the log until its decisions land
            mine = self.state.tasks[task_id]
            assert (mine.status, mine.attempt, mine.agent_id, mine.attempts_spent, mine.reason) == (
                task.status, task.attempt, task.agent_id, task.attempts_spent, task.reason,
            )  # fmt: skip
            if task.holding and not self.lagged:  # lagged, the agent may go before the failure of its attempt lands
                assert task.agent_id in self.agents, "an attempt is held by an agent that is gone"
        for task_id, attempts in self.completions.items():
            assert len(attempts) == 1, f"task {task_id} completed twice"

    # -- the world's actions -----------------------------------------------------------------------------------

    def act(self, action: tuple[object, ...]) -> None:
        kind = action[0]
        if kind == "create":
            _, index, priority, caps, deps, key, dedupe, attempts, delayed = action
            task_id = TASKS[index]  # type: ignore[index]
            created = TaskCreated(
                task_id=task_id, task_type="echo", priority=priority, capabilities=sorted(caps),  # type: ignore[arg-type]
                depends_on=sorted({TASKS[d] for d in deps} - {task_id}),  # type: ignore[attr-defined]
                concurrency_key=key, concurrency_limit=KEY_LIMITS.get(key, 1),  # type: ignore[arg-type]
                dedupe_key=dedupe, max_attempts=attempts, run_after_s=30.0 if delayed else 0.0,  # type: ignore[arg-type]
                heartbeat_interval_s=5.0, execution_timeout_s=60.0,
            )  # fmt: skip
            self.feed(task_stream(task_id), created)
        elif kind == "work":
            _, index, what, stale, past = action
            worked = sorted((t for t in self.tasks.values() if t.agent_id is not None), key=lambda t: t.task_id)
            if not worked:
                return
            task = worked[index % len(worked)]  # type: ignore[operator]
            assert task.agent_id is not None
            attempt = task.attempt - 1 if stale and task.attempt > 1 else task.attempt
            ids = {"task_id": task.task_id, "attempt": attempt, "agent_id": task.agent_id}
            event = {
                "start": lambda: TaskStarted(**ids),
                "beat": lambda: TaskHeartbeat(**ids),
                "complete": lambda: TaskCompleted(**ids, result={"attempt": attempt}),
                "fail": lambda: TaskFailed(**ids, error="boom"),
                "fatal": lambda: TaskFailed(**ids, error="bad input", retryable=False),
                "snooze": lambda: TaskSnoozed(**ids, delay_s=5.0),
            }[what]()  # type: ignore[index]
            self.command(event, past_the_api=bool(past))
        elif kind == "cancel":
            task = self.tasks.get(TASKS[action[1]])  # type: ignore[index]
            if task is not None:
                holder = task.agent_id if task.holding else None
                self.command(TaskCancelled(task_id=task.task_id, agent_id=holder, attempt=task.attempt, reason="x"))
        elif kind == "requeue":
            task = self.tasks.get(TASKS[action[1]])  # type: ignore[index]
            if task is not None and task.status == "dead_lettered":
                self.feed(task_stream(task.task_id), TaskRequeued(task_id=task.task_id))
        elif kind == "fire":
            if self.timers:
                timer_id = sorted(self.timers)[action[1] % len(self.timers)]  # type: ignore[operator]
                self.fire(timer_id)
        elif kind == "gone":
            agent_id = sorted(AGENTS)[action[1]]  # type: ignore[index]
            if agent_id in self.agents:
                self.feed(f"member-{agent_id}", AgentGone(agent_id=agent_id, reason="silent"))
            else:
                self.feed(f"member-{agent_id}", registered(agent_id))
        elif kind == "offline":
            agent_id = sorted(AGENTS)[action[1]]  # type: ignore[index]
            if agent_id in self.agents:
                status = "offline" if self.agents[agent_id] else "active"
                self.feed(f"member-{agent_id}", AgentUpdated(agent_id=agent_id, status=status))
        elif kind == "land":
            self.land(action[1])  # type: ignore[arg-type]
        elif kind == "claim":
            agent_id = sorted(AGENTS)[action[1]]  # type: ignore[index]
            self.claims += 1
            self.feed(claim_stream(agent_id), TaskClaimRequested(claim_id=f"c{self.claims}", agent_id=agent_id))

    def fire(self, timer_id: str) -> None:
        stream_id, timer = self.timers.pop(timer_id)
        self.feed(stream_id, TimerFired(timer_id=timer_id, purpose=timer.purpose, subject=timer.subject, due_at=DUE))

    def drain(self) -> None:
        """Agents do their work, timers fire, and what cannot finish is cancelled, until nothing is left."""
        for agent_id in AGENTS:
            if not self.agents.get(agent_id):
                self.feed(f"member-{agent_id}", registered(agent_id))
        for _ in range(500):
            while self.inflight:
                self.land(len(self.inflight))
            if all(task.terminal for task in self.tasks.values()) and not self.timers:
                return
            moved = False
            for task in sorted(self.holding(), key=lambda t: t.task_id):
                assert task.agent_id is not None
                ids = {"task_id": task.task_id, "attempt": task.attempt, "agent_id": task.agent_id}
                if task.status == "assigned":
                    self.command(TaskStarted(**ids))  # type: ignore[arg-type]
                self.command(TaskCompleted(**ids, result={"attempt": task.attempt}))  # type: ignore[arg-type]
                moved = True
            if self.timers:
                self.fire(sorted(self.timers)[0])
                moved = True
            if not moved:
                self.feed(claim_stream("a2"), TaskClaimRequested(claim_id=f"d{len(self.facts)}", agent_id="a2"))
                if not self.holding():
                    for task in sorted(self.tasks.values(), key=lambda t: t.task_id):
                        if not task.terminal:
                            self.command(TaskCancelled(task_id=task.task_id, reason="cannot run"))
                            break
        raise AssertionError("the world did not settle")


task_index = st.integers(0, len(TASKS) - 1)
agent_index = st.integers(0, len(AGENTS) - 1)
creates = st.tuples(
    st.just("create"), task_index, st.integers(1, 10), st.sets(st.sampled_from(["x", "y"])),
    st.one_of(st.just([]), st.lists(task_index, max_size=2)), st.sampled_from([None, None, "k1", "k2"]),
    st.sampled_from([None, None, "d"]),
    st.integers(1, 3), st.booleans(),
)  # fmt: skip
works = st.tuples(
    st.just("work"), task_index, st.sampled_from(["start", "beat", "complete", "fail", "fatal", "snooze"]),
    st.booleans(), st.booleans(),
)  # fmt: skip
fires = st.tuples(st.just("fire"), st.integers(0, 50))
actions = st.one_of(
    creates, creates, works, works, works, fires, fires,
    st.tuples(st.just("cancel"), task_index),
    st.tuples(st.just("requeue"), task_index),
    st.tuples(st.just("gone"), agent_index),
    st.tuples(st.just("offline"), agent_index),
    st.tuples(st.just("claim"), agent_index),
)  # fmt: skip
lagged_actions = st.one_of(actions, st.tuples(st.just("land"), st.integers(1, 4)))


def run(steps: list[tuple[object, ...]], *, lagged: bool = False) -> World:
    world = World(lagged=lagged)
    for agent_id in AGENTS:
        world.feed(f"member-{agent_id}", registered(agent_id))
    for action in steps:
        world.act(action)
    world.drain()
    return world


@given(st.lists(actions, min_size=20, max_size=80))
@settings(max_examples=80, deadline=None)
def test_the_dispatcher_keeps_every_limit_order_and_attempt_and_every_task_ends(
    steps: list[tuple[object, ...]],
) -> None:
    check_the_end(run(steps))


@given(st.lists(lagged_actions, min_size=20, max_size=80))
@settings(max_examples=80, deadline=None)
def test_decisions_landing_after_other_events_of_their_tasks_leave_the_dispatcher_agreeing_with_the_log(
    steps: list[tuple[object, ...]],
) -> None:
    check_the_end(run(steps, lagged=True))


def check_the_end(world: World) -> None:
    for task_id, task in world.tasks.items():
        assert task.status in TERMINAL, f"{task_id} ended {task.status}"
        assert world.state.tasks[task_id].status == task.status
        if task.status == "completed":
            assert world.completions[task_id] == [task.attempt], "a stale attempt's completion landed"
            assert task.spec is not None
            for dependency in task.spec.depends_on:
                assert world.tasks[dependency].status == "completed"
    replayed = Dispatcher(max_concurrent_tasks=MAX_CONCURRENT)
    state = replayed.initial_state()
    for fact, recorded, own in zip(world.facts, world.decisions, world.own, strict=True):
        state, decisions = step(replayed, state, fact, recorded=own)
        assert decisions == recorded, "the same events gave other decisions"


def test_priority_then_age_then_the_least_loaded_agent() -> None:
    world = World()
    for index, priority in enumerate([3, 9, 9, 1]):
        world.feed(task_stream(TASKS[index]), TaskCreated(task_id=TASKS[index], task_type="echo", priority=priority))
    world.feed("member-a1", registered("a1"))  # takes two: t1 (9, older), then t2 (9)
    world.feed("member-a0", registered("a0"))  # takes one: t0 (3)
    assigned = [d.event for ds in world.decisions for d in ds if isinstance(d.event, TaskAssigned)]
    assert [(a.task_id, a.agent_id) for a in assigned] == [("t1", "a1"), ("t2", "a1"), ("t0", "a0")]
    assert world.state.ready() == ["t3"]


def test_a_killed_agents_attempt_is_requeued_as_a_new_one_and_its_late_completion_refused() -> None:
    world = World()
    world.feed("member-a0", registered("a0"))
    world.feed(task_stream("t0"), TaskCreated(task_id="t0", task_type="echo", heartbeat_interval_s=5))
    world.command(TaskStarted(task_id="t0", attempt=1, agent_id="a0"))
    beat = next(t for t in world.timers.values() if t[1].purpose == "task-heartbeat")[1]
    world.fire(beat.timer_id)  # heard (the start): the next check
    beat = next(t for t in world.timers.values() if t[1].purpose == "task-heartbeat")[1]
    world.fire(beat.timer_id)  # silent since: the attempt fails and is retried after a back-off
    task = world.tasks["t0"]
    assert (task.status, task.attempts_spent, task.last_error) == ("waiting", 1, "attempt 1 no start or heartbeat "
                                                                  "within 10 s")  # fmt: skip
    retry = next(t for t in world.timers.values() if t[1].purpose == "task-retry")[1]
    world.fire(retry.timer_id)
    assert (task.status, task.attempt) == ("assigned", 2)
    world.command(TaskCompleted(task_id="t0", attempt=1, agent_id="a0", result={"late": True}))
    refused = world.facts[-1].event
    assert refused.event_type == "TaskAttemptRefused" and refused.to_data()["rule"] == "stale-attempt"
    assert task.status == "assigned"


def test_dependents_wait_and_fail_with_their_dependency() -> None:
    world = World()
    world.feed("member-a1", registered("a1"))
    world.feed(task_stream("t1"), TaskCreated(task_id="t1", task_type="echo", depends_on=["t0"]))
    world.feed(task_stream("t2"), TaskCreated(task_id="t2", task_type="echo", depends_on=["t1"]))
    world.feed(task_stream("t0"), TaskCreated(task_id="t0", task_type="echo", max_attempts=1))
    assert world.tasks["t0"].status == "assigned" and world.tasks["t1"].status == "queued"
    world.command(TaskFailed(task_id="t0", attempt=1, agent_id="a1", error="boom"))
    assert world.tasks["t0"].status == "dead_lettered"
    assert world.tasks["t1"].reason == "dependency t0 was dead-lettered"
    assert world.tasks["t2"].reason == "dependency t1 was dead-lettered"


def test_a_cycle_is_dead_lettered_and_a_duplicate_of_a_live_task_cancelled() -> None:
    world = World()
    world.feed(task_stream("t0"), TaskCreated(task_id="t0", task_type="echo", depends_on=["t1"]))
    world.feed(task_stream("t1"), TaskCreated(task_id="t1", task_type="echo", depends_on=["t0"]))
    assert world.tasks["t1"].reason == "a cycle of dependencies t1 -> t0 -> t1"
    assert world.tasks["t0"].reason == "dependency t1 was dead-lettered"
    world.feed(task_stream("t2"), TaskCreated(task_id="t2", task_type="echo", dedupe_key="d"))
    world.feed(task_stream("t3"), TaskCreated(task_id="t3", task_type="echo", dedupe_key="d"))
    assert world.tasks["t3"].status == "cancelled" and world.tasks["t2"].status == "queued"
    world.command(TaskCancelled(task_id="t2", reason="not needed"))
    world.feed(task_stream("t4"), TaskCreated(task_id="t4", task_type="echo", dedupe_key="d"))
    assert world.tasks["t4"].status == "queued", "the key is free again once its task finished"
