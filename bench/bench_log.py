"""Append throughput and wake-up latency: raw asyncpg vs the `eventsourcing` library vs agentlog, in one run.

Every system writes to the same PostgreSQL server and the same freshly created database:

  1. single-event transactions from 1 connection           (events/s)
  2. single-event transactions from 8 connections at once  (events/s)
  3. 100-event batches, one transaction per batch, 1 conn   (events/s)
  4. commit -> handler latency, one append every ~15 ms     (p50/p99 ms)

"raw" is plain asyncpg INSERTs on dedicated connections (no pool, so no reset round trip) into `raw_events`, a
copy of agentlog.events' columns, defaults, constraints and indexes (not its triggers), with the same binary orjson
jsonb codec; agentlog is used as a user would (`EventStore.open(url)`, `store.append(...)`). bench/README.md says
exactly what each row measures. The contenders of a shape take turns in interleaved rounds (the order rotates
every round), and the table shows the median round, leaving out rounds during which other processes on the machine
were busy. Latency samples are taken round-robin too. Run:

    .venv/bin/python bench/bench_log.py                 # embedded server under /tmp/agentlog-bench-home
    .venv/bin/python bench/bench_log.py --quick         # a smoke run (~20 s)
    .venv/bin/python bench/bench_log.py --database-url postgresql://user:pw@host:5432/any
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import queue
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import asyncpg
import orjson
import psycopg
from embedded_or_url import fresh_database, server_url
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

from agentlog.eventstore import ANY, Event, EventCatalogue, EventStore, LogPosition, new_event_id
from agentlog.eventstore.postgres.connections import StatementPool, configure_connection
from agentlog.eventstore.postgres.queries import QUERIES
from agentlog.handlers import HandlerBatch, HandlerInstance, HandlerRunner
from agentlog.logs import configure_logging

BENCH_DATABASE = "agentlog_bench"
BATCH = 100
CONNECTIONS = 8
LATENCY_SPACING_S = 0.015
LATENCY_TIMEOUT_S = 2.0
MAX_OTHER_CPU = 0.25
"""A round during which other processes used more CPU than this (cores) is left out of the median."""

cat = EventCatalogue()


@cat.register
class Tick(Event):
    event_type: ClassVar[str] = "Tick"
    n: int


# -- SQL ------------------------------------------------------------------------------------------------------

RAW_TABLE = """
CREATE TABLE raw_events (LIKE agentlog.events
    INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING GENERATED INCLUDING INDEXES INCLUDING CONSTRAINTS)
"""
RAW_INSERT_ONE = """
INSERT INTO raw_events (event_id, stream_id, stream_version, event_type, schema_version, data, metadata)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""
RAW_INSERT_MANY = """
INSERT INTO raw_events (event_id, stream_id, stream_version, event_type, schema_version, data, metadata)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::integer[], $6::jsonb[], $7::jsonb[])
"""
RAW_NOTIFY = "SELECT pg_notify('bench_channel', '')"

# agentlog's own statements, exactly as EventStore.append sends them (minus the Python layer around them): the
# scalar-parameter one-event query and the array query used for batches, both calling agentlog.append_events.
AGENTLOG_ONE_POST_COMMIT = QUERIES["append_event"]
AGENTLOG_MANY = QUERIES["append_events"]


def _notify_in_transaction(query: str) -> str:
    """The same call with notify => true: NOTIFY inside the appending transaction instead of after the commit."""
    assert query.count(", false)") == 1, query
    return query.replace(", false)", ", true)")


AGENTLOG_ONE_IN_TRANSACTION = _notify_in_transaction(AGENTLOG_ONE_POST_COMMIT)


# -- CPU accounting -------------------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat (idle and iowait are not busy)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    except OSError:
        return 0, 0
    values = [int(value) for value in fields]
    return sum(values) - values[3] - values[4], sum(values)


def _stat_fields(pid: str) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (so index 1 is the parent pid, 11/12 utime/stime)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def postmaster_of(url: str) -> int | None:
    """The pid of the server's postmaster when it runs on this machine (its backends are its children)."""
    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT pg_backend_pid()").fetchone()
        fields = _stat_fields(str(row[0])) if row else None
    if fields is None:
        return None  # not on this machine
    return int(fields[1])


def _server_ticks(postmaster: int | None) -> int:
    if postmaster is None:
        return 0
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(entry.name)
        if fields is not None and (int(entry.name) == postmaster or int(fields[1]) == postmaster):
            ticks += int(fields[11]) + int(fields[12])
    return ticks


