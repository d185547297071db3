"""The task queue under load (issue 13): the full task lifecycle per second with 8 worker processes, beside
PgQueuer on the same server; dispatch latency; budget reservations per second with 16 agents, beside a raw
`UPDATE ... WHERE remaining >= n`.

    .venv/bin/python bench/bench_tasks.py --home /tmp/agentlog-tasks-bench-home     # ~8 minutes on 2 cores
    .venv/bin/python bench/bench_tasks.py --quick                                    # smoke run
    .venv/bin/python bench/bench_tasks.py --database-url postgresql://user:pw@host:5432/any

Shapes (one PostgreSQL server; agentlog and PgQueuer each get a fresh database on it, re-created per variant):

1. **lifecycle throughput** — `--tasks` no-op tasks created in batches of `--create-batch` (one append per batch,
   one transaction each) as fast as the producer can, while `--workers` worker processes do them. agentlog: one
   process hosts the dispatcher (`handlers.tasks.dispatcher.Dispatcher` in a `DecisionHandler` on a real
   `HandlerRunner`, batch size 500 as `agentlog up`), optionally with the read side (`tasks` and `timers`
   projections and the timer service: variant `+read side`); each worker is an agent registered in push mode with
   `max_concurrent_tasks` = `--per-agent` in its registry metadata, follows the log (`EventStore.subscribe`,
   category `task`), keeps the fold of each task assigned to it (`TaskLifecycle`, checked with `lifecycle.check`
   as the API does) and, per round, appends `TaskStarted` for every new assignment in one `append_batch` (each
   stream at its folded version), does nothing, and appends the `TaskCompleted`s in one more (`--worker-appends
   1` puts both in one). Every event of the lifecycle is in the log: TaskCreated, TaskAssigned, two
   TimerScheduled (the attempt's execution timer and heartbeat check), TaskStarted, TaskCompleted. The figure is
   tasks from the first create until the last completion committed. PgQueuer: the same number of no-op jobs
   enqueued in the same batches (`Queries.enqueue`), `--workers` processes each running a `PgQueuer` (its
   `QueueManager`, asyncpg driver, default batch size 10, durable tables) with one async no-op entrypoint; the
   figure is jobs from the first enqueue until the queue table is empty (every completion committed).
2. **dispatch latency** — `--rate` tasks per second for `--latency-seconds`, each created in its own transaction;
   the delay from the create (or enqueue) returning to the worker holding the assignment (agentlog: the worker's
   subscription delivered `TaskAssigned`; PgQueuer: the entrypoint was called). Also agentlog's server-side
   `recorded_at` difference (TaskAssigned's transaction start - TaskCreated's).
3. **budget reservations** — `--agents` agents (asyncio tasks in one process, as one API process serves them)
   each reserving 100 tokens and settling 80, for `--budget-seconds`: `handlers.budgets.reservations`, the code
   behind `POST /budgets/reservations` and `/settle`, on the global budget and the agent's own (fold, `reserve_all`
   at the folded versions with the expiry timers, `append_batch` with expected versions, again on a conflict);
   beside it **raw**: the same cycle as two `UPDATE ... WHERE limit - settled - reserved >= n` on one row per
   budget (global first) in one transaction, then the settling UPDATEs, on as many asyncpg connections.

CPU of every process (the producer, dispatcher, workers and the PostgreSQL server's processes) is measured over
each throughput run; `--profile` adds a run of the agentlog variant with cProfile in the dispatcher process (not
the measured run: the profiler slows it) and prints its top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import resource
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import psutil
from embedded_or_url import fresh_database, server_url, with_database

from agentlog.domains.budgets import ledger as rules
from agentlog.domains.budgets.events import agent_budget, budget_stream
from agentlog.domains.budgets.periods import period_of
from agentlog.domains.coordination.events import AgentRegistered
from agentlog.domains.coordination.names import member_stream
from agentlog.domains.tasks.events import TaskCompleted, TaskCreated, TaskStarted, task_of, task_stream
from agentlog.domains.tasks.lifecycle import TaskLifecycle, check
from agentlog.eventstore import (
    NO_STREAM,
    Event,
    EventStore,
    RecordedEvent,
    StreamAppend,
    WrongExpectedVersionError,
)
from agentlog.handlers import HandlerRunner
from agentlog.handlers.budgets.reservations import Reservations
from agentlog.handlers.decider import DecisionHandler, record_settings
from agentlog.handlers.handler import HandlerBatch
from agentlog.handlers.projection_handler import ProjectionHandler
from agentlog.handlers.tasks.dispatcher import Dispatcher, DispatcherState
from agentlog.handlers.timers import TimerService
from agentlog.logs import configure_logging
from agentlog.projections import installed_projections

AGENTLOG_DATABASE = "agentlog_tasks_bench"
PGQUEUER_DATABASE = "pgqueuer_tasks_bench"
HANDLER_BATCH = 500
"""`agentlog up`'s default handler batch size."""


