"""Agent programs' lifecycle (`domains.programs.lifecycle`): start, stop, restart, crashes restarted with a doubling
delay up to the limit, and reports of earlier runs ignored — checked over random histories."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from agentlog.domains.programs.events import (
    PROGRAM_PROVEN,
    PROGRAM_RESTART,
    ProgramDefined,
    ProgramErrored,
    ProgramExited,
    ProgramRestartRequested,
    ProgramRunning,
    ProgramStarting,
    ProgramStartRequested,
    ProgramStopped,
    ProgramStopRequested,
)
from agentlog.domains.programs.lifecycle import ProgramLifecycle, check_request, decide, restart_delay
from agentlog.domains.timers.events import TimerFired, TimerScheduled
from agentlog.eventstore import Event
from agentlog.handlers import decider
from agentlog.handlers.decider import Fact
from agentlog.handlers.programs.keeper import ProgramKeeper, ProgramsState
from tests.unit.saved_rows import SavedRows

DUE = datetime(2026, 12, 3, tzinfo=UTC)


class Program:
    """A program's stream with its keeper deciding after every event, as `agentlog up` runs it."""

    def __init__(self, max_restarts: int = 2) -> None:
        self.state = ProgramLifecycle()
        self.log: list[Event] = []
        self.feed(ProgramDefined(agent_id="a1", command=["python", "-m", "worker"], max_restarts=max_restarts))

    def feed(self, event: Event) -> list[Event]:
        """As `handlers.decider.step` runs the keeper: decide, fold the decisions, ask again until it has nothing
        more to say (a rule that answers its own answer would loop, and `step` gives up on the event)."""
        self.log.append(event)
        self.state.fold(event)
        decided: list[Event] = []
        for _ in range(10):
            round_ = decide(self.state, event)
            if not round_:
                return decided
            for decision in round_:
                self.log.append(decision)
                self.state.fold(decision)
            decided += round_
        raise AssertionError(f"the keeper kept deciding after {event.event_type}: {types(decided)}")

    def timer(self) -> TimerScheduled | None:
        timers = [e for e in self.log if isinstance(e, TimerScheduled)]
        return timers[-1] if timers else None


def types(events: list[Event]) -> list[str]:
    return [event.event_type for event in events]


def test_start_run_stop() -> None:
    program = Program()
    assert check_request(program.state, ProgramStopRequested(agent_id="a1")) is not None  # stopped already
    assert types(program.feed(ProgramStartRequested(agent_id="a1"))) == ["ProgramStarting"]
    program.feed(ProgramRunning(agent_id="a1", run=1, pid=42))
    assert (program.state.status, program.state.pid) == ("running", 42)
    refusal = check_request(program.state, ProgramStartRequested(agent_id="a1"))
    assert refusal is not None and refusal.rule == "running"
    assert types(program.feed(ProgramStopRequested(agent_id="a1"))) == ["ProgramStopping"]
    stopped = program.feed(ProgramExited(agent_id="a1", run=1, exit_code=-15))
    assert isinstance(stopped[0], ProgramStopped) and program.state.status == "stopped"


def test_a_crash_restarts_with_a_doubling_delay_until_the_limit_then_stops() -> None:
    program = Program(max_restarts=2)
    program.feed(ProgramStartRequested(agent_id="a1"))
    delays = []
    for run in (1, 2, 3):
        program.feed(ProgramRunning(agent_id="a1", run=run, pid=100 + run))
        decided = program.feed(ProgramExited(agent_id="a1", run=run, exit_code=1))
        if run == 3:
            assert isinstance(decided[0], ProgramStopped) and "max_restarts 2" in decided[0].reason
            break
        errored, timer = decided
        assert isinstance(errored, ProgramErrored) and isinstance(timer, TimerScheduled)
        assert errored.restarts_left == 2 - run and timer.purpose == PROGRAM_RESTART
        delays.append(timer.delay_s)
        restarted = program.feed(TimerFired(timer_id=timer.timer_id, purpose=timer.purpose, subject="a1", due_at=DUE))
        assert isinstance(restarted[0], ProgramStarting) and restarted[0].run == run + 1
    assert delays == [1.0, 2.0] and program.state.status == "stopped"


