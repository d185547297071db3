"""Projection rebuild throughput and memory vs the raw ordered read of the same log, in one run.

The log (`agentlog.events` of a freshly created, migrated database) is filled to each size in turn (default 1M,
then grown to 3M events), and at each size:

  * raw read  -- a plain asyncpg connection reads the whole log in canonical order, keyset-paginated in pages of
                 the rebuild's batch size, with agentlog's own SELECT (same columns, same visibility barrier) and
                 agentlog's binary orjson jsonb codec, counting rows and building nothing; measured before, between
                 and after the rebuilds (the median of the three is the baseline). Also a server-side cursor variant.
  * rebuild   -- `projections.replay.rebuild(store, projection, batch_size=...)` of each built-in projection,
                 each in a fresh process; then all three one after the other in one process (like
                 `agentlog replay --all`), with where the time goes (read, decode, apply, checkpoint, commit, GC).

Every measurement runs in its own subprocess (this script with `--worker`), so its peak RSS (VmHWM; see
`peak_rss_kib` for why not ru_maxrss) is its own and comparable between sizes. bench/README.md says what exactly
is measured. Run:

    .venv/bin/python bench/bench_rebuild.py                # 1M then 3M, embedded server under /tmp
    .venv/bin/python bench/bench_rebuild.py --quick        # 100k then 300k, a smoke run
    .venv/bin/python bench/bench_rebuild.py --sizes 500000,2000000 --database-url postgresql://u:pw@host/any
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import asyncpg
import psycopg

BENCH_DATABASE = "agentlog_rebuild_bench"
DEFAULT_HOME = Path("/tmp/agentlog-rebuild-bench-home")
DEFAULT_SIZES = (1_000_000, 3_000_000)
QUICK_SIZES = (100_000, 300_000)
FILL_CHUNK = 50_000
"""Events per filling transaction, so the log holds many transaction ids as a real one does."""
TARGET_RATIO = 0.5
RESULT_MARK = "BENCH-RESULT "
RAW_APPLICATION = "bench raw reader"
POLL_S = 0.1

# -- filling the log ------------------------------------------------------------------------------------------

# One statement per transaction: events g = $1 .. $2 in order. Stream s = g % streams in three categories;
# version g / streams + 1, so versions are contiguous per stream and canonical order is version order. Event ids
# are time-ordered like agentlog's UUIDv7 (48-bit millisecond prefix, version 7, variant bits), unique per g.
FILL = """
INSERT INTO agentlog.events (event_id, stream_id, stream_version, event_type, schema_version, data, metadata)
SELECT (lpad(to_hex(%(base_ms)s::bigint + g), 12, '0') || '7' || substr(h, 1, 3) || '8' || substr(h, 4, 15))::uuid,
       (ARRAY['agent-', 'document-', 'task-'])[s %% 3 + 1] || s,
       g / %(streams)s + 1,
       CASE WHEN g / %(streams)s = 0 THEN 'Created'
            ELSE (ARRAY['Updated', 'StatusChanged', 'Commented', 'ToolCalled'])[g %% 4 + 1] END,
       1,
       jsonb_build_object('n', g, 'user_id', 'u' || (g %% 97), 'status', (ARRAY['open', 'busy', 'done'])[g %% 3 + 1],
                          'score', (g %% 1000) / 1000.0, 'note', 'step ' || (g / %(streams)s + 1) || ' of ' || s),
       jsonb_build_object('actor', 'bench', 'correlation_id', substr(h, 1, 32))
  FROM (SELECT g, g %% %(streams)s AS s, md5(g::text) AS h
          FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g) AS source
 ORDER BY g