def quantile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def emit(kind: str, **data: Any) -> None:
    """One line of a child process's report to the benchmark (its stdout is the pipe)."""
    sys.stdout.write(json.dumps({"kind": kind, **data}) + "\n")
    sys.stdout.flush()


def stop_on_sigterm() -> asyncio.Event:
    """Set on SIGTERM, or when the benchmark that started this process is gone (no orphan outlives a crash)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    parent = os.getppid()

    async def orphaned() -> None:
        while os.getppid() == parent:  # noqa: ASYNC110 - no event says the parent died
            await asyncio.sleep(1.0)
        stop.set()

    ORPHAN_WATCH.append(loop.create_task(orphaned()))
    return stop


ORPHAN_WATCH: list[asyncio.Task[None]] = []


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- agentlog: the dispatcher process --------------------------------------------------------------------------


class TimedDecisionHandler(DecisionHandler[DispatcherState]):
    """The dispatcher's handler, timing each batch: how many events it held, how long `handle` took (deciding,
    appending the decisions, saving the state), and the gap since the previous batch began."""

    def __init__(self, decider: Dispatcher) -> None:
        super().__init__(decider)
        self.sizes: list[int] = []
        self.handle_ms: list[float] = []
        self.gap_ms: list[float] = []
        self._last: float | None = None

    async def handle(self, batch: HandlerBatch) -> None:
        at = time.perf_counter()
        if self._last is not None:
            self.gap_ms.append((at - self._last) * 1000)
        self._last = at
        await super().handle(batch)
        self.handle_ms.append((time.perf_counter() - at) * 1000)
        self.sizes.append(len(batch.events))

    def summary(self) -> dict[str, Any]:
        return {
            "batches": len(self.sizes), "events": sum(self.sizes),
            "events_per_batch": sum(self.sizes) / max(len(self.sizes), 1),
            "handle_ms_p50": quantile(self.handle_ms, 0.5), "handle_ms_p99": quantile(self.handle_ms, 0.99),
            "handle_s_total": sum(self.handle_ms) / 1000,
            "batch_start_gap_ms_p50": quantile(self.gap_ms, 0.5), "batch_start_gap_ms_p99": quantile(self.gap_ms, 0.99),
        }  # fmt: skip


async def host_dispatcher(url: str, capacity: int, read_side: bool, profile: str | None, poll: float) -> None:
    configure_logging("info", "json")  # as `agentlog up` logs; the benchmark sends stderr to a file
    stop = stop_on_sigterm()
    profiler = cProfile.Profile() if profile else None
    async with EventStore.open(url, pool_size=4, poll_interval=poll) as store:
        dispatcher = Dispatcher(max_concurrent_tasks=capacity, per_agent_limit=1)
        await record_settings(store, dispatcher)
        found = installed_projections().found
        timed = TimedDecisionHandler(dispatcher)
        handlers: list[Any] = [timed]
        if read_side:
            handlers += [ProjectionHandler(found["tasks"]), ProjectionHandler(found["timers"])]
        runner = HandlerRunner(store, handlers, batch_size=HANDLER_BATCH, lock_retry_interval=0.1)
        stop_timers = asyncio.Event()
        timers = asyncio.create_task(TimerService(store, stop_timers).run()) if read_side else None
        running = asyncio.create_task(runner.run())
        emit("ready")
        if profiler is not None:
            profiler.enable()
        await stop.wait()
        if profiler is not None:
            profiler.disable()
        stop_timers.set()
        runner.stop.set()
        if timers is not None:
            await timers
        await running
    if profiler is not None and profile:
        profiler.dump_stats(profile)
    emit("done", cpu_s=cpu_seconds(), **timed.summary())


# -- agentlog: a worker process --------------------------------------------------------------------------------


@dataclass
class Held:
    fold: TaskLifecycle
    version: int


@dataclass
class WorkerCounters:
    received: dict[str, float] = field(default_factory=dict)
    completed: int = 0
    rounds: int = 0
    appends: int = 0
    conflicts: int = 0
    refused: int = 0
    seen_after_ms: list[float] = field(default_factory=list)
    """TaskAssigned's recorded_at (its transaction's start) -> this worker read it."""
    append_ms: list[float] = field(default_factory=list)


async def agent_worker(url: str, agent_id: str, appends_per_round: int, poll: float) -> None:
    configure_logging("info", "json")  # to stderr (a file): stdout is the report's pipe
    stop = stop_on_sigterm()
    counters = WorkerCounters()
    async with EventStore.open(url, pool_size=2, poll_interval=poll) as store:
        subscription = await store.subscribe(after=await store.head(), category="task", batch_size=2_000)
        created: dict[str, RecordedEvent] = {}
        """TaskCreated of tasks not yet assigned (decoded only when one is assigned to this agent)."""
        held: dict[str, Held] = {}
        emit("ready")

        async def follow() -> None:
            async for batch in subscription:
                now = time.time()
                new: list[str] = []
                for recorded in batch:
                    stream = recorded.stream_id
                    if recorded.event_type == "TaskCreated":
                        created[stream] = recorded
                    elif recorded.event_type == "TaskAssigned":
                        spec = created.pop(stream, None)
                        if recorded.data.get("agent_id") != agent_id or spec is None:
                            continue
                        fold = TaskLifecycle()
                        fold.fold(store.decode(spec))
                        fold.fold(store.decode(recorded))
                        held[stream] = Held(fold, recorded.stream_version)
                        counters.received[task_of(stream)] = now
                        counters.seen_after_ms.append((now - recorded.recorded_at.timestamp()) * 1000)
                        new.append(stream)
                    elif stream in held and recorded.stream_version > held[stream].version:
                        # the dispatcher's timers for the attempt, appended with the assignment
                        held[stream].fold.fold(store.decode(recorded))
                        held[stream].version = recorded.stream_version
                if new:
                    await work(new)

        async def work(streams: list[str]) -> None:
            counters.rounds += 1
            started = [_attempt(TaskStarted, held[stream].fold, agent_id) for stream in streams]
            done = [_attempt(TaskCompleted, held[stream].fold, agent_id) for stream in streams]
            if appends_per_round == 1:
                await append_checked(streams, [[s, d] for s, d in zip(started, done, strict=True)])
            else:
                await append_checked(streams, [[s] for s in started])
                # the no-op work is here
                await append_checked(streams, [[d] for d in done])
            for stream in streams:
                del held[stream]
            counters.completed += len(streams)
            emit("completed", n=len(streams), at=time.time())

        async def append_checked(streams: list[str], events: list[list[Event]]) -> None:
            """One append for all the streams, each at its folded version; the lifecycle checks each event first
            (as the API does); on a version conflict, the streams are folded again from the log."""
            while True:
                appends = []
                for stream, stream_events in zip(streams, events, strict=True):
                    probe = held[stream].fold.model_copy()
                    for event in stream_events:
                        if check(probe, event) is not None:
                            counters.refused += 1
                            raise RuntimeError(f"{stream}: {event.event_type} refused: {check(probe, event)}")
                        probe.fold(event)
                    appends.append(StreamAppend(stream, tuple(stream_events), held[stream].version))
                at = time.perf_counter()
                try:
                    results = await store.append_batch(appends)
                    counters.append_ms.append((time.perf_counter() - at) * 1000)
                except WrongExpectedVersionError:
                    counters.conflicts += 1
                    for stream in streams:
                        for recorded in await store.read_stream(stream, from_version=held[stream].version + 1):
                            held[stream].fold.fold(store.decode(recorded))
                            held[stream].version = recorded.stream_version
                    continue
                counters.appends += 1
                for stream, stream_events, result in zip(streams, events, results, strict=True):
                    for event in stream_events:
                        held[stream].fold.fold(event)
                    held[stream].version = result.stream_version
                return

        following = asyncio.create_task(follow())
        await stop.wait()
        subscription.close()
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
    emit(
        "done", received=counters.received, completed=counters.completed, rounds=counters.rounds,
        appends=counters.appends, conflicts=counters.conflicts, refused=counters.refused, cpu_s=cpu_seconds(),
        seen_after_ms=counters.seen_after_ms, append_ms=counters.append_ms,
    )  # fmt: skip


def _attempt(kind: type[TaskStarted] | type[TaskCompleted], fold: TaskLifecycle, agent_id: str) -> Event:
    return kind(task_id=fold.task_id, attempt=fold.attempt, agent_id=agent_id)


# -- PgQueuer: a worker process -------------------------------------------------------------------------------


async def pgqueuer_worker(url: str, batch_size: int) -> None:
    from pgqueuer import PgQueuer
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.models import Job

    stop = stop_on_sigterm()
    connection = await asyncpg.connect(url)
    pgq = PgQueuer(AsyncpgDriver(connection))
    received: dict[str, float] = {}
    called = 0

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        nonlocal called
        called += 1
        if job.payload is not None:
            received[job.payload.decode()] = time.time()

    async def stopper() -> None:
        await stop.wait()
        pgq.shutdown.set()

    stopping = asyncio.create_task(stopper())
    emit("ready")
    await pgq.run(batch_size=batch_size)
    await stopping
    emit("done", received=received, completed=called, cpu_s=cpu_seconds())


# -- the benchmark's side: child processes ---------------------------------------------------------------------


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    lines: list[dict[str, Any]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    completed: int = 0
    last_completed: float = 0.0
    reader: asyncio.Task[None] | None = None

    async def read(self, progress: asyncio.Event) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue  # not a report line
            self.lines.append(line)
            if line["kind"] == "ready":
                self.ready.set()
            elif line["kind"] == "completed":
                self.completed += int(line["n"])
                self.last_completed = max(self.last_completed, float(line["at"]))
                progress.set()
            elif line["kind"] == "done":
                self.done.set()

    @property
    def report(self) -> dict[str, Any]:
        return next((line for line in self.lines if line["kind"] == "done"), {})


async def start_child(name: str, args: list[str], progress: asyncio.Event, log_dir: Path) -> Child:
    log_file = (log_dir / f"{name}.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, *args, stdout=asyncio.subprocess.PIPE, stderr=log_file, limit=1 << 26
    )
    log_file.close()
    child = Child(name, process)
    STARTED.append(child)
    child.reader = asyncio.create_task(child.read(progress))
    async with asyncio.timeout(60):
        await child.ready.wait()
    return child


STARTED: list[Child] = []


def kill_leftovers() -> None:
    """After a failed run: every child still running is killed (by its pid, those this benchmark started)."""
    for child in STARTED:
        if child.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.process.kill()


async def stop_children(children: Sequence[Child]) -> None:
    for child in children:
        if child.process.returncode is None:
            child.process.send_signal(signal.SIGTERM)
    for child in children:
        async with asyncio.timeout(60):
            await child.process.wait()
            if child.reader is not None:
                await child.reader
        if child.process.returncode != 0:
            raise RuntimeError(f"{child.name} exited with {child.process.returncode}; see its log")


# -- CPU accounting --------------------------------------------------------------------------------------------


def _cpu(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
        return float(times.user + times.system)
    except psutil.Error:
        return 0.0


@dataclass
class CpuWatch:
    """CPU seconds used over a window by named groups of processes, and by everything else on the machine."""

    groups: dict[str, list[psutil.Process]]
    before: dict[str, float] = field(default_factory=dict)
    machine_before: float = 0.0
    wall_before: float = 0.0

    @staticmethod
    async def server_processes(url: str) -> list[psutil.Process]:
        connection = await asyncpg.connect(url)
        try:
            backend = int(await connection.fetchval("SELECT pg_backend_pid()"))
            postmaster = psutil.Process(psutil.Process(backend).ppid())
            return [postmaster, *postmaster.children()]
        except psutil.Error:
            return []  # a server on another machine (or another user's): not measured
        finally:
            await connection.close()

    def _sample(self) -> dict[str, float]:
        return {name: sum(_cpu(p) for p in processes) for name, processes in self.groups.items()}

    def start(self) -> None:
        self.before = self._sample()
        times = psutil.cpu_times()
        self.machine_before = times.user + times.system + getattr(times, "nice", 0.0)
        self.wall_before = time.monotonic()

    def stop(self) -> dict[str, float]:
        after = self._sample()
        used = {name: after[name] - self.before[name] for name in after}
        times = psutil.cpu_times()
        machine = times.user + times.system + getattr(times, "nice", 0.0) - self.machine_before
        wall = time.monotonic() - self.wall_before
        cores = {name: seconds / wall for name, seconds in used.items()}
        cores["other"] = max(machine - sum(used.values()), 0.0) / wall
        return cores


# -- shape 1 and 2, agentlog -----------------------------------------------------------------------------------


@dataclass
class Options:
    tasks: int
    create_batch: int
    workers: int
    per_agent: int
    worker_appends: int
    pgqueuer_batch: int
    rate: float
    latency_seconds: float
    agents: int
    budget_seconds: float
    poll_interval: float
    log_dir: Path


@dataclass
class QueueRun:
    system: str
    tasks_per_s: float
    seconds: float
    create_s: float
    latency_ms: list[float]
    server_latency_ms: list[float]
    cores: dict[str, float]
    notes: dict[str, Any]


async def agentlog_run(base_url: str, options: Options, read_side: bool, profile: str | None = None) -> QueueRun:
    url = fresh_database(base_url, AGENTLOG_DATABASE)
    progress = asyncio.Event()
    agents = [f"bench-worker-{index}" for index in range(options.workers)]
    async with EventStore.open(url, pool_size=2) as store:
        await store.append_batch([
            StreamAppend(member_stream(agent), (AgentRegistered(
                agent_id=agent, capabilities=[], metadata={"max_concurrent_tasks": options.per_agent},
                heartbeat_timeout_s=3600.0),), NO_STREAM)
            for agent in agents
        ])  # fmt: skip
        capacity = options.workers * options.per_agent
        poll = ["--poll-interval", str(options.poll_interval)]
        args = ["--role", "dispatcher", "--url", url, "--capacity", str(capacity), *poll]
        args += ["--read-side"] if read_side else []
        args += ["--profile-to", profile] if profile else []
        dispatcher = await start_child("dispatcher", args, progress, options.log_dir)
        worker_args = [
            "--role",
            "agentlog-worker",
            "--url",
            url,
            "--worker-appends",
            str(options.worker_appends),
            *poll,
        ]
        workers = [
            await start_child(agent, [*worker_args, "--agent-id", agent], progress, options.log_dir) for agent in agents
        ]
        children = [dispatcher, *workers]
        await asyncio.sleep(1.0)  # the dispatcher folds the registrations before the clock starts
        server = await CpuWatch.server_processes(url)
        watch = CpuWatch({
            "producer": [psutil.Process()], "dispatcher": [psutil.Process(dispatcher.process.pid)],
            "workers": [psutil.Process(w.process.pid) for w in workers], "postgres": server,
        })  # fmt: skip

        async def completed() -> int:
            return sum(worker.completed for worker in workers)

        # shape 1: throughput
        watch.start()
        started = time.time()
        for first in range(0, options.tasks, options.create_batch):
            ids = [f"t{index}" for index in range(first, min(first + options.create_batch, options.tasks))]
            await store.append_batch(
                [StreamAppend(task_stream(i), (TaskCreated(task_id=i, task_type="noop"),), NO_STREAM) for i in ids]
            )
        create_s = time.time() - started
        async with asyncio.timeout(600):
            while await completed() < options.tasks:
                progress.clear()
                await progress.wait()
        ended = max(worker.last_completed for worker in workers)
        cores = watch.stop()
        seconds = ended - started

        # shape 2: latency at a fixed rate, one create per transaction
        latency: list[float] = []
        server_latency: list[float] = []
        sent: dict[str, float] = {}
        if not profile and options.latency_seconds > 0:
            await asyncio.sleep(0.5)
            count = int(options.rate * options.latency_seconds)
            base = time.monotonic()
            for index in range(count):
                await asyncio.sleep(max(base + index / options.rate - time.monotonic(), 0.0))
                task_id = f"l{index}"
                await store.append(task_stream(task_id), [TaskCreated(task_id=task_id, task_type="noop")], NO_STREAM)
                sent[task_id] = time.time()
            async with asyncio.timeout(120):
                while await completed() < options.tasks + count:
                    progress.clear()
                    await progress.wait()
            rows = await store.pool.fetch(
                "SELECT c.stream_id, EXTRACT(EPOCH FROM a.recorded_at - c.recorded_at) * 1000 AS ms "
                "FROM agentlog.events c JOIN agentlog.events a ON a.stream_id = c.stream_id "
                "AND a.event_type = 'TaskAssigned' WHERE c.event_type = 'TaskCreated' AND c.stream_id LIKE 'task-l%'"
            )
            server_latency = [float(row["ms"]) for row in rows]
        await stop_children(children)
        if sent:
            received: dict[str, float] = {}
            for worker in workers:
                received.update(worker.report["received"])
            latency = [(received[task_id] - at) * 1000 for task_id, at in sent.items()]
        events = int(await store.pool.fetchval("SELECT count(*) FROM agentlog.events WHERE stream_id LIKE 'task-%'"))
    reports = [worker.report for worker in workers]
    all_append = [ms for r in reports for ms in r["append_ms"]]
    all_seen = [ms for r in reports for ms in r["seen_after_ms"]]
    notes = {
        "events_per_task": events / (options.tasks + (len(latency) if latency else 0)),
        "worker_rounds": sum(r["rounds"] for r in reports),
        "worker_appends": sum(r["appends"] for r in reports),
        "worker_conflicts": sum(r["conflicts"] for r in reports),
        "completed_per_worker": [r["completed"] for r in reports],
        "worker_append_ms_p50_p99": [quantile(all_append, 0.5), quantile(all_append, 0.99)],
        "assigned_recorded_to_worker_ms_p50_p99": [quantile(all_seen, 0.5), quantile(all_seen, 0.99)],
        "cpu_s": {"dispatcher": dispatcher.report["cpu_s"], "workers": sum(r["cpu_s"] for r in reports)},
        "dispatcher": {k: v for k, v in dispatcher.report.items() if k not in {"kind", "cpu_s"}},
    }
    name = "agentlog" + (" +read side" if read_side else "")
    return QueueRun(name, options.tasks / seconds, seconds, create_s, latency, server_latency, cores, notes)


# -- shape 1 and 2, PgQueuer -----------------------------------------------------------------------------------


async def pgqueuer_run(base_url: str, options: Options) -> QueueRun:
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    admin = await asyncpg.connect(with_database(base_url, "postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {PGQUEUER_DATABASE} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {PGQUEUER_DATABASE}")
    finally:
        await admin.close()
    url = with_database(base_url, PGQUEUER_DATABASE)
    connection = await asyncpg.connect(url)
    queries = Queries(AsyncpgDriver(connection))
    await queries.install()
    progress = asyncio.Event()
    workers = [
        await start_child(f"pgqueuer-{index}", ["--role", "pgqueuer-worker", "--url", url, "--pgqueuer-batch",
                                                str(options.pgqueuer_batch)], progress, options.log_dir)
        for index in range(options.workers)
    ]  # fmt: skip
    await asyncio.sleep(1.0)
    server = await CpuWatch.server_processes(url)
    watch = CpuWatch({
        "producer": [psutil.Process()], "workers": [psutil.Process(w.process.pid) for w in workers], "postgres": server,
    })  # fmt: skip
    poller = await asyncpg.connect(url)

    async def drained() -> float:
        """When the queue table is empty: every job's completion committed."""
        while await poller.fetchval("SELECT count(*) FROM pgqueuer") > 0:  # noqa: ASYNC110 - polling the server
            await asyncio.sleep(0.01)
        return time.time()

    watch.start()
    started = time.time()
    for first in range(0, options.tasks, options.create_batch):
        size = min(options.create_batch, options.tasks - first)
        await queries.enqueue(["noop"] * size, [str(first + i).encode() for i in range(size)], [0] * size)
    create_s = time.time() - started
    async with asyncio.timeout(600):
        ended = await drained()
    cores = watch.stop()
    seconds = ended - started

    latency: list[float] = []
    sent: dict[str, float] = {}
    if options.latency_seconds > 0:
        await asyncio.sleep(0.5)
        count = int(options.rate * options.latency_seconds)
        base = time.monotonic()
        for index in range(count):
            await asyncio.sleep(max(base + index / options.rate - time.monotonic(), 0.0))
            await queries.enqueue("noop", f"l{index}".encode())
            sent[f"l{index}"] = time.time()
        async with asyncio.timeout(120):
            await drained()
    await stop_children(workers)
    received: dict[str, float] = {}
    for worker in workers:
        received.update(worker.report["received"])
    latency = [(received[job] - at) * 1000 for job, at in sent.items()]
    logged = await poller.fetch("SELECT status::text, count(*) AS n FROM pgqueuer_log GROUP BY 1")
    await poller.close()
    await connection.close()
    notes = {
        "log": {row["status"]: row["n"] for row in logged},
        "completed_per_worker": [w.report["completed"] for w in workers],
    }
    return QueueRun("PgQueuer", options.tasks / seconds, seconds, create_s, latency, [], cores, notes)


