"""The deciders at scale (issue 10, item 8): a join's decision and 1,000 joins, with 1,000 to 100,000 documents known.

For each size N, a fresh database is filled with one manager (10 agent slots) and N documents, each with a person
in it (N `PersonJoined`): N active documents wanting an agent, 10 of them with one, the others deferred. The real
handlers then catch up with that log (the document-activity and agent-manager deciders, each a `DecisionHandler`
in the real `HandlerRunner`, on the real PostgreSQL), and a stand-in supervisor starts: every agent asked to detach
exits at once (no processes), so slots turn over as they would. Then, measured:

  join -> activated a person opens a new document (`PersonJoined`, appended through the handlers' own store, as
                    the document server does in `agentlog up`); time from the join's commit until the activity
                    decider committed the activation (one decider hop)
  join -> decided   the same join, until the agent manager committed every decision its activation calls for
                    (here: evicting the least recently active document's agent for it, the newcomer being more
                    recent; two hops)
  join -> spawned   the same join, until the manager committed the newcomer's spawn (after the evicted agent's
                    exit was recorded by the stand-in supervisor; four hops)
  1,000 joins       1,000 people open 1,000 new documents at once (one append of 1,000 joins); time from its
                    commit until the manager has decided all of them (a few evictions, the rest deferred)

The raw limit beside it: the same deciders alone, as pure functions (`step`), with the same events in the same
order (the supervisor's exits fed back at once), no database: what deciding costs before anything is stored.

Extras per size: the catch-up (N joins decided from the log), and a restart (new handlers load their saved rows;
time until a join after the restart is decided).

    .venv/bin/python bench/bench_deciders.py                    # 1,000, 10,000, 100,000; embedded server
    .venv/bin/python bench/bench_deciders.py --sizes 1000,10000 --samples 100
    .venv/bin/python bench/bench_deciders.py --database-url postgresql://user:pw@host:5432/any
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from embedded_or_url import fresh_database, server_url

from agentlog.domains.agents.events import (
    AgentDetachRequested,
    AgentProcessExited,
    ManagerStarted,
    agent_stream,
)
from agentlog.domains.documents.events import PersonJoined, document_stream
from agentlog.eventstore import ANY, Event, EventStore, LogPosition, NewEvent, StreamAppend, derived_event_id
from agentlog.eventstore.postgres import recorder
from agentlog.handlers import HandlerBatch, HandlerInstance, HandlerRunner
from agentlog.handlers.agents.manager import AgentManager, ManagerState
from agentlog.handlers.decider import DecisionHandler, Fact, step
from agentlog.handlers.documents.activity import ActivityState, DocumentActivity
from agentlog.logs import configure_logging

DATABASE = "agentlog_deciders_bench"
MANAGER = "m1"
MAX_AGENTS = 10
PREFILL_CHUNK = 2_000
TIMEOUT_S = 30.0
SAMPLE_SPACING_S = 0.01


def joined(document_id: str) -> PersonJoined:
    return PersonJoined(user_id="u", people_present=1, connection_id=f"c-{document_id}", server_id=MANAGER)


def manager_started() -> ManagerStarted:
    return ManagerStarted(
        manager_id=MANAGER, incarnation="i1", host="bench", pid=1, max_agents=MAX_AGENTS, document_url="ws://x/doc"
    )


def exited(detach: AgentDetachRequested) -> AgentProcessExited:
    return AgentProcessExited(
        agent_id=detach.agent_id,
        document_id=detach.document_id,
        manager_id=detach.manager_id,
        pid=None,
        exit_code=0,
        expected=True,
        reason="detached (bench: no process)",
    )


@dataclass
class Measured:
    activated_ms: list[float] = field(default_factory=list)
    decided_ms: list[float] = field(default_factory=list)
    spawned_ms: list[float] = field(default_factory=list)
    recording_ms: list[float] = field(default_factory=list)
    """How long appending the join itself took (the document server's part, not in the figures above)."""
    burst_s: float = 0.0
    catch_up_s: float = 0.0
    restart_s: float = 0.0
    rows: int = 0

    @staticmethod
    def quantile(samples: Sequence[float], q: float) -> float:
        if len(samples) < 2:
            return float("nan")
        return statistics.quantiles(samples, n=100, method="inclusive")[round(q * 100) - 1]


# -- the raw limit: the deciders alone ------------------------------------------------------------------------


class PureDeciders:
    """Both deciders as pure functions, fed as the handlers are: the activity decider's decisions go on to the
    manager, and agents asked to detach exit at once (the stand-in supervisor)."""

    def __init__(self) -> None:
        self.activity = DocumentActivity()
        self.manager = AgentManager()
        self.activity_state: ActivityState = self.activity.initial_state()
        self.manager_state: ManagerState = self.manager.initial_state()
        self.position = 0
        self.supervised = False
        self.detaching: list[AgentDetachRequested] = []
        self._to_manager(manager_stream(MANAGER), manager_started())

    def _fact(self, stream_id: str, event: Event) -> Fact:
        self.position += 1
        return Fact(event, uuid.UUID(int=self.position), stream_id, self.position)

    def _to_manager(self, stream_id: str, event: Event) -> None:
        self.manager_state, decisions = step(self.manager, self.manager_state, self._fact(stream_id, event))
        self.detaching.extend(d.event for d in decisions if isinstance(d.event, AgentDetachRequested))

    def join(self, document_id: str) -> tuple[float, float]:
        """Decide a join; return when it was activated and when decided (the spawn follows as the supervisor
        reports exits)."""
        fact = self._fact(document_stream(document_id), joined(document_id))
        self.activity_state, decisions = step(self.activity, self.activity_state, fact)
        activated = time.perf_counter()
        self.manager_state, _ = step(self.manager, self.manager_state, fact)
        for decision in decisions:
            self._to_manager(decision.stream_id, decision.event)
        decided = time.perf_counter()
        self.supervise()
        return activated, decided

    def burst(self, documents: Sequence[str]) -> None:
        """Many joins at once, in the order the handlers see them: every join, then every activation decided."""
        activations = []
        for document_id in documents:
            fact = self._fact(document_stream(document_id), joined(document_id))
            self.activity_state, decisions = step(self.activity, self.activity_state, fact)
            self.manager_state, _ = step(self.manager, self.manager_state, fact)
            activations.extend(decisions)
        for decision in activations:
            self._to_manager(decision.stream_id, decision.event)
        self.supervise()

    def supervise(self) -> None:
        while self.supervised and self.detaching:
            detach = self.detaching.pop(0)
            self._to_manager(agent_stream(detach.agent_id), exited(detach))


def pure(documents: int, samples: int, burst: int) -> Measured:
    measured = Measured()
    deciders = PureDeciders()
    started = time.perf_counter()
    for index in range(documents):
        deciders.join(f"d{index}")
    measured.catch_up_s = time.perf_counter() - started
    deciders.supervised = True
    deciders.supervise()
    for index in range(samples):
        started = time.perf_counter()
        activated, decided = deciders.join(f"n{index}")
        spawned = time.perf_counter()
        assert deciders.manager_state.documents[f"n{index}"].agent_id is not None, "the newcomer got no agent"
        measured.activated_ms.append((activated - started) * 1000)
        measured.decided_ms.append((decided - started) * 1000)
        measured.spawned_ms.append((spawned - started) * 1000)
    started = time.perf_counter()
    deciders.burst([f"b{index}" for index in range(burst)])
    measured.burst_s = time.perf_counter() - started
    return measured


def manager_stream(manager_id: str) -> str:
    return f"manager-{manager_id}"


# -- agentlog: the handlers in the runner on PostgreSQL -------------------------------------------------------


class InstantSupervisor:
    """Stands in for the supervisor: every agent asked to detach has exited, recorded at once (no processes)."""

    name = "bench-supervisor"
    event_types: frozenset[str] | None = frozenset({"AgentDetachRequested"})

    async def handle(self, batch: HandlerBatch) -> None:
        appends = [
            StreamAppend(
                agent_stream(item.event.agent_id),
                (NewEvent(exited(item.event), derived_event_id(self.name, item.event_id, 0)),),
            )
            for item in batch.events
            if isinstance(item.event, AgentDetachRequested)
        ]
        if appends:
            results = await batch.store.append_batch(appends, connection=batch.connection)
            batch.appended = batch.appended or not all(result.duplicate for result in results)


class WatchedInstance(HandlerInstance):
    """A HandlerInstance that checks conditions right after each of its batches committed (the runner sets the
    position then) and notes when each first held."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._position: LogPosition | None = None
        self._waiting: dict[str, Callable[[], bool]] = {}
        self._held: dict[str, float] = {}
        self._changed = asyncio.Event()
        super().__init__(*args, **kwargs)

    @property
    def position(self) -> LogPosition | None:
        return self._position

    @position.setter
    def position(self, value: LogPosition | None) -> None:
        self._position = value
        self._check()

    def watch(self, name: str, condition: Callable[[], bool]) -> None:
        self._held.pop(name, None)
        self._waiting[name] = condition
        self._check()

    def _check(self) -> None:
        now = time.perf_counter()
        for name, condition in list(self._waiting.items()):
            if condition():
                self._held[name] = now
                del self._waiting[name]
                self._changed.set()

    async def until(self, name: str) -> float:
        """When the condition watched under `name` first held (waiting for it if it has not yet)."""
        async with asyncio.timeout(TIMEOUT_S):
            while name not in self._held:
                self._changed.clear()
                await self._changed.wait()
        return self._held[name]


@dataclass
class Deciders:
    """Both deciders hosted by one runner, as in `agentlog up`."""

    store: EventStore
    activity: DecisionHandler[ActivityState] = field(init=False)
    manager: DecisionHandler[ManagerState] = field(init=False)
    activity_instance: WatchedInstance = field(init=False)
    instance: WatchedInstance = field(init=False)
    runner: HandlerRunner = field(init=False)
    task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.activity = DecisionHandler(DocumentActivity())
        self.manager = DecisionHandler(AgentManager())
        self.runner = HandlerRunner(self.store, [self.activity, self.manager], lock_retry_interval=0.1)
        self.activity_instance = WatchedInstance(self.store, self.activity, self.runner.stop, lock_retry_interval=0.1)
        self.instance = WatchedInstance(self.store, self.manager, self.runner.stop, lock_retry_interval=0.1)
        self.runner.instances = [self.activity_instance, self.instance]

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.runner.run())

    async def stop(self) -> None:
        self.runner.stop.set()
        if self.task is not None:
            await self.task

    def known(self, document_id: str) -> bool:
        """The manager has folded the document's activation, and with it made every decision it calls for."""
        state = self.manager.state
        return state is not None and document_id in state.documents

    def active(self, document_id: str) -> bool:
        """The activity decider has committed the document's activation."""
        state = self.activity.state
        return state is not None and (status := state.documents.get(document_id)) is not None and status.active

    def has_agent(self, document_id: str) -> bool:
        state = self.manager.state
        return state is not None and (wants := state.documents.get(document_id)) is not None and bool(wants.agent_id)


async def caught_up(store: EventStore, names: Sequence[str]) -> None:
    while True:
        head = await store.head()
        checkpoints = [await recorder.select_checkpoint(store.pool, name) for name in names]
        if all(checkpoint == head for checkpoint in checkpoints):
            await asyncio.sleep(0.3)  # and nothing more was decided meanwhile
            if await store.head() == head:
                return
        await asyncio.sleep(0.05)


async def prefill(store: EventStore, documents: int) -> None:
    await store.append(manager_stream(MANAGER), [manager_started()], ANY)
    for start in range(0, documents, PREFILL_CHUNK):
        chunk = range(start, min(start + PREFILL_CHUNK, documents))
        await store.append_batch([StreamAppend(document_stream(f"d{i}"), (joined(f"d{i}"),)) for i in chunk])


async def with_agentlog(url: str, documents: int, samples: int, burst: int) -> Measured:
    measured = Measured()
    async with EventStore.open(url, pool_size=4) as store:
        await prefill(store, documents)
        deciders = Deciders(store)
        started = time.perf_counter()
        deciders.start()
        await caught_up(store, [deciders.activity.name, deciders.manager.name])
        measured.catch_up_s = time.perf_counter() - started
        supervisor = HandlerRunner(store, [InstantSupervisor()], lock_retry_interval=0.1)
        supervising = asyncio.get_running_loop().create_task(supervisor.run())
        try:
            await caught_up(store, [deciders.activity.name, deciders.manager.name, InstantSupervisor.name])
            for index in range(samples):
                document_id = f"n{index}"
                deciders.activity_instance.watch("activated", partial(deciders.active, document_id))
                deciders.instance.watch("decided", partial(deciders.known, document_id))
                deciders.instance.watch("spawned", partial(deciders.has_agent, document_id))
                appending = time.perf_counter()
                await store.append(document_stream(document_id), [joined(document_id)], ANY)
                started = time.perf_counter()  # the join is recorded: from here on it is the deciders'
                activated = await deciders.activity_instance.until("activated")
                decided = await deciders.instance.until("decided")
                spawned = await deciders.instance.until("spawned")
                measured.recording_ms.append((started - appending) * 1000)
                measured.activated_ms.append((activated - started) * 1000)
                measured.decided_ms.append((decided - started) * 1000)
                measured.spawned_ms.append((spawned - started) * 1000)
                await asyncio.sleep(SAMPLE_SPACING_S)
            await caught_up(store, [deciders.activity.name, deciders.manager.name, InstantSupervisor.name])
            names = [f"b{index}" for index in range(burst)]
            await store.append_batch([StreamAppend(document_stream(name), (joined(name),)) for name in names])
            recorded = time.perf_counter()  # from here on the joins are the deciders' to decide
            deciders.instance.watch("burst", lambda: all(deciders.known(name) for name in reversed(names)))
            done = await deciders.instance.until("burst")
            measured.burst_s = done - recorded
            await caught_up(store, [deciders.activity.name, deciders.manager.name, InstantSupervisor.name])
            await deciders.stop()
            measured.restart_s = await restart(store)
            measured.rows = await store.pool.fetchval("SELECT count(*) FROM agentlog.decider_rows")
        finally:
            supervisor.stop.set()
            await supervising
            await deciders.stop()
    return measured


async def restart(store: EventStore) -> float:
    """New handlers (a restarted process): time from a join to its decision, loading the saved rows on the way."""
    deciders = Deciders(store)
    deciders.start()
    try:
        deciders.instance.watch("restarted", lambda: deciders.known("after-restart"))
        started = time.perf_counter()
        await store.append(document_stream("after-restart"), [joined("after-restart")], ANY)
        return await deciders.instance.until("restarted") - started
    finally:
        await deciders.stop()


# -- the run --------------------------------------------------------------------------------------------------


def server_description(url: str) -> str:
    with psycopg.connect(url) as connection:
        shown = [(connection.execute(f"SHOW {name}").fetchone() or ("?",))[0] for name in ("server_version", "fsync")]
    return f"PostgreSQL {shown[0]}, fsync={shown[1]}"


def sizes(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def table(rows: Iterator[tuple[str, ...]]) -> None:
    header = (
        "documents known",
        "join -> activated: raw / agentlog (p50, p99 ms)",
        "join -> decided: raw / agentlog (p50, p99 ms)",
        "join -> spawned: raw / agentlog (p50, p99 ms)",
        "1,000 joins decided: raw / agentlog",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def run(url: str, documents: list[int], samples: int, burst: int) -> None:
    results: list[tuple[int, Measured, Measured]] = []
    for count in documents:
        raw = pure(count, samples, burst)
        ours = asyncio.run(with_agentlog(fresh_database(url, DATABASE), count, samples, burst))
        results.append((count, raw, ours))
        print(
            f"  {count:>7,} documents: decided p50/p99/max raw {describe(raw.decided_ms)}, agentlog "
            f"{describe(ours.decided_ms)} ms; appending the join itself p50 {quantile(ours.recording_ms, 0.5):.2f} "
            f"ms; catch-up {ours.catch_up_s:.1f} s (raw {raw.catch_up_s:.1f} s); restart -> first decision "
            f"{ours.restart_s * 1000:.0f} ms; {ours.rows:,} saved rows",
            flush=True,
        )

    def pair(raw: Sequence[float], ours: Sequence[float]) -> str:
        return (
            f"{quantile(raw, 0.5):.2f}, {quantile(raw, 0.99):.2f} / "
            f"{quantile(ours, 0.5):.2f}, {quantile(ours, 0.99):.2f}"
        )

    print()
    table(
        (
            f"{count:,}",
            pair(raw.activated_ms, ours.activated_ms),
            pair(raw.decided_ms, ours.decided_ms),
            pair(raw.spawned_ms, ours.spawned_ms),
            f"{raw.burst_s * 1000:.0f} ms / {ours.burst_s * 1000:.0f} ms",
        )
        for count, raw, ours in results
    )


def quantile(samples: Sequence[float], q: float) -> float:
    return Measured.quantile(samples, q)


def describe(samples: Sequence[float]) -> str:
    return f"{quantile(samples, 0.5):.2f}/{quantile(samples, 0.99):.2f}/{max(samples):.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=sizes, default=[1_000, 10_000, 100_000], help="documents known (ascending)")
    parser.add_argument("--samples", type=int, default=300, help="joins timed one by one per size (default 300)")
    parser.add_argument("--burst", type=int, default=1_000, help="joins at once (default 1,000)")
    parser.add_argument("--home", type=Path, default=Path("/tmp/agentlog-bench-home"))
    parser.add_argument("--database-url", default=os.environ.get("AGENTLOG_DATABASE_URL"))
    arguments = parser.parse_args(argv)
    configure_logging(os.environ.get("BENCH_LOG_LEVEL", "warning"))
    with server_url(arguments.database_url, arguments.home) as url:
        print(
            f"machine: {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python "
            f"{platform.python_version()}; {server_description(url)}; {MAX_AGENTS} agent slots; "
            f"{arguments.samples} timed joins and {arguments.burst:,} at once per size",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            run(url, arguments.sizes, arguments.samples, arguments.burst)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