"""


@dataclass(slots=True)
class Fill:
    events: int
    seconds: float
    vacuum_seconds: float
    table_mib: float
    total_mib: float


def fill(url: str, start: int, stop: int, streams: int, base_ms: int) -> Fill:
    """Append events start .. stop-1 in FILL_CHUNK-event transactions, then VACUUM (ANALYZE) and CHECKPOINT."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as connection:
        for first in range(start, stop, FILL_CHUNK):
            last = min(first + FILL_CHUNK, stop) - 1
            connection.execute(
                FILL,
                {"first": first, "last": last, "streams": streams, "base_ms": base_ms},
            )
        filled = time.perf_counter() - started
        # The filler's rows are new: the first reader would set their hint bits, and autovacuum would start in the
        # middle of the measurements. Vacuum now, as an old log would be, and start from a fresh checkpoint.
        started = time.perf_counter()
        connection.execute("VACUUM (ANALYZE) agentlog.events")
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            connection.execute("CHECKPOINT")
        vacuumed = time.perf_counter() - started
        row = connection.execute(
            "SELECT pg_relation_size('agentlog.events'), pg_total_relation_size('agentlog.events')"
        ).fetchone()
        assert row is not None
    return Fill(stop - start, filled, vacuumed, row[0] / 2**20, row[1] / 2**20)


# -- process and server accounting ----------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def peak_rss_kib() -> int:
    """This process's peak resident set size so far, in KiB: VmHWM, the high-water mark of its own memory map.

    Not `getrusage(RUSAGE_SELF).ru_maxrss`: Linux carries the peak of the image a process replaced over `execve`
    into it, and subprocess forks (vfork) this script's parent, so every worker's ru_maxrss would start at the
    parent's RSS (it did: 78 MiB for every worker whatever it did). ru_maxrss is only the fallback off Linux.
    """
    return status_kib("self", "VmHWM") or int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def status_kib(pid: int | str, key: str) -> int | None:
    """One `kB` line of /proc/<pid>/status (VmRSS, VmHWM, RssAnon), None when unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process from /proc (None when it is gone or not on this machine)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat (idle and iowait are not busy)."""
    try:
        values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except OSError:
        return 0, 0
    return sum(values) - values[3] - values[4], sum(values)


def machine_cores(started: tuple[int, int]) -> float:
    """Cores the whole machine kept busy since `started` (a `machine_ticks()`)."""
    busy, total = machine_ticks()
    return (busy - started[0]) / max(total - started[1], 1) * (os.cpu_count() or 1)


class BackendMonitor:
    """Follows the server backend of a session by application_name: its CPU seconds and peak private memory.

    Polled every POLL_S from /proc (works when the server runs on this machine and /proc is readable), so the
    last tenth of a second of a backend that exits may be missed. RssAnon is the backend's private memory
    (work_mem, caches), not the shared buffers it touches.
    """

    def __init__(self, url: str, application_name: str) -> None:
        self._url = url
        self._application_name = application_name
        self.pid: int | None = None
        self.cpu: float | None = None
        self.peak_anon_kib: int | None = None
        self._cpu_start: float | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> BackendMonitor:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def _sample(self) -> None:
        if self.pid is None:
            return
        cpu = cpu_seconds(self.pid)
        if cpu is not None and self._cpu_start is not None:
            self.cpu = cpu - self._cpu_start
        anon = status_kib(self.pid, "RssAnon")
        if anon is not None:
            self.peak_anon_kib = max(self.peak_anon_kib or 0, anon)

    async def _run(self) -> None:
        try:
            connection = await asyncpg.connect(self._url)
            try:
                while self.pid is None:
                    self.pid = await connection.fetchval(
                        "SELECT pid FROM pg_stat_activity WHERE application_name = $1 LIMIT 1",
                        self._application_name,
                    )
                    if self.pid is None:
                        await asyncio.sleep(0.005)
            finally:
                await connection.close()
            self._cpu_start = cpu_seconds(self.pid)
            if self._cpu_start is None:  # not on this machine
                self.pid = None
                return
            while True:
                self._sample()
                await asyncio.sleep(POLL_S)
        except asyncio.CancelledError:
            self._sample()
            raise


# -- the workers (each in its own process) --------------------------------------------------------------------

T = TypeVar("T")


