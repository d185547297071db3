"""The agent manager decider, against a simulated world of documents, managers and worker processes.

Hypothesis drives random sequences of what the world does (documents become active and idle, people come, type and
go, managers start and stop, workers start, crash or exit when asked, timers fire) and checks, after every event:
no manager ever runs more agents than it allows; no document ever has two agents; every active document has an
agent unless it lost to more deserving documents (people in them first, then the most recent work: joins and
edits, never leaves), or waits for a restart, or failed; a document is given up on only after more abnormal exits
in a row than allowed (a run that lasted breaks the row), and recorded under its last agent; the same events always
give the same decisions, also when the state is saved and loaded in between (as the handler does, row by row); and
the decider, with its indexes, decides exactly as a reference written as plain passes over everything
(`reference_manager`).

Each run starts with one manager and is at least 20 actions long, and two composite actions (a crash followed by
its restart, a worker living long enough to prove its run) make long worker histories likely: in a sample of 300
runs, 60 gave an agent up and 99 proved a run after a restart.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from agentlog.domains.agents.events import (
    AgentAbandoned,
    AgentConnected,
    AgentDetachRequested,
    AgentFailed,
    AgentProcessExited,
    AgentProcessStarted,
    AgentSpawnRequested,
    ManagerStarted,
    ManagerStopped,
)
from agentlog.domains.deciders.events import DeciderConfigured
from agentlog.domains.documents.events import (
    DocumentActivated,
    DocumentEdited,
    DocumentIdled,
    PersonJoined,
    PersonLeft,
)
from agentlog.domains.timers.events import TimerFired, TimerScheduled
from agentlog.eventstore import Event
from agentlog.handlers.agents.manager import (
    AGENT_RESTART,
    RUN_PROVEN,
    START_DEADLINE,
    STOP_DEADLINE,
    AgentManager,
    ManagerSettings,
    ManagerState,
)
from agentlog.handlers.decider import Decision, Fact, step
from tests.unit.reference_manager import ReferenceManager
from tests.unit.saved_rows import SavedRows, private_indexes

DOCUMENTS = [f"doc{i}" for i in range(6)]
MANAGERS = ["m1", "m2"]


@dataclass
class World:
    """What really happened, kept apart from the decider's state so the checks do not trust it."""

    decider: AgentManager = field(default_factory=lambda: AgentManager(max_restarts=2))
    state: ManagerState = field(init=False)
    facts: list[Fact] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    position: int = 0
    active: set[str] = field(default_factory=set)
    last_activity: dict[str, int] = field(default_factory=dict)
    managers: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Live managers: id → (incarnation, max agents)."""
    incarnations: int = 0
    running: dict[str, AgentSpawnRequested] = field(default_factory=dict)
    """Agents holding a slot: spawned, not yet exited, their manager incarnation still alive."""
    incarnation_of: dict[str, str] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)
    detaching: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    pending_restart: dict[str, str] = field(default_factory=dict)
    """timer id → document."""
    timers: dict[str, TimerScheduled] = field(default_factory=dict)
    """Every timer scheduled and not fired yet."""
    connected: set[str] = field(default_factory=set)
    exits_in_a_row: dict[str, int] = field(default_factory=dict)
    """Abnormal exits of each document's agents since it became active or one of its agents proved a run."""
    people: dict[str, dict[str, str]] = field(default_factory=dict)
    """document → connection → the server holding it."""
    spawned_for: dict[str, list[str]] = field(default_factory=dict)
    """document → its agents, in the order they were spawned."""
    reference: ReferenceManager = field(init=False)
    saved: SavedRows | None = None
    """When set, the state is saved (row by row) after every event and loaded back for comparison."""

    def __post_init__(self) -> None:
        self.state = self.decider.initial_state()
        self.reference = ReferenceManager(self.state.settings)

    def feed(self, stream_id: str, event: Event) -> None:
        self.position += 1
        fact = Fact(event, uuid.UUID(int=self.position), stream_id, self.position)
        self.facts.append(fact)
        self.state, decisions = step(self.decider, self.state, fact)
        assert self.reference.step(fact) == decisions, "the decider and the reference decided differently"
        self.decisions.extend(decisions)
        if self.saved is not None:
            self.saved.save(self.state)
            loaded = self.saved.load(ManagerState)
            assert loaded.model_dump() == self.state.model_dump(), "what was saved row by row is not the state"
            assert private_indexes(loaded) == private_indexes(self.state), "an index drifted from the state"
        for decision in decisions:
            self.observe(decision.event)

    def rank(self, document: str) -> tuple[bool, int]:
        """How much a document deserves an agent: people in it first, then its latest join or edit."""
        return bool(self.people.get(document)), self.last_activity[document]

    def observe(self, event: Event) -> None:
        match event:
            case AgentSpawnRequested():
                assert event.manager_id in self.managers, "spawned on a manager that is not running"
                assert all(spawn.document_id != event.document_id for spawn in self.running.values()), (
                    f"a second agent for {event.document_id} while its previous one still holds a slot"
                )
                self.running[event.agent_id] = event
                self.spawned_for.setdefault(event.document_id, []).append(event.agent_id)
                self.incarnation_of[event.agent_id] = self.managers[event.manager_id][0]
                self.failed.discard(event.document_id)
            case AgentDetachRequested():
                assert event.agent_id in self.running
                if event.cause == "evicted":
                    serving = {spawn.document_id for a, spawn in self.running.items() if a not in self.detaching}
                    victim = self.rank(event.document_id)
                    assert any(self.rank(document) > victim for document in self.active - serving), (
                        f"{event.document_id} was evicted though no more deserving document was waiting"
                    )
                self.detaching.add(event.agent_id)
            case AgentFailed():
                assert self.exits_in_a_row.get(event.document_id, 0) > self.state.settings.max_restarts, (
                    f"{event.document_id} was given up on after {self.exits_in_a_row.get(event.document_id, 0)} "
                    f"abnormal exits in a row (limit {self.state.settings.max_restarts} restarts)"
                )
                assert event.agent_id == self.spawned_for[event.document_id][-1], (
                    f"AgentFailed of {event.document_id} names {event.agent_id}, not its last agent"
                )
                self.failed.add(event.document_id)
            case TimerScheduled():
                assert event.purpose in (AGENT_RESTART, START_DEADLINE, STOP_DEADLINE, RUN_PROVEN)
                self.timers[event.timer_id] = event
                if event.purpose == AGENT_RESTART:
                    self.pending_restart[event.timer_id] = event.subject
            case AgentAbandoned():
                assert event.agent_id in self.running, "abandoned an agent that was not running"
                del self.running[event.agent_id]  # the supervisor kills it; its slot is free now
                self.detaching.discard(event.agent_id)
                if event.stage == "start":
                    self._exited_abnormally(event.document_id)

    # -- what the world can do ---------------------------------------------------------------------------------

    def activate(self, document: str) -> None:
        """Someone opens an idle document: their join, then its activation (as the activity decider does it)."""
        if document in self.active:
            return
        self.join(document)
        self.active.add(document)
        self.failed.discard(document)
        self.exits_in_a_row[document] = 0
        self.last_activity[document] = self.position + 1  # before feeding: decisions are checked as they come
        self.feed(f"document-{document}", DocumentActivated(document_id=document, people_present=1, server_id="m1"))

    def touch(self, document: str) -> None:
        """One more person opens the document."""
        self.join(document)

    def join(self, document: str) -> None:
        server = MANAGERS[self.position % len(MANAGERS)]
        connection = f"c{self.position}"
        self.people.setdefault(document, {})[connection] = server
        if document in self.active:
            self.last_activity[document] = self.position + 1
        self.feed(
            f"document-{document}",
            PersonJoined(user_id="u", people_present=2, connection_id=connection, server_id=server),
        )

    def leave(self, document: str, pick: int) -> None:
        """A person closes the document: not work, so no more recent for it."""
        connections = sorted(self.people.get(document, {}))
        if not connections:
            return
        connection = connections[pick % len(connections)]
        server = self.people[document].pop(connection)
        self.feed(
            f"document-{document}",
            PersonLeft(user_id="u", people_present=0, connection_id=connection, server_id=server),
        )

    def edit(self, document: str) -> None:
        """People typed in the document (the server records it at most once a minute)."""
        if document in self.active:
            self.last_activity[document] = self.position + 1
        self.feed(f"document-{document}", DocumentEdited(document_id=document, server_id="m1", updates=3))

    def idle(self, document: str) -> None:
        """Everybody leaves and nobody comes back within the grace period."""
        if document not in self.active:
            return
        while self.people.get(document):
            self.leave(document, 0)
        self.active.discard(document)
        self.feed(f"document-{document}", DocumentIdled(document_id=document, reason="test"))

    def start_manager(self, manager: str, max_agents: int) -> None:
        self.incarnations += 1
        incarnation = f"i{self.incarnations}"
        self._drop_agents_of(manager)
        self._drop_people_of(manager)
        self.managers[manager] = (incarnation, max_agents)
        self.feed(
            f"manager-{manager}",
            ManagerStarted(
                manager_id=manager,
                incarnation=incarnation,
                host="h",
                pid=1,
                max_agents=max_agents,
                document_url="ws://x/doc",
            ),
        )

    def stop_manager(self, manager: str) -> None:
        if manager not in self.managers:
            return
        incarnation, _ = self.managers.pop(manager)
        self._drop_agents_of(manager)
        self._drop_people_of(manager)
        self.feed(
            f"manager-{manager}",
            ManagerStopped(manager_id=manager, incarnation=incarnation, how="lost", reason="test"),
        )

    def _drop_people_of(self, server: str) -> None:
        """A server that restarts or stops takes the connections it held with it."""
        for connections in self.people.values():
            for connection in [c for c, s in connections.items() if s == server]:
                del connections[connection]

    def _drop_agents_of(self, manager: str) -> None:
        for agent_id in [a for a, spawn in self.running.items() if spawn.manager_id == manager]:
            del self.running[agent_id]
            self.detaching.discard(agent_id)

    def process_started(self, pick: int) -> None:
        waiting = sorted(a for a in self.running if a not in self.started)
        if waiting:
            agent_id = waiting[pick % len(waiting)]
            self.started.add(agent_id)
            spawn = self.running[agent_id]
            self.feed(
                f"agent-{agent_id}",
                AgentProcessStarted(
                    agent_id=agent_id, document_id=spawn.document_id, manager_id=spawn.manager_id, pid=1
                ),
            )

    def process_exited(self, pick: int, crash: bool) -> None:
        agents = sorted(self.running)
        if not agents:
            return
        agent_id = agents[pick % len(agents)]
        spawn = self.running.pop(agent_id)
        expected = agent_id in self.detaching and not crash
        self.detaching.discard(agent_id)
        if not expected:
            self._exited_abnormally(spawn.document_id)
        self.feed(
            f"agent-{agent_id}",
            AgentProcessExited(
                agent_id=agent_id,
                document_id=spawn.document_id,
                manager_id=spawn.manager_id,
                pid=1,
                exit_code=0 if expected else 1,
                expected=expected,
                reason="test",
            ),
        )

    def fire_timer(self, pick: int) -> None:
        if not self.timers:
            return
        timer = self.timers.pop(sorted(self.timers)[pick % len(self.timers)])
        self.pending_restart.pop(timer.timer_id, None)
        agent = self.running.get(timer.subject)
        if timer.purpose == RUN_PROVEN and agent and timer.subject in self.connected - self.detaching:
            self.exits_in_a_row[agent.document_id] = 0
        self.feed(
            f"agent-{timer.subject}",
            TimerFired(
                timer_id=timer.timer_id,
                purpose=timer.purpose,
                subject=timer.subject,
                due_at=datetime(2026, 1, 1, tzinfo=UTC),
            ),
        )

    def connect(self, pick: int) -> None:
        candidates = sorted(a for a in self.running if a in self.started and a not in self.connected)
        if candidates:
            agent_id = candidates[pick % len(candidates)]
            self.connected.add(agent_id)
            spawn = self.running[agent_id]
            self.feed(f"agent-{agent_id}", AgentConnected(agent_id=agent_id, document_id=spawn.document_id, sync_ms=1))

    # Composites: a crash-restart cycle, and a worker living long enough to prove its run. Each is a few of the
    # actions above, in the order the world would do them; they make the long histories that matter likely.

    def crash_and_restart(self, pick: int) -> None:
        self.process_exited(pick, crash=True)
        for timer_id in sorted(self.pending_restart):
            self.fire_timer(sorted(self.timers).index(timer_id))

    def live_long(self, pick: int) -> None:
        agents = sorted(a for a in self.running if a not in self.detaching)
        if not agents:
            return
        agent_id = agents[pick % len(agents)]
        if agent_id not in self.started:
            self.process_started(sorted(a for a in self.running if a not in self.started).index(agent_id))
        if agent_id not in self.connected:
            joining = sorted(a for a in self.running if a in self.started and a not in self.connected)
            self.connect(joining.index(agent_id))
        for timer_id, timer in sorted(self.timers.items()):
            if timer.purpose == RUN_PROVEN and timer.subject == agent_id:
                self.fire_timer(sorted(self.timers).index(timer_id))

    def _exited_abnormally(self, document: str) -> None:
        self.exits_in_a_row[document] = self.exits_in_a_row.get(document, 0) + 1

    # -- the checks --------------------------------------------------------------------------------------------

    def check(self) -> None:
        documents = [spawn.document_id for spawn in self.running.values()]
        assert len(documents) == len(set(documents)), f"two agents on one document: {sorted(documents)}"
        per_manager: dict[str, int] = {}
        for spawn in self.running.values():
            per_manager[spawn.manager_id] = per_manager.get(spawn.manager_id, 0) + 1
        for manager, count in per_manager.items():
            assert manager in self.managers, f"agents still counted on stopped manager {manager}"
            assert count <= self.managers[manager][1], (
                f"{manager} runs {count} agents, limit {self.managers[manager][1]}"
            )
        serving = {spawn.document_id for a, spawn in self.running.items() if a not in self.detaching}
        waiting_for_restart = set(self.pending_restart.values())
        capacity = sum(max_agents for _, max_agents in self.managers.values())
        for document in self.active - serving - self.failed - waiting_for_restart:
            if self.detaching or capacity == 0:
                continue  # a slot is on its way back, or there is nowhere to run anything
            holders = [self.rank(spawn.document_id) for a, spawn in self.running.items() if a not in self.detaching]
            assert len(self.running) >= capacity, f"{document} is active without an agent while a slot is free"
            assert all(holder >= self.rank(document) for holder in holders), (
                f"{document} lost its slot to a less deserving document"
            )