# -- shape 3: budget reservations --------------------------------------------------------------------------------


@dataclass
class BudgetRun:
    system: str
    per_s: float
    cycles: int
    reserve_ms: list[float]
    conflicts: int
    exhausted: int = 0
    """Commands that lost the race 50 times in a row (`append_decided` raised) and were sent again."""


async def agentlog_budgets(base_url: str, options: Options) -> BudgetRun:
    url = fresh_database(base_url, AGENTLOG_DATABASE)
    agents = [f"bench-agent-{index}" for index in range(options.agents)]
    now = datetime.now(UTC)
    period = period_of(now, 0, "UTC")
    async with EventStore.open(url, pool_size=options.agents) as store:
        for budget_id in ["global", *(agent_budget(agent) for agent in agents)]:
            events = rules.set_limit(rules.BudgetLedger(), budget_id, 10**12, period, set_by="bench")
            await store.append(budget_stream(budget_id), events, NO_STREAM)
        reservations = Reservations(store)
        conflicts = 0
        original = store.append_batch

        async def counting(appends: Sequence[StreamAppend], **kwargs: Any) -> Any:
            nonlocal conflicts
            try:
                return await original(appends, **kwargs)
            except WrongExpectedVersionError:
                conflicts += 1
                raise

        setattr(store, "append_batch", counting)  # noqa: B010 - counting the retries, not changing them
        reserve_ms: list[float] = []
        cycles = 0

        exhausted = 0

        async def cycle(agent_id: str, reservation_id: str) -> None:
            """Reserve, then settle; a command that lost the race for the global budget's version 50 times in a
            row (`append_decided` gives up: the API would answer 500) is sent again, as a client would."""
            nonlocal exhausted
            at = time.perf_counter()
            while True:
                try:
                    await reservations.reserve(agent_id, reservation_id, 100, datetime.now(UTC), ttl_s=600.0)
                    break
                except WrongExpectedVersionError:
                    exhausted += 1
            reserve_ms.append((time.perf_counter() - at) * 1000)
            while True:
                try:
                    await reservations.close(agent_id, reservation_id, 80, datetime.now(UTC))
                    break
                except WrongExpectedVersionError:
                    exhausted += 1

        async def agent(agent_id: str, deadline: float) -> None:
            nonlocal cycles
            index = 0
            while time.monotonic() < deadline:
                index += 1
                await cycle(agent_id, f"{agent_id}-{index}")
                cycles += 1

        await asyncio.gather(*(cycle(a, f"{a}-warm") for a in agents))  # warm-up: one cycle per agent
        reserve_ms.clear()
        conflicts = exhausted = 0
        started = time.monotonic()
        await asyncio.gather(*(agent(a, started + options.budget_seconds) for a in agents))
        elapsed = time.monotonic() - started
        fold = await reservations.budget("global")
        if fold.ledger.committed > fold.ledger.limit_tokens:
            raise AssertionError("overspent")
    name = "agentlog (reservations, folded versions)"
    return BudgetRun(name, cycles / elapsed, cycles, reserve_ms, conflicts, exhausted)


