"""Append throughput and wake-up latency: raw asyncpg vs the `eventsourcing` library vs agentlog, in one run.

Every system writes to the same PostgreSQL server and the same freshly created database, one after the other:

  1. single-event transactions from 1 connection           (events/s)
  2. single-event transactions from 8 connections at once  (events/s)
  3. 100-event batches, one transaction per batch, 1 conn   (events/s)
  4. commit -> handler latency, one append every ~15 ms     (p50/p99 ms)

"raw" is plain asyncpg INSERTs into `raw_events`, a copy of agentlog.events' columns, defaults, constraints and
indexes (not its triggers), with the same binary orjson jsonb codec; see bench/README.md for exactly what each
column measures. Run:

    .venv/bin/python bench/bench_log.py                 # embedded server under /tmp/agentlog-bench-home
    .venv/bin/python bench/bench_log.py --quick         # ~1 s per measurement, a smoke run
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
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
import orjson
import psycopg
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

from agentlog.database import migrate
from agentlog.embedded import EmbeddedPostgres
from agentlog.logs import configure_logging
from eventstore import ANY, Event, EventCatalogue, EventStore, LogPosition, new_event_id
from eventstore.postgres.connections import configure_connection
from handlers import HandlerBatch, HandlerInstance, HandlerRunner

BENCH_DATABASE = "agentlog_bench"
BATCH = 100
CONNECTIONS = 8
LATENCY_SPACING_S = 0.015
LATENCY_TIMEOUT_S = 2.0

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

# agentlog's append function called directly (what EventStore.append sends, minus the Python layer around it).
AGENTLOG_SQL = """
SELECT event_id, stream_id, stream_version, global_position, transaction_id, duplicate
  FROM agentlog.append_events($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::integer[],
                              $6::jsonb[], $7::jsonb[], {notify})
"""
AGENTLOG_SQL_POST_COMMIT = AGENTLOG_SQL.format(notify="false")
AGENTLOG_SQL_IN_TRANSACTION = AGENTLOG_SQL.format(notify="true")


# -- measuring ------------------------------------------------------------------------------------------------


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat; (0, 0) where there is none."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0, 0
    values = [int(value) for value in fields[:8]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


@dataclass(slots=True)
class Usage:
    """Client process CPU and whole-machine CPU over one measurement (both in cores)."""

    wall: float = 0.0
    client_cpu: float = 0.0
    machine_busy: float = 0.0
    _start: tuple[float, float, int, int] = (0.0, 0.0, 0, 0)

    def start(self) -> None:
        busy, total = _machine_ticks()
        self._start = (time.perf_counter(), time.process_time(), busy, total)

    def stop(self) -> None:
        wall0, cpu0, busy0, total0 = self._start
        busy, total = _machine_ticks()
        self.wall = time.perf_counter() - wall0
        self.client_cpu = (time.process_time() - cpu0) / self.wall
        cores = os.cpu_count() or 1
        self.machine_busy = (busy - busy0) / (total - total0) * cores if total > total0 else float("nan")


@dataclass(slots=True)
class Throughput:
    name: str
    events: int
    usage: Usage

    @property
    def rate(self) -> float:
        return self.events / self.usage.wall


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


AsyncStep = Callable[[], Awaitable[int]]
SyncStep = Callable[[], int]


async def drive(name: str, steps: Sequence[AsyncStep], seconds: float) -> Throughput:
    """Run every step in a loop on its own task until `seconds` pass; each call returns events appended."""
    await asyncio.gather(*(step() for step in steps))  # warm-up: connections, prepared statements
    counts = [0] * len(steps)
    usage = Usage()
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


def drive_threads(name: str, steps: Sequence[SyncStep], seconds: float) -> Throughput:
    """`drive` for synchronous steps: one OS thread per step."""
    for step in steps:
        step()
    counts = [0] * len(steps)
    usage = Usage()
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


# -- raw asyncpg ----------------------------------------------------------------------------------------------


def raw_single_step(pool: asyncpg.Pool, stream_id: str) -> AsyncStep:
    version = 0

    async def step() -> int:
        nonlocal version
        version += 1
        await pool.execute(RAW_INSERT_ONE, new_event_id(), stream_id, version, "Tick", 1, {"n": version}, {})
        return 1

    return step


def raw_batch_step(pool: asyncpg.Pool, stream_id: str) -> AsyncStep:
    version = 0

    async def step() -> int:
        nonlocal version
        versions = list(range(version + 1, version + BATCH + 1))
        version += BATCH
        await pool.execute(
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


async def raw_latency(url: str, samples: int) -> Latency:
    """Commit an INSERT, then `SELECT pg_notify(...)`; latency = LISTEN callback - the INSERT's return."""
    result = Latency("raw INSERT, then NOTIFY -> LISTEN callback")
    listener = await asyncpg.connect(url)
    writer = await asyncpg.connect(url)
    await configure_connection(writer)
    arrived = asyncio.Event()
    arrived_at = 0.0

    def on_notify(*_: object) -> None:
        nonlocal arrived_at
        arrived_at = time.perf_counter()
        arrived.set()

    await listener.add_listener("bench_channel", on_notify)
    try:
        for n in range(1, samples + 1):
            arrived.clear()
            await writer.execute(RAW_INSERT_ONE, new_event_id(), "rawlat-1", n, "Tick", 1, {"n": n}, {})
            committed_at = time.perf_counter()
            await writer.execute(RAW_NOTIFY)
            try:
                await asyncio.wait_for(arrived.wait(), LATENCY_TIMEOUT_S)
                result.samples.append((arrived_at - committed_at) * 1000)
            except TimeoutError:
                result.lost += 1
            await asyncio.sleep(LATENCY_SPACING_S)
    finally:
        await listener.close()
        await writer.close()
    return result


