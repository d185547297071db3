"""The supervisor: the effector that runs one manager's agent workers as OS processes and records what happens.

It carries out the spawn and detach decisions addressed to its manager (a handler named `supervisor.<manager>`,
so each manager follows the log from its own checkpoint), and records facts as events: process started, worker
connected, places marked, tokens spent, metrics, missed pongs, process exited. It never decides anything; the
agent manager decider reacts to these facts.

Life of a manager:

1. Take the manager's lock (a session advisory lock): a second process with the same manager id refuses to start.
2. Record `ManagerStarted` with a new incarnation, then reconcile: workers the log says run here but that belong
   to the previous life are stopped if still alive (their pipes are gone with the old process), and their exit is
   recorded. Spawn requests addressed to a previous life are ignored.
3. Run: ping every worker every `ping_s`; a worker that misses two pongs is recorded as unresponsive and killed.
   Watch the other managers: one whose lock is free has died, and is recorded as lost (its documents' agents are
   then placed elsewhere by the decider).
4. Shut down (SIGINT/SIGTERM): record `ManagerStopped`, ask every worker to stop, kill those that do not, record
   each exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import structlog

from agentlog.domains.agents.events import (
    AgentAbandoned,
    AgentConnected,
    AgentDetachRequested,
    AgentMetricsReported,
    AgentProcessExited,
    AgentProcessStarted,
    AgentSpawnRequested,
    AgentUnresponsive,
    LocationsMarked,
    ManagerReconnected,
    ManagerStarted,
    ManagerStopped,
    MarkedPlace,
    TokensSpent,
    agent_stream,
    manager_stream,
)
from agentlog.domains.budgets.ledger import BudgetError
from agentlog.eventstore import ANY, Event, EventStore, NewEvent
from agentlog.eventstore.errors import (
    AgentlogError,
    ConcurrencyRetryError,
    DatabaseUnavailableError,
    WrongExpectedVersionError,
)
from agentlog.eventstore.postgres import recorder
from agentlog.eventstore.postgres.connections import Connection, connect
from agentlog.eventstore.postgres.errors import CONNECTION_ERRORS
from agentlog.eventstore.postgres.queries import load_queries
from agentlog.handlers.budgets.reservations import Reservations
from agentlog.handlers.handler import HandlerBatch

log = structlog.get_logger("handlers.supervisor")

SUPERVISOR_NAMESPACE = uuid.UUID("0f6f3a4e-8d0c-4b53-9c9e-2b7c1d2e5a77")
STOP_GRACE_S = 5.0
RESERVATION_TTL_S = 120.0
"""A worker's call is given this long to be settled; a worker killed mid-call gives its tokens back then."""
RETRYABLE: tuple[type[BaseException], ...] = (DatabaseUnavailableError, ConcurrencyRetryError, *CONNECTION_ERRORS)
"""Failures after which recording a fact is tried again; any other is a bug in the fact and is logged instead."""
PROBE_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, TimeoutError)
SETTLE_FAILURES: tuple[type[BaseException], ...] = (BudgetError, *RETRYABLE)

WorkerCommand = Callable[[AgentSpawnRequested], Sequence[str]]
StandbyCommand = Callable[[], Sequence[str]]
"""A worker that starts warm and waits for its assignment on standard input (`--standby-of MANAGER`)."""
"""The command line of a worker for a spawn request (the application edge knows the program)."""
AgentToken = Callable[[AgentSpawnRequested], str]
"""A token that lets the worker into its document."""
NewIncarnation = Callable[[str], Awaitable[None]]
"""Called with the new incarnation once a manager recorded as lost has started afresh (the document server then
records its people as present again)."""

QUERIES = load_queries(Path(__file__).with_suffix(".sql"))


def manager_lock_name(manager_id: str) -> str:
    return f"manager.{manager_id}"


