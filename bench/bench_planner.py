"""The planner's machinery per LLM call (issue 14): what agentlog adds to a model call (the session fold, the budget
reservation and settlement, the content store, the log appends) and to a tool call (the tool route, the API
route it runs, the append), beside the bare provider call against the same local fake OpenAI-compatible server.

    .venv/bin/python bench/bench_planner.py                 # embedded server under /tmp/agentlog-bench-home
    .venv/bin/python bench/bench_planner.py --quick         # smoke run
    .venv/bin/python bench/bench_planner.py --database-url postgresql://user:pw@host:5432/any

Shapes, one process (the API on uvicorn over a real socket, the projections and deciders `up` hosts beside it, the
planner runtime as a handler, the fake server streaming SSE):
1. **bare** — `--calls` sequential `collect(OpenAICompatibleChat, request)` calls: a streamed answer of a few
   content deltas and the usage chunk; the time per call.
2. **agentlog** — `--turns` requests, one after another, each in a session of its own, answered with a tool: the
   model reads the request (`{"strategy": "tool"}`), asks for `list_tasks`, then answers — three model calls and
   one tool call per turn, every one recorded. Per model call, from the log: the time from the session's previous
   event to its `ModelAnswered` (both `recorded_at`, the database's clock) less the model call's own duration
   (`duration_ms`, the same streamed call as the bare one); per tool call, from its model answer to its
   `ToolAnswered`; per turn, (the turn's wall time from its request to `TurnFinished`, less its model calls'
   durations) / its model calls — the machinery added per LLM call, all included (the handler woken by NOTIFY
   for the first, and the tool dispatch).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import uvicorn
from embedded_or_url import fresh_database, server_url

from agentlog.api.app import ApiLimits, api_for
from agentlog.domains.planning.events import session_stream
from agentlog.eventstore import EventStore, RecordedEvent
from agentlog.handlers import HandlerRunner
from agentlog.handlers.budgets.keeper import BudgetKeeper
from agentlog.handlers.decider import DecisionHandler
from agentlog.handlers.projection_handler import ProjectionHandler
from agentlog.handlers.timers import TimerService
from agentlog.llm.chat import ChatMessage, ChatRequest, Profile, collect
from agentlog.llm.openai_chat import OpenAICompatibleChat
from agentlog.logs import configure_logging
from agentlog.planning.runtime import PlannerRuntime, RuntimeSettings
from agentlog.projections import installed_projections
from agentlog.tokens import issue, signing_key
from tests.support.fake_openai import Answer, FakeCall, FakeOpenAI

BENCH_DATABASE = "agentlog_bench_planner"
PROJECTIONS = ("registry", "tasks", "budgets", "timers", "planning", "tool_refusals", "chat", "memories")
PROFILES = {"balanced": Profile("balanced", "bench-big"), "speed": Profile("speed", "bench-small")}
ANSWER = "The queue is empty: nothing to do yet."


def percentile(samples: Sequence[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def bare_calls(base_url: str, calls: int) -> list[float]:
    provider = OpenAICompatibleChat(base_url, "sk-bench")
    request = ChatRequest((ChatMessage("system", "You answer."), ChatMessage("user", "What is queued?")),
                          PROFILES["balanced"])  # fmt: skip
    timings = []
    try:
        for _ in range(calls):
            started = time.perf_counter()
            await collect(provider, request)
            timings.append((time.perf_counter() - started) * 1000)
    finally:
        await provider.aclose()
    return timings


def turn_answers() -> list[Answer]:
    return [Answer.say(json.dumps({"strategy": "tool", "analysis": "the queue answers it"}), pieces=4),
            Answer.call(FakeCall("list_tasks", {"limit": 5})), Answer.say(ANSWER, pieces=4)]  # fmt: skip


async def agentlog_turns(store: EventStore, base: str, token: str, fake: FakeOpenAI, turns: int, prefix: str
                         ) -> tuple[list[float], list[float], list[float]]:  # fmt: skip
    model_added: list[float] = []
    tool_dispatch: list[float] = []
    per_call: list[float] = []
    async with httpx.AsyncClient(base_url=f"{base}/api/v1", headers={"authorization": f"Bearer {token}"},
                                 timeout=60) as http:  # fmt: skip
        for number in range(turns):
            fake.script(*turn_answers())
            session = f"{prefix}-{number}"
            posted = await http.post(f"/sessions/{session}/messages", json={"content": "What is queued?"})
            assert posted.status_code == 202, posted.text
            events = await _finished(store, session)
            durations = [float(e.data["duration_ms"]) for e in events if e.event_type == "ModelAnswered"]
            assert len(durations) == 3, [e.event_type for e in events]
            for before, event in itertools.pairwise(events):
                gap = (event.recorded_at - before.recorded_at).total_seconds() * 1000
                if event.event_type == "ModelAnswered":
                    model_added.append(gap - float(event.data["duration_ms"]))
                elif event.event_type == "ToolAnswered":
                    tool_dispatch.append(gap)
            wall = (events[-1].recorded_at - events[0].recorded_at).total_seconds() * 1000
            per_call.append((wall - sum(durations)) / len(durations))
    return model_added, tool_dispatch, per_call


async def _finished(store: EventStore, session: str) -> list[RecordedEvent]:
    async with asyncio.timeout(60):
        while True:
            events = await store.read_stream(session_stream(session))
            if events and events[-1].event_type == "TurnFinished":
                assert events[-1].data["status"] == "done", events[-1].data
                return [e for e in events if e.event_type != "SessionOpened"]
            await asyncio.sleep(0.002)


async def run(url: str, calls: int, turns: int) -> None:
    async with EventStore.open(url, pool_size=20, notify_interval=0.001) as store, \
            FakeOpenAI(api_key="sk-bench", default=Answer.say(ANSWER, pieces=4), record=False) as fake:  # fmt: skip
        found = installed_projections().found
        runner = HandlerRunner(store, [DecisionHandler(BudgetKeeper()),
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
            runtime = PlannerRuntime(
                store, RuntimeSettings(base, PROFILES), OpenAICompatibleChat(fake.base_url, "sk-bench"),
                token=lambda agent, read_only: issue(keys, "agent", agent, ttl_s=3600, read_only=read_only),
                admin_token=lambda: issue(keys, "admin", "planner-runtime", ttl_s=3600),
            )  # fmt: skip
            planner = HandlerRunner(store, [runtime], lock_retry_interval=0.1)
            planning = asyncio.create_task(planner.run())
            person = issue(keys, "person", "bench", ttl_s=3600)
            await bare_calls(fake.base_url, 20)  # warm up both paths
            await agentlog_turns(store, base, person, fake, 3, "warm")
            bare = await bare_calls(fake.base_url, calls)
            model_added, tool_dispatch, per_call = await agentlog_turns(store, base, person, fake, turns, "bench")
            planner.stop.set()
            await planning
            await runtime.shutdown()
            server.should_exit = True
            await serving
        stop_timers.set()
        runner.stop.set()
        await asyncio.gather(*tasks)
    print(f"\n{os.cpu_count()} cores, Python {sys.version.split()[0]}, load {os.getloadavg()[0]:.1f}")
    print("| what | samples | p50 | p99 |\n|---|---|---|---|")
    rows = [("bare provider call (fake server, streamed)", bare),
            ("agentlog: added to a model call (fold, reservation, settlement, contents, append)", model_added),
            ("agentlog: a tool call (tool route -> API route -> append)", tool_dispatch),
            ("agentlog: per LLM call, all included ((turn wall - model time) / model calls)", per_call)]  # fmt: skip
    for name, samples in rows:
        print(f"| {name} | {len(samples):,} | {percentile(samples, 0.5):.1f} ms | {percentile(samples, 0.99):.1f} ms |")
    print(f"\ntarget: < 5 ms p50 added per call; measured {percentile(per_call, 0.5):.1f} ms")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url")
    parser.add_argument("--home", type=Path, default=Path("/tmp/agentlog-bench-home"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--turns", type=int, default=100)
    arguments = parser.parse_args(argv)
    configure_logging("warning", "console")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    calls, turns = (30, 10) if arguments.quick else (arguments.calls, arguments.turns)
    with server_url(arguments.database_url, arguments.home) as url:
        database = fresh_database(url, BENCH_DATABASE)
        asyncio.run(run(database, calls, turns))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
