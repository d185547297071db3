"""The document server under load: stored updates per second, receive → broadcast latency on one server and across
two, and how responsive the server stays while one client floods it — beside the raw limits, in one run.

    .venv/bin/python bench/bench_documents.py           # embedded server under /tmp/agentlog-documents-bench-home
    .venv/bin/python bench/bench_documents.py --seconds 5 --database-url postgresql://...

Shapes:

1. **stored updates/s** — `--documents` documents x `--writers` writers each, every writer one socket sending
   `--updates` one-character Y.js updates back to back; the figure is rows stored per second, from the first send
   until the last row is stored. Beside it, the same
   clients against the **raw server**: the same web stack (uvicorn, Starlette WebSockets) in its own process, storing
   every frame it receives in batches of one multi-row INSERT, one batch in flight — no CRDT, no broadcast, no
   presence, no limits. And the **database's limit**: the same rows inserted by one connection, 1,000 per INSERT.
2. **receive → broadcast latency** — ten documents, each with a writer and a reader; the writers send `--rate`
   updates per second in all; the time from a writer sending an update to its reader receiving it (the server stores
   it, durably, before it sends it on).
3. **across two servers** — the same, with each document's writer on one `agentlog up` and its reader on another.
4. **a flooding client** — while one socket (in a process of its own) sends out-of-order updates as fast as it can
   (the server refuses them once 100 wait for their dependencies, and closes the socket; the client reconnects and
   goes on), another client asks for a sync of another document every 20 ms: its round trip is the event loop's.

The agentlog servers are real `agentlog up` processes (`max_agents` 0: no agents), on one fresh database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
from embedded_or_url import fresh_database, server_url
from pycrdt import Doc, Text, create_update_message
from websockets.asyncio.client import ClientConnection, connect

from agentlog.logs import configure_logging
from tests.support.system import RunningSystem, token_for

BENCH_DATABASE = "agentlog_documents_bench"
RAW_BATCH = 1_000


def keystrokes(count: int, client: int) -> list[bytes]:
    """`count` one-character updates of one writer, each after the one before it (as a person types)."""
    doc: Doc[Any] = Doc(client_id=client)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    text = doc.get("text", type=Text)
    for index in range(count):
        text.insert(len(text), "abcdefghij"[index % 10])
    return updates


def quantile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the raw server ------------------------------------------------------------------------------------------------


def serve_raw(port: int, url: str) -> None:
    """Receive frames, store them in batches of one multi-row INSERT each: the floor of a Python document server."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    queue: list[tuple[str, bytes]] = []
    wake = asyncio.Event()
    pool: asyncpg.Pool | None = None

    async def writer() -> None:
        while True:
            await wake.wait()
            wake.clear()
            while queue:
                batch = queue[:RAW_BATCH]
                del queue[:RAW_BATCH]
                assert pool is not None
                await pool.execute(
                    "INSERT INTO raw_updates (document_id, body) SELECT * FROM unnest($1::text[], $2::bytea[])",
                    [item[0] for item in batch],
                    [item[1] for item in batch],
                )

    async def endpoint(websocket: WebSocket) -> None:
        document_id = websocket.path_params["document_id"]
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                queue.append((document_id, await websocket.receive_bytes()))
                wake.set()

    async def main() -> None:
        nonlocal pool
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        task = asyncio.create_task(writer())
        app = Starlette(routes=[WebSocketRoute("/doc/{document_id}", endpoint)])
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio")
        await uvicorn.Server(config).serve()
        task.cancel()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def raw_server(url: str) -> AsyncIterator[str]:
    connection = await asyncpg.connect(url)
    await connection.execute("CREATE TABLE IF NOT EXISTS raw_updates (id bigint GENERATED ALWAYS AS IDENTITY "
                             "PRIMARY KEY, document_id text NOT NULL, body bytea NOT NULL)")  # fmt: skip
    await connection.close()
    port = free_port()
    process = await asyncio.create_subprocess_exec(sys.executable, __file__, "--serve-raw", str(port), url)
    try:
        async with asyncio.timeout(20):
            while True:
                try:
                    async with connect(f"ws://127.0.0.1:{port}/doc/probe", open_timeout=2):
                        break
                except (OSError, TimeoutError):
                    await asyncio.sleep(0.2)
        yield f"ws://127.0.0.1:{port}/doc"
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)


# -- shape 1: throughput ---------------------------------------------------------------------------------------------


async def write_flat_out(url: str, document_id: str, token: str, updates: list[bytes]) -> None:
    """One writer: every update, back to back (the socket's own back-pressure is all that slows it)."""
    async with connect(f"{url}/{document_id}?token={token}", max_size=None, ping_timeout=None) as websocket:
        reader = asyncio.create_task(_drain(websocket))
        for update in updates:
            await websocket.send(create_update_message(update))
        await asyncio.sleep(0.5)  # let the last frames leave before the close
        reader.cancel()