def test_reports_of_an_earlier_run_change_nothing() -> None:
    program = Program()
    program.feed(ProgramStartRequested(agent_id="a1"))
    program.feed(ProgramRunning(agent_id="a1", run=1, pid=7))
    program.feed(ProgramRestartRequested(agent_id="a1"))
    assert types(program.feed(ProgramExited(agent_id="a1", run=1, exit_code=0))) == ["ProgramStarting"]
    assert program.feed(ProgramExited(agent_id="a1", run=1, exit_code=1)) == []  # the old process, late
    assert program.feed(ProgramRunning(agent_id="a1", run=1, pid=7)) == [] and program.state.status == "starting"


def test_a_stop_while_waiting_to_restart_stops_and_the_timer_is_ignored() -> None:
    program = Program()
    program.feed(ProgramStartRequested(agent_id="a1"))
    program.feed(ProgramExited(agent_id="a1", run=1, exit_code=None, reason="no such file: worker"))
    timer = program.timer()
    assert timer is not None and program.state.status == "error"
    assert types(program.feed(ProgramStopRequested(agent_id="a1"))) == ["ProgramStopped"]
    assert program.feed(TimerFired(timer_id=timer.timer_id, purpose=timer.purpose, subject="a1", due_at=DUE)) == []


actions = st.lists(
    st.sampled_from(["start", "stop", "restart", "running", "exit", "exit-old", "fire", "fire-old", "runner-left"]),
    max_size=60,
)


@given(actions, st.integers(0, 3))
@settings(max_examples=300, deadline=None)
def test_any_history_keeps_the_rules(steps: list[str], max_restarts: int) -> None:
    program = Program(max_restarts=max_restarts)
    for step in steps:
        state = program.state
        timer = program.timer()
        match step:
            case "start" | "stop" | "restart":
                request = {"start": ProgramStartRequested, "stop": ProgramStopRequested,
                           "restart": ProgramRestartRequested}[step](agent_id="a1")  # fmt: skip
                if check_request(state, request) is None:
                    program.feed(request)
            case "running" if state.status == "starting":
                program.feed(ProgramRunning(agent_id="a1", run=state.run, pid=1000 + state.run))
            case "exit" if state.holding:
                program.feed(ProgramExited(agent_id="a1", run=state.run, exit_code=1))
            case "runner-left" if state.holding:
                program.feed(ProgramExited(agent_id="a1", run=state.run, runner_left=True))
            case "exit-old" if state.run > 1:
                assert program.feed(ProgramExited(agent_id="a1", run=state.run - 1, exit_code=1)) == []
            case "fire" | "fire-old" if timer is not None:
                program.feed(TimerFired(timer_id=timer.timer_id, purpose=timer.purpose, subject="a1", due_at=DUE))
    starts = [event for event in program.log if isinstance(event, ProgramStarting)]
    assert [event.run for event in starts] == list(range(1, len(starts) + 1)), "runs count starts, one by one"
    assert all(event.restart <= max_restarts for event in starts), "restarted past max_restarts"
    for before, after in zip(program.log, program.log[1:], strict=False):
        if isinstance(after, ProgramStarting) and after.restart > 0 and not getattr(before, "runner_left", False):
            assert isinstance(before, TimerFired), "an automatic restart only on its timer"
    # Folding the log again gives the same program: the keeper's decisions are a function of the log.
    again = ProgramLifecycle()
    for event in program.log:
        again.fold(event)
    assert again == program.state


def test_a_run_that_proved_itself_is_forgiven_the_crashes_before_it() -> None:
    program = Program(max_restarts=1)
    program.feed(ProgramStartRequested(agent_id="a1"))
    program.feed(ProgramRunning(agent_id="a1", run=1, pid=1))
    program.feed(ProgramExited(agent_id="a1", run=1, exit_code=1))
    restart = program.timer()
    assert restart is not None and restart.purpose == PROGRAM_RESTART
    program.feed(TimerFired(timer_id=restart.timer_id, purpose=restart.purpose, subject="a1", due_at=DUE))
    proven = program.feed(ProgramRunning(agent_id="a1", run=2, pid=2))
    assert [(e.event_type, getattr(e, "purpose", None)) for e in proven] == [("TimerScheduled", PROGRAM_PROVEN)]
    assert program.state.restart == 1  # one more crash now would stop it: max_restarts 1
    timer = proven[0]
    assert isinstance(timer, TimerScheduled) and timer.delay_s == 60.0
    assert program.feed(TimerFired(timer_id=timer.timer_id, purpose=timer.purpose, subject="a1", due_at=DUE)) == []
    assert program.state.restart == 0
    assert types(program.feed(ProgramExited(agent_id="a1", run=2, exit_code=1))) == ["ProgramErrored", "TimerScheduled"]