@dataclass(slots=True)
class Usage:
    """Wall time and CPU (in cores) over one measurement: this process, the PostgreSQL server, everything else."""

    postmaster: int | None
    wall: float = 0.0
    client: float = 0.0
    server: float = float("nan")
    machine: float = float("nan")
    _start: tuple[float, float, int, int, int] = (0.0, 0.0, 0, 0, 0)

    def start(self) -> None:
        busy, total = _machine_ticks()
        self._start = (time.perf_counter(), time.process_time(), busy, total, _server_ticks(self.postmaster))

    def stop(self) -> None:
        wall0, cpu0, busy0, total0, server0 = self._start
        busy, total = _machine_ticks()
        server = _server_ticks(self.postmaster)
        self.wall = time.perf_counter() - wall0
        self.client = (time.process_time() - cpu0) / self.wall
        if total > total0:
            self.machine = (busy - busy0) / (total - total0) * (os.cpu_count() or 1)
        if self.postmaster is not None:
            self.server = (server - server0) / CLOCK_TICKS / self.wall

    @property
    def other(self) -> float:
        """CPU used by neither this process nor the server: other work on the machine (noise)."""
        return self.machine - self.client - self.server


# -- measuring ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Throughput:
    name: str
    events: int
    usage: Usage

    @property
    def rate(self) -> float:
        return self.events / self.usage.wall


AsyncStep = Callable[[], Awaitable[int]]
SyncStep = Callable[[], int]


async def drive(name: str, steps: Sequence[AsyncStep], seconds: float, postmaster: int | None) -> Throughput:
    """Run every step in a loop on its own task until `seconds` pass; each call returns the events it appended."""
    await asyncio.gather(*(step() for step in steps))  # warm-up: connections, prepared statements
    counts = [0] * len(steps)
    usage = Usage(postmaster)
    usage.start()
    deadline = time.perf_counter() + seconds

    async def worker(index: int) -> None:
        step, appended = steps[index], 0
        while time.perf_counter() < deadline:
            appended += await step()
        counts[index] = appended

    await asyncio.gather(*(worker(index) for index in range(len(steps))))
    usage.stop()
    return Throughput(name, sum(counts), usage)


def drive_threads(name: str, steps: Sequence[SyncStep], seconds: float, postmaster: int | None) -> Throughput:
    """`drive` for synchronous steps: one OS thread per step."""
    for step in steps:
        step()
    counts = [0] * len(steps)
    usage = Usage(postmaster)
    usage.start()
    deadline = time.perf_counter() + seconds

    def worker(index: int) -> None:
        step, appended = steps[index], 0
        while time.perf_counter() < deadline:
            appended += step()
        counts[index] = appended

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(len(steps))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    usage.stop()
    return Throughput(name, sum(counts), usage)


@dataclass(slots=True)
class Contender:
    """One system in one shape: its steps (state such as stream versions persists across rounds)."""

    key: str
    label: str
    steps: Sequence[AsyncStep] | Sequence[SyncStep]
    threaded: bool = False
    rounds: list[Throughput] = field(default_factory=list)

    async def measure(self, seconds: float, postmaster: int | None) -> Throughput:
        if self.threaded:
            sync_steps: Any = self.steps
            result = await asyncio.to_thread(drive_threads, self.label, sync_steps, seconds, postmaster)
        else:
            async_steps: Any = self.steps
            result = await drive(self.label, async_steps, seconds, postmaster)
        self.rounds.append(result)
        return result

    def quiet_rounds(self) -> list[Throughput]:
        """The rounds during which other work on the machine stayed under MAX_OTHER_CPU."""
        return [result for result in self.rounds if not result.usage.other > MAX_OTHER_CPU]

    def clean_rounds(self) -> list[Throughput]:
        """The quiet rounds, or all rounds if none was quiet (`spread` says so)."""
        return self.quiet_rounds() or self.rounds

    @property
    def rate(self) -> float:
        """The median rate of the clean rounds."""
        return statistics.median(result.rate for result in self.clean_rounds())

    def spread(self) -> str:
        rates = sorted(result.rate for result in self.rounds)
        quiet = len(self.quiet_rounds())
        note = "" if quiet else ", so the median is over all rounds"
        return f"{self.label}: {rates[0]:,.0f}-{rates[-1]:,.0f} ({quiet}/{len(rates)} clean{note})"

    def cpu_per_event(self) -> tuple[float, float]:
        """Median CPU microseconds per event over the clean rounds: (this process, the server's processes)."""
        clean = self.clean_rounds()
        client = statistics.median(r.usage.client * r.usage.wall / r.events * 1e6 for r in clean)
        server = statistics.median(r.usage.server * r.usage.wall / r.events * 1e6 for r in clean)
        return client, server