# -- eventsourcing ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Server:
    host: str
    port: int
    user: str
    password: str
    dbname: str


def server_of(url: str) -> Server:
    parts = urlsplit(url)
    return Server(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        dbname=parts.path.lstrip("/"),
    )


def es_recorder(server: Server, pool_size: int) -> PostgresApplicationRecorder:
    datastore = PostgresDatastore(
        dbname=server.dbname,
        host=server.host,
        port=server.port,
        user=server.user,
        password=server.password,
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
        events = [StoredEvent(originator, version + i, "bench:Tick", es_state(version + i)) for i in range(1, 101)]
        version += BATCH
        recorder.insert_events(events)
        return BATCH

    return step


def es_latency(recorder: PostgresApplicationRecorder, samples: int) -> Latency:
    """insert_events (NOTIFY inside its transaction) -> the notification comes out of recorder.subscribe()."""
    result = Latency("eventsourcing insert -> subscription delivers")
    delivered: queue.Queue[tuple[int, float]] = queue.Queue()
    originator = uuid.uuid4()
    with recorder.subscribe(gt=recorder.max_notification_id()) as subscription:

        def consume() -> None:
            for notification in subscription:
                delivered.put((notification.id, time.perf_counter()))

        consumer = threading.Thread(target=consume)
        consumer.start()
        try:
            time.sleep(0.2)  # let its LISTEN thread start listening
            for n in range(1, samples + 1):
                ids = recorder.insert_events([StoredEvent(originator, n, "bench:Tick", es_state(n))])
                committed_at = time.perf_counter()
                assert ids is not None
                wanted = ids[-1]
                try:
                    while True:
                        got, arrived_at = delivered.get(timeout=LATENCY_TIMEOUT_S)
                        if got >= wanted:
                            result.samples.append((arrived_at - committed_at) * 1000)
                            break
                except queue.Empty:
                    result.lost += 1
                time.sleep(LATENCY_SPACING_S)
        finally:
            subscription.stop()
            consumer.join()
    return result


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


def agentlog_sql_step(pool: asyncpg.Pool, stream_id: str, query: str) -> AsyncStep:
    """agentlog.append_events called directly: no EventStore encoding, results or post-commit NOTIFY."""
    n = 0

    async def step() -> int:
        nonlocal n
        n += 1
        await pool.fetch(query, [stream_id], [None], [new_event_id()], ["Tick"], [1], [{"n": n}], [{}])
        return 1

    return step


class AppliedTimes:
    """The handler: records when each event reached `handle()` (inside the runner's open transaction)."""

    name = "bench-latency"
    event_types: frozenset[str] | None = None

    def __init__(self) -> None:
        self.applied_at: dict[int, float] = {}

    async def handle(self, batch: HandlerBatch) -> None:
        now = time.perf_counter()
        for event in batch.events:
            self.applied_at[event.global_position] = now


class TimedInstance(HandlerInstance):
    """A HandlerInstance that notes when its checkpoint position (set right after each commit) passes a target."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._position: LogPosition | None = None
        self.target: LogPosition | None = None
        self.reached_at: float | None = None
        self.reached = asyncio.Event()
        self.moved = asyncio.Event()
        super().__init__(*args, **kwargs)

    @property  # type: ignore[override]
    def position(self) -> LogPosition | None:
        return self._position

    @position.setter
    def position(self, value: LogPosition | None) -> None:
        now = time.perf_counter()
        self._position = value
        self.moved.set()
        if self.target is not None and value is not None and value >= self.target and self.reached_at is None:
            self.reached_at = now
            self.reached.set()

    def expect(self, target: LogPosition) -> None:
        self.target, self.reached_at = target, None
        self.reached.clear()


async def agentlog_latency(url: str, samples: int) -> tuple[Latency, Latency]:
    """append -> handler committed its batch (headline) and append -> handle() called (inside the batch)."""
    committed = Latency("agentlog append -> handler batch committed")
    applied = Latency("agentlog append -> handle() called (in its txn)")
    handler = AppliedTimes()
    async with EventStore.open(url, catalogue=cat, pool_size=4, notify_interval=0.002, poll_interval=1.0) as store:
        runner = HandlerRunner(store, [handler], batch_size=500, lock_retry_interval=0.1)
        instance = TimedInstance(store, handler, runner.stop, batch_size=500, lock_retry_interval=0.1)
        runner.instances = [instance]  # the runner's own loop, with the timing instance in it
        task = asyncio.create_task(runner.run())
        try:
            # Catch up with what the log holds and let the subscription go live before measuring.
            head = (await store.append("latency-0", [Tick(n=0)], ANY)).events[0].position
            instance.expect(head)
            await asyncio.wait_for(instance.reached.wait(), 60)
            for n in range(1, samples + 1):
                result = await store.append("latency-1", [Tick(n=n)], ANY)
                committed_at = time.perf_counter()
                position = result.events[0].position
                instance.expect(position)
                try:
                    await asyncio.wait_for(instance.reached.wait(), LATENCY_TIMEOUT_S)
                except TimeoutError:
                    committed.lost += 1
                    applied.lost += 1
                else:
                    assert instance.reached_at is not None
                    committed.samples.append((instance.reached_at - committed_at) * 1000)
                    applied.samples.append((handler.applied_at[position.global_position] - committed_at) * 1000)
                await asyncio.sleep(LATENCY_SPACING_S)
        finally:
            runner.stop.set()
            await task
    return committed, applied


# -- the run --------------------------------------------------------------------------------------------------


def with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


def fresh_database(url: str) -> str:
    """Drop and create BENCH_DATABASE on the server of `url`, migrate it, add raw_events; return its URL."""
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {BENCH_DATABASE}")
    bench_url = with_database(url, BENCH_DATABASE)
    migrate(bench_url)
    with psycopg.connect(bench_url, autocommit=True) as connection:
        connection.execute(RAW_TABLE)
    return bench_url


def server_description(url: str) -> list[str]:
    with psycopg.connect(url) as connection:
        version = connection.execute("SHOW server_version").fetchone()
        settings = {
            name: connection.execute(f"SHOW {name}").fetchone()
            for name in ("fsync", "synchronous_commit", "wal_sync_method", "full_page_writes", "shared_buffers")
        }
    shown = ", ".join(f"{name}={row[0] if row else '?'}" for name, row in settings.items())
    return [f"PostgreSQL {version[0] if version else '?'}: {shown}"]


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


@dataclass(slots=True)
class Row:
    shape: str
    raw: str
    es: str
    agentlog: str
    ratio: str
    target: str
    verdict: str


def rate(measured: Throughput | None) -> str:
    return "n/a" if measured is None else f"{measured.rate:,.0f}"


def throughput_row(
    shape: str, raw: Throughput | None, es: Throughput | None, ours: Throughput, minimum: float | None
) -> Row:
    ratio = ours.rate / raw.rate if raw is not None else float("nan")
    verdict = "" if minimum is None or raw is None else ("PASS" if ratio >= minimum else "MISS")
    target = "" if minimum is None else f">= {minimum:.2f}x"
    return Row(shape, rate(raw), rate(es), rate(ours), f"{ratio:.2f}x" if raw else "", target, verdict)


def print_table(rows: Sequence[Row]) -> None:
    header = Row("shape", "raw", "eventsourcing", "agentlog", "agentlog/raw", "target", "result")
    cells = [[*(getattr(row, name) for name in Row.__slots__)] for row in [header, *rows]]
    widths = [max(len(line[column]) for line in cells) for column in range(len(header.__slots__))]
    for index, line in enumerate(cells):
        print(
            "| "
            + " | ".join(
                cell.ljust(width) if column == 0 else cell.rjust(width)
                for column, (cell, width) in enumerate(zip(line, widths, strict=True))
            )
            + " |"
        )
        if index == 0:
            print("|" + "|".join("-" * (width + 2) for width in widths) + "|")


def describe(measured: Throughput) -> str:
    usage = measured.usage
    return (
        f"  {measured.name:<58} {measured.events:>8,} events in {usage.wall:5.2f} s = {measured.rate:>9,.0f}/s"
        f"   client CPU {usage.client_cpu:4.2f} cores, machine busy {usage.machine_busy:4.2f} cores"
    )


def describe_latency(measured: Latency) -> str:
    samples = measured.samples
    if not samples:
        return f"  {measured.name:<50} no samples ({measured.lost} lost)"
    return (
        f"  {measured.name:<50} n={len(samples)} lost={measured.lost}  p50 {measured.p50:6.2f}  "
        f"p90 {measured.quantile(0.9):6.2f}  p99 {measured.p99:6.2f}  max {max(samples):6.2f} ms"
    )


async def run(url: str, seconds: float, samples: int, extras: bool) -> None:
    configure_logging("warning")
    print("machine:", machine_description())
    for line in server_description(url):
        print("server: ", line)
    print(f"per measurement: {seconds:g} s; latency: {samples} samples, one every {LATENCY_SPACING_S * 1000:g} ms")
    print()
    server = server_of(url)
    details: list[str] = []
    throughput: dict[str, Throughput] = {}

    def note(measured: Throughput) -> Throughput:
        details.append(describe(measured))
        print(details[-1], flush=True)
        throughput[measured.name] = measured
        return measured

    # 4 first, while the log is small: the handler starts at the beginning of the log.
    print("latency (ms, commit returned -> woken):", flush=True)
    raw_lat = await raw_latency(url, samples)
    print(describe_latency(raw_lat), flush=True)
    es_single_rec = es_recorder(server, pool_size=4)
    es_lat = await asyncio.to_thread(es_latency, es_single_rec, samples)
    print(describe_latency(es_lat), flush=True)
    ours_committed, ours_applied = await agentlog_latency(url, samples)
    print(describe_latency(ours_committed), flush=True)
    print(describe_latency(ours_applied), flush=True)
    print()

    print("throughput:", flush=True)
    raw_pool = await asyncpg.create_pool(url, min_size=CONNECTIONS, max_size=CONNECTIONS, init=configure_connection)
    es_many_rec = es_recorder(server, pool_size=CONNECTIONS)
    try:
        async with EventStore.open(url, catalogue=cat, pool_size=CONNECTIONS) as store:
            r1 = note(await drive("1. raw, 1 conn", [raw_single_step(raw_pool, "raw1-0")], seconds))
            e1 = note(await asyncio.to_thread(drive_threads, "1. eventsourcing, 1 conn",
                                              [es_single_step(es_single_rec)], seconds))
            a1 = note(await drive("1. agentlog, 1 conn", [agentlog_single_step(store, "one-0")], seconds))
            if extras:
                note(await drive("1x. agentlog SQL function only, 1 conn",
                                 [agentlog_sql_step(store.pool, "sqlone-0", AGENTLOG_SQL_POST_COMMIT)], seconds))

            r2 = note(await drive(f"2. raw, {CONNECTIONS} conns",
                                  [raw_single_step(raw_pool, f"raw8-{w}") for w in range(CONNECTIONS)], seconds))
            e2 = note(await asyncio.to_thread(drive_threads, f"2. eventsourcing, {CONNECTIONS} threads",
                                              [es_single_step(es_many_rec) for _ in range(CONNECTIONS)], seconds))
            a2 = note(await drive(f"2. agentlog, {CONNECTIONS} conns",
                                  [agentlog_single_step(store, f"eight-{w}") for w in range(CONNECTIONS)], seconds))
            if extras:
                for label, query, prefix in (
                    ("notify=false", AGENTLOG_SQL_POST_COMMIT, "sqlpost"),
                    ("notify=true (NOTIFY in txn)", AGENTLOG_SQL_IN_TRANSACTION, "sqlin"),
                ):
                    note(await drive(
                        f"2x. agentlog SQL function, {label}, {CONNECTIONS} conns",
                        [agentlog_sql_step(store.pool, f"{prefix}-{w}", query) for w in range(CONNECTIONS)],
                        seconds,
                    ))

            r3 = note(await drive("3. raw, 100-event batches", [raw_batch_step(raw_pool, "rawb-0")], seconds))
            e3 = note(await asyncio.to_thread(drive_threads, "3. eventsourcing, 100-event batches",
                                              [es_batch_step(es_single_rec)], seconds))
            a3 = note(await drive("3. agentlog, 100-event batches", [agentlog_batch_step(store, "batch-0")], seconds))
    finally:
        await raw_pool.close()
        es_many_rec.datastore.close()
        es_single_rec.datastore.close()

    rows = [
        throughput_row("1. single event, 1 conn (ev/s)", r1, e1, a1, 0.8),
        throughput_row(f"2. single event, {CONNECTIONS} conns (ev/s)", r2, e2, a2, 0.7),
        throughput_row("3. 100-event batch, 1 conn (ev/s)", r3, e3, a3, 0.75),
    ]
    if extras:
        sql_one = throughput["1x. agentlog SQL function only, 1 conn"]
        sql_post = throughput[f"2x. agentlog SQL function, notify=false, {CONNECTIONS} conns"]
        sql_in = throughput[f"2x. agentlog SQL function, notify=true (NOTIFY in txn), {CONNECTIONS} conns"]
        rows += [
            throughput_row("1x. append_events() only, 1 conn", r1, None, sql_one, None),
            throughput_row(f"2x. append_events() only, {CONNECTIONS} conns", r2, None, sql_post, None),
            throughput_row(f"2x. ... notify=true, {CONNECTIONS} conns", r2, None, sql_in, None),
        ]
    p50_ratio = ours_committed.p50 / raw_lat.p50
    rows += [
        Row("4. commit->handler p50 (ms)", f"{raw_lat.p50:.2f}", f"{es_lat.p50:.2f}", f"{ours_committed.p50:.2f}",
            f"{p50_ratio:.2f}x", "<= 3x raw", "PASS" if p50_ratio <= 3 else "MISS"),
        Row("4. commit->handler p99 (ms)", f"{raw_lat.p99:.2f}", f"{es_lat.p99:.2f}", f"{ours_committed.p99:.2f}",
            f"{ours_committed.p99 / raw_lat.p99:.2f}x", "< 10 ms", "PASS" if ours_committed.p99 < 10 else "MISS"),
        Row("4x. commit->handle() called p50 (ms)", f"{raw_lat.p50:.2f}", "", f"{ours_applied.p50:.2f}",
            f"{ours_applied.p50 / raw_lat.p50:.2f}x", "", ""),
        Row("4x. commit->handle() called p99 (ms)", f"{raw_lat.p99:.2f}", "", f"{ours_applied.p99:.2f}",
            f"{ours_applied.p99 / raw_lat.p99:.2f}x", "", ""),
    ]
    print()
    print_table(rows)
    lost = raw_lat.lost + es_lat.lost + ours_committed.lost
    if lost:
        print(f"\nWARNING: {lost} latency samples timed out after {LATENCY_TIMEOUT_S} s and are not in the figures")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each throughput measurement")
    parser.add_argument("--samples", type=int, default=400, help="latency samples per system")
    parser.add_argument("--home", type=Path, default=Path("/tmp/agentlog-bench-home"),
                        help="state directory of the embedded server (ignored with --database-url)")
    parser.add_argument("--database-url", help="use this server instead of the embedded one")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 s per measurement, 60 samples")
    parser.add_argument("--no-extras", action="store_true",
                        help="skip the extra rows (append_events() called directly, notify=true)")
    args = parser.parse_args(argv)
    seconds, samples = (1.0, 60) if args.quick else (args.seconds, args.samples)

    server: EmbeddedPostgres | None = None
    started_here = False
    if args.database_url:
        url = args.database_url
    else:
        server = EmbeddedPostgres(args.home)
        url, started_here = server.ensure_running()
    try:
        bench_url = fresh_database(url)
        asyncio.run(run(bench_url, seconds, samples, extras=not args.no_extras))
    finally:
        if server is not None and started_here:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