WORKER_LIFE = [
    st.tuples(st.just("process_started"), st.integers(0, 10)),
    st.tuples(st.just("process_exited"), st.integers(0, 10), st.booleans()),
    st.tuples(st.just("fire_timer"), st.integers(0, 10)),
    st.tuples(st.just("connect"), st.integers(0, 10)),
]
ACTIONS = st.one_of(
    st.tuples(st.just("activate"), st.sampled_from(DOCUMENTS)),
    st.tuples(st.just("touch"), st.sampled_from(DOCUMENTS)),
    st.tuples(st.just("leave"), st.sampled_from(DOCUMENTS), st.integers(0, 3)),
    st.tuples(st.just("edit"), st.sampled_from(DOCUMENTS)),
    st.tuples(st.just("idle"), st.sampled_from(DOCUMENTS)),
    st.tuples(st.just("start_manager"), st.sampled_from(MANAGERS), st.integers(0, 3)),
    st.tuples(st.just("stop_manager"), st.sampled_from(MANAGERS)),
    *WORKER_LIFE,
    st.tuples(st.just("crash_and_restart"), st.integers(0, 10)),
    st.tuples(st.just("live_long"), st.integers(0, 10)),
)
RUNS = st.lists(ACTIONS, min_size=20, max_size=80)