# -- raw asyncpg ----------------------------------------------------------------------------------------------

Executor = asyncpg.Pool | asyncpg.Connection


def raw_single_step(executor: Executor, stream_id: str) -> AsyncStep:
    version = 0

    async def step() -> int:
        nonlocal version
        version += 1
        await executor.execute(RAW_INSERT_ONE, new_event_id(), stream_id, version, "Tick", 1, {"n": version}, {})
        return 1

    return step


def raw_batch_step(executor: Executor, stream_id: str) -> AsyncStep:
    version = 0

    async def step() -> int:
        nonlocal version
        versions = list(range(version + 1, version + BATCH + 1))
        version += BATCH
        await executor.execute(
            RAW_INSERT_MANY,
            [new_event_id() for _ in versions],
            [stream_id] * BATCH,
            versions,
            ["Tick"] * BATCH,
            [1] * BATCH,
            [{"n": n} for n in versions],
            [{}] * BATCH,
        )
        return BATCH

    return step


# -- eventsourcing ------------------------------------------------------------------------------------------


def es_recorder(url: str, pool_size: int) -> PostgresApplicationRecorder:
    parts = urlsplit(url)
    datastore = PostgresDatastore(
        dbname=parts.path.lstrip("/"),
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        pool_size=pool_size,
        max_overflow=0,
    )
    recorder = PostgresApplicationRecorder(datastore, events_table_name="es_stored_events")
    recorder.create_table()
    return recorder


def es_state(n: int) -> bytes:
    return orjson.dumps({"n": n})


def es_single_step(recorder: PostgresApplicationRecorder) -> SyncStep:
    originator, version = uuid.uuid4(), 0

    def step() -> int:
        nonlocal version
        version += 1
        recorder.insert_events([StoredEvent(originator, version, "bench:Tick", es_state(version))])
        return 1

    return step


def es_batch_step(recorder: PostgresApplicationRecorder) -> SyncStep:
    originator, version = uuid.uuid4(), 0

    def step() -> int:
        nonlocal version
        events = [
            StoredEvent(originator, version + i, "bench:Tick", es_state(version + i)) for i in range(1, BATCH + 1)
        ]
        version += BATCH
        recorder.insert_events(events)
        return BATCH

    return step


# -- agentlog -------------------------------------------------------------------------------------------------


def agentlog_single_step(store: EventStore, stream_id: str) -> AsyncStep:
    n = 0

    async def step() -> int:
        nonlocal n
        n += 1
        await store.append(stream_id, [Tick(n=n)], ANY)
        return 1

    return step


def agentlog_batch_step(store: EventStore, stream_id: str) -> AsyncStep:
    n = 0

    async def step() -> int:
        nonlocal n
        await store.append(stream_id, [Tick(n=n + i) for i in range(1, BATCH + 1)], ANY)
        n += BATCH
        return BATCH

    return step


def agentlog_sql_step(pool: StatementPool, stream_id: str, query: str) -> AsyncStep:
    """agentlog's one-event statement through the store's pool: no EventStore encoding, results, post-commit NOTIFY."""
    n = 0

    async def step() -> int:
        nonlocal n
        n += 1
        await pool.fetch(query, stream_id, None, new_event_id(), "Tick", 1, {"n": n}, {})
        return 1

    return step


def agentlog_sql_batch_step(pool: StatementPool, stream_id: str) -> AsyncStep:
    """agentlog's batch statement (`append_events` with arrays) through the store's pool, as EventStore sends it."""
    n = 0

    async def step() -> int:
        nonlocal n
        numbers = list(range(n + 1, n + BATCH + 1))
        n += BATCH
        await pool.fetch(
            AGENTLOG_MANY,
            [stream_id] * BATCH,
            [None] * BATCH,
            [new_event_id() for _ in numbers],
            ["Tick"] * BATCH,
            [1] * BATCH,
            [{"n": number} for number in numbers],
            [{}] * BATCH,
        )
        return BATCH

    return step


# -- latency --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Latency:
    name: str
    samples: list[float] = field(default_factory=list)
    lost: int = 0

    def quantile(self, q: float) -> float:
        if len(self.samples) < 2:
            return float("nan")
        return statistics.quantiles(self.samples, n=1000, method="inclusive")[round(q * 1000) - 1]

    @property
    def p50(self) -> float:
        return self.quantile(0.50)

    @property
    def p99(self) -> float:
        return self.quantile(0.99)

    def add(self, started: float, finished: float | None) -> None:
        if finished is None:
            self.lost += 1
        else:
            self.samples.append((finished - started) * 1000)