class Phases:
    """Wall time spent in named parts of a rebuild, accumulated by wrappers installed around agentlog's calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.gc_started = 0.0
        self.in_catch_up = False

    def watch_gc(self) -> None:
        """Add up the pauses of Python's cyclic garbage collector, wherever they fall (they overlap the phases)."""

        def on_gc(phase: str, _info: dict[str, Any]) -> None:
            if phase == "start":
                self.gc_started = time.perf_counter()
            else:
                self.seconds["gc"] += time.perf_counter() - self.gc_started
                self.calls["gc"] += 1

        gc.callbacks.append(on_gc)

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    async def timed(self, name: str, awaitable: Awaitable[T]) -> T:
        started = time.perf_counter()
        try:
            return await awaitable
        finally:
            self.seconds[name] += time.perf_counter() - started
            self.calls[name] += 1

    def timed_sync(self, name: str, function: Callable[..., T]) -> Callable[..., T]:
        def wrapper(*args: Any, **kwargs: Any) -> T:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started

        return wrapper

    def breakdown(self, total: float) -> dict[str, float]:
        """Exclusive seconds per phase of one rebuild; they add up to `total`."""
        s = self.seconds
        return {
            "read: fetch (query + transfer + asyncpg decode incl. jsonb)": s["select_log"] - s["records"],
            "read: RecordedEvent objects": s["records"],
            "apply: the projection's Python (deltas, arrays)": s["apply"] - s["apply_sql"],
            "apply: the projection's statement(s), round trip": s["apply_sql"],
            "checkpoint compare-and-set": s["checkpoint"],
            "BEGIN (round trip)": s["begin"],
            "COMMIT (round trip, asynchronous commit)": s["commit"],
            "rest of the loop (incl. freeing the previous batch)": s["catch_up"]
            - s["select_log"]
            - s["apply"]
            - s["checkpoint"]
            - s["begin"]
            - s["commit"],
            "prepare (lock, count(*) of the log, create shadow)": s["prepare"],
            "swap": s["swap"],
            "connect/close": total - s["prepare"] - s["catch_up"] - s["swap"],
        }


def install_phase_timers(phases: Phases) -> None:
    """Wrap the calls `projections.replay` makes (module attributes, looked up at call time): no agentlog code
    changes, a few perf_counter calls per 5,000-event batch."""
    from asyncpg.transaction import Transaction

    from agentlog.eventstore.postgres import recorder
    from agentlog.projections.replay import ShadowBuild

    select_log = recorder.select_log
    advance_checkpoint = recorder.advance_checkpoint

    async def timed_select_log(*args: Any, **kwargs: Any) -> Any:
        return await phases.timed("select_log", select_log(*args, **kwargs))

    async def timed_advance_checkpoint(*args: Any, **kwargs: Any) -> Any:
        return await phases.timed("checkpoint", advance_checkpoint(*args, **kwargs))

    recorder.select_log = timed_select_log
    recorder.advance_checkpoint = timed_advance_checkpoint
    recorder._recorded = phases.timed_sync("records", recorder._recorded)

    # BEGIN and COMMIT of every transaction (asyncpg sends each as its own round trip).
    transaction_enter = Transaction.__aenter__
    transaction_exit = Transaction.__aexit__

    async def timed_enter(self: Transaction) -> Any:
        if not phases.in_catch_up:  # prepare's and swap's transactions are timed as part of those
            return await transaction_enter(self)
        return await phases.timed("begin", transaction_enter(self))

    async def timed_exit(self: Transaction, *exc: Any) -> Any:
        if not phases.in_catch_up:
            return await transaction_exit(self, *exc)
        return await phases.timed("commit", transaction_exit(self, *exc))

    Transaction.__aenter__ = timed_enter  # type: ignore[method-assign]
    Transaction.__aexit__ = timed_exit  # type: ignore[method-assign,assignment]

    phases.watch_gc()

    for method in ("prepare", "catch_up", "_apply", "swap"):
        original = getattr(ShadowBuild, method)

        def make(original: Any = original, method: str = method) -> Any:
            async def timed_method(self: Any, *args: Any, **kwargs: Any) -> Any:
                if method != "catch_up":
                    return await phases.timed(method, original(self, *args, **kwargs))
                phases.in_catch_up = True
                try:
                    return await phases.timed(method, original(self, *args, **kwargs))
                finally:
                    phases.in_catch_up = False

            return timed_method

        setattr(ShadowBuild, method, make())