def run(actions: list[tuple[object, ...]]) -> World:
    world = World()
    world.start_manager("m1", 2)
    for name, *arguments in actions:
        getattr(world, str(name))(*arguments)
        world.check()
    return world


@settings(max_examples=300, deadline=None)
@given(RUNS)
def test_limits_hold_and_only_more_deserving_documents_win_slots(actions: list[tuple[object, ...]]) -> None:
    run(actions)


@settings(max_examples=100, deadline=None)
@given(RUNS, st.integers(0, 80))
def test_the_same_events_give_the_same_decisions_also_across_a_saved_state(
    actions: list[tuple[object, ...]], cut: int
) -> None:
    world = run(actions)
    decider = AgentManager(max_restarts=2)
    state = decider.initial_state()
    replayed: list[Decision] = []
    for index, fact in enumerate(world.facts):
        if index == cut:  # what the handler does between batches: save the state, load it back
            saved = SavedRows()
            saved.save(state, everything=True)
            state = saved.load(ManagerState)
        if index == cut // 2:  # the whole state as one JSON value loads alike
            state = ManagerState.model_validate_json(state.model_dump_json())
        state, decisions = step(decider, state, fact)
        replayed.extend(decisions)
    assert replayed == world.decisions


@settings(max_examples=100, deadline=None)
@given(RUNS)
def test_what_each_event_changed_is_saved_and_the_indexes_follow_the_state(actions: list[tuple[object, ...]]) -> None:
    """Saved after every event, row by row, and loaded back: the same state, the same indexes built from scratch."""
    world = World(saved=SavedRows())
    world.start_manager("m1", 2)
    for name, *arguments in actions:
        getattr(world, str(name))(*arguments)
    assert world.saved is not None
    assert world.saved.written <= 8 * len(world.facts), "a save wrote more than what its event touched"