class RawLatency:
    """INSERT (autocommit), then `SELECT pg_notify(...)`; latency = LISTEN callback - the INSERT's return."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.result = Latency("raw: INSERT, then NOTIFY -> LISTEN callback")
        self._arrived = asyncio.Event()
        self._arrived_at = 0.0
        self._n = 0

    def _on_notify(self, *_: object) -> None:
        self._arrived_at = time.perf_counter()
        self._arrived.set()

    async def __aenter__(self) -> RawLatency:
        self._listener = await asyncpg.connect(self.url)
        self._writer = await asyncpg.connect(self.url)
        await configure_connection(self._writer)
        await self._listener.add_listener("bench_channel", self._on_notify)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._listener.close()
        await self._writer.close()

    async def sample(self) -> None:
        self._n += 1
        self._arrived.clear()
        await self._writer.execute(RAW_INSERT_ONE, new_event_id(), "rawlat-1", self._n, "Tick", 1, {"n": 1}, {})
        committed_at = time.perf_counter()
        await self._writer.execute(RAW_NOTIFY)
        try:
            await asyncio.wait_for(self._arrived.wait(), LATENCY_TIMEOUT_S)
        except TimeoutError:
            self.result.add(committed_at, None)
        else:
            self.result.add(committed_at, self._arrived_at)


class EsLatency:
    """insert_events (it NOTIFYs inside its transaction) -> the notification comes out of `recorder.subscribe()`."""

    def __init__(self, recorder: PostgresApplicationRecorder) -> None:
        self.recorder = recorder
        self.result = Latency("eventsourcing: insert_events -> subscription yields it")
        self._delivered: queue.Queue[tuple[int, float]] = queue.Queue()
        self._originator = uuid.uuid4()
        self._n = 0

    async def __aenter__(self) -> EsLatency:
        self._subscription = self.recorder.subscribe(gt=self.recorder.max_notification_id())
        self._subscription.__enter__()
        self._consumer = threading.Thread(target=self._consume)
        self._consumer.start()
        await asyncio.sleep(0.2)  # let its LISTEN thread start listening
        return self

    async def __aexit__(self, *_: object) -> None:
        self._subscription.stop()
        await asyncio.to_thread(self._consumer.join)
        await asyncio.to_thread(self._subscription.__exit__, None, None, None)

    def _consume(self) -> None:
        for notification in self._subscription:
            self._delivered.put((notification.id, time.perf_counter()))

    def _sample(self) -> None:
        self._n += 1
        ids = self.recorder.insert_events([StoredEvent(self._originator, self._n, "bench:Tick", es_state(1))])
        committed_at = time.perf_counter()
        assert ids
        try:
            while True:
                got, arrived_at = self._delivered.get(timeout=LATENCY_TIMEOUT_S)
                if got >= ids[-1]:
                    self.result.add(committed_at, arrived_at)
                    return
        except queue.Empty:
            self.result.add(committed_at, None)

    async def sample(self) -> None:
        await asyncio.to_thread(self._sample)


class AppliedTimes:
    """The handler: records when each event reached `handle()` (inside the runner's open transaction)."""

    name = "bench-latency"
    event_types: frozenset[str] | None = None
    raw_events = True

    def __init__(self) -> None:
        self.applied_at: dict[int, float] = {}

    async def handle(self, batch: HandlerBatch) -> None:
        now = time.perf_counter()
        for event in batch.records:
            self.applied_at[event.global_position] = now


class TimedInstance(HandlerInstance):
    """A HandlerInstance noting when its position (set right after each batch commits) passes a target."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._position: LogPosition | None = None
        self.target: LogPosition | None = None
        self.reached_at: float | None = None
        self.reached = asyncio.Event()
        super().__init__(*args, **kwargs)

    @property
    def position(self) -> LogPosition | None:
        return self._position

    @position.setter
    def position(self, value: LogPosition | None) -> None:
        now = time.perf_counter()
        self._position = value
        if self.target is not None and value is not None and value >= self.target and self.reached_at is None:
            self.reached_at = now
            self.reached.set()

    def expect(self, target: LogPosition) -> None:
        self.target, self.reached_at = target, None
        self.reached.clear()
        if self._position is not None and self._position >= target:
            self.reached_at = time.perf_counter()
            self.reached.set()


class AgentlogLatency:
    """append -> the handler's batch committed (headline), and append -> handle() called (inside the batch).

    The headline appends through the handler's own store, as in `agentlog up`, where the document server, the
    supervisor, the deciders and the projections share one: the commit wakes the handler directly. `apart`
    appends through a second store, as another process would, so the wake-up takes the NOTIFY round trip.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.result = Latency("agentlog: append -> handler batch committed")
        self.applied = Latency("agentlog: append -> handle() called (in its txn)")
        self.apart = Latency("agentlog: append in another store -> handler batch committed")
        self._handler = AppliedTimes()
        self._n = 0

    async def __aenter__(self) -> AgentlogLatency:
        self._stack = contextlib.AsyncExitStack()
        self.store = await self._stack.enter_async_context(
            EventStore.open(self.url, catalogue=cat, pool_size=4, notify_interval=0.002, poll_interval=1.0)
        )
        self.other_store = await self._stack.enter_async_context(
            EventStore.open(self.url, catalogue=cat, pool_size=2, notify_interval=0.002, poll_interval=1.0)
        )
        self.runner = HandlerRunner(self.store, [self._handler], batch_size=500, lock_retry_interval=0.1)
        self.instance = TimedInstance(
            self.store, self._handler, self.runner.stop, batch_size=500, lock_retry_interval=0.1
        )
        self.runner.instances = [self.instance]  # the runner's own loop, with the timing instance in it
        self._task = asyncio.create_task(self.runner.run())
        # Catch up with the log and let the subscription go live before measuring.
        head = (await self.store.append("latency-0", [Tick(n=0)], ANY)).events[0].position
        self.instance.expect(head)
        await asyncio.wait_for(self.instance.reached.wait(), 60)
        return self

    async def __aexit__(self, *_: object) -> None:
        self.runner.stop.set()
        await self._task
        await self._stack.aclose()

    async def sample(self) -> None:
        await self._sample(self.store, self.result, self.applied)

    async def sample_apart(self) -> None:
        await self._sample(self.other_store, self.apart, None)

    async def _sample(self, store: EventStore, committed: Latency, applied: Latency | None) -> None:
        self._n += 1
        appended = await store.append("latency-1", [Tick(n=self._n)], ANY)
        committed_at = time.perf_counter()
        position = appended.events[0].position
        self.instance.expect(position)
        try:
            await asyncio.wait_for(self.instance.reached.wait(), LATENCY_TIMEOUT_S)
        except TimeoutError:
            committed.add(committed_at, None)
            if applied is not None:
                applied.add(committed_at, None)
        else:
            committed.add(committed_at, self.instance.reached_at)
            if applied is not None:
                applied.add(committed_at, self._handler.applied_at.get(position.global_position))


# -- the run --------------------------------------------------------------------------------------------------


def fresh_bench_database(url: str) -> str:
    """A fresh, migrated BENCH_DATABASE with raw_events beside agentlog's table; its URL."""
    bench_url = fresh_database(url, BENCH_DATABASE)
    with psycopg.connect(bench_url, autocommit=True) as connection:
        connection.execute(RAW_TABLE)
    return bench_url


def server_description(url: str) -> str:
    names = (
        "server_version",
        "fsync",
        "synchronous_commit",
        "wal_sync_method",
        "full_page_writes",
        "shared_buffers",
        "max_wal_size",
    )
    with psycopg.connect(url) as connection:
        shown = {name: (connection.execute(f"SHOW {name}").fetchone() or ("?",))[0] for name in names}
    version = shown.pop("server_version")
    return f"PostgreSQL {version}, " + ", ".join(f"{name}={value}" for name, value in shown.items())


def machine_description() -> str:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} cores ({model}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, asyncpg {asyncpg.__version__}, psycopg {psycopg.__version__}"
    )