class TimedProjection:
    """A built-in projection as it is, with its `apply` timed."""

    def __init__(self, inner: Any, phases: Phases) -> None:
        self.inner = inner
        self.name: str = inner.name
        self.version: int = inner.version
        self.tables: tuple[str, ...] = inner.tables
        self.event_types: frozenset[str] | None = inner.event_types
        self.raw_events: bool = getattr(inner, "raw_events", False)
        self._phases = phases

    async def apply(self, connection: asyncpg.Connection, events: Sequence[Any]) -> None:
        await self._phases.timed("apply", self.inner.apply(TimedStatements(connection, self._phases), events))


class TimedStatements:
    """The connection a projection's `apply` gets, with the time of its statements (round trips) taken apart."""

    def __init__(self, connection: asyncpg.Connection, phases: Phases) -> None:
        self._connection = connection
        self._phases = phases

    async def execute(self, query: str, *args: Any) -> str:
        return await self._phases.timed("apply_sql", self._connection.execute(query, *args))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


async def worker_rebuild(url: str, names: Sequence[str], batch_size: int) -> dict[str, Any]:
    """Rebuild the named projections one after the other in this process (like `agentlog replay --all`)."""
    from agentlog.eventstore import EventStore
    from agentlog.logs import configure_logging
    from agentlog.projections import installed_projections
    from agentlog.projections.replay import rebuild

    configure_logging("warning")
    installed = installed_projections().found
    phases = Phases()
    install_phase_timers(phases)
    results: list[dict[str, Any]] = []
    async with EventStore.open(url) as store:
        baseline = status_kib("self", "VmRSS")
        for name in names:
            phases.reset()
            projection = TimedProjection(installed[name], phases)
            cpu_started = time.process_time()
            machine_started = machine_ticks()
            async with BackendMonitor(url, f"agentlog replay {name}") as backend:
                outcome = await rebuild(store, projection, batch_size=batch_size)
            machine = machine_cores(machine_started) * outcome.seconds
            results.append(
                {
                    "projection": name,
                    "events": outcome.events,
                    "seconds": outcome.seconds,
                    "client_cpu": time.process_time() - cpu_started,
                    "machine_cpu": machine,
                    "server_cpu": backend.cpu,
                    "backend_peak_anon_kib": backend.peak_anon_kib,
                    "batches": phases.calls["select_log"],
                    "phases": phases.breakdown(outcome.seconds),
                    "gc_seconds": phases.seconds["gc"],
                    "gc_runs": phases.calls["gc"],
                    "peak_rss_kib": peak_rss_kib(),
                }
            )
    return {
        "baseline_rss_kib": baseline,
        "peak_rss_kib": peak_rss_kib(),
        "ru_maxrss_kib": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
        "results": results,
    }


async def worker_raw(url: str, batch_size: int, mode: str) -> dict[str, Any]:
    """Read the whole log in canonical order, counting rows: keyset pages (agentlog's select_log) or a cursor."""
    from agentlog.eventstore.postgres.connections import configure_connection
    from agentlog.eventstore.postgres.queries import QUERIES

    select_log = QUERIES["select_log"]
    limit = "LIMIT $3"
    assert select_log.rstrip().rstrip(";").endswith(limit), select_log
    cursor_query = select_log.rstrip().rstrip(";").removesuffix(limit)

    connection = await asyncpg.connect(url, server_settings={"application_name": RAW_APPLICATION})
    try:
        await configure_connection(connection)  # agentlog's binary orjson jsonb codec
        baseline = status_kib("self", "VmRSS")
        phases = Phases()
        phases.watch_gc()
        events = pages = 0
        async with BackendMonitor(url, RAW_APPLICATION) as backend:
            await asyncio.sleep(0.05)  # let the monitor find the backend before the clock starts
            cpu_started = time.process_time()
            machine_started = machine_ticks()
            started = time.perf_counter()
            if mode == "keyset":
                transaction_id, global_position = 0, 0
                while True:
                    rows = await connection.fetch(select_log, transaction_id, global_position, batch_size)
                    pages += 1
                    events += len(rows)
                    if rows:
                        transaction_id, global_position = rows[-1]["transaction_id"], rows[-1]["global_position"]
                    if len(rows) < batch_size:
                        break
            else:
                async with connection.transaction():
                    cursor = await connection.cursor(cursor_query, 0, 0)
                    while rows := await cursor.fetch(batch_size):
                        pages += 1
                        events += len(rows)
            seconds = time.perf_counter() - started
            client_cpu = time.process_time() - cpu_started
            machine = machine_cores(machine_started) * seconds
            gc_seconds = phases.seconds["gc"]
    finally:
        await connection.close()
    return {
        "mode": mode,
        "events": events,
        "pages": pages,
        "seconds": seconds,
        "gc_seconds": gc_seconds,
        "client_cpu": client_cpu,
        "machine_cpu": machine,
        "server_cpu": backend.cpu,
        "backend_peak_anon_kib": backend.peak_anon_kib,
        "baseline_rss_kib": baseline,
        "peak_rss_kib": peak_rss_kib(),
        "ru_maxrss_kib": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
    }


