"""Events of agent programs. A program is a stream, `program-<agent_id>`: its definition (the command line and its
restart policy), what people ask (start, stop, restart), what the program keeper decides (starting, stopping, an
error with a restart to come, stopped), and what the runner that holds the process reports (running with its pid,
exited with its code).

Runs count starts: the n-th `ProgramStarting` carries `run = n`, and the runner's reports name their run, so the
exit of a process from an earlier run never ends a newer one.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, StringConstraints, field_validator

from agentlog.domains.coordination.names import AgentId
from agentlog.eventstore.events import Event, catalogue

Argument = Annotated[str, StringConstraints(min_length=1, max_length=4_096)]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
ShortText = Annotated[str, StringConstraints(max_length=500)]
Run = Annotated[int, Field(ge=1)]
MaxRestarts = Annotated[int, Field(ge=0, le=100)]
RestartDelay = Annotated[float, Field(ge=0.01, le=3_600)]
StopGrace = Annotated[float, Field(ge=0.01, le=600)]

PROGRAM_RESTART = "program-restart"
"""The purpose of the timer after which a crashed program is started again."""
PROGRAM_PROVEN = "program-proven"
"""The purpose of the timer after which a run that is still running has proven itself: the crashes in a row behind
it are forgiven."""


PROGRAM_TYPES = frozenset(
    {"ProgramDefined", "ProgramStartRequested", "ProgramStopRequested", "ProgramRestartRequested", "ProgramStarting",
     "ProgramRunning", "ProgramStopping", "ProgramExited", "ProgramErrored", "ProgramStopped"}
)  # fmt: skip


def program_stream(agent_id: str) -> str:
    return f"program-{agent_id}"


def agent_of(stream_id: str) -> str:
    return stream_id.removeprefix("program-")


class _ProgramEvent(Event):
    category: ClassVar[str] = "program"

    agent_id: AgentId


@catalogue.register
class ProgramDefined(_ProgramEvent):
    """The command line an agent runs as, and what to do when it crashes: started again after `restart_delay_s`
    (doubling with each crash in a row) up to `max_restarts` times, then stopped. A change applies from the next
    start on."""

    event_type: ClassVar[str] = "ProgramDefined"

    command: list[Argument] = Field(min_length=1, max_length=100)
    env: dict[EnvName, Annotated[str, StringConstraints(max_length=4_096)]] = Field(default_factory=dict)
    working_dir: Annotated[str, StringConstraints(min_length=1, max_length=4_096)] | None = None
    max_restarts: MaxRestarts = 3
    restart_delay_s: RestartDelay = 1.0
    stop_grace_s: StopGrace = 10.0
    """How long a stopping program has after SIGTERM before SIGKILL."""
    proven_after_s: Annotated[float, Field(ge=1, le=86_400)] = 60.0
    """A run still running this long has proven itself: the next crash starts counting restarts from zero."""
    defined_by: ShortText = ""

    @field_validator("env")
    @classmethod
    def _few(cls, env: dict[str, str]) -> dict[str, str]:
        if len(env) > 100:
            raise ValueError("at most 100 variables")
        return env


class _ProgramRequest(_ProgramEvent):
    requested_by: ShortText = ""
    reason: ShortText = ""


@catalogue.register
class ProgramStartRequested(_ProgramRequest):
    """Someone asked for the program to run (it starts unless it runs already)."""

    event_type: ClassVar[str] = "ProgramStartRequested"


@catalogue.register
class ProgramStopRequested(_ProgramRequest):
    """Someone asked for the program to stop (a crashed one waiting for its restart stops at once)."""

    event_type: ClassVar[str] = "ProgramStopRequested"


@catalogue.register
class ProgramRestartRequested(_ProgramRequest):
    """Someone asked for the program to stop and start again (or just start, when it is not running)."""

    event_type: ClassVar[str] = "ProgramRestartRequested"


@catalogue.register
class ProgramStarting(_ProgramEvent):
    """The keeper decided to start run `run`; the runner starts the process. `restart` counts the automatic
    restarts in a row before it (0 for a start someone asked for)."""

    event_type: ClassVar[str] = "ProgramStarting"

    run: Run
    restart: Annotated[int, Field(ge=0)] = 0


@catalogue.register
class ProgramRunning(_ProgramEvent):
    """The runner started run `run`'s process."""

    event_type: ClassVar[str] = "ProgramRunning"

    run: Run
    pid: Annotated[int, Field(ge=1)]
    host: ShortText = ""
    runner: ShortText = ""
    """The runner process that holds it (`host:pid`)."""
    handover_s: Annotated[float, Field(ge=0, le=3_600)] = 30.0
    """That runner's lease: cut off from the database this long, it stops the program (a runner taking over
    waits this long, and the stop grace, before it takes the program for gone)."""


@catalogue.register
class ProgramStopping(_ProgramEvent):
    """The keeper decided to stop run `run`: the runner sends SIGTERM, then SIGKILL after the grace. With
    `then_start` (a restart), the next run starts once it exited."""

    event_type: ClassVar[str] = "ProgramStopping"

    run: Run
    then_start: bool = False


@catalogue.register
class ProgramExited(_ProgramEvent):
    """Run `run`'s process ended (or never started: `exit_code` None and the reason), as its runner saw it."""

    event_type: ClassVar[str] = "ProgramExited"

    run: Run
    exit_code: int | None = None
    """The process's exit status; negative for a signal (-9: killed); None when there was no process to wait for."""
    reason: ShortText = ""
    runner_left: bool = False
    """It ended because its runner went away (`up` shut down, or lost to another process): not the program's fault,
    so it starts again as soon as a runner is there, and no restart is counted."""


@catalogue.register
class ProgramErrored(_ProgramEvent):
    """Run `run` crashed (it exited while nobody asked it to stop): it starts again after `restart_in_s`."""

    event_type: ClassVar[str] = "ProgramErrored"

    run: Run
    exit_code: int | None = None
    restarts_left: Annotated[int, Field(ge=0)]
    restart_in_s: float


@catalogue.register
class ProgramStopped(_ProgramEvent):
    """The program is not running and will not start by itself: stopped as asked, or crashed once too often."""

    event_type: ClassVar[str] = "ProgramStopped"

    run: Annotated[int, Field(ge=0)]
    reason: ShortText = ""
