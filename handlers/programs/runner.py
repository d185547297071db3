"""The program runner: the effector that runs agent programs as processes and records what became of them.

It carries out the program keeper's decisions (`ProgramStarting`, `ProgramStopping`) and records facts: a run's
process started (`ProgramRunning`, with its pid, host, runner and the runner's lease), and ended (`ProgramExited`,
with its status). It decides nothing; the keeper reacts to the facts (a crash is restarted, a stop that was asked
for ends in stopped).

There is one runner for a log: a handler, `program-runner`, so the handler runner's lock makes exactly one process
(of every `agentlog up` on every machine) the active runner, and a standby takes over when it dies. Its turn is
also a lease on its own clock (`_keep_lease`): cut off from the database for `handover_s` — its session ended, or
nothing confirmed for that long, as in a partition where no session ends — it stops its programs and records
nothing. Each takeover starts with a reconcile against the log (`session_started`): every run the log says holds a
process but that this runner does not hold is recorded ended, `runner_left` (no crash of the program's: the keeper
starts the next run at once, here) —

- at once when its runner is gone (a program's leader dies with its runner, `processes`), and then what is left
  of it on this machine (found by its marker) is stopped;
- after the old runner's lease and the run's stop grace when that runner may live on: on another machine, or on
  this one without a marked process to stop (the program may hide its marker).

`up` shutting down stops its programs (a second signal kills those still in their grace), records their exits
with `runner_left`, and leaves them `starting`: the next runner to come starts that very run.

Every fact's event id derives from the run's `ProgramStarting` event, so whichever runner records a run's start or
end, it is recorded once, and the first record wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import asyncpg
import structlog

from agentlog.domains.programs.events import (
    ProgramDefined,
    ProgramExited,
    ProgramRunning,
    ProgramStarting,
    ProgramStopping,
    agent_of,
    program_stream,
)
from agentlog.domains.programs.lifecycle import ProgramLifecycle
from agentlog.eventstore import ANY, EventStore, LogPosition, NewEvent, derived_event_id
from agentlog.eventstore.errors import (
    AgentlogError,
    ConcurrencyRetryError,
    DatabaseUnavailableError,
    EventIdConflictError,
)
from agentlog.eventstore.postgres import recorder
from agentlog.eventstore.postgres.errors import CONNECTION_ERRORS
from agentlog.eventstore.postgres.queries import load_queries
from agentlog.handlers.handler import HandlerBatch
from agentlog.handlers.programs import processes

log = structlog.get_logger("handlers.programs")

RUNNER = "program-runner"
RETRYABLE: tuple[type[BaseException], ...] = (DatabaseUnavailableError, ConcurrencyRetryError, *CONNECTION_ERRORS)
LEASE_PROBE_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, asyncpg.PostgresError, *RETRYABLE)
SHUTDOWN_MARGIN_S = 10.0
"""Beyond the longest stop grace, how long a shutdown waits for its programs' exits to be recorded."""
QUERIES = load_queries(Path(__file__).with_suffix(".sql"))

Append = Callable[[str, Sequence[NewEvent]], Awaitable[object]]
"""Where a run's start is recorded: the batch's transaction, or at once (`_append_now`)."""
ProgramToken = Callable[[str], str]
"""A token that lets the program act as its agent on the API (issued for each start, and renewed)."""


@dataclass(slots=True)
class RunnerSettings:
    api_url: str
    """The API's base URL, handed to programs as AGENTLOG_URL."""
    log_dir: Path
    """Each program's standard output and error go to `<log_dir>/<agent id>.log`."""
    handover_s: float = 30.0
    """How long a runner cut off from the database keeps its programs before it stops them (a runner taking over on
    another machine waits this long, and their stop grace, before it starts them again)."""
    token_renewal_s: float = 300.0
    host: str = field(default_factory=socket.gethostname)