async def raw_budgets(base_url: str, options: Options) -> BudgetRun:
    url = with_database(base_url, AGENTLOG_DATABASE)
    setup = await asyncpg.connect(url)
    await setup.execute(
        "DROP TABLE IF EXISTS raw_budgets; CREATE TABLE raw_budgets (id text PRIMARY KEY, limit_tokens bigint NOT "
        "NULL, settled bigint NOT NULL DEFAULT 0, reserved bigint NOT NULL DEFAULT 0)"
    )
    agents = [f"bench-agent-{index}" for index in range(options.agents)]
    await setup.executemany(
        "INSERT INTO raw_budgets (id, limit_tokens) VALUES ($1, $2)",
        [(budget, 10**12) for budget in ["global", *(agent_budget(a) for a in agents)]],
    )
    await setup.close()
    connections = [await asyncpg.connect(url) for _ in agents]
    reserve_ms: list[float] = []
    cycles = 0
    take = "UPDATE raw_budgets SET reserved = reserved + $2 WHERE id = $1 AND limit_tokens - settled - reserved >= $2"
    give = "UPDATE raw_budgets SET reserved = reserved - $2, settled = settled + $3 WHERE id = $1"

    async def cycle(connection: asyncpg.Connection, mine: str) -> None:
        at = time.perf_counter()
        async with connection.transaction():
            for budget in ("global", mine):
                if await connection.execute(take, budget, 100) != "UPDATE 1":
                    raise AssertionError("no room")
        reserve_ms.append((time.perf_counter() - at) * 1000)
        async with connection.transaction():
            for budget in ("global", mine):
                await connection.execute(give, budget, 100, 80)

    async def agent(connection: asyncpg.Connection, agent_id: str, deadline: float) -> None:
        nonlocal cycles
        while time.monotonic() < deadline:
            await cycle(connection, agent_budget(agent_id))
            cycles += 1

    pairs = list(zip(connections, agents, strict=True))
    await asyncio.gather(*(cycle(c, agent_budget(a)) for c, a in pairs))  # warm-up: one cycle per agent
    reserve_ms.clear()
    started = time.monotonic()
    await asyncio.gather(*(agent(c, a, started + options.budget_seconds) for c, a in pairs))
    elapsed = time.monotonic() - started
    for connection in connections:
        await connection.close()
    return BudgetRun("raw (UPDATE ... WHERE remaining >= n)", cycles / elapsed, cycles, reserve_ms, 0)