def test_a_runner_leaving_is_no_crash_and_the_next_run_starts_at_once() -> None:
    program = Program(max_restarts=0)
    program.feed(ProgramStartRequested(agent_id="a1"))
    program.feed(ProgramRunning(agent_id="a1", run=1, pid=1))
    started = program.feed(ProgramExited(agent_id="a1", run=1, runner_left=True, reason="its runner shut down"))
    assert isinstance(started[0], ProgramStarting) and (started[0].run, started[0].restart) == (2, 0)
    program.feed(ProgramStopRequested(agent_id="a1"))  # stopped while it waited for a runner
    assert types(program.feed(ProgramExited(agent_id="a1", run=2, runner_left=True))) == ["ProgramStopped"]


def test_a_start_asked_while_stopping_starts_it_once_stopped_and_a_stop_takes_that_back() -> None:
    """Without a runner a program asked to stop stays stopping until one comes: requests meanwhile are not refused
    (they were: every start, stop and restart answered 409 for as long as no runner ran)."""
    program = Program()
    program.feed(ProgramStartRequested(agent_id="a1"))
    program.feed(ProgramStopRequested(agent_id="a1"))
    assert program.state.status == "stopping"
    refused = check_request(program.state, ProgramStopRequested(agent_id="a1"))
    assert refused is not None and refused.rule == "not-running"
    assert check_request(program.state, ProgramStartRequested(agent_id="a1")) is None
    again = program.feed(ProgramStartRequested(agent_id="a1"))
    assert [(e.event_type, getattr(e, "then_start", None)) for e in again] == [("ProgramStopping", True)]
    refused = check_request(program.state, ProgramRestartRequested(agent_id="a1"))
    assert refused is not None and refused.rule == "stopping"
    assert check_request(program.state, ProgramStopRequested(agent_id="a1")) is None
    taken_back = program.feed(ProgramStopRequested(agent_id="a1"))
    assert [(e.event_type, getattr(e, "then_start", None)) for e in taken_back] == [("ProgramStopping", False)]
    program.feed(ProgramStartRequested(agent_id="a1"))
    started = program.feed(ProgramExited(agent_id="a1", run=1, reason="no process of it was running"))
    assert isinstance(started[0], ProgramStarting) and started[0].run == 2


def test_restart_delays_are_bounded() -> None:
    spec = ProgramDefined(agent_id="a1", command=["x"], restart_delay_s=10)
    assert [restart_delay(spec, n) for n in (0, 1, 2)] == [10, 20, 40] and restart_delay(spec, 99) == 3_600


def test_the_keeper_decides_what_the_rule_does_on_its_stream_only() -> None:
    keeper = ProgramKeeper()
    state = keeper.initial_state()
    log: list[tuple[str, Event]] = [
        ("program-a1", ProgramDefined(agent_id="a1", command=["worker"], max_restarts=1)),
        ("program-a1", ProgramStartRequested(agent_id="a1")),
        ("program-b2", ProgramStartRequested(agent_id="a1")),  # on another program's stream: not a1's
        ("program-a1", ProgramExited(agent_id="a1", run=1, exit_code=2)),
    ]
    decided: list[tuple[str, str]] = []
    position = 0
    while position < len(log):
        stream, event = log[position]
        position += 1
        state, decisions = decider.step(keeper, state, Fact(event, uuid.UUID(int=position), stream, position))
        decided += [(d.stream_id, d.event.event_type) for d in decisions]
        log[position:position] = [(d.stream_id, d.event) for d in decisions]
    assert decided == [
        ("program-a1", "ProgramStarting"), ("program-a1", "ProgramErrored"), ("program-a1", "TimerScheduled")
    ]
    saved = SavedRows()
    saved.save(state, everything=True)
    assert saved.load(ProgramsState).model_dump() == state.model_dump()
    assert state.programs["a1"].status == "error" and "b2" not in state.programs