def run_worker(args: argparse.Namespace) -> None:
    if args.worker == "rebuild":
        result = asyncio.run(worker_rebuild(args.database_url, args.projections.split(","), args.batch_size))
    else:
        result = asyncio.run(worker_raw(args.database_url, args.batch_size, args.worker.removeprefix("raw-")))
    print(RESULT_MARK + json.dumps(result), flush=True)


def spawn(url: str, worker: str, batch_size: int, projections: Sequence[str] = ()) -> dict[str, Any]:
    """Run one measurement in a fresh Python process and return what it reported."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        worker,
        "--database-url",
        url,
        "--batch-size",
        str(batch_size),
    ]
    if projections:
        command += ["--projections", ",".join(projections)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stdout + done.stderr)
        raise RuntimeError(f"worker {worker} {','.join(projections)} failed with exit code {done.returncode}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix(RESULT_MARK))
    return result


# -- the run --------------------------------------------------------------------------------------------------


def machine_description() -> str:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) // 2**20
    return (
        f"{os.cpu_count()} cores ({model}), {memory} GiB RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, asyncpg {asyncpg.__version__}"
    )


def server_description(url: str) -> str:
    names = (
        "server_version",
        "fsync",
        "synchronous_commit",
        "full_page_writes",
        "shared_buffers",
        "work_mem",
        "max_wal_size",
    )
    with psycopg.connect(url) as connection:
        shown = {name: (connection.execute(f"SHOW {name}").fetchone() or ("?",))[0] for name in names}
    version = shown.pop("server_version")
    return f"PostgreSQL {version}, " + ", ".join(f"{name}={value}" for name, value in shown.items())


def other_cpu_cores(seconds: float = 1.0) -> float:
    """Cores busy on the whole machine over `seconds` while this process sleeps (other people's work)."""
    started = machine_ticks()
    time.sleep(seconds)
    return machine_cores(started)


def mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.0f}"


def rate(measured: dict[str, Any]) -> float:
    return float(measured["events"]) / float(measured["seconds"])


def cores(measured: dict[str, Any], key: str) -> str:
    value = measured.get(key)
    return "n/a" if value is None else f"{float(value) / float(measured['seconds']):.2f}"


def other_cores(measured: dict[str, Any]) -> str:
    """Cores busy on the machine besides the measuring process and its backend (server background work such as
    autovacuum, the WAL writer and the checkpointer, and other people's work)."""
    if measured.get("server_cpu") is None or measured.get("machine_cpu") is None:
        return "n/a"
    rest = float(measured["machine_cpu"]) - float(measured["client_cpu"]) - float(measured["server_cpu"])
    return f"{rest / float(measured['seconds']):.2f}"