def describe(measured: Throughput) -> str:
    usage = measured.usage
    return (
        f"    {measured.name:<52} {measured.rate:>9,.0f} ev/s ({measured.events:>7,} in {usage.wall:4.2f} s)  "
        f"CPU cores: client {usage.client:4.2f}  server {usage.server:4.2f}  other {usage.other:5.2f}"
    )


def describe_latency(measured: Latency) -> str:
    samples = measured.samples
    if not samples:
        return f"  {measured.name:<52} no samples ({measured.lost} lost)"
    return (
        f"  {measured.name:<52} n={len(samples)} lost={measured.lost}  p50 {measured.p50:5.2f}  "
        f"p90 {measured.quantile(0.9):5.2f}  p99 {measured.p99:5.2f}  max {max(samples):6.2f} ms"
    )


async def checkpoint(url: str) -> None:
    """Start a shape from a fresh checkpoint, so a checkpoint forced by WAL volume is less likely to land in it."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("CHECKPOINT")
    except asyncpg.InsufficientPrivilegeError:
        pass  # a server we may not checkpoint: the rotation of the rounds still spreads checkpoints evenly
    finally:
        await connection.close()


async def measure_shape(
    url: str, title: str, contenders: Sequence[Contender], seconds: float, rounds: int, postmaster: int | None
) -> None:
    """Interleaved rounds, the order rotated each round, seconds / rounds per contender per round."""
    print(title, flush=True)
    await checkpoint(url)
    for round_index in range(rounds):
        shift = round_index % len(contenders)
        for contender in [*contenders[shift:], *contenders[:shift]]:
            measured = await contender.measure(seconds / rounds, postmaster)
            print(describe(measured), flush=True)


@dataclass(slots=True)
class Row:
    shape: str
    raw: str
    es: str
    agentlog: str
    ratio: str
    target: str
    verdict: str


def throughput_row(
    shape: str, raw: Contender | None, es: Contender | None, ours: Contender, minimum: float | None
) -> Row:
    ratio = ours.rate / raw.rate if raw is not None else float("nan")
    verdict = "" if minimum is None or raw is None else ("PASS" if ratio >= minimum else "MISS")
    return Row(
        shape,
        "" if raw is None else f"{raw.rate:,.0f}",
        "" if es is None else f"{es.rate:,.0f}",
        f"{ours.rate:,.0f}",
        "" if raw is None else f"{ratio:.2f}x",
        "" if minimum is None else f">= {minimum:.2f}x",
        verdict,
    )


def print_table(rows: Sequence[Row]) -> None:
    header = Row("shape", "raw", "eventsourcing", "agentlog", "agentlog/raw", "target", "result")
    cells = [[getattr(row, name) for name in Row.__slots__] for row in [header, *rows]]
    widths = [max(len(line[column]) for line in cells) for column in range(len(Row.__slots__))]
    for index, line in enumerate(cells):
        padded = [
            cell.ljust(width) if column == 0 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        print("| " + " | ".join(padded) + " |")
        if index == 0:
            print("|" + "|".join("-" * (width + 2) for width in widths) + "|")


async def measure_latency(
    url: str, samples: int, es: PostgresApplicationRecorder
) -> tuple[RawLatency, EsLatency, AgentlogLatency]:
    """All three set up at once and sampled round-robin (rotating), one sample every LATENCY_SPACING_S."""
    async with RawLatency(url) as raw, EsLatency(es) as peer, AgentlogLatency(url) as ours:
        samplers: list[Callable[[], Awaitable[None]]] = [raw.sample, peer.sample, ours.sample, ours.sample_apart]
        for index in range(samples):
            shift = index % len(samplers)
            for sample in [*samplers[shift:], *samplers[:shift]]:
                await sample()
                await asyncio.sleep(LATENCY_SPACING_S)
    return raw, peer, ours


async def run(url: str, seconds: float, rounds: int, samples: int, extras: bool) -> None:
    configure_logging("warning")
    postmaster = postmaster_of(url)
    print("machine:", machine_description())
    print("server: ", server_description(url))
    print(
        f"throughput: {seconds:g} s per contender and shape, in {rounds} interleaved round(s); "
        f"latency: {samples} samples each, one every {LATENCY_SPACING_S * 1000:g} ms"
    )
    idle = Usage(postmaster)
    idle.start()
    await asyncio.sleep(1.0)
    idle.stop()
    print(f"CPU used by other work on the machine just before starting: {idle.other:.2f} cores")
    print()

    es_single = es_recorder(url, pool_size=4)
    es_many = es_recorder(url, pool_size=CONNECTIONS)

    # 4 first, while the log is small: the handler starts at the beginning of the log.
    print("4. latency, commit returned -> woken (ms):", flush=True)
    await checkpoint(url)
    raw_lat, es_lat, ours_lat = await measure_latency(url, samples, es_single)
    for measured in (raw_lat.result, es_lat.result, ours_lat.result, ours_lat.applied, ours_lat.apart):
        print(describe_latency(measured), flush=True)
    print()

    # The headline raw: plain asyncpg on dedicated connections (no pool, so no reset round trip on release).
    raw_connections = [await asyncpg.connect(url) for _ in range(CONNECTIONS)]
    for connection in raw_connections:
        await configure_connection(connection)
    # An extra: the same statements through an asyncpg.Pool with its default reset query on every release.
    raw_pool = await asyncpg.create_pool(url, min_size=CONNECTIONS, max_size=CONNECTIONS, init=configure_connection)
    try:
        async with EventStore.open(url, catalogue=cat, pool_size=CONNECTIONS) as store:
            one = [
                Contender("raw", "1. raw (dedicated connection)", [raw_single_step(raw_connections[0], "raw1-0")]),
                Contender("es", "1. eventsourcing", [es_single_step(es_single)], threaded=True),
                Contender("agentlog", "1. agentlog", [agentlog_single_step(store, "one-0")]),
            ]
            if extras:
                one += [
                    Contender(
                        "raw_pool", "1x. raw (asyncpg pool, reset on release)", [raw_single_step(raw_pool, "rawp1-0")]
                    ),
                    Contender(
                        "sql",
                        "1x. agentlog append_event SQL only",
                        [agentlog_sql_step(store.pool, "sqlone-0", AGENTLOG_ONE_POST_COMMIT)],
                    ),
                ]
            await measure_shape(url, "1. single-event transactions, 1 connection:", one, seconds, rounds, postmaster)

            eight = [
                Contender(
                    "raw",
                    f"2. raw ({CONNECTIONS} dedicated connections)",
                    [raw_single_step(raw_connections[w], f"raw8-{w}") for w in range(CONNECTIONS)],
                ),
                Contender(
                    "es",
                    f"2. eventsourcing, {CONNECTIONS} threads",
                    [es_single_step(es_many) for _ in range(CONNECTIONS)],
                    threaded=True,
                ),
                Contender(
                    "agentlog",
                    f"2. agentlog, {CONNECTIONS} tasks",
                    [agentlog_single_step(store, f"eight-{w}") for w in range(CONNECTIONS)],
                ),
            ]
            if extras:
                eight += [
                    Contender(
                        "raw_pool",
                        f"2x. raw (asyncpg pool, reset on release), {CONNECTIONS} tasks",
                        [raw_single_step(raw_pool, f"rawp8-{w}") for w in range(CONNECTIONS)],
                    ),
                    Contender(
                        "sql",
                        "2x. agentlog append_event SQL (notify=>false) only",
                        [
                            agentlog_sql_step(store.pool, f"sqlpost-{w}", AGENTLOG_ONE_POST_COMMIT)
                            for w in range(CONNECTIONS)
                        ],
                    ),
                    Contender(
                        "sql_notify",
                        "2x. agentlog append_event SQL (notify=>true) only",
                        [
                            agentlog_sql_step(store.pool, f"sqlin-{w}", AGENTLOG_ONE_IN_TRANSACTION)
                            for w in range(CONNECTIONS)
                        ],
                    ),
                ]
            await measure_shape(
                url, f"2. single-event transactions, {CONNECTIONS} connections:", eight, seconds, rounds, postmaster
            )

            batches = [
                Contender("raw", "3. raw (dedicated connection)", [raw_batch_step(raw_connections[0], "rawb-0")]),
                Contender("es", "3. eventsourcing", [es_batch_step(es_single)], threaded=True),
                Contender("agentlog", "3. agentlog", [agentlog_batch_step(store, "batch-0")]),
            ]
            if extras:
                batches += [
                    Contender(
                        "sql", "3x. agentlog append_events SQL only", [agentlog_sql_batch_step(store.pool, "sqlb-0")]
                    )
                ]
            await measure_shape(url, f"3. {BATCH}-event batches, 1 connection:", batches, seconds, rounds, postmaster)
    finally:
        await raw_pool.close()
        for connection in raw_connections:
            await connection.close()
        es_many.datastore.close()
        es_single.datastore.close()

    one_by, eight_by, batch_by = ({c.key: c for c in shape} for shape in (one, eight, batches))
    rows = [
        throughput_row("1. single event, 1 conn (ev/s)", one_by["raw"], one_by["es"], one_by["agentlog"], 0.8),
        throughput_row(
            f"2. single event, {CONNECTIONS} conns (ev/s)", eight_by["raw"], eight_by["es"], eight_by["agentlog"], 0.7
        ),
        throughput_row(
            f"3. {BATCH}-event batch, 1 conn (ev/s)", batch_by["raw"], batch_by["es"], batch_by["agentlog"], 0.75
        ),
    ]
    raw, ours = raw_lat.result, ours_lat.result
    p50_ratio = ours.p50 / raw.p50
    rows += [
        Row(
            "4. commit->handler committed p50 (ms)",
            f"{raw.p50:.2f}",
            f"{es_lat.result.p50:.2f}",
            f"{ours.p50:.2f}",
            f"{p50_ratio:.2f}x",
            "<= 3x raw",
            "PASS" if p50_ratio <= 3 else "MISS",
        ),
        Row(
            "4. commit->handler committed p99 (ms)",
            f"{raw.p99:.2f}",
            f"{es_lat.result.p99:.2f}",
            f"{ours.p99:.2f}",
            f"{ours.p99 / raw.p99:.2f}x",
            "< 10 ms",
            "PASS" if ours.p99 < 10 else "MISS",
        ),
    ]
    if extras:
        applied = ours_lat.applied
        rows += [
            throughput_row("1x. raw through a resetting pool", one_by["raw"], None, one_by["raw_pool"], None),
            throughput_row("1x. agentlog vs raw through that pool", one_by["raw_pool"], None, one_by["agentlog"], None),
            throughput_row("1x. append_event SQL alone", one_by["raw"], None, one_by["sql"], None),
            throughput_row("2x. raw through a resetting pool", eight_by["raw"], None, eight_by["raw_pool"], None),
            throughput_row(
                "2x. agentlog vs raw through that pool", eight_by["raw_pool"], None, eight_by["agentlog"], None
            ),
            throughput_row("2x. append_event SQL (notify=>false) alone", eight_by["raw"], None, eight_by["sql"], None),
            throughput_row(
                "2x. append_event SQL (notify=>true) alone", eight_by["raw"], None, eight_by["sql_notify"], None
            ),
            throughput_row("3x. append_events SQL alone", batch_by["raw"], None, batch_by["sql"], None),
            Row(
                "4x. commit->handle() called p50 (ms)",
                f"{raw.p50:.2f}",
                "",
                f"{applied.p50:.2f}",
                f"{applied.p50 / raw.p50:.2f}x",
                "",
                "",
            ),
            Row(
                "4x. commit->handle() called p99 (ms)",
                f"{raw.p99:.2f}",
                "",
                f"{applied.p99:.2f}",
                f"{applied.p99 / raw.p99:.2f}x",
                "",
                "",
            ),
            Row(
                "4y. appended in another store, p50 (ms)",
                f"{raw.p50:.2f}",
                "",
                f"{ours_lat.apart.p50:.2f}",
                f"{ours_lat.apart.p50 / raw.p50:.2f}x",
                "",
                "",
            ),
            Row(
                "4y. appended in another store, p99 (ms)",
                f"{raw.p99:.2f}",
                "",
                f"{ours_lat.apart.p99:.2f}",
                f"{ours_lat.apart.p99 / raw.p99:.2f}x",
                "",
                "",
            ),
        ]
    print()
    print_table(rows)
    if rounds > 1:
        print(
            f"\nrounds (ev/s, min-max over all rounds; the table shows the median of the rounds during which other "
            f"processes used < {MAX_OTHER_CPU} cores):"
        )
        for shape in (one, eight, batches):
            for contender in shape:
                print("    " + contender.spread())
    print("\nCPU per event (microseconds; median of the clean rounds; server = the postmaster and all its children):")
    for shape in (one, eight, batches):
        for contender in shape:
            client, server = contender.cpu_per_event()
            print(f"    {contender.label:<52} client {client:6.1f}  server {server:6.1f}")
    lost = raw.lost + es_lat.result.lost + ours.lost + ours_lat.apart.lost
    if lost:
        print(f"\nWARNING: {lost} latency samples timed out after {LATENCY_TIMEOUT_S} s and are not in the figures")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--seconds",
        type=float,
        default=6.0,
        help="measuring time per contender and shape, split over the rounds (default 6)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per shape (default 5)")
    parser.add_argument("--samples", type=int, default=400, help="latency samples per system (default 400)")
    parser.add_argument(
        "--home",
        type=Path,
        default=Path("/tmp/agentlog-bench-home"),
        help="state directory of the embedded server (ignored with --database-url)",
    )
    parser.add_argument("--database-url", help="use this server instead of the embedded one")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 s per contender, 1 round, 60 samples")
    parser.add_argument("--no-extras", action="store_true", help="only the rows with targets")
    args = parser.parse_args(argv)
    seconds, rounds, samples = (1.0, 1, 60) if args.quick else (args.seconds, args.rounds, args.samples)

    with server_url(args.database_url, args.home) as url:
        bench_url = fresh_bench_database(url)
        asyncio.run(run(bench_url, seconds, rounds, samples, extras=not args.no_extras))
    return 0


if __name__ == "__main__":
    sys.exit(main())
