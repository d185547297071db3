"""What happens to an agent program next: one pure rule for the keeper that decides it and for everything that
folds a program's stream (the API, the projection).

    stopped ──start──▶ starting ──(runner: running)──▶ running ──stop──▶ stopping ──(runner: exited)──▶ stopped
                        ▲  ▲                               │                 │
                        │  └───────────────────────────────┼─────────────────┘ (a start asked while stopping)
                        │                                  │ (runner: exited, nobody asked)
                        └──(restart timer)── error ◀───────┘ ── max restarts reached ──▶ stopped

`ProgramLifecycle.fold` takes every event of the stream; `decide` answers an event with what the keeper appends
(at most a transition and its timer). Only the events of the current run move it: a late report from an earlier
run's process changes nothing. A run still running after `proven_after_s` has proven itself (a timer): the crashes
in a row behind it are forgiven. A run that ended because its runner went away (`runner_left`) is no crash: the
next run starts at once, and waits in `starting` until a runner is there to start it.

The seed's healthy / degraded / unhealthy are not states of the stream: a running program's agent registers like
any other, and its health is read from the registry's inferred activity (`health`: active / idle / offline).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

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
    ProgramStopping,
    ProgramStopRequested,
)
from agentlog.domains.timers.events import MAX_TIMER_DELAY_S, TimerFired, TimerScheduled
from agentlog.eventstore.events import Event

ProgramStatus = Literal["undefined", "stopped", "starting", "running", "stopping", "error"]
Health = Literal["healthy", "degraded", "unhealthy", "unknown"]
HEALTH_OF_ACTIVITY: dict[str, Health] = {"active": "healthy", "idle": "degraded", "offline": "unhealthy"}
HOLDING: frozenset[ProgramStatus] = frozenset({"starting", "running", "stopping"})
"""A process of the current run may be alive: the runner holds it."""


class ProgramLifecycle(BaseModel):
    """One program as the fold of its stream."""

    version: int = 0
    """The last stream version folded in."""
    agent_id: str = ""
    spec: ProgramDefined | None = None
    status: ProgramStatus = "undefined"
    run: int = 0
    restart: int = 0
    """Automatic restarts in a row behind the current run."""
    then_start: bool = False
    pid: int | None = None
    host: str = ""
    runner: str = ""
    """The runner that holds (or held) the current run's process, `host:pid`."""
    handover_s: float = 30.0
    """That runner's lease (`ProgramRunning.handover_s`)."""
    last_exit_code: int | None = None
    reason: str = ""
    """Why it last stopped or errored."""
    restart_timer: str | None = None
    """The timer that starts it again, while it is in error."""
    exited: bool = False
    """The current run's process exit is recorded."""
    asked: str | None = None
    """A person's request not answered yet (the keeper answers each once: `decide` sees it again after its own
    answer is folded in, and must then have nothing more to say)."""
    proving: str | None = None
    """The proven-run timer scheduled for the current run."""

    def fold(self, event: Event, version: int | None = None) -> None:
        if version is not None:
            self.version = version
        match event:
            case ProgramStartRequested() | ProgramStopRequested() | ProgramRestartRequested():
                self.asked = event.event_type
            case TimerScheduled() if event.purpose == PROGRAM_PROVEN:
                self.proving = event.timer_id
            case ProgramDefined():
                self.agent_id, self.spec = event.agent_id, event
                if self.status == "undefined":
                    self.status = "stopped"
            case ProgramStarting():
                self.status, self.run, self.restart, self.asked = "starting", event.run, event.restart, None
                self.then_start, self.pid, self.host, self.runner, self.restart_timer = False, None, "", "", None
                self.exited = False
            case ProgramRunning() if event.run == self.run and self.status == "starting":
                self.status, self.pid, self.host, self.runner = "running", event.pid, event.host, event.runner
                self.handover_s = event.handover_s
            case ProgramStopping() if event.run == self.run and self.status in {"starting", "running", "stopping"}:
                self.status, self.then_start, self.asked = "stopping", event.then_start, None
            case ProgramExited() if event.run == self.run:
                self.pid, self.last_exit_code, self.exited = None, event.exit_code, True
            case TimerFired() if self.proves(event):
                self.restart = 0  # it proved itself: its crashes in a row are forgiven
            case ProgramErrored() if event.run == self.run:
                self.status, self.reason = "error", _exit_reason(event.exit_code)
                self.restart_timer = restart_timer_id(self.agent_id, self.run)
            case ProgramStopped():
                self.status, self.reason, self.restart_timer, self.pid = "stopped", event.reason, None, None
                self.asked = None

    def proves(self, fired: TimerFired) -> bool:
        return self.status == "running" and fired.timer_id == proven_timer_id(self.agent_id, self.run)

    @property
    def holding(self) -> bool:
        return self.status in HOLDING


def restart_timer_id(agent_id: str, run: int) -> str:
    """The restart timer after run `run` crashed: one per run, the same on every replay."""
    return f"program{run}-{agent_id}"[:100]


def proven_timer_id(agent_id: str, run: int) -> str:
    """The timer after which run `run` has proven itself, if it still runs."""
    return f"proven{run}-{agent_id}"[:100]