# -- the report --------------------------------------------------------------------------------------------------


def show_queue(runs: Sequence[QueueRun], options: Options) -> None:
    peer = next((run for run in runs if run.system == "PgQueuer"), None)
    print(f"\n1. lifecycle throughput: {options.tasks} no-op tasks, {options.workers} workers, created in batches of "
          f"{options.create_batch}; agentlog per-agent limit {options.per_agent}, {options.worker_appends} "
          f"append(s) per worker round; PgQueuer batch size {options.pgqueuer_batch}")  # fmt: skip
    print(f"{'system':<24} {'tasks/s':>9} {'vs PgQueuer':>12} {'seconds':>8} {'create s':>9}  CPU cores used")
    for run in runs:
        cores = ", ".join(f"{name} {value:.2f}" for name, value in run.cores.items())
        ratio = run.tasks_per_s / peer.tasks_per_s if peer else float("nan")
        print(f"{run.system:<24} {run.tasks_per_s:>9,.0f} {ratio:>11.2f}x "
              f"{run.seconds:>8.2f} {run.create_s:>9.2f}  {cores}")  # fmt: skip
    for run in runs:
        print(f"   {run.system}: {json.dumps(run.notes)}")
    print(f"\n2. dispatch latency at {options.rate:g} tasks/s for {options.latency_seconds:g} s "
          "(create returned -> the worker holds the assignment), ms")  # fmt: skip
    print(f"{'system':<24} {'n':>6} {'p50':>8} {'p99':>8} {'max':>8}   server-side recorded_at p50 / p99")
    for run in runs:
        if not run.latency_ms:
            continue
        server = (f"{quantile(run.server_latency_ms, 0.5):.2f} / {quantile(run.server_latency_ms, 0.99):.2f}"
                  if run.server_latency_ms else "-")  # fmt: skip
        print(f"{run.system:<24} {len(run.latency_ms):>6} {quantile(run.latency_ms, 0.5):>8.2f} "
              f"{quantile(run.latency_ms, 0.99):>8.2f} {max(run.latency_ms):>8.2f}   {server}")  # fmt: skip


