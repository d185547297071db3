"""Restarts in a row, against a two-sided model of the agent manager's world.

Only the abnormal exits of a document's current agent count; the world itself judges a proven run (the current
agent, joined, not detaching, when its run timer fires); the decider must give up exactly when the row exceeds
`max_restarts` (not only "not too early"), and must ask every agent that joins during a row for a proven run, with
the configured delay. Written by a reviewer of the first version, which its mutants showed the other property test
could not tell apart from several broken ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings

from agentlog.domains.agents.events import (
    AgentAbandoned,
    AgentDetachRequested,
    AgentSpawnRequested,
    AgentUnresponsive,
)
from agentlog.domains.timers.events import TimerScheduled
from agentlog.eventstore import Event
from agentlog.handlers.agents.manager import RUN_PROVEN, AgentManager
from tests.unit.test_agent_manager_decider import RUNS, World


@dataclass
class StrictWorld(World):
    decider: AgentManager = field(default_factory=lambda: AgentManager(max_restarts=2, proven_run_s=45))
    current: dict[str, str] = field(default_factory=dict)
    """document → its current agent (spawned, not detached, not gone)."""
    row: dict[str, int] = field(default_factory=dict)

    def observe(self, event: Event) -> None:
        match event:
            case AgentSpawnRequested():
                self.current[event.document_id] = event.agent_id
            case AgentDetachRequested():
                if self.current.get(event.document_id) == event.agent_id:
                    del self.current[event.document_id]
            case AgentAbandoned():
                if event.stage == "start":
                    self._gone(event.document_id, event.agent_id, abnormal=True)
            case TimerScheduled() if event.purpose == RUN_PROVEN:
                spawn = self.running[event.subject]
                assert self.current.get(spawn.document_id) == event.subject
                assert event.subject in self.connected, "run timer before the agent joined"
                assert self.row.get(spawn.document_id, 0) > 0, "run timer without a row to end"
                assert event.delay_s == self.state.settings.proven_run_s
        super().observe(event)

    def _gone(self, document: str, agent_id: str, *, abnormal: bool) -> None:
        if self.current.get(document) != agent_id:
            return
        del self.current[document]
        if abnormal and document in self.active:
            self.row[document] = self.row.get(document, 0) + 1

    def activate(self, document: str) -> None:
        if document not in self.active:
            self.row[document] = 0
        super().activate(document)

    def _drop_agents_of(self, manager: str) -> None:
        for agent_id in [a for a, spawn in self.running.items() if spawn.manager_id == manager]:
            self._gone(self.running[agent_id].document_id, agent_id, abnormal=False)
        super()._drop_agents_of(manager)

    def process_exited(self, pick: int, crash: bool) -> None:
        agents = sorted(self.running)
        if agents:
            agent_id = agents[pick % len(agents)]
            expected = agent_id in self.detaching and not crash
            self._gone(self.running[agent_id].document_id, agent_id, abnormal=not expected)
        super().process_exited(pick, crash)

    def fire_timer(self, pick: int) -> None:
        if self.timers:
            timer = self.timers[sorted(self.timers)[pick % len(self.timers)]]
            spawn = self.running.get(timer.subject)
            if (timer.purpose == RUN_PROVEN and spawn is not None and timer.subject in self.connected
                    and self.current.get(spawn.document_id) == timer.subject):
                self.row[spawn.document_id] = 0
        super().fire_timer(pick)

    def connect(self, pick: int) -> None:
        before = len(self.decisions)
        joining = sorted(a for a in self.running if a in self.started and a not in self.connected)
        super().connect(pick)
        if joining:
            agent_id = joining[pick % len(joining)]
            document = self.running[agent_id].document_id
            if self.current.get(document) == agent_id and self.row.get(document, 0) > 0:
                assert any(isinstance(d.event, TimerScheduled) and d.event.purpose == RUN_PROVEN
                           and d.event.subject == agent_id for d in self.decisions[before:]), "no run timer"

    def check(self) -> None:
        super().check()
        limit = self.decider.configured.max_restarts
        for document in self.active - self.failed:
            assert self.row.get(document, 0) <= limit, (
                f"{document}: {self.row[document]} abnormal exits in a row, limit {limit}, not given up on"
            )


@settings(max_examples=300, deadline=None)
@given(RUNS)
def test_the_row_of_failures_is_counted_exactly(actions: list[tuple[object, ...]]) -> None:
    world = StrictWorld()
    world.start_manager("m1", 2)
    for name, *arguments in actions:
        getattr(world, str(name))(*arguments)
        world.check()


def test_a_detaching_agent_s_run_timer_does_not_end_the_new_agent_s_row() -> None:
    world = StrictWorld()
    world.start_manager("m1", 2)
    world.activate("a")
    world.crash_and_restart(0)                      # row 1; agent x restarted
    (x,) = world.running
    world.process_started(0)
    world.connect(0)
    (x_run,) = [t for t in world.timers.values() if t.purpose == RUN_PROVEN]
    world.idle("a")                                 # x detaching, its run timer still pending
    world.activate("a")                             # row 0 again; y waits for x to exit (one agent per document)
    assert list(world.running) == [x], "a second agent was spawned while the first was still detaching"
    world.process_exited(0, crash=False)            # x exits as asked: y is spawned in its place
    (y,) = [a for a in world.running if a != x]
    world.process_exited(sorted(world.running).index(y), crash=True)   # row 1
    assert world.state.documents["a"].failures == 1
    world.fire_timer(sorted(world.timers).index(x_run.timer_id))       # x's old timer
    assert world.state.documents["a"].failures == 1, "x's timer must not end y's row"


def test_a_hung_agent_proves_nothing() -> None:
    """A worker that hangs after joining stays joined until the supervisor notices and kills it."""
    world = StrictWorld()
    world.start_manager("m1", 1)
    world.activate("a")
    world.crash_and_restart(0)
    (agent_id,) = world.running
    world.process_started(0)
    world.connect(0)
    spawn = world.running[agent_id]
    world.feed(
        f"agent-{agent_id}",
        AgentUnresponsive(agent_id=agent_id, document_id=spawn.document_id, missed_pongs=2, silent_s=61),
    )
    (run_timer,) = [t for t in world.timers.values() if t.purpose == RUN_PROVEN]
    world.fire_timer(sorted(world.timers).index(run_timer.timer_id))
    assert world.state.documents["a"].failures == 1, "the hung agent's run timer ended the row"