@dataclass(slots=True)
class WorkerProcess:
    spawn: AgentSpawnRequested
    process: asyncio.subprocess.Process
    started_at: float
    last_pong: float
    pings_sent: int = 0
    stop_requested: str | None = None
    """Why it was asked to stop (its exit is then expected)."""
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    reports: asyncio.Queue[tuple[int, Event]] = field(default_factory=asyncio.Queue)
    """Facts it reported, recorded in order by their own task, so that reading (and pongs) never waits for the
    database."""
    started_recorded: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the batch that recorded `AgentProcessStarted` committed: its reports are recorded after that, so
    they follow it in the log, and never race the batch's older transaction for the agent's stream (which the
    order guard would refuse, failing the whole batch of spawns)."""
    spending: set[asyncio.Task[None]] = field(default_factory=set)
    """Token reservations and settlements of its calls under way."""


@dataclass(slots=True)
class SupervisorSettings:
    manager_id: str
    max_agents: int
    document_url: str
    ping_s: float = 30.0
    missed_pongs: int = 2
    stats_log_s: float = 60.0
    watch_managers_s: float = 2.0
    warm_worker: bool = True
    """Keep one worker started and waiting, so that the next agent only has to join its document."""


class Supervisor:
    """Runs one manager's workers. `start()`, then host `handler` in the runner, then `shutdown()`."""

    def __init__(
        self,
        store: EventStore,
        settings: SupervisorSettings,
        command: WorkerCommand,
        token: AgentToken,
        standby_command: StandbyCommand | None = None,
        on_new_incarnation: NewIncarnation | None = None,
        token_renewal_s: float | None = None,
    ) -> None:
        self.store = store
        self.reservations = Reservations(store)
        """Token reservations of the workers' LLM calls (`--budgeted` workers ask before each call)."""
        self.token_renewal_s = token_renewal_s
        """Workers get a fresh token this often (their tokens are short-lived; see `_renew_tokens`)."""
        self.on_new_incarnation = on_new_incarnation
        self.settings = settings
        self.command = command
        self.token = token
        self.standby_command = standby_command if settings.warm_worker else None
        self._standby: asyncio.subprocess.Process | None = None
        self.incarnation = uuid.uuid4().hex[:12]
        self.workers: dict[str, WorkerProcess] = {}
        self.handler = SupervisorHandler(self)
        self._lock_connection: Connection | None = None
        self._background: list[asyncio.Task[None]] = []
        self.stopping = False
        self.spawned: set[str] = set()
        """Every agent this incarnation ever started: a batch retried after its workers came and went must not
        start them again."""
        self._exits_recordable = asyncio.Event()
        self._exits_recordable.set()
        self.lost = asyncio.Event()
        """Set when another process took this manager id over while this one was cut off from the database."""

    # -- start and stop ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        manager_id = self.settings.manager_id
        self._lock_connection = await self._connect_for_lock()
        if not await recorder.try_lock_handler(self._lock_connection, manager_lock_name(manager_id)):
            self._lock_connection.terminate()
            raise AgentlogError(f"an agent manager with id {manager_id!r} is already running on this database")
        await self._record_started()
        await self._reconcile()
        await self._prepare_standby()  # after the reconcile: it must not mistake the new standby for an orphan
        loop = asyncio.get_running_loop()
        self._background = [
            loop.create_task(self._forever(self._ping_round, self.settings.ping_s)),
            loop.create_task(self._watch_managers()),
            loop.create_task(self._forever(self._log_stats, self.settings.stats_log_s)),
            loop.create_task(self._forever(self._check_lock, self.settings.watch_managers_s)),
        ]
        if self.token_renewal_s is not None:
            self._background.append(loop.create_task(self._forever(self._renew_tokens, self.token_renewal_s)))

    async def _connect_for_lock(self) -> Connection:
        return await connect(self.store.url, application_name=f"agentlog manager {self.settings.manager_id}")

    async def _record_started(self) -> None:
        manager_id = self.settings.manager_id
        started = ManagerStarted(
            manager_id=manager_id,
            incarnation=self.incarnation,
            host=socket.gethostname(),
            pid=os.getpid(),
            max_agents=self.settings.max_agents,
            document_url=self.settings.document_url,
        )
        await self.store.append(manager_stream(manager_id), [started], ANY)
        log.info("manager.started", manager=manager_id, incarnation=self.incarnation)

    async def _reconcile(self) -> None:
        """Workers of this manager's previous life: stop any still running, record that they are gone."""
        for row in await self.store.pool.fetch(QUERIES["running_here"], self.settings.manager_id):
            pid = row["agent_pid"]
            alive = pid is not None and _is_our_worker(pid, row["agent_id"], self.settings.manager_id)
            if alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            reason = (
                "its manager restarted; the orphaned worker was stopped"
                if alive
                else "its manager restarted; the worker was no longer running"
            )
            await self._record(
                agent_stream(row["agent_id"]),
                AgentProcessExited(
                    agent_id=row["agent_id"],
                    document_id=row["document_id"],
                    manager_id=self.settings.manager_id,
                    pid=pid,
                    exit_code=None,
                    expected=True,
                    reason=reason,
                ),
                f"reconciled/{self.incarnation}/{row['agent_id']}",
            )
            log.info("manager.reconciled", agent=row["agent_id"], was_running=alive)

    async def shutdown(self, reason: str = "the manager was stopped (SIGINT/SIGTERM)") -> None:
        """Stop every worker, record the manager's end, then record each worker's exit.

        In that order: while the workers stop, the manager still counts as alive, so the decider places nothing
        elsewhere yet (which would put a second agent on a document for a few seconds); and the exits come after
        `ManagerStopped`, so the decider does not give the freed slots back to this manager. Spawns it addresses
        here meanwhile are ignored (`stopping`).
        """
        self.stopping = True
        self._exits_recordable.clear()
        for task in self._background:
            task.cancel()
        await self._dismiss_standby()
        await asyncio.gather(*(self._stop_worker(agent_id, "manager shutdown: detached") for agent_id in self.workers))
        processes = [worker.process.wait() for worker in self.workers.values()]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*processes, return_exceptions=True), STOP_GRACE_S + 2)
        with contextlib.suppress(*RETRYABLE):
            await self.store.append(
                manager_stream(self.settings.manager_id),
                [
                    ManagerStopped(
                        manager_id=self.settings.manager_id, incarnation=self.incarnation, how="shutdown", reason=reason
                    )
                ],
                ANY,
            )
        self._exits_recordable.set()
        exits = [task for worker in self.workers.values() for task in worker.tasks]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*exits, return_exceptions=True), 10)
        if self._lock_connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._lock_connection.close(), 2)
            self._lock_connection.terminate()
        log.info("manager.stopped", manager=self.settings.manager_id)

    # -- decisions -----------------------------------------------------------------------------------------------

    async def spawn(self, spawn: AgentSpawnRequested, batch: HandlerBatch) -> None:
        if spawn.agent_id in self.spawned:
            worker = self.workers.get(spawn.agent_id)
            if worker is not None:  # started by an attempt of this batch that did not commit: record it again
                await batch.append(agent_stream(spawn.agent_id), [self._started_event(spawn, worker)], ANY)
                self.handler.started_in_batch.append(worker)
            return
        self.spawned.add(spawn.agent_id)
        try:
            process = await self._assign_standby(spawn) or await asyncio.create_subprocess_exec(
                *self.command(spawn),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env={**os.environ, "AGENTLOG_AGENT_TOKEN": self.token(spawn)},
                start_new_session=True,  # Ctrl-C in a terminal reaches the manager, which detaches in order
            )
        except OSError as error:
            # Recorded as an abnormal exit, so the decider's restarts and their limit apply; the batch goes on.
            log.error("agent.spawn_failed", agent=spawn.agent_id, error=str(error))
            failed = AgentProcessExited(
                agent_id=spawn.agent_id, document_id=spawn.document_id, manager_id=spawn.manager_id, pid=None,
                exit_code=None, expected=False, reason=f"the worker could not be started: {error}",
            )  # fmt: skip
            failed_id = self._event_id(f"exited/{spawn.agent_id}")
            await batch.append(agent_stream(spawn.agent_id), [NewEvent(failed, failed_id)])
            return
        now = time.monotonic()
        worker = WorkerProcess(spawn, process, now, now)
        self.workers[spawn.agent_id] = worker
        loop = asyncio.get_running_loop()
        worker.tasks = [
            loop.create_task(self._read_reports(worker)),
            loop.create_task(self._record_reports(worker)),
            loop.create_task(self._await_exit(worker)),
        ]
        log.info("agent.spawned", agent=spawn.agent_id, document=spawn.document_id, pid=process.pid)
        await batch.append(agent_stream(spawn.agent_id), [self._started_event(spawn, worker)], ANY)
        self.handler.started_in_batch.append(worker)

    async def _assign_standby(self, spawn: AgentSpawnRequested) -> asyncio.subprocess.Process | None:
        """The waiting worker, now assigned to this agent (and a new one on its way), or None if there is none."""
        process, self._standby = self._standby, None
        if process is None:
            return None
        asyncio.get_running_loop().create_task(self._prepare_standby())
        if process.returncode is not None:
            log.warning("agent.standby_lost", agent=spawn.agent_id, exit_code=process.returncode)
            return None
        assignment = {"op": "assign", "document": spawn.document_id, "agent": spawn.agent_id,
                      "url": self.settings.document_url, "token": self.token(spawn)}  # fmt: skip
        try:
            assert process.stdin is not None
            process.stdin.write(orjson.dumps(assignment) + b"\n")
            await process.stdin.drain()
        except (OSError, RuntimeError) as error:  # it died waiting: start one the usual way
            log.warning("agent.standby_lost", agent=spawn.agent_id, error=str(error))
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            return None
        return process

    async def _prepare_standby(self) -> None:
        if self.standby_command is None or self.stopping or self._standby is not None:
            return
        try:
            self._standby = await asyncio.create_subprocess_exec(
                *self.standby_command(),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as error:
            log.warning("agent.standby_failed", error=str(error))
            return
        if self.stopping:  # stopped while it was starting
            await self._dismiss_standby()

    async def _dismiss_standby(self) -> None:
        """Close its standard input: a standby worker that reads end-of-file exits at once."""
        process, self._standby = self._standby, None
        if process is None or process.stdin is None:
            return
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    def _started_event(self, spawn: AgentSpawnRequested, worker: WorkerProcess) -> NewEvent:
        started = AgentProcessStarted(
            agent_id=spawn.agent_id, document_id=spawn.document_id, manager_id=spawn.manager_id,
            pid=worker.process.pid,
        )  # fmt: skip
        return NewEvent(started, self._event_id(f"started/{spawn.agent_id}"))

    def abandon(self, abandoned: AgentAbandoned) -> None:
        """The decider gave up on this agent (too slow to start or stop): never start it, kill it if it runs."""
        self.spawned.add(abandoned.agent_id)
        worker = self.workers.get(abandoned.agent_id)
        if worker is not None and worker.process.returncode is None:
            worker.stop_requested = worker.stop_requested or f"abandoned: {abandoned.reason}"
            log.warning("agent.abandoned", agent=abandoned.agent_id, reason=abandoned.reason)
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()

    async def detach(self, detach: AgentDetachRequested) -> None:
        await self._stop_worker(detach.agent_id, detach.reason)

    async def _stop_worker(self, agent_id: str, reason: str) -> None:
        worker = self.workers.get(agent_id)
        if worker is None or worker.stop_requested is not None:
            return
        worker.stop_requested = reason
        log.info("agent.detaching", agent=agent_id, reason=reason)
        asyncio.get_running_loop().create_task(self._kill_later(worker))
        await self._send(worker, {"op": "shutdown"})

    async def _kill_later(self, worker: WorkerProcess) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(worker.process.wait(), STOP_GRACE_S)
            return
        log.warning("agent.kill_after_grace", agent=worker.spawn.agent_id)
        with contextlib.suppress(ProcessLookupError):
            worker.process.kill()

    # -- what workers report ------------------------------------------------------------------------------------

    async def _read_reports(self, worker: WorkerProcess) -> None:
        assert worker.process.stdout is not None
        spawn = worker.spawn
        sequence = 0
        while line := await worker.process.stdout.readline():
            worker.last_pong = time.monotonic()  # anything it says shows it is alive
            try:
                report = orjson.loads(line)
                if report.get("op") == "reserve":
                    self._spend(worker, self._reserve(worker, int(report["n"]), int(report["tokens"])))
                    continue
                event = self._event_of(spawn, report, worker)
            except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError) as error:
                log.warning("agent.bad_report", agent=spawn.agent_id, error=str(error), line=line[:200])
                continue
            if isinstance(event, TokensSpent) and isinstance(report.get("reservation_id"), str):
                used = event.prompt_tokens + event.completion_tokens
                self._spend(worker, self._settle(spawn.agent_id, report["reservation_id"], used))
            if event is not None:
                sequence += 1
                worker.reports.put_nowait((sequence, event))

    def _spend(self, worker: WorkerProcess, work: Coroutine[Any, Any, None]) -> None:
        """Reserve or settle beside the reading (a slow append must not hold up the worker's other reports)."""
        task = asyncio.create_task(work)
        worker.spending.add(task)
        task.add_done_callback(worker.spending.discard)

    async def _reserve(self, worker: WorkerProcess, number: int, tokens: int) -> None:
        agent_id = worker.spawn.agent_id
        reservation_id = new_reservation_id(agent_id)
        try:
            await self.reservations.reserve(
                agent_id, reservation_id, max(tokens, 1), datetime.now(UTC), ttl_s=RESERVATION_TTL_S,
                purpose="extract-locations",
            )  # fmt: skip
        except BudgetError as error:
            log.info("agent.budget_refused", agent=agent_id, tokens=tokens, reason=str(error))
            await self._send(worker, {"op": "reserved", "n": number, "ok": False, "reason": str(error)})
            return
        except RETRYABLE as error:
            await self._send(worker, {"op": "reserved", "n": number, "ok": False, "reason": f"no database: {error}"})
            return
        await self._send(worker, {"op": "reserved", "n": number, "ok": True, "reservation_id": reservation_id})

    async def _settle(self, agent_id: str, reservation_id: str, used_tokens: int) -> None:
        try:
            await self.reservations.close(agent_id, reservation_id, used_tokens, datetime.now(UTC))
        except SETTLE_FAILURES as error:  # it expires by its timer; TokensSpent still says what the call used
            log.warning("agent.settle_failed", agent=agent_id, reservation=reservation_id, error=str(error))

    async def _record_reports(self, worker: WorkerProcess) -> None:
        await worker.started_recorded.wait()
        while True:
            sequence, event = await worker.reports.get()
            key = f"report/{worker.spawn.agent_id}/{worker.process.pid}/{sequence}"
            await self._record(agent_stream(worker.spawn.agent_id), event, key)
            worker.reports.task_done()

    def _event_of(self, spawn: AgentSpawnRequested, report: dict[str, Any], worker: WorkerProcess) -> Event | None:
        who = {"agent_id": spawn.agent_id, "document_id": spawn.document_id}
        match report.get("op"):
            case "pong":
                worker.last_pong = time.monotonic()
                return None
            case "connected":
                return AgentConnected(**who, sync_ms=report["sync_ms"])
            case "marked":
                return LocationsMarked(**who, places=tuple(MarkedPlace(**place) for place in report["places"]))
            case "tokens":
                return TokensSpent(
                    **who,
                    provider=report["provider"],
                    model=report["model"],
                    purpose="extract-locations",
                    prompt_tokens=report["prompt_tokens"],
                    completion_tokens=report["completion_tokens"],
                    duration_ms=report["duration_ms"],
                )
            case "metrics":
                fields = ("memory_mb", "cpu_percent", "llm_calls", "locations_marked", "websocket_latency_ms",
                          "llm_response_time_ms")
                return AgentMetricsReported(**who, **{name: report.get(name) for name in fields})
        raise ValueError(f"unknown report {report.get('op')!r}")

    async def _await_exit(self, worker: WorkerProcess) -> None:
        code = await worker.process.wait()
        reading, recording = worker.tasks[0], worker.tasks[1]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reading), 5)  # what it said before it went comes first
            await asyncio.wait_for(worker.reports.join(), 30)
        recording.cancel()
        await self._exits_recordable.wait()  # during a shutdown, after ManagerStopped
        spawn = worker.spawn
        expected = worker.stop_requested is not None
        if expected:
            reason = worker.stop_requested or ""
        elif code < 0:
            reason = f"the worker was killed by signal {signal.Signals(-code).name}"
        else:
            reason = f"the worker exited on its own with code {code}"
        log.log(20 if expected else 40, "agent.exited", agent=spawn.agent_id, code=code, reason=reason)
        event = AgentProcessExited(
            agent_id=spawn.agent_id,
            document_id=spawn.document_id,
            manager_id=spawn.manager_id,
            pid=worker.process.pid,
            exit_code=code,
            expected=expected,
            reason=reason,
        )
        await self._record(agent_stream(spawn.agent_id), event, f"exited/{spawn.agent_id}")
        if self.workers.get(spawn.agent_id) is worker:
            del self.workers[spawn.agent_id]

    # -- health --------------------------------------------------------------------------------------------------

    async def _forever(self, round_: Callable[[], Awaitable[None]], interval: float) -> None:
        """Run `round_` every `interval` until cancelled; a failing round is logged, never the end of the loop."""
        while True:
            await asyncio.sleep(interval)
            try:
                await round_()
            except asyncio.CancelledError:
                raise
            except RETRYABLE as error:
                log.warning("supervisor.round_failed", round=getattr(round_, "__name__", "?"), error=str(error))
            except Exception:
                log.exception("supervisor.round_failed", round=getattr(round_, "__name__", "?"))

    async def _ping_round(self) -> None:
        now = time.monotonic()
        for worker in list(self.workers.values()):
            if worker.stop_requested is not None or worker.process.returncode is not None:
                continue
            silent = now - worker.last_pong
            if silent > self.settings.ping_s * self.settings.missed_pongs + 1:
                await self._unresponsive(worker, silent)
                continue
            worker.pings_sent += 1
            await self._send(worker, {"op": "ping", "n": worker.pings_sent})

    async def _check_lock(self) -> None:
        """The manager's lock lives in one session. When that session dies (the server restarted or failed over,
        the network was cut), take the lock back and find out what happened meanwhile (`_relock`)."""
        connection = self._lock_connection
        alive = connection is not None and not connection.is_closed()
        if alive:
            assert connection is not None
            try:
                await connection.fetchval(QUERIES["probe"], timeout=5)
            except PROBE_ERRORS:
                alive = False
        if not alive and not self.stopping:
            log.warning("manager.lock_lost", manager=self.settings.manager_id, action="taking it back")
            await self._relock()

    async def _relock(self) -> None:
        """Take the lock back, with backoff, while the workers keep running and their reports wait to be recorded.

        With the lock in hand, the manager stream says what happened meanwhile. Nobody noticed (the usual case: a
        restart is over in seconds): `ManagerReconnected`, same incarnation, same agents. Another manager recorded
        this one as lost, so the decider has already placed its documents elsewhere: this incarnation's workers
        are stopped and a new incarnation starts (`_reincarnate`). And while the lock stays taken by a process that
        recorded its own start under this manager id, that process is this manager now: this one stops (`lost`).
        """
        if self._lock_connection is not None:
            self._lock_connection.terminate()
        self._lock_connection = None
        cut_off = time.monotonic()
        delay = 0.2
        while not self.stopping and not self.lost.is_set():
            connection: Connection | None = None
            try:
                connection = await self._connect_for_lock()
                if await self._resume(connection, time.monotonic() - cut_off):
                    self._lock_connection, connection = connection, None
                    return
            except RETRYABLE as error:
                log.warning("manager.relock_failed", manager=self.settings.manager_id, error=str(error),
                            retry_in_s=delay)  # fmt: skip
            finally:
                if connection is not None:
                    connection.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _resume(self, connection: Connection, offline_s: float) -> bool:
        """One attempt of `_relock` on a new session; True when the manager runs again (or is `lost`)."""
        manager_id = self.settings.manager_id
        stream = manager_stream(manager_id)
        locked = await recorder.try_lock_handler(connection, manager_lock_name(manager_id))
        version = await self.store.stream_version(stream)
        records = await self.store.read_stream(stream, from_version=version, limit=1) if version else []
        last = self.store.decode(records[0]) if records else None
        ours = getattr(last, "incarnation", None) == self.incarnation
        if not locked:
            if isinstance(last, ManagerStarted) and not ours:
                log.error("manager.taken_over", manager=manager_id, incarnation=last.incarnation, pid=last.pid,
                          host=last.host)  # fmt: skip
                self.lost.set()
                return True
            return False  # our old session may linger on the server for a while: wait for it to go
        if ours and isinstance(last, ManagerStarted | ManagerReconnected):
            reconnected = ManagerReconnected(manager_id=manager_id, incarnation=self.incarnation, offline_s=offline_s)
            try:
                await self.store.append(stream, [reconnected], version)
            except WrongExpectedVersionError:
                return False  # recorded as lost at this very moment: look again
            log.info("manager.reconnected", manager=manager_id, offline_s=round(offline_s, 1),
                     workers=len(self.workers))  # fmt: skip
            return True
        await self._reincarnate(last)
        return True

    async def _reincarnate(self, last: Event | None) -> None:
        """Recorded as lost (or replaced, then gone) while cut off: this incarnation's agents were dropped by the
        decider and may run elsewhere already. Stop them, then start afresh under a new incarnation."""
        reason = "its manager was recorded as lost while cut off from the database"
        log.warning("manager.recorded_lost", manager=self.settings.manager_id, last=getattr(last, "event_type", None),
                    workers=len(self.workers))  # fmt: skip
        await asyncio.gather(*(self._stop_worker(agent_id, reason) for agent_id in list(self.workers)))
        processes = [worker.process.wait() for worker in self.workers.values()]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*processes, return_exceptions=True), STOP_GRACE_S + 2)
        self.incarnation = uuid.uuid4().hex[:12]
        await self._record_started()
        if self.on_new_incarnation is not None:
            await self.on_new_incarnation(self.incarnation)

    async def _renew_tokens(self) -> None:
        """Agents' tokens are short-lived, so a leaked one is worth little: each worker gets a new one well before its
        token expires, and hands it to its document server over its socket (which would close at expiry)."""
        for worker in list(self.workers.values()):
            if worker.stop_requested is None and worker.process.returncode is None:
                await self._send(worker, {"op": "token", "token": self.token(worker.spawn)})

    async def _unresponsive(self, worker: WorkerProcess, silent: float) -> None:
        spawn = worker.spawn
        log.error("agent.unresponsive", agent=spawn.agent_id, silent_s=round(silent, 1))
        await self._record(
            agent_stream(spawn.agent_id),
            AgentUnresponsive(
                agent_id=spawn.agent_id,
                document_id=spawn.document_id,
                missed_pongs=self.settings.missed_pongs,
                silent_s=silent,
            ),
        )
        with contextlib.suppress(ProcessLookupError):
            worker.process.kill()  # its exit is recorded as abnormal: the decider restarts it

    async def _send(self, worker: WorkerProcess, message: dict[str, Any]) -> None:
        stdin = worker.process.stdin
        if stdin is None or stdin.is_closing():
            return
        with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
            stdin.write(orjson.dumps(message) + b"\n")
            await asyncio.wait_for(stdin.drain(), 5)

    async def _watch_managers(self) -> None:
        """Record as lost every manager the log says is running but whose lock nobody holds (twice in a row)."""
        suspects: set[str] = set()
        while True:
            await asyncio.sleep(self.settings.watch_managers_s)
            try:
                await self._watch_round(suspects)
            except asyncio.CancelledError:
                raise
            except RETRYABLE as error:
                log.warning("supervisor.watch_failed", error=str(error))
            except Exception:
                log.exception("supervisor.watch_failed")

    async def _watch_round(self, suspects: set[str]) -> None:
        for row in await self.store.pool.fetch(QUERIES["managers_alive"]):
            data = orjson.loads(row["data"]) if isinstance(row["data"], str | bytes) else row["data"]
            manager_id = data["manager_id"]
            if row["event_type"] != "ManagerStarted" or manager_id == self.settings.manager_id:
                continue
            if await recorder.handler_lock_held(self.store.pool, manager_lock_name(manager_id)):
                suspects.discard(manager_id)
                continue
            if manager_id not in suspects:
                suspects.add(manager_id)
                continue
            suspects.discard(manager_id)
            lost = ManagerStopped(
                manager_id=manager_id,
                incarnation=data["incarnation"],
                how="lost",
                reason=f"its database session ended (noticed by manager {self.settings.manager_id})",
            )
            # The same id whichever manager notices: several watchers record the loss once. At the version read:
            # a manager that took its lock back meanwhile has recorded so (`ManagerReconnected`), and wins.
            lost_id = uuid.uuid5(SUPERVISOR_NAMESPACE, f"lost/{manager_id}/{data['incarnation']}")
            try:
                await self.store.append(manager_stream(manager_id), [NewEvent(lost, lost_id)], row["head_version"])
            except WrongExpectedVersionError:
                continue  # it came back, or another watcher recorded it first: look again next round
            log.warning("manager.lost", manager=manager_id, incarnation=data["incarnation"])

    async def _log_stats(self) -> None:
        row = await self.store.pool.fetchrow(QUERIES["system_stats"])
        if row is not None:
            log.info("system.stats", manager=self.settings.manager_id, workers_here=len(self.workers),
                     **{key: _plain(value) for key, value in dict(row).items()})  # fmt: skip

    # -- recording -----------------------------------------------------------------------------------------------

    def _event_id(self, key: str) -> uuid.UUID:
        return uuid.uuid5(SUPERVISOR_NAMESPACE, f"{self.settings.manager_id}/{self.incarnation}/{key}")

    async def _record(self, stream_id: str, event: Event, key: str | None = None) -> None:
        """Append a fact, retrying while the database is away: a fact that is not recorded is lost for good."""
        new = NewEvent(event, self._event_id(key)) if key is not None else NewEvent(event)
        delay = 0.2
        while True:
            try:
                await self.store.append(stream_id, [new], ANY)
                return
            except RETRYABLE as error:
                log.warning("supervisor.record_failed", event=event.event_type, error=str(error), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except AgentlogError as error:
                log.error("supervisor.fact_refused", event=event.event_type, error=str(error))
                return


class SupervisorHandler:
    """The supervisor's view of the log: the spawn and detach decisions addressed to its manager."""

    event_types: frozenset[str] | None = frozenset({"AgentSpawnRequested", "AgentDetachRequested", "AgentAbandoned"})

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.name = f"supervisor.{supervisor.settings.manager_id}"
        self.started_in_batch: list[WorkerProcess] = []
        """Workers whose start this batch records: their reports wait for its commit."""

    def batch_committed(self) -> None:
        for worker in self.started_in_batch:
            worker.started_recorded.set()
        self.started_in_batch = []

    async def handle(self, batch: HandlerBatch) -> None:
        self.started_in_batch = []  # a retried batch records them again
        supervisor = self.supervisor
        for typed in batch.events:
            event = typed.event
            if isinstance(event, AgentSpawnRequested):
                if event.manager_id != supervisor.settings.manager_id or supervisor.stopping:
                    continue
                if event.incarnation != supervisor.incarnation:
                    continue  # addressed to this manager's previous life, whose agents are gone
                await supervisor.spawn(event, batch)
            elif isinstance(event, AgentDetachRequested) and event.manager_id == supervisor.settings.manager_id:
                await supervisor.detach(event)
            elif isinstance(event, AgentAbandoned) and event.manager_id == supervisor.settings.manager_id:
                supervisor.abandon(event)


def _is_our_worker(pid: int, agent_id: str, manager_id: str) -> bool:
    """Whether `pid` still runs that agent's worker (and is not a process that reused its pid): its command line
    names the agent, or says it was this manager's standby (assigned later, over standard input)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            arguments = cmdline.read().split(b"\0")
    except OSError:
        return False
    if agent_id.encode() in arguments:
        return True
    return b"agentlog.agents.worker" in arguments and f"--standby-of={manager_id}".encode() in arguments


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def new_reservation_id(agent_id: str) -> str:
    """A reservation id no other call of this agent ever had: the agent's name for people reading the budget, then
    a random part (a pid and a counter repeat across restarts, and cutting a long agent id to fit cut them off)."""
    return f"{agent_id[:31]}-{uuid.uuid4().hex}"

