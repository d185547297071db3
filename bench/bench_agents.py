"""Documents and agents: how long until a person sees the agent's first mark, how fast documents get agents, and
what a worker costs in memory — agentlog beside the raw limit, measured in the same run.

    .venv/bin/python bench/bench_agents.py                 # embedded server under /tmp/agentlog-agents-bench-home
    .venv/bin/python bench/bench_agents.py --documents 60 --database-url postgresql://...

Shapes:

1. **first mark** — for each of N documents in turn: a person opens the document and types a finished sentence with
   a city in it at once; time from starting to open the socket until the agent's `geo` mark is visible to that
   person. The person then leaves (grace 1 s), so agents come and go as in real use; the agent limit is set above N
   so that no eviction is in the figure.
2. **documents per second until the limit** — `max_agents` people open `max_agents` documents all at once; time
   until every document's agent has joined (`agent_connections.status = 'active'`), and until every person sees
   the mark in their document.
3. **memory per worker** — resident memory of each live worker process (from /proc), beside a bare
   `python -c pass` interpreter.

The raw limit, measured in the same run: the same worker program started directly by the benchmark (no log, no
decider, no supervisor, no NOTIFY) on a document whose sentence is already typed, timed from the start of the
process to the mark being visible to a person who has the document open. The difference is what agentlog's control
plane adds: recording the join, the activity and agent decisions, the spawn by the supervisor.

No peer library is measured: none of the systems surveyed (Hocuspocus, y-sweet, jupyter-collaboration, the MCP
coordination servers) attaches agents to Y.js documents on activity (../shared/research/agent-coordination-and-yjs.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embedded_or_url import fresh_database, server_url

from agentlog.logs import configure_logging
from tests.support.system import RunningSystem, open_document, query, token_for, wait_until

BENCH_DATABASE = "agentlog_agents_bench"
SENTENCE = "We met in Paris."


def quantile(samples: list[float], q: float) -> float:
    return (
        statistics.quantiles(samples, n=100, method="inclusive")[round(q * 100) - 1] if len(samples) > 1 else samples[0]
    )


def describe(name: str, samples: list[float]) -> str:
    return (
        f"  {name:<58} n={len(samples):>3}  p50 {quantile(samples, 0.5):7.0f}  p95 {quantile(samples, 0.95):7.0f}"
        f"  max {max(samples):7.0f} ms"
    )


async def first_mark(system: RunningSystem, url: str, documents: int, prefix: str = "first") -> list[float]:
    token = await token_for(url, "bench")
    samples = []
    for index in range(documents):
        started = time.perf_counter()
        async with open_document(system.document_url, f"{prefix}-{index}", token) as person:
            person.type_paragraph(SENTENCE)
            await person.wait_for_marks(1, timeout=60)
            samples.append((time.perf_counter() - started) * 1000)
    return samples


async def raw_first_mark(system: RunningSystem, url: str, home: Path, runs: int) -> list[float]:
    """The worker program alone: started by hand on a document that already holds the sentence.

    The watching client holds an agent token: agents are not people, so the system does not activate the document
    and spawn its own agent meanwhile.
    """
    samples = []
    for index in range(runs):
        document = f"raw-{index}"
        agent_token = await token_for(url, f"raw-agent-{index}", "agent", document_id=document)
        watcher_token = await token_for(url, f"raw-watcher-{index}", "agent", document_id=document)
        async with open_document(system.document_url, document, watcher_token) as person:
            person.type_paragraph(SENTENCE)
            await asyncio.sleep(0.3)  # the sentence is stored before the worker starts
            started = time.perf_counter()
            worker = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agentlog.agents.worker", "--document", document, "--agent", f"raw{index}",
                "--url", system.document_url, "--layout", "tiptap", "--cache-dir", str(home / "cache"),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                env={**os.environ, "AGENTLOG_AGENT_TOKEN": agent_token},
            )  # fmt: skip
            marks = person.marks()
            while not marks:
                await asyncio.sleep(0.005)
                marks = person.marks()
            samples.append((time.perf_counter() - started) * 1000)
            assert worker.stdin is not None
            worker.stdin.close()
            await worker.wait()
    return samples


async def until_limit(system: RunningSystem, url: str, limit: int, prefix: str) -> tuple[float, float]:
    """Seconds until every agent joined its document, and until every person saw a mark."""
    token = await token_for(url, "bench")
    everyone_joined = asyncio.Event()
    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        people = [
            group.create_task(_open_and_wait(system, token, f"{prefix}-burst-{i}", everyone_joined))
            for i in range(limit)
        ]
        joined = group.create_task(_all_agents_joined(url, limit, prefix, everyone_joined))
    return joined.result() - started, max(task.result() for task in people) - started


async def _all_agents_joined(url: str, limit: int, prefix: str, everyone_joined: asyncio.Event) -> float:
    await wait_until(
        url,
        "SELECT count(*) FROM projections.agent_connections WHERE document_id LIKE $2 AND status = 'active'"
        " HAVING count(*) = $1",
        limit,
        f"{prefix}-burst-%",
        timeout=120,
    )
    everyone_joined.set()
    return time.perf_counter()


async def _open_and_wait(system: RunningSystem, token: str, document: str, everyone_joined: asyncio.Event) -> float:
    """Stays in the document until every agent joined: a document left early would go idle and lose its agent."""
    async with open_document(system.document_url, document, token) as person:
        person.type_paragraph(SENTENCE)
        await person.wait_for_marks(1, timeout=120)
        marked = time.perf_counter()
        await asyncio.wait_for(everyone_joined.wait(), 120)
    return marked


def worker_memory(system: RunningSystem) -> list[float]:
    """Resident MB of every worker process under this `agentlog up`."""
    sizes = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"agentlog.agents.worker" not in cmdline or f"PPid:\t{system.pid}\n" not in status:
            continue
        rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        sizes.append(rss_kb / 1024)
    return sizes


def bare_python_mb() -> float:
    output = subprocess.run(
        [sys.executable, "-c", "print(open('/proc/self/status').read())"], capture_output=True, text=True, check=True
    ).stdout
    return next(int(line.split()[1]) for line in output.splitlines() if line.startswith("VmRSS:")) / 1024


async def run(url: str, home: Path, documents: int, limit: int) -> None:
    log_path = home / "up.log"
    settings = {"idle_grace_s": "1", "ping_s": "5", "metrics_s": "5"}
    first: dict[str, list[float]] = {}
    for warm in ("true", "false"):
        manager = f"bench-{'warm' if warm == 'true' else 'cold'}"
        system = RunningSystem(
            url, home, log_path, manager_id=manager, max_agents=str(documents + 5), warm_worker=warm, **settings
        ).start()
        try:
            await first_mark(system, url, 2, f"warm-up-{manager}")  # the gazetteer index is built once per
            # machine; own documents, or their marks, already there, would be "seen" at once when measured
            await wait_until(url, "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM projections.agent_connections"
                                  " WHERE status NOT IN ('disconnected', 'error'))", timeout=60)  # fmt: skip
            first[warm] = await first_mark(system, url, documents, f"first-{manager}")
            if warm == "false":
                first["raw"] = await raw_first_mark(system, url, home, max(10, documents // 3))
        finally:
            system.stop()
    raw = first["raw"]
    print("1. person opens a document and types a sentence -> the agent's first mark is visible to them:")
    print(describe("raw: the worker program started by hand (doc already typed)", raw))
    print(describe("agentlog (a warm worker waiting, the default)", first["true"]))
    print(describe("agentlog without a warm worker (AGENTLOG_WARM_WORKER=false)", first["false"]))
    print(f"  ratio agentlog/raw at p50: {quantile(first['true'], 0.5) / quantile(raw, 0.5):.2f}x "
          f"(without a warm worker {quantile(first['false'], 0.5) / quantile(raw, 0.5):.2f}x)")  # fmt: skip

    for warm in ("true", "false"):
        manager = f"bench2-{'warm' if warm == 'true' else 'cold'}"
        system = RunningSystem(
            url, home, log_path, manager_id=manager, max_agents=str(limit), warm_worker=warm, **settings
        ).start()
        try:
            joined, marked = await until_limit(system, url, limit, prefix=manager)
            memory = worker_memory(system) if warm == "true" else []
        finally:
            system.stop()
        label = "" if warm == "true" else ", without a warm worker"
        print(f"2. {limit} documents opened at once (the agent limit){label}:")
        print(f"  all {limit} agents joined their documents in {joined:.2f} s -> {limit / joined:.1f} documents/s;"
              f" every person saw a mark after {marked:.2f} s")  # fmt: skip
        if warm == "true":
            print("3. memory:")
            if memory:
                print(f"  worker RSS, {len(memory)} live workers (the waiting one included): mean "
                      f"{statistics.mean(memory):.1f} MB, max {max(memory):.1f} MB; "
                      f"bare python interpreter {bare_python_mb():.1f} MB")  # fmt: skip
    metrics = await query(url, "SELECT avg(memory_mb) AS mb FROM projections.agent_metrics")
    if metrics and metrics[0]["mb"] is not None:
        print(f"  workers' own reports (agent_metrics): mean {float(metrics[0]['mb']):.1f} MB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--documents", type=int, default=30, help="documents in shape 1 (default 30)")
    parser.add_argument("--limit", type=int, default=10, help="agent limit in shape 2 (default 10)")
    parser.add_argument("--database-url", help="use this server instead of the embedded one")
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "agentlog-agents-bench-home")
    args = parser.parse_args()
    configure_logging("warning")
    with server_url(args.database_url, args.home) as url:
        print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
        asyncio.run(run(fresh_database(url, BENCH_DATABASE), args.home, args.documents, args.limit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