@dataclass(slots=True)
class SizeResult:
    size: int
    fill: Fill
    raw: list[dict[str, Any]] = field(default_factory=list)
    cursor: dict[str, Any] | None = None
    alone: list[dict[str, Any]] = field(default_factory=list)
    """Each projection rebuilt in its own process: [{'process': ..., 'result': ...}]."""
    together: dict[str, Any] | None = None

    @property
    def raw_baseline(self) -> dict[str, Any]:
        """The median of the raw keyset reads (taken before, between and after the rebuilds)."""
        return sorted(self.raw, key=rate)[(len(self.raw) - 1) // 2]


@dataclass(slots=True)
class Table:
    header: ClassVar[tuple[str, ...]] = (
        "size",
        "projection",
        "events",
        "seconds",
        "events/s",
        "raw read ev/s",
        "ratio",
        "target",
        "result",
        "peak RSS MiB",
        "raw peak RSS MiB",
    )
    rows: list[tuple[str, ...]] = field(default_factory=list)

    def print(self) -> None:
        cells = [self.header, *self.rows]
        widths = [max(len(line[column]) for line in cells) for column in range(len(self.header))]
        for index, line in enumerate(cells):
            padded = [
                cell.ljust(width) if column < 2 else cell.rjust(width)
                for column, (cell, width) in enumerate(zip(line, widths, strict=True))
            ]
            print("| " + " | ".join(padded) + " |")
            if index == 0:
                print("|" + "|".join("-" * (width + 2) for width in widths) + "|")


def summary_row(
    size: int, name: str, measured: dict[str, Any], raw: dict[str, Any] | None, peak_kib: int, raw_rss: str
) -> tuple[str, ...]:
    cells = [f"{size:,}", name, f"{measured['events']:,}", f"{measured['seconds']:.1f}", f"{rate(measured):,.0f}"]
    if raw is None:
        return (*cells, "", "", "", "", mib(peak_kib), raw_rss)
    ratio = rate(measured) / rate(raw)
    verdict = "PASS" if ratio >= TARGET_RATIO else "MISS"
    return (*cells, f"{rate(raw):,.0f}", f"{ratio:.2f}x", f">= {TARGET_RATIO:.1f}x", verdict, mib(peak_kib), raw_rss)


def summary(results: Sequence[SizeResult]) -> Table:
    table = Table()
    for measured in results:
        raw = measured.raw_baseline
        raw_rss = mib(max(int(r["peak_rss_kib"]) for r in measured.raw))
        table.rows.append(
            summary_row(measured.size, "raw read (keyset, median of 3)", raw, None, raw["peak_rss_kib"], "")
        )
        if measured.cursor is not None:
            cursor = measured.cursor
            table.rows.append(
                summary_row(measured.size, "raw read (server-side cursor)", cursor, None, cursor["peak_rss_kib"], "")
            )
        for entry in measured.alone:
            result = entry["result"]
            peak = entry["process"]["peak_rss_kib"]
            table.rows.append(summary_row(measured.size, result["projection"], result, raw, peak, raw_rss))
        if measured.together is not None:
            for result in measured.together["results"]:
                name = result["projection"] + " (--all)"
                peak = result["peak_rss_kib"]  # the process's peak so far, after this projection
                table.rows.append(summary_row(measured.size, name, result, raw, peak, raw_rss))
    return table


def print_details(results: Sequence[SizeResult]) -> None:
    print()
    print("CPU (cores busy during the measurement; client = the measuring process, server = its backend, rest = the")
    print("rest of the machine: server background processes and anything else) and memory")
    print("(RSS of the measuring process before the work and at its peak (VmHWM); backend = peak private RssAnon,")
    print(f"polled; this parent process's RSS is {mib(status_kib('self', 'VmRSS'))} MiB):")
    for measured in results:
        entries: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
            (f"raw keyset read #{index + 1}", raw, raw) for index, raw in enumerate(measured.raw)
        ]
        if measured.cursor is not None:
            entries.append(("raw cursor read", measured.cursor, measured.cursor))
        entries += [(f"rebuild {e['result']['projection']}", e["result"], e["process"]) for e in measured.alone]
        if measured.together is not None:
            entries += [
                (f"rebuild {r['projection']} (--all)", r, measured.together) for r in measured.together["results"]
            ]
        for name, result, process in entries:
            print(
                f"  {measured.size:>9,}  {name:<38} {rate(result):>9,.0f} ev/s  "
                f"client {cores(result, 'client_cpu'):>4}  server {cores(result, 'server_cpu'):>4}  "
                f"rest {other_cores(result):>5}  "
                f"RSS {mib(process['baseline_rss_kib']):>4} -> {mib(process['peak_rss_kib']):>4} MiB "
                f"(ru_maxrss {mib(process.get('ru_maxrss_kib')):>4})  "
                f"backend {mib(result['backend_peak_anon_kib']):>4} MiB"
            )
    print()
    print("Where a rebuild's time goes (seconds, exclusive; each projection rebuilt alone; per-batch = ms):")
    for measured in results:
        for entry in measured.alone:
            result = entry["result"]
            batches = max(int(result["batches"]), 1)
            print(f"  {measured.size:,} {result['projection']}: {result['seconds']:.1f} s, {batches} batches")
            phases = {**result["phases"], "(Python GC pauses, inside the phases above)": result["gc_seconds"]}
            for phase, seconds in phases.items():
                share = seconds / float(result["seconds"]) * 100
                print(f"      {phase:<56} {seconds:7.2f} s {share:5.1f} %  {seconds / batches * 1000:7.2f} ms/batch")
        for index, raw in enumerate(measured.raw):
            pages = max(int(raw["pages"]), 1)
            print(
                f"  {measured.size:,} raw keyset read #{index + 1}: {raw['seconds']:.1f} s, {pages} pages, "
                f"{raw['seconds'] / pages * 1000:.2f} ms/page, of which Python GC pauses "
                f"{raw['gc_seconds'] / pages * 1000:.2f} ms/page"
            )