def show_budgets(runs: Sequence[BudgetRun], options: Options) -> None:
    raw = runs[-1]
    print(f"\n3. budget reservations, {options.agents} agents, reserve 100 + settle 80, {options.budget_seconds:g} s")
    print(f"{'system':<42} {'reservations/s':>15} {'vs raw':>7} {'cycles':>7} {'reserve p50':>12} "
          f"{'p99 (ms)':>9} {'conflicts':>10} {'gave up':>8}")  # fmt: skip
    for run in runs:
        print(
            f"{run.system:<42} {run.per_s:>15,.0f} {run.per_s / raw.per_s:>6.2f}x {run.cycles:>7} "
            f"{quantile(run.reserve_ms, 0.5):>12.2f} {quantile(run.reserve_ms, 0.99):>9.2f} "
            f"{run.conflicts:>10} {run.exhausted:>8}"
        )


def show_profile(path: str, limit: int = 30) -> None:
    out = io.StringIO()
    stats = pstats.Stats(path, stream=out)
    stats.sort_stats("tottime").print_stats(limit)
    print("\nprofile of the dispatcher process (cProfile, by own time):")
    print("\n".join(out.getvalue().splitlines()[: limit + 12]))
    out = io.StringIO()
    stats = pstats.Stats(path, stream=out)
    stats.sort_stats("cumulative").print_stats(limit)
    print("\nprofile of the dispatcher process (cProfile, cumulative):")
    print("\n".join(out.getvalue().splitlines()[: limit + 12]))