@dataclass(slots=True)
class Run:
    """A run's process this runner holds."""

    agent_id: str
    run: int
    starting_id: uuid.UUID
    process: asyncio.subprocess.Process
    spec: ProgramDefined
    recordable: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once its `ProgramRunning` committed: its exit is recorded after it."""
    stopping: bool = False
    runner_left: bool = False
    """It is stopped because the runner goes away (its exit says so)."""
    forgotten: bool = False
    """Handed over: another runner records its end."""
    watcher: asyncio.Task[None] | None = None


class ProgramRunner:
    """Runs the log's agent programs while its handler is the active `program-runner`. Host it in the handler
    runner; `shutdown()` before the handler runner stops."""

    name = RUNNER
    event_types: frozenset[str] | None = frozenset({"ProgramStarting", "ProgramStopping"})

    def __init__(self, store: EventStore, settings: RunnerSettings, token: ProgramToken) -> None:
        self.store = store
        self.settings = settings
        self.token = token
        self.runs: dict[str, Run] = {}
        self.active = False
        self.stopping = False
        self.runner_id = f"{settings.host}:{os.getpid()}"
        self._fleet: str | None = None
        self._started_in_batch: list[Run] = []
        self._background: set[asyncio.Task[None]] = set()
        self._handing_over: asyncio.Task[None] | None = None
        self._stopping_handed_over = False
        self._renewing: asyncio.Task[None] | None = None
        self._leasing: asyncio.Task[None] | None = None
        self._session_pid: int | None = None
        """The server pid of the handler session that holds the runner's turn (known from its first batch)."""
        self._nonce = uuid.uuid4().hex[:8]
        """Marks the processes this runner started (beside fleet, agent and run): its own clean-up never touches
        a run of the same number that another runner started after taking over."""

    # -- taking turns with other runners -------------------------------------------------------------------------

    async def session_started(self) -> None:
        """Active: cancel a handover still waiting (or let one that is stopping the programs finish), then end what
        the log says runs but nobody here holds."""
        self.active, self._session_pid = True, None
        if self._handing_over is not None:
            if not self._stopping_handed_over:
                self._handing_over.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._handing_over
            self._handing_over = None
        loop = asyncio.get_running_loop()
        if self._renewing is None:
            self._renewing = loop.create_task(self._renew_tokens())
        if self._leasing is None:
            self._leasing = loop.create_task(self._keep_lease())
        await self._reconcile()

    def session_ended(self) -> None:
        self.active, self._session_pid = False, None
        if self.stopping or not self.runs or self._handing_over is not None:
            return
        log.warning("programs.runner_cut_off", runner=self.runner_id, programs=len(self.runs),
                    stop_in_s=self.settings.handover_s)  # fmt: skip
        self._handing_over = asyncio.get_running_loop().create_task(self._hand_over())

    async def _keep_lease(self) -> None:
        """The runner's turn as a lease on its own clock. A partition does not end the handler's session: its next
        statement just waits (for TCP to give up, a quarter of an hour), while a runner elsewhere takes over once
        the server has dropped the session, and starts the programs `handover_s` (and their grace) later. So every
        `lease_probe_s` a round trip checks that the turn is still this runner's (its lock, held by its session);
        none has succeeded for `handover_s`: the programs are stopped (`_hand_over`), as if the session had ended."""
        loop = asyncio.get_running_loop()
        probe_s = min(1.0, self.settings.handover_s / 4)
        confirmed = loop.time()
        while not self.stopping:
            await asyncio.sleep(probe_s)
            if not self.active or not self.runs:
                confirmed = loop.time()
                continue
            try:
                ours = await asyncio.wait_for(self._turn_held(), probe_s)
            except LEASE_PROBE_ERRORS:
                ours = False
            if ours or not self.active:
                confirmed = loop.time()
                continue
            if loop.time() - confirmed >= self.settings.handover_s and self._handing_over is None:
                log.warning("programs.lease_expired", runner=self.runner_id, programs=len(self.runs),
                            unconfirmed_s=round(loop.time() - confirmed, 1))  # fmt: skip
                self.active = False
                self._handing_over = loop.create_task(self._hand_over(wait_s=0.0))

    async def _turn_held(self) -> bool:
        if self._session_pid is None:  # no batch yet in this session: the lock is somebody's, at least
            return await recorder.handler_lock_held(self.store.pool, RUNNER)
        return bool(await self.store.pool.fetchval(QUERIES["turn_held_by"], RUNNER, self._session_pid))

    async def _hand_over(self, wait_s: float | None = None) -> None:
        """Cut off for `handover_s`: another runner may hold the log's programs now. Stop ours, record nothing (the
        runner whose turn it is records their ends). Once stopping, it is not cancelled: what it stops is
        forgotten, and the reconcile after a turn regained must find the runs ended, not held."""
        await asyncio.sleep(self.settings.handover_s if wait_s is None else wait_s)
        if self.active:
            return
        self._stopping_handed_over = True
        try:
            runs = list(self.runs.values())
            for held in runs:
                held.forgotten = True
                held.recordable.set()
            self.runs.clear()
            log.warning("programs.handed_over", runner=self.runner_id, stopped=[held.agent_id for held in runs])
            await asyncio.shield(asyncio.gather(*(self._stop(held) for held in runs), return_exceptions=True))
        finally:
            self._stopping_handed_over = False

    async def fleet(self) -> str:
        """This log's fleet id, which marks its programs: a secret made on first use, with the server's system
        identifier and the database's oid, so that a copy of the database (a restored backup, a staging clone,
        which carry the secret) is another fleet and never takes this one's programs for its own."""
        if self._fleet is None:
            await self.store.pool.execute(QUERIES["ensure_fleet"], uuid.uuid4().hex[:16])
            secret = str(await self.store.pool.fetchval(QUERIES["select_fleet"]))
            try:
                server = str(await self.store.pool.fetchval(QUERIES["server_identity"]))
            except asyncpg.PostgresError:  # pg_control_system() withheld (a managed server): the database alone
                server = str(await self.store.pool.fetchval(QUERIES["database_identity"]))
            self._fleet = hashlib.sha256(f"{secret}/{server}".encode()).hexdigest()[:16]
        return self._fleet

    async def _reconcile(self) -> None:
        fleet = await self.fleet()
        checkpoint = await recorder.load_checkpoint(self.store.pool, RUNNER)
        marked = processes.marked_processes(fleet)
        current: dict[str, int] = {}
        for stream_id in [row["stream_id"] for row in await self.store.pool.fetch(QUERIES["program_streams"])]:
            program, starting = await self._fold(stream_id)
            current[program.agent_id] = program.run
            if not program.holding or program.exited or starting is None:
                continue
            held = self.runs.get(program.agent_id)
            if held is not None and held.run == program.run:
                continue  # ours still: this runner only lost its session for a moment
            if program.status == "starting" and starting.position > checkpoint:
                continue  # its start is still to come to this runner
            if program.status == "starting" and not processes.of_run(marked, program.agent_id):
                # Passed by a runner that was shutting down (or never started, it failing to record why): start
                # it now, as the run the log says it is.
                self._in_background(self._start_now(starting))
                continue
            self._in_background(self._end_lost_run(program, starting, marked))
        strays = [found for found in marked if current.get(found.agent_id) != found.run
                  and (found.agent_id not in self.runs or self.runs[found.agent_id].run != found.run)]  # fmt: skip
        if strays:  # runs no longer current: a start rolled back with its runner's session, a leader's leftovers
            log.warning("programs.strays_stopped", processes=[(s.agent_id, s.run, s.pid) for s in strays])
            self._in_background(processes.kill_and_wait([stray.pid for stray in strays], 5.0))

    async def _end_lost_run(
        self, program: ProgramLifecycle, starting: _Starting, marked: list[processes.Marked]
    ) -> None:
        """Record the end of a run this runner does not hold, then stop what is left of it on this machine.

        Recorded first: the runner that held it may live on, cut off, and would record the exit it sees when the
        process is stopped here as a crash of the program's; the run's end has one id, so the first record wins.
        The next run does not start before the processes of this one are gone (`_start`)."""
        assert program.spec is not None
        grace = program.spec.stop_grace_s
        handed_over_s = program.handover_s + grace + 2  # its runner's lease has stopped it by then
        if program.host and program.host != self.settings.host:
            await asyncio.sleep(handed_over_s)
            reason = f"its runner on {program.host} lost its turn"
        elif processes.of_run(marked, program.agent_id, program.run):
            reason = "its runner lost its turn; stopped by the runner that took over"
        elif self._runner_lives(program.runner):
            # Its runner lives on, cut off: its program may hide the marker (setproctitle, `env -i`), so it is
            # not taken for gone; the runner's lease stops it.
            await asyncio.sleep(handed_over_s)
            reason = "its runner lost its turn"
        else:
            reason = "its runner was gone"  # its leader died with it
        if not self.active:
            return
        exited = ProgramExited(agent_id=program.agent_id, run=program.run, reason=reason, runner_left=True)
        await self._record(exited, starting.event_id)
        await processes.kill_and_wait(processes.of_run(processes.marked_processes(await self.fleet()),
                                                       program.agent_id, program.run), grace)  # fmt: skip

    # -- decisions -----------------------------------------------------------------------------------------------

    async def handle(self, batch: HandlerBatch) -> None:
        self._started_in_batch = []  # a retried batch records them again
        self._session_pid = batch.connection.get_server_pid()
        for typed in batch.events:
            event, recorded = typed.event, typed.recorded
            if self.stopping or recorded.stream_id != program_stream(getattr(event, "agent_id", "")):
                continue
            if isinstance(event, ProgramStarting):
                held = await self._start(event, recorded.event_id, batch.append)
                if held is not None:
                    self._started_in_batch.append(held)
            elif isinstance(event, ProgramStopping):
                await self._stop_asked(event, recorded.event_id, batch)

    def batch_committed(self) -> None:
        for held in self._started_in_batch:
            held.recordable.set()
        self._started_in_batch = []

    def _runner_lives(self, runner: str) -> bool:
        """Whether the runner process `host:pid` is another one on this machine that still runs."""
        host, _, pid = runner.rpartition(":")
        return host == self.settings.host and pid.isdigit() and int(pid) != os.getpid() and processes.alive(int(pid))

    async def _start_now(self, starting: _Starting) -> None:
        held = await self._start(starting.event, starting.event_id, self._append_now)
        if held is not None:
            held.recordable.set()

    async def _start(self, starting: ProgramStarting, starting_id: uuid.UUID, append: Append) -> Run | None:
        """Start the run, record `ProgramRunning` through `append`; the run, unless there was none to start."""
        agent_id = starting.agent_id
        program, _ = await self._fold(program_stream(agent_id))
        if program.run != starting.run or program.status != "starting" or program.spec is None:
            return None  # moved on meanwhile (stopped before it started, or a later run): nothing to start
        held = self.runs.get(agent_id)
        if held is not None and held.run == starting.run:  # started by an attempt of this batch that did not commit
            await append(program_stream(agent_id), [self._running(held)])
            return held
        if held is not None:  # an earlier run's process that has not ended: it must, before this one starts
            await self._stop(held)
        spec = program.spec
        leftovers = processes.of_run(processes.marked_processes(await self.fleet()), agent_id)
        if leftovers:  # an earlier run's processes on this machine (a takeover in progress): gone first
            log.warning("program.leftovers_stopped", agent=agent_id, run=starting.run, pids=leftovers)
            await processes.kill_and_wait(leftovers, spec.stop_grace_s)
        if self.stopping:
            return None  # shutting down meanwhile: the next runner starts it
        inherited = {name: value for name, value in os.environ.items() if not name.startswith("AGENTLOG_")}
        env = {  # not this process's settings (its database URL, its LLM key): a program is an agent of the API
            **inherited, **spec.env,
            processes.MARKER: processes.marker(await self.fleet(), agent_id, starting.run, self._nonce),
            "AGENTLOG_AGENT_ID": agent_id, "AGENTLOG_URL": self.settings.api_url,
            "AGENTLOG_TOKEN": self.token(agent_id), "AGENTLOG_TOKEN_FILE": str(self._token_file(agent_id)),
            "AGENTLOG_PROGRAM_RUN_NUMBER": str(starting.run),
        }  # fmt: skip
        try:
            self._write_token(agent_id)
            with self._output(agent_id) as output:
                process = await processes.start(spec.command, env, spec.working_dir, output)
        except OSError as error:  # recorded as a failed run: the keeper's restarts and their limit apply
            log.error("program.start_failed", agent=agent_id, run=starting.run, error=str(error))
            failed = ProgramExited(agent_id=agent_id, run=starting.run, reason=f"could not be started: {error}"[:500])
            await append(program_stream(agent_id), [NewEvent(failed, _exited_id(starting_id))])
            return None
        held = Run(agent_id, starting.run, starting_id, process, spec)
        self.runs[agent_id] = held
        held.watcher = asyncio.get_running_loop().create_task(self._watch(held))
        log.info("program.started", agent=agent_id, run=starting.run, pid=process.pid, command=spec.command[0])
        await append(program_stream(agent_id), [self._running(held)])
        return held

    def _running(self, held: Run) -> NewEvent:
        running = ProgramRunning(
            agent_id=held.agent_id, run=held.run, pid=held.process.pid, host=self.settings.host, runner=self.runner_id,
            handover_s=self.settings.handover_s,
        )
        return NewEvent(running, derived_event_id(RUNNER, held.starting_id, 0))

    async def _stop_asked(self, stopping: ProgramStopping, stopping_id: uuid.UUID, batch: HandlerBatch) -> None:
        held = self.runs.get(stopping.agent_id)
        if held is not None and held.run == stopping.run:
            self._in_background(self._stop(held))
            return
        program, starting = await self._fold(program_stream(stopping.agent_id))
        if program.run != stopping.run or program.status != "stopping" or program.exited or starting is None:
            return
        if program.host and program.host != self.settings.host:
            return  # the reconcile records its end once its own runner has surely stopped it
        gone = ProgramExited(agent_id=stopping.agent_id, run=stopping.run, reason="no process of it was running")
        await batch.append(program_stream(stopping.agent_id), [NewEvent(gone, _exited_id(starting.event_id))])

    async def _stop(self, held: Run) -> None:
        """SIGTERM its group, SIGKILL after its stop grace; returns once it ended (its watcher records the exit)."""
        if held.stopping and held.watcher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(held.watcher)  # stopping already: wait for that stop
            return
        held.stopping = True
        process = held.process
        if process.returncode is None:
            log.info("program.stopping", agent=held.agent_id, run=held.run, pid=process.pid)
            processes.signal_group(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), held.spec.stop_grace_s)
            except TimeoutError:
                log.warning("program.kill_after_grace", agent=held.agent_id, run=held.run, pid=process.pid)
                processes.signal_group(process.pid, signal.SIGKILL)
                await process.wait()
        if held.watcher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(held.watcher)

    async def _watch(self, held: Run) -> None:
        exit_code = await held.process.wait()
        log.info("program.exited", agent=held.agent_id, run=held.run, exit_code=exit_code, asked=held.stopping)
        # A run ends with its leader: what it started and left behind goes with it (its group, and whatever
        # carries its marker elsewhere), or each restart would add a copy.
        marked = [found for found in processes.marked_processes(await self.fleet())
                  if (found.agent_id, found.run, found.nonce) == (held.agent_id, held.run, self._nonce)]  # fmt: skip
        if any(found.pgid == held.process.pid for found in marked):  # not empty: its id cannot have been reused
            processes.signal_group(held.process.pid, signal.SIGKILL)
        await processes.kill_and_wait([found.pid for found in marked], 0.0)
        await held.recordable.wait()
        if held.forgotten:
            return
        if self.runs.get(held.agent_id) is held:
            del self.runs[held.agent_id]
        reason = "its runner shut down" if held.runner_left else ""
        exited = ProgramExited(agent_id=held.agent_id, run=held.run, exit_code=exit_code, reason=reason,
                               runner_left=held.runner_left)  # fmt: skip
        await self._record(exited, held.starting_id)

    def hurry(self) -> None:
        """Asked to stop again while stopping (a second SIGINT or SIGTERM): kill the programs still stopping now,
        rather than wait out their grace (the standby cannot take the turn over before this runner lets it go)."""
        for held in list(self.runs.values()):
            if held.process.returncode is None:
                log.warning("program.killed_in_a_hurry", agent=held.agent_id, run=held.run, pid=held.process.pid)
                processes.signal_group(held.process.pid, signal.SIGKILL)

    async def shutdown(self) -> None:
        """Stop every program and record each exit (`runner_left`: the next runner starts them again)."""
        self.stopping = True
        for task in (self._renewing, self._leasing):
            if task is not None:
                task.cancel()
        runs = list(self.runs.values())
        for held in runs:
            held.runner_left = not held.stopping
            held.recordable.set()  # a start whose batch did not commit: its end is recorded all the same
        if runs:
            longest = max(held.spec.stop_grace_s for held in runs)
            stops = asyncio.gather(*(self._stop(held) for held in runs), return_exceptions=True)
            try:
                await asyncio.wait_for(stops, longest + SHUTDOWN_MARGIN_S)
            except TimeoutError:
                log.error("programs.exits_unrecorded", agents=[held.agent_id for held in runs if held.watcher
                          and not held.watcher.done()])  # fmt: skip
        for task in list(self._background):
            task.cancel()
        if self._handing_over is not None:
            self._handing_over.cancel()

    # -- recording -----------------------------------------------------------------------------------------------

    async def _record(self, exited: ProgramExited, starting_id: uuid.UUID) -> None:
        await self._append_now(program_stream(exited.agent_id), [NewEvent(exited, _exited_id(starting_id))])

    async def _append_now(self, stream_id: str, events: Sequence[NewEvent]) -> None:
        """Record a fact outside a batch, retrying while the database is away and this runner still holds its
        turn (its ids derive from the run: recorded twice, it is recorded once)."""
        delay = 0.2
        while True:
            try:
                await self.store.append(stream_id, events, ANY)
                return
            except EventIdConflictError:
                return  # another runner recorded this fact of the run first, as it saw it
            except RETRYABLE as error:
                if not self.active and not self.stopping:
                    return  # handed over: the next runner records it
                log.warning("program.record_failed", stream=stream_id, error=str(error), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except AgentlogError as error:
                log.error("program.fact_refused", stream=stream_id, error=str(error))
                return

    async def _fold(self, stream_id: str) -> tuple[ProgramLifecycle, _Starting | None]:
        """The program as its stream says now, and where its current run's `ProgramStarting` is."""
        program, starting = ProgramLifecycle(agent_id=agent_of(stream_id)), None
        for recorded in await self.store.read_stream(stream_id):
            event = self.store.decode(recorded)
            program.fold(event, recorded.stream_version)
            if isinstance(event, ProgramStarting):
                starting = _Starting(event, recorded.event_id, recorded.position)
        return program, starting

    # -- the program's files -------------------------------------------------------------------------------------

    def _output(self, agent_id: str) -> IO[bytes]:
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        return (self.settings.log_dir / f"{agent_id}.log").open("ab")

    def _token_file(self, agent_id: str) -> Path:
        return self.settings.log_dir / f"{agent_id}.token"

    def _write_token(self, agent_id: str) -> None:
        """The agent's current token, for a program that outlives the one in its environment (renewed here)."""
        path = self._token_file(agent_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = path.with_suffix(".token.new")
        descriptor = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(self.token(agent_id))
        fresh.replace(path)

    async def _renew_tokens(self) -> None:
        while True:
            await asyncio.sleep(self.settings.token_renewal_s)
            for agent_id in list(self.runs):
                with contextlib.suppress(OSError):
                    self._write_token(agent_id)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        """A reconcile's or a stop's work ended: a failure is logged (the next takeover's reconcile looks again)."""
        self._background.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("programs.background_failed", runner=self.runner_id, error=f"{type(error).__name__}: {error}")


@dataclass(frozen=True, slots=True)
class _Starting:
    event: ProgramStarting
    event_id: uuid.UUID
    position: LogPosition


def _exited_id(starting_id: uuid.UUID) -> uuid.UUID:
    return derived_event_id(RUNNER, starting_id, 1)