def measure_size(
    url: str, size: int, batch_size: int, streams: int, names: Sequence[str], fill_result: Fill
) -> SizeResult:
    measured = SizeResult(size, fill_result)
    print("  raw keyset read ...", end="", flush=True)
    measured.raw.append(spawn(url, "raw-keyset", batch_size))
    print(f" {rate(measured.raw[-1]):,.0f} ev/s", flush=True)
    print("  raw cursor read ...", end="", flush=True)
    measured.cursor = spawn(url, "raw-cursor", batch_size)
    print(f" {rate(measured.cursor):,.0f} ev/s", flush=True)
    for name in names:
        print(f"  rebuild {name} ...", end="", flush=True)
        process = spawn(url, "rebuild", batch_size, [name])
        result = process["results"][0]
        if result["events"] != size:
            raise RuntimeError(f"{name} rebuilt {result['events']} events, the log holds {size}")
        measured.alone.append({"process": process, "result": result})
        print(f" {rate(result):,.0f} ev/s, peak RSS {mib(process['peak_rss_kib'])} MiB", flush=True)
    print("  raw keyset read again ...", end="", flush=True)
    measured.raw.append(spawn(url, "raw-keyset", batch_size))
    print(f" {rate(measured.raw[-1]):,.0f} ev/s", flush=True)
    print(f"  rebuild {' + '.join(names)} in one process ...", end="", flush=True)
    measured.together = spawn(url, "rebuild", batch_size, names)
    print(
        " " + ", ".join(f"{rate(r):,.0f}" for r in measured.together["results"]) + " ev/s, "
        f"peak RSS {mib(measured.together['peak_rss_kib'])} MiB",
        flush=True,
    )
    print("  raw keyset read again ...", end="", flush=True)
    measured.raw.append(spawn(url, "raw-keyset", batch_size))
    print(f" {rate(measured.raw[-1]):,.0f} ev/s", flush=True)
    check_projections(url, size, streams, names)
    return measured


CHECKS = {
    "log_head": ("SELECT events FROM projections.log_head", "{size}"),
    "event_counts_daily": ("SELECT sum(events) FROM projections.event_counts_daily", "{size}"),
    "stream_summary": (
        "SELECT sum(event_count) || '/' || count(*) || '/' || max(current_version) FROM projections.stream_summary",
        "{size}/{streams}/{versions}",
    ),
}