SETTINGS = st.builds(
    ManagerSettings,
    max_restarts=st.integers(0, 3),
    restart_backoff_s=st.sampled_from([0.5, 1, 7]),
    start_deadline_s=st.sampled_from([5, 60.0]),
    stop_deadline_s=st.sampled_from([3, 30.0]),
    proven_run_s=st.sampled_from([1, 45.5, 300]),
)


def configure(world: World, chosen: ManagerSettings) -> None:
    world.feed(
        "decider-agent-manager",
        DeciderConfigured(decider="agent-manager", settings=chosen.model_dump(mode="json")),
    )


@settings(max_examples=150, deadline=None)
@given(SETTINGS, st.lists(st.one_of(ACTIONS, st.tuples(st.just("configure"), SETTINGS)), min_size=20, max_size=80))
def test_a_process_configured_otherwise_replays_the_same_decisions(
    first: ManagerSettings, actions: list[tuple[object, ...]]
) -> None:
    """Settings changes are in the log: a replayer with other settings of its own decides exactly alike."""
    world = World()
    configure(world, first)
    world.start_manager("m1", 2)
    for name, *arguments in actions:
        if name == "configure":
            configure(world, arguments[0])  # type: ignore[arg-type]
        else:
            getattr(world, str(name))(*arguments)
    replayer = AgentManager(max_restarts=9, proven_run_s=1234, start_deadline_s=1)
    state = replayer.initial_state()
    replayed: list[Decision] = []
    for fact in world.facts:
        state, decisions = step(replayer, ManagerState.model_validate_json(state.model_dump_json()), fact)
        replayed.extend(decisions)
    assert replayed == world.decisions


