"""Coordination through the API, in one run (issue 12's benchmark):

  1. lock acquire + release pairs through the API (each acquirer its own resource, its own token and connection):
     pairs/s and the round trip's p50/p99 (acquire and release each), at 100 acquirers;
  2. the same transitions as bare appends (`store.append` of the domain rule's events at the folded version), at
     the same concurrency: what the API costs beside the log;
  3. chat post -> delivery to 100 connected WebSocket clients (/api/v1/ws, topic chat): p50/p99 from the POST to
     each client's receipt.

Everything runs as `agentlog up` runs it: the API on uvicorn (one process), the coordination projections, the
expiry decider and the timer service in the same process, on the embedded PostgreSQL (or --database-url).

    .venv/bin/python bench/bench_coordination.py             # ~1-2 minutes
    .venv/bin/python bench/bench_coordination.py --quick     # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import orjson
import uvicorn
from embedded_or_url import fresh_database, server_url
from websockets.asyncio.client import connect

from agentlog.api.app import ApiLimits, api_for
from agentlog.domains.coordination import locks as lock_rules
from agentlog.domains.coordination.events import AgentRegistered
from agentlog.domains.coordination.names import lock_stream, member_stream
from agentlog.eventstore import EventStore
from agentlog.handlers import HandlerRunner
from agentlog.handlers.coordination.expiry import CoordinationExpiry
from agentlog.handlers.decider import DecisionHandler
from agentlog.handlers.projection_handler import ProjectionHandler
from agentlog.handlers.timers import TimerService
from agentlog.logs import configure_logging
from agentlog.projections import installed_projections
from agentlog.tokens import issue, signing_key

BENCH_DATABASE = "agentlog_bench_coordination"
PROJECTIONS = ("registry", "chat", "inbox", "checkpoints", "memories", "locks", "claims", "timers")


def percentile(samples: Sequence[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000


async def lock_pairs_api(base: str, tokens: list[str], pairs: int) -> tuple[float, list[float], list[float]]:
    acquire_s: list[float] = []
    release_s: list[float] = []

    clients = [
        httpx.AsyncClient(base_url=f"{base}/api/v1", headers={"authorization": f"Bearer {token}"}, timeout=60)
        for token in tokens
    ]  # made before the clock starts: each loads the CA store (~40 ms), which is not the API's cost

    async def acquirer(number: int, http: httpx.AsyncClient) -> None:
        for _ in range(pairs):
            started = time.perf_counter()
            grant = await http.post(f"/locks/bench/{number}.py", json={"ttl_s": 60})
            acquired = time.perf_counter()
            assert grant.status_code == 201, grant.text
            released = await http.delete(f"/locks/bench/{number}.py",
                                         params={"fencing_token": grant.json()["fencing_token"]})  # fmt: skip
            assert released.status_code == 200, released.text
            acquire_s.append(acquired - started)
            release_s.append(time.perf_counter() - acquired)

    started = time.perf_counter()
    await asyncio.gather(*(acquirer(n, http) for n, http in enumerate(clients)))
    elapsed = time.perf_counter() - started
    for http in clients:
        await http.aclose()
    return len(tokens) * pairs / elapsed, acquire_s, release_s


async def lock_pairs_bare(store: EventStore, acquirers: int, pairs: int) -> tuple[float, list[float]]:
    round_trips: list[float] = []

    async def acquirer(number: int) -> None:
        resource = f"bare/{number}.py"
        stream = lock_stream(resource)
        state = lock_rules.LockState()
        for _ in range(pairs):
            started = time.perf_counter()
            events = lock_rules.acquire(state, stream, resource, f"agent-{number}", 60, "")
            await store.append(stream, events, state.version)
            for event in events:
                state.version += 1
                state.fold(event)
            released = lock_rules.release(state, f"agent-{number}", state.grant.fencing_token if state.grant else 0)
            await store.append(stream, released, state.version)
            state.version += 1
            state.fold(released[0])
            round_trips.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(acquirer(n) for n in range(acquirers)))
    return acquirers * pairs / (time.perf_counter() - started), round_trips


async def chat_fan_out(base: str, token: str, clients: int, messages: int) -> list[float]:
    url = base.replace("http://", "ws://") + f"/api/v1/ws?token={token}&topics=chat"
    sockets = [await connect(url, max_size=1 << 24) for _ in range(clients)]
    for client in sockets:  # each is caught up (an empty log of chat: one position mark)
        await client.recv()
    posted: dict[str, float] = {}
    delays: list[float] = []

    async def receive(client: object) -> None:
        got = 0
        while got < messages:
            item = orjson.loads(await client.recv())  # type: ignore[attr-defined]
            if item["type"] == "event":
                delays.append(time.perf_counter() - posted[item["data"]["body"]])
                got += 1

    receivers = [asyncio.create_task(receive(client)) for client in sockets]
    async with httpx.AsyncClient(base_url=f"{base}/api/v1", headers={"authorization": f"Bearer {token}"}) as http:
        for number in range(messages):
            body = f"message {number}"
            posted[body] = time.perf_counter()
            assert (await http.post("/chat", json={"body": body})).status_code == 201
            await asyncio.sleep(0.05)
    await asyncio.wait_for(asyncio.gather(*receivers), 120)
    for client in sockets:
        await client.close()
    return delays


async def run(url: str, acquirers: int, pairs: int, listeners: int, messages: int) -> None:
    async with EventStore.open(url, pool_size=20) as store:
        found = installed_projections().found
        runner = HandlerRunner(store, [DecisionHandler(CoordinationExpiry()),
                                       *(ProjectionHandler(found[name]) for name in PROJECTIONS)])  # fmt: skip
        stop_timers = asyncio.Event()
        tasks = [asyncio.create_task(runner.run()), asyncio.create_task(TimerService(store, stop_timers).run())]
        limits = ApiLimits(requests_per_s=1_000_000, burst=1_000_000)
        async with api_for(store, limits) as app:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.bind(("127.0.0.1", 0))
            base = f"http://127.0.0.1:{sock.getsockname()[1]}"
            app.state.base_url = base
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
                await asyncio.sleep(0.01)
            keys = await signing_key(store.pool)
            tokens = [issue(keys, "agent", f"agent-{n}", ttl_s=3600) for n in range(acquirers)]
            for n in range(acquirers):
                await store.append(member_stream(f"agent-{n}"), [AgentRegistered(agent_id=f"agent-{n}")])
            await lock_pairs_api(base, tokens[:10], 3)  # warm up every route
            api_rate, acquire_s, release_s = await lock_pairs_api(base, tokens, pairs)
            bare_rate, bare_s = await lock_pairs_bare(store, acquirers, pairs)
            delays = await chat_fan_out(base, issue(keys, "person", "bench", ttl_s=3600), listeners, messages)
            server.should_exit = True
            await serving
        stop_timers.set()
        runner.stop.set()
        await asyncio.gather(*tasks)
    round_trip = [a + r for a, r in zip(acquire_s, release_s, strict=True)]
    print(f"\n{os.cpu_count()} cores, Python {sys.version.split()[0]}, load {os.getloadavg()[0]:.1f}")
    print("| what | rate | p50 | p99 |\n|---|---|---|---|")
    print(
        f"| lock acquire+release through the API, {acquirers} acquirers | {api_rate:,.0f} pairs/s "
        f"| {percentile(round_trip, 0.5):.1f} ms | {percentile(round_trip, 0.99):.1f} ms |"
    )
    print(f"| ... acquire alone | | {percentile(acquire_s, 0.5):.1f} ms | {percentile(acquire_s, 0.99):.1f} ms |")
    print(f"| ... release alone | | {percentile(release_s, 0.5):.1f} ms | {percentile(release_s, 0.99):.1f} ms |")
    print(
        f"| the same transitions as bare appends, {acquirers} writers | {bare_rate:,.0f} pairs/s "
        f"| {percentile(bare_s, 0.5):.1f} ms | {percentile(bare_s, 0.99):.1f} ms |"
    )
    print(
        f"| chat post -> delivery to {listeners} WebSocket clients ({messages} posts) | "
        f"{len(delays):,} deliveries | {percentile(delays, 0.5):.1f} ms | {percentile(delays, 0.99):.1f} ms |"
    )
    print(f"\nAPI / bare appends: {api_rate / bare_rate:.2f}x pairs/s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url")
    parser.add_argument("--home", type=Path, default=Path("/tmp/agentlog-bench-home"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--acquirers", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=10)
    arguments = parser.parse_args(argv)
    configure_logging("warning", "console")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one log line per request costs more than the request
    acquirers, pairs = (20, 3) if arguments.quick else (arguments.acquirers, arguments.pairs)
    listeners, messages = (20, 10) if arguments.quick else (100, 50)
    with server_url(arguments.database_url, arguments.home) as url:
        database = fresh_database(url, BENCH_DATABASE)
        asyncio.run(run(database, acquirers, pairs, listeners, messages))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