async def main(args: argparse.Namespace) -> None:
    options = Options(
        tasks=args.tasks, create_batch=args.create_batch, workers=args.workers, per_agent=args.per_agent,
        worker_appends=args.worker_appends, pgqueuer_batch=args.pgqueuer_batch, rate=args.rate,
        latency_seconds=args.latency_seconds, agents=args.agents, budget_seconds=args.budget_seconds,
        poll_interval=args.poll_interval,
        log_dir=Path(args.log_dir),
    )  # fmt: skip
    options.log_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"bench_tasks {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    with server_url(args.database_url, Path(args.home)) as base_url, contextlib.ExitStack() as leftovers:
        leftovers.callback(kill_leftovers)
        queue_runs: list[QueueRun] = []
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        for variant in variants:
            if variant == "pgqueuer":
                queue_runs.append(await pgqueuer_run(base_url, options))
            elif variant in {"agentlog", "agentlog+read"}:
                queue_runs.append(await agentlog_run(base_url, options, read_side=variant == "agentlog+read"))
            else:
                raise SystemExit(f"unknown variant {variant!r}")
            done = queue_runs[-1]
            print(f"  {done.system}: {done.tasks_per_s:,.0f} tasks/s", flush=True)
        if queue_runs:
            show_queue(queue_runs, options)
        if args.budget_seconds > 0:
            budget_runs = [await agentlog_budgets(base_url, options), await raw_budgets(base_url, options)]
            show_budgets(budget_runs, options)
        if args.profile:
            path = str(options.log_dir / "dispatcher.prof")
            profiled = await agentlog_run(base_url, options, read_side=False, profile=path)
            print(
                f"\nprofiled run (cProfile on, not a figure): agentlog {profiled.tasks_per_s:,.0f} tasks/s, "
                f"cores {', '.join(f'{k} {v:.2f}' for k, v in profiled.cores.items())}"
            )
            show_profile(path)
    print(f"\nload average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--home", default="/tmp/agentlog-tasks-bench-home")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--create-batch", type=int, default=100)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--per-agent", type=int, default=10, help="agentlog agents' max_concurrent_tasks")
    parser.add_argument(
        "--worker-appends",
        type=int,
        choices=(1, 2),
        default=2,
        help="appends per worker round: 2 (started, then completed) or 1 (both at once)",
    )
    parser.add_argument("--pgqueuer-batch", type=int, default=10, help="PgQueuer's dequeue batch size")
    parser.add_argument("--rate", type=float, default=100.0, help="tasks/s in the latency shape")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--agents", type=int, default=16)
    parser.add_argument("--budget-seconds", type=float, default=10.0)
    parser.add_argument(
        "--variants",
        default="pgqueuer,agentlog,agentlog+read",
        help="comma-separated, run in this order: pgqueuer, agentlog, agentlog+read",
    )
    parser.add_argument(
        "--poll-interval", type=float, default=1.0,
        help="agentlog processes' fallback poll (EventStore.open; `agentlog up`'s poll_interval_s, default 1.0)",
    )  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="add a profiled agentlog run (dispatcher cProfile)")
    parser.add_argument("--log-dir", default="/tmp/agentlog-tasks-bench-logs")
    parser.add_argument("--quick", action="store_true", help="2,000 tasks, 3 s of latency and of budgets")
    # the child processes
    parser.add_argument("--role", choices=("dispatcher", "agentlog-worker", "pgqueuer-worker"), default=None)
    parser.add_argument("--url", default="")
    parser.add_argument("--capacity", type=int, default=80)
    parser.add_argument("--read-side", action="store_true")
    parser.add_argument("--profile-to", default=None)
    parser.add_argument("--agent-id", default="")
    args = parser.parse_args()
    if args.quick:  # smaller, unless given
        args.tasks = 2_000 if args.tasks == 20_000 else args.tasks
        args.latency_seconds = 3.0 if args.latency_seconds == 10.0 else args.latency_seconds
        args.budget_seconds = 3.0 if args.budget_seconds == 10.0 else args.budget_seconds
    return args


if __name__ == "__main__":
    arguments = parse()
    if arguments.role == "dispatcher":
        asyncio.run(
            host_dispatcher(
                arguments.url, arguments.capacity, arguments.read_side, arguments.profile_to, arguments.poll_interval
            )
        )
    elif arguments.role == "agentlog-worker":
        asyncio.run(agent_worker(arguments.url, arguments.agent_id, arguments.worker_appends, arguments.poll_interval))
    elif arguments.role == "pgqueuer-worker":
        asyncio.run(pgqueuer_worker(arguments.url, arguments.pgqueuer_batch))
    else:
        asyncio.run(main(arguments))