def test_eviction_picks_the_least_recently_active_document_and_says_why() -> None:
    world = World()
    world.start_manager("m1", 2)
    world.activate("a")
    world.activate("b")
    world.touch("a")  # a is now more recently active than b
    world.activate("c")
    evictions = [d.event for d in world.decisions if isinstance(d.event, AgentDetachRequested)]
    assert [(e.document_id, e.cause) for e in evictions] == [("b", "evicted")]
    assert "document c was active more recently than b" in evictions[0].reason
    spawned_before = [d.event.document_id for d in world.decisions if isinstance(d.event, AgentSpawnRequested)]
    assert spawned_before == ["a", "b"]  # c waits for b's agent to exit
    b_agent = next(a for a, spawn in world.running.items() if spawn.document_id == "b")
    world.process_exited(sorted(world.running).index(b_agent), crash=False)
    spawned = [d.event.document_id for d in world.decisions if isinstance(d.event, AgentSpawnRequested)]
    assert spawned == ["a", "b", "c"]


def test_a_crashing_worker_is_restarted_with_backoff_then_marked_failed() -> None:
    world = World()
    world.start_manager("m1", 1)
    world.activate("a")
    delays = []
    for _ in range(3):
        world.process_exited(0, crash=True)
        if world.pending_restart:
            (timer_id,) = world.pending_restart
            delays.append(world.timers[timer_id].delay_s)
            world.fire_timer(sorted(world.timers).index(timer_id))
    assert delays == [1.0, 2.0]
    failures = [d.event for d in world.decisions if isinstance(d.event, AgentFailed)]
    assert len(failures) == 1 and failures[0].attempts == 3
    assert "a" in world.failed and not world.running