async def _drain(websocket: ClientConnection) -> None:
    with contextlib.suppress(Exception):
        async for _ in websocket:
            pass


async def stored_rows(url: str, table: str, prefix: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        return int(await connection.fetchval(f"SELECT count(*) FROM {table} WHERE document_id LIKE $1", prefix + "%"))
    finally:
        await connection.close()


async def throughput(
    ws_url: str, db_url: str, table: str, prefix: str, documents: int, writers: int, per_writer: int, token: str
) -> float:
    """Rows stored per second: every writer of every document sends `per_writer` updates flat out; the clock runs
    from the first send until the last row is stored."""
    updates = [keystrokes(per_writer, 1_000 + index) for index in range(writers)]
    total = documents * writers * per_writer
    started = time.perf_counter()
    tasks = [
        asyncio.create_task(write_flat_out(ws_url, f"{prefix}{d}", token, updates[w]))
        for d in range(documents)
        for w in range(writers)
    ]
    async with asyncio.timeout(600):
        while await stored_rows(db_url, table, prefix) < total:  # noqa: ASYNC110 - the database says when
            await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    await asyncio.gather(*tasks)
    return total / elapsed


async def database_limit(db_url: str, rows: int) -> float:
    updates = keystrokes(rows, 7)
    connection = await asyncpg.connect(db_url)
    try:
        started = time.perf_counter()
        for start in range(0, rows, RAW_BATCH):
            chunk = updates[start : start + RAW_BATCH]
            await connection.execute(
                "INSERT INTO raw_updates (document_id, body) SELECT 'limit', unnest($1::bytea[])", chunk
            )
        return rows / (time.perf_counter() - started)
    finally:
        await connection.close()


# -- shapes 2 and 3: latency -----------------------------------------------------------------------------------------


async def latency(write_url: str, read_url: str, token: str, prefix: str, rate: float, seconds: float) -> list[float]:
    documents = 10
    sent_at: dict[bytes, float] = {}
    samples: list[float] = []
    updates = [keystrokes(int(rate * seconds / documents) + 10, 5_000 + d) for d in range(documents)]

    async def read(websocket: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            async for message in websocket:
                data = bytes(message) if isinstance(message, bytes) else message.encode()
                started = sent_at.pop(_payload(data), None) if data[:2] == b"\x00\x02" else None
                if started is not None:
                    samples.append((time.perf_counter() - started) * 1000)

    async with contextlib.AsyncExitStack() as stack:
        writers = []
        for d in range(documents):
            reader = await stack.enter_async_context(connect(f"{read_url}/{prefix}{d}?token={token}", max_size=None))
            stack.push_async_callback(_cancel, asyncio.create_task(read(reader)))
            writers.append(await stack.enter_async_context(connect(f"{write_url}/{prefix}{d}?token={token}")))
        await asyncio.sleep(1.0)
        interval = documents / rate
        for step in range(int(rate * seconds / documents)):
            due = time.perf_counter() + interval
            for d, writer in enumerate(writers):
                update = updates[d][step]
                sent_at[update] = time.perf_counter()
                await writer.send(create_update_message(update))
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        await asyncio.sleep(2.0)
    return samples


def _payload(message: bytes) -> bytes:
    length, offset, shift = 0, 2, 0
    while True:
        byte = message[offset]
        offset += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return message[offset : offset + length]


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# -- shape 4: a flooding client --------------------------------------------------------------------------------------


async def flood(ws_url: str, token: str, seconds: float) -> None:
    """Out-of-order updates as fast as one socket can send them; reconnect when closed (run in its own process, so
    that its sending does not delay the probe's clock)."""
    updates = keystrokes(20_000, 9)
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        with contextlib.suppress(Exception):
            async with connect(f"{ws_url}/flooded?token={token}", ping_timeout=None) as websocket:
                for update in updates[1:]:  # the first withheld: everything after it waits for it
                    if time.perf_counter() >= until:
                        return
                    await websocket.send(create_update_message(update))


async def responsiveness(ws_url: str, token: str, seconds: float) -> tuple[list[float], list[float]]:
    """Sync round trips (ms) on another document while nobody floods, then while one client floods out-of-order
    updates: a sync request is answered by the event loop that also runs the handlers."""

    async def probe(until: float) -> list[float]:
        times = []
        async with connect(f"{ws_url}/probe?token={token}") as websocket:
            await websocket.recv()  # the server's own sync step 1
            while time.perf_counter() < until:
                started = time.perf_counter()
                await websocket.send(b"\x00\x00\x01\x00")  # sync step 1, empty state vector
                while (await websocket.recv())[:2] != b"\x00\x01":
                    pass
                times.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(0.02)
        return times

    quiet = await probe(time.perf_counter() + seconds / 2)
    flooding = await asyncio.create_subprocess_exec(sys.executable, __file__, "--flood", ws_url, token, str(seconds))
    await asyncio.sleep(1.0)  # connected and flooding
    busy = await probe(time.perf_counter() + seconds - 1.0)
    await flooding.wait()
    return quiet, busy


# -- the run ---------------------------------------------------------------------------------------------------------


async def run(
    url: str, home: Path, seconds: float, documents: int, writers: int, per_writer: int, rate: float
) -> None:
    db_url = fresh_database(url, BENCH_DATABASE)
    print(f"machine: {os.cpu_count()} cores, {platform.system()} {platform.release()}")
    print(f"{documents} documents x {writers} writers x {per_writer} updates; latency at {rate:g} updates/s for"
          f" {seconds:g} s\n")  # fmt: skip
    log_dir = Path(tempfile.mkdtemp(prefix="agentlog-documents-bench-"))
    fast = {
        "max_agents": "0", "document_messages_per_s": "1e9", "document_burst": "1000000000",
        "document_max_sockets_per_person": "1000",  # every writer holds the one bench token
    }  # fmt: skip
    one = RunningSystem(db_url, home, log_dir / "one.log", manager_id="bench-1", **fast).start()
    two = RunningSystem(db_url, home, log_dir / "two.log", manager_id="bench-2", **fast).start()
    try:
        token = await token_for(db_url, "bench", ttl_s=3600)
        print("1. stored updates/s", flush=True)
        async with raw_server(db_url) as raw_url:
            raw_stored = await throughput(raw_url, db_url, "raw_updates", "r-", documents, writers, per_writer,
                                          token)  # fmt: skip
        print(f"  raw server: {raw_stored:,.0f}/s", flush=True)
        stored = await throughput(one.document_url, db_url, "agentlog.document_updates", "t-", documents, writers,
                                  per_writer, token)  # fmt: skip
        print(f"  agentlog: {stored:,.0f}/s", flush=True)
        limit = await database_limit(db_url, 200_000)
        print(f"  database limit: {limit:,.0f}/s", flush=True)

        print("2. receive -> broadcast latency, one server", flush=True)
        same = await latency(one.document_url, one.document_url, token, "l-", rate, seconds)
        print("3. the same across two servers", flush=True)
        across = await latency(one.document_url, two.document_url, token, "x-", rate, seconds)
        print("4. /health while one client floods", flush=True)
        quiet, busy = await responsiveness(one.document_url, token, seconds)
    finally:
        one.stop()
        two.stop()

    print()
    print("| shape | raw | agentlog | agentlog/raw | target |")
    print("|---|---|---|---|---|")
    print(f"| stored updates/s, {documents} docs x {writers} writers (raw server) | {raw_stored:,.0f} "
          f"| {stored:,.0f} | {stored / raw_stored:.2f}x | >= 0.5x |")  # fmt: skip
    print(f"| same, against the database's limit (1,000-row INSERTs, no sockets) | {limit:,.0f} | {stored:,.0f} "
          f"| {stored / limit:.2f}x | |")  # fmt: skip
    for name, samples in (("receive -> broadcast, one server", same), ("receive -> broadcast, two servers", across)):
        print(f"| {name}, {rate:g} updates/s (n={len(samples)}) | | p50 {quantile(samples, 0.5):.1f} ms, "
              f"p99 {quantile(samples, 0.99):.1f} ms | | p99 < 25 ms |")  # fmt: skip
    print(f"| sync round trip while one client floods (n={len(busy)}) | quiet: p50 {quantile(quiet, 0.5):.1f} ms, p99 "
          f"{quantile(quiet, 0.99):.1f} ms | p50 {quantile(busy, 0.5):.1f} ms, p99 {quantile(busy, 0.99):.1f} ms "
          "| | p99 < 100 ms |")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 4 and sys.argv[1] == "--serve-raw":
        serve_raw(int(sys.argv[2]), sys.argv[3])
        return 0
    if argv is None and len(sys.argv) == 5 and sys.argv[1] == "--flood":
        asyncio.run(flood(sys.argv[2], sys.argv[3], float(sys.argv[4])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("AGENTLOG_DATABASE_URL"))
    parser.add_argument("--home", type=Path, default=Path("/tmp/agentlog-documents-bench-home"))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--documents", type=int, default=100)
    parser.add_argument("--writers", type=int, default=3)
    parser.add_argument("--updates", type=int, default=200, help="updates each writer sends in shape 1")
    parser.add_argument("--rate", type=float, default=1_000.0, help="updates per second for the latency shapes")
    arguments = parser.parse_args(argv)
    configure_logging("warning")
    with server_url(arguments.database_url, arguments.home) as url:
        asyncio.run(run(url, arguments.home, arguments.seconds, arguments.documents, arguments.writers,
                        arguments.updates, arguments.rate))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