def check_projections(url: str, size: int, streams: int, names: Sequence[str]) -> None:
    """The live projections (the last rebuild of each, swapped in) agree with what the filler wrote."""
    expected_values = {"size": size, "streams": min(streams, size), "versions": -(-size // streams)}
    with psycopg.connect(url) as connection:
        for name in names:
            if name not in CHECKS:
                continue
            query, expected = CHECKS[name]
            row = connection.execute(query).fetchone()
            found = None if row is None else str(row[0])
            if found != expected.format(**expected_values):
                raise RuntimeError(f"{name} after the rebuild: {found}, expected {expected.format(**expected_values)}")
    print(f"  live projections checked against the log: {', '.join(n for n in names if n in CHECKS)} ok", flush=True)


def run(url: str, sizes: Sequence[int], batch_size: int, streams: int, names: Sequence[str]) -> None:
    print("machine:", machine_description())
    print("server: ", server_description(url))
    print(
        f"log: sizes {', '.join(f'{size:,}' for size in sizes)} events (grown in place), {streams:,} streams in 3 "
        f"categories, 5 event types, {FILL_CHUNK:,} events per filling transaction; batch/page size {batch_size:,}"
    )
    print(f"CPU used by other work on the machine just before starting: {other_cpu_cores():.2f} cores", flush=True)
    base_ms = int(time.time() * 1000)
    results: list[SizeResult] = []
    filled = 0
    started = time.perf_counter()
    for size in sizes:
        print(f"\nfilling {filled:,} -> {size:,} events ...", end="", flush=True)
        fill_result = fill(url, filled, size, streams, base_ms)
        filled = size
        print(
            f" {fill_result.seconds:.1f} s ({fill_result.events / fill_result.seconds:,.0f} ev/s), "
            f"VACUUM (ANALYZE) + CHECKPOINT {fill_result.vacuum_seconds:.1f} s; table {fill_result.table_mib:,.0f} "
            f"MiB, with indexes {fill_result.total_mib:,.0f} MiB",
            flush=True,
        )
        print(f"  other work on the machine: {other_cpu_cores(0.5):.2f} cores", flush=True)
        results.append(measure_size(url, size, batch_size, streams, names, fill_result))
    print(f"\nwhole run: {time.perf_counter() - started:.0f} s\n")
    summary(results).print()
    print_details(results)
    print()
    print("peak RSS (MiB) by log size, each rebuild in its own process:")
    for name in names:
        peaks = [
            mib(entry["process"]["peak_rss_kib"])
            for measured in results
            for entry in measured.alone
            if entry["result"]["projection"] == name
        ]
        print(f"  {name:<24} " + " -> ".join(peaks))
    raw_peaks = [mib(max(int(raw["peak_rss_kib"]) for raw in measured.raw)) for measured in results]
    print(f"  {'raw keyset reader':<24} " + " -> ".join(raw_peaks))
    sizes_text = " -> ".join(f"{size:,}" for size in sizes)
    print(f"  {'(log size, events)':<24} {sizes_text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="any PostgreSQL server (default: the embedded one under --home)")
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME, help="embedded server home")
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES[0]:,} and {QUICK_SIZES[1]:,}")
    parser.add_argument("--sizes", help="comma-separated log sizes, ascending (default 1000000,3000000)")
    parser.add_argument(
        "--batch-size", type=int, default=50_000, help="rebuild batch and raw page size (agentlog replay's default)"
    )
    parser.add_argument("--streams", type=int, default=10_000, help="streams the events are spread over")
    parser.add_argument("--projections", help="comma-separated projection names (default: all installed)")
    parser.add_argument("--worker", choices=("rebuild", "raw-keyset", "raw-cursor"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return

    sizes = (
        tuple(int(size.replace("_", "")) for size in args.sizes.split(","))
        if args.sizes
        else (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    )
    if list(sizes) != sorted(set(sizes)) or sizes[0] <= 0:
        parser.error("--sizes must be positive and ascending: the log only grows")

    from embedded_or_url import fresh_database, server_url

    from agentlog.projections import installed_projections

    names = args.projections.split(",") if args.projections else list(installed_projections().found)
    with server_url(args.database_url, args.home) as url:
        bench_url = fresh_database(url, BENCH_DATABASE)
        run(bench_url, sizes, args.batch_size, args.streams, names)


if __name__ == "__main__":
    main()