def test_a_run_that_lasted_ends_the_streak_of_failures() -> None:
    world = World()  # max_restarts=2
    world.start_manager("m1", 1)
    world.activate("a")
    for _ in range(2):
        world.crash_and_restart(0)
    assert not any(timer.purpose == RUN_PROVEN for timer in world.timers.values()), "the agent has not joined yet"
    world.live_long(0)  # joined, and stayed long enough: the streak is over
    (proven,) = [f.event for f in world.facts if isinstance(f.event, TimerFired) and f.event.purpose == RUN_PROVEN]
    assert proven.subject == next(iter(world.running))
    for _ in range(2):
        world.crash_and_restart(0)
    assert not [d for d in world.decisions if isinstance(d.event, AgentFailed)]
    assert len(world.running) == 1, "restarted again"
    world.crash_and_restart(0)  # a third in a row since the proven run
    (failed,) = [d.event for d in world.decisions if isinstance(d.event, AgentFailed)]
    assert failed.attempts == 3 and "3 times in a row" in failed.reason


def test_settings_come_from_the_log_from_their_event_on() -> None:
    world = World()  # configured with max_restarts=2
    world.start_manager("m1", 1)
    world.activate("a")
    world.feed("decider-other", DeciderConfigured(decider="document-activity", settings={"max_restarts": 9}))
    world.feed("decider-agent-manager", DeciderConfigured(decider="agent-manager", settings={"max_restarts": 0}))
    assert world.state.settings.max_restarts == 0, "the agent manager's own settings event applies"
    world.process_exited(0, crash=True)
    (failed,) = [d.event for d in world.decisions if isinstance(d.event, AgentFailed)]
    assert "the limit is 0 restarts" in failed.reason


def test_an_agent_that_never_joins_is_abandoned_and_its_slot_reused() -> None:
    world = World()
    world.start_manager("m1", 1)
    world.activate("a")
    (deadline,) = [timer for timer in world.timers.values() if timer.purpose == START_DEADLINE]
    assert deadline.delay_s == 60
    world.fire_timer(sorted(world.timers).index(deadline.timer_id))
    (abandoned,) = [d.event for d in world.decisions if isinstance(d.event, AgentAbandoned)]
    assert abandoned.stage == "start" and "within 60 s" in abandoned.reason
    assert list(world.pending_restart.values()) == ["a"]  # counted as a failed start: restarted after a backoff
    (restart,) = world.pending_restart
    world.fire_timer(sorted(world.timers).index(restart))
    spawns = [d.event for d in world.decisions if isinstance(d.event, AgentSpawnRequested)]
    assert [spawn.attempt for spawn in spawns] == [1, 2]


def test_a_connected_agent_outlives_its_start_deadline() -> None:
    world = World()
    world.start_manager("m1", 1)
    world.activate("a")
    world.process_started(0)
    world.connect(0)
    (deadline,) = [timer for timer in world.timers.values() if timer.purpose == START_DEADLINE]
    world.fire_timer(sorted(world.timers).index(deadline.timer_id))
    assert not [d for d in world.decisions if isinstance(d.event, AgentAbandoned)]


def test_a_lost_manager_s_documents_move_to_the_other_manager() -> None:
    world = World()
    world.start_manager("m1", 2)
    world.start_manager("m2", 2)
    for document in ["a", "b", "c"]:
        world.activate(document)
    placed = {
        d.event.document_id: d.event.manager_id for d in world.decisions if isinstance(d.event, AgentSpawnRequested)
    }
    assert sorted(placed.values()) == ["m1", "m1", "m2"]  # spread by free slots
    world.stop_manager("m1")
    moved = [d.event for d in world.decisions if isinstance(d.event, AgentSpawnRequested)][3:]
    assert {e.manager_id for e in moved} == {"m2"} and len(moved) == 1  # m2 has one free slot left