def health(program: ProgramLifecycle, activity: str | None) -> Health | None:
    """A running program's health from its agent's activity in the registry (None when it is not running):
    healthy while active, degraded when idle, unhealthy when offline, unknown until its agent registers."""
    if program.status != "running":
        return None
    return HEALTH_OF_ACTIVITY.get(activity or "", "unknown")


def restart_delay(spec: ProgramDefined, restart: int) -> float:
    """Before the `restart`-th restart in a row (0 for the first): the delay doubling from `restart_delay_s`."""
    return float(min(spec.restart_delay_s * 2 ** min(restart, 30), 3_600, MAX_TIMER_DELAY_S))


def _exit_reason(exit_code: int | None) -> str:
    if exit_code is None:
        return "its process was lost"
    return f"killed by signal {-exit_code}" if exit_code < 0 else f"exited with status {exit_code}"


def _start(program: ProgramLifecycle, restart: int = 0) -> ProgramStarting:
    return ProgramStarting(agent_id=program.agent_id, run=program.run + 1, restart=restart)


def decide(program: ProgramLifecycle, event: Event) -> list[Event]:
    """What the keeper appends after `event` (folded into `program` already): the next transition, if any."""
    if program.spec is None:
        return []
    if isinstance(event, ProgramStartRequested | ProgramStopRequested | ProgramRestartRequested) and (
        program.asked != event.event_type
    ):
        return []  # answered already (or it changed nothing: a start of a running program)
    match event:
        case ProgramStartRequested() if program.status in {"stopped", "error"}:
            return [_start(program)]
        case ProgramRestartRequested() if program.status in {"stopped", "error"}:
            return [_start(program)]
        case ProgramRestartRequested() | ProgramStopRequested() if program.status in {"starting", "running"}:
            then_start = isinstance(event, ProgramRestartRequested)
            return [ProgramStopping(agent_id=program.agent_id, run=program.run, then_start=then_start)]
        case ProgramStartRequested() | ProgramRestartRequested() if program.status == "stopping" and (
            not program.then_start
        ):  # start again once stopped (without a runner, a program stays stopping until one comes)
            return [ProgramStopping(agent_id=program.agent_id, run=program.run, then_start=True)]
        case ProgramStopRequested() if program.status == "stopping" and program.then_start:
            return [ProgramStopping(agent_id=program.agent_id, run=program.run, then_start=False)]
        case ProgramStopRequested() if program.status == "error":
            return [ProgramStopped(agent_id=program.agent_id, run=program.run, reason="stopped while in error")]
        case ProgramRunning() if event.run == program.run and program.status == "running" and (
            program.proving != proven_timer_id(program.agent_id, program.run)
        ):
            proven = TimerScheduled(
                timer_id=proven_timer_id(program.agent_id, program.run), delay_s=program.spec.proven_after_s,
                purpose=PROGRAM_PROVEN, subject=program.agent_id,
            )  # fmt: skip
            return [proven]
        case ProgramExited() if event.run == program.run and program.status == "stopping":
            if program.then_start:
                return [_start(program)]
            return [ProgramStopped(agent_id=program.agent_id, run=program.run, reason="stopped as asked")]
        case ProgramExited() if event.run == program.run and program.status in {"starting", "running"}:
            if event.runner_left:
                return [_start(program, restart=program.restart)]
            return _crashed(program, event)
        case TimerFired() if program.status == "error" and event.timer_id == program.restart_timer:
            return [_start(program, restart=program.restart + 1)]
    return []


def _crashed(program: ProgramLifecycle, exited: ProgramExited) -> list[Event]:
    spec = program.spec
    assert spec is not None
    why = _exit_reason(exited.exit_code) + (f" ({exited.reason})" if exited.reason else "")
    if program.restart >= spec.max_restarts:
        reason = f"crashed {program.restart + 1} times in a row, the last {why}: max_restarts {spec.max_restarts}"
        return [ProgramStopped(agent_id=program.agent_id, run=program.run, reason=reason[:500])]
    delay = restart_delay(spec, program.restart)
    errored = ProgramErrored(
        agent_id=program.agent_id, run=program.run, exit_code=exited.exit_code,
        restarts_left=spec.max_restarts - program.restart - 1, restart_in_s=delay,
    )  # fmt: skip
    timer = TimerScheduled(
        timer_id=restart_timer_id(program.agent_id, program.run), delay_s=delay, purpose=PROGRAM_RESTART,
        subject=program.agent_id,
    )  # fmt: skip
    return [errored, timer]


class Refusal(BaseModel):
    rule: str
    message: str


def check_request(program: ProgramLifecycle, request: Event) -> Refusal | None:
    """Whether a person's request makes sense now (the API answers 409 with the refusal, appending nothing)."""
    if program.spec is None:
        return Refusal(rule="program-unknown", message=f"agent {program.agent_id} has no program: define it first")
    match request:
        case ProgramStartRequested() if program.status in {"starting", "running"}:
            return Refusal(rule="running", message=f"program {program.agent_id} is {program.status} already")
        case ProgramStartRequested() | ProgramRestartRequested() if program.status == "stopping" and program.then_start:
            return Refusal(rule="stopping", message=f"program {program.agent_id} is stopping, to start again already")
        case ProgramStopRequested() if program.status == "stopped" or (
            program.status == "stopping" and not program.then_start
        ):
            return Refusal(rule="not-running", message=f"program {program.agent_id} is {program.status} already")
    return None