def spawned(world: World) -> list[str]:
    return [d.event.document_id for d in world.decisions if isinstance(d.event, AgentSpawnRequested)]


def evicted(world: World) -> list[AgentDetachRequested]:
    detaches = [d.event for d in world.decisions if isinstance(d.event, AgentDetachRequested)]
    return [detach for detach in detaches if detach.cause == "evicted"]


def exit_of(world: World, document: str) -> None:
    agent_id = next(a for a, spawn in world.running.items() if spawn.document_id == document)
    world.process_exited(sorted(world.running).index(agent_id), crash=False)


def test_leaving_is_not_work_and_an_empty_document_never_evicts_one_people_are_in() -> None:
    """Issue 10, item 4: with one slot, a document whose person left (in its grace period) took the agent of a
    document a person was still in, because the leave counted as its most recent activity."""
    world = World()
    world.start_manager("m1", 1)
    world.activate("b")
    world.activate("a")  # more recent: b's agent is evicted for it
    exit_of(world, "b")
    assert spawned(world) == ["b", "a"] and len(evicted(world)) == 1
    world.leave("b", 0)  # b is empty now, waiting out its grace period; someone is still in a
    assert len(evicted(world)) == 1, f"{evicted(world)[-1].document_id}'s agent was evicted for an empty document"
    world.touch("b")  # someone is back in b, and more recently than anything in a: now b deserves the slot
    assert [e.document_id for e in evicted(world)] == ["b", "a"]


def test_a_document_being_typed_in_is_more_recently_active_than_one_only_opened() -> None:
    """Issue 10, item 4: edits never counted, so a document typed in for an hour was "least recently active"."""
    world = World()
    world.start_manager("m1", 1)
    world.activate("a")
    world.activate("b")  # opened after a: a's agent goes to b
    exit_of(world, "a")
    assert spawned(world) == ["a", "b"]
    world.edit("a")  # people in a type (recorded once a minute): a is the more recently active one now
    (_, eviction) = evicted(world)
    assert eviction.document_id == "b" and "document a was active more recently than b" in eviction.reason


def test_people_in_a_document_outrank_a_more_recent_empty_one_and_the_reason_says_so() -> None:
    world = World()
    world.start_manager("m1", 1)
    world.activate("a")
    world.leave("a", 0)  # a is empty (in its grace period) and keeps its agent while nobody else wants one
    world.activate("b")  # someone opens b
    (eviction,) = evicted(world)
    assert eviction.document_id == "a"
    assert "people are in document b and nobody is in a" in eviction.reason


def test_an_agent_given_up_on_after_a_failed_start_is_recorded_under_its_own_id() -> None:
    """Issue 10, item 9: after a start-stage abandon, AgentFailed named the document id as if it were an agent's,
    so the agent's projection row was never updated."""
    world = World(decider=AgentManager(max_restarts=0))
    world.start_manager("m1", 1)
    world.activate("a")
    (agent_id,) = world.running
    (deadline,) = [timer for timer in world.timers.values() if timer.purpose == START_DEADLINE]
    world.fire_timer(sorted(world.timers).index(deadline.timer_id))
    (failed,) = [d for d in world.decisions if isinstance(d.event, AgentFailed)]
    assert isinstance(failed.event, AgentFailed)
    assert (failed.stream_id, failed.event.agent_id) == (f"agent-{agent_id}", agent_id)


def test_a_document_active_again_at_once_waits_for_its_detaching_agent() -> None:
    """Issue 10, item 9: one agent per document, always; a quick re-activation spawned a second agent while the
    first was still detaching."""
    world = World()
    world.start_manager("m1", 2)
    world.activate("a")
    world.idle("a")  # its agent is asked to detach and still holds its slot
    world.activate("a")
    assert spawned(world) == ["a"], "a second agent for a while the first one is still detaching"
    exit_of(world, "a")
    assert spawned(world) == ["a", "a"] and len(world.running) == 1
