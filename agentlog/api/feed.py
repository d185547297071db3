"""/api/v1/ws: the log's coordination events by topic, resumable by position: a reconnect loses nothing and
repeats nothing.

Topics: `chat`, `inbox:<agent>` (its direct messages, read receipts and the chat posts mentioning it), `locks`,
`claims`, `agents` (registry changes; heartbeats are not sent), `tasks` (every task event: people and admins
only, as payloads and results are), `tasks:<agent>` (what an agent must act on: its assignments, cancellations of
its attempts, refusals of its commands, declined claims; that agent, people and admins),
`budgets` (limits, reservations, warnings). Positions are the log's canonical order
(`transaction_id/global_position`, as `LogPosition` prints it); each event sent carries its own, and a quiet feed
sends `{"type": "position"}` now and then, so a client resuming from the last position it saw skips nothing and
gets nothing twice.

One hub follows the log for every socket (one reader, whatever the number of clients). A socket joins it first and
then reads what it missed from the log itself, from its resume position on; what the hub hands it meanwhile that it
already sent is skipped by position.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterable

import orjson
import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from agentlog.api.auth import Caller
from agentlog.api.errors import ApiError
from agentlog.api.services import Services
from agentlog.domains.coordination.names import AGENT_ID_PATTERN
from agentlog.eventstore import START, EventStore, LogPosition, RecordedEvent

log = structlog.get_logger("agentlog.api.feed")
router = APIRouter(tags=["live feed"])

TOPICS = ("chat", "locks", "claims", "agents", "tasks", "budgets")
TOPIC_LIST = "chat, locks, claims, agents, tasks, budgets, inbox:<agent>, tasks:<agent>"
LOCK_EVENTS = frozenset({"LockAcquired", "LockRenewed", "LockReleased", "LockExpired"})
CLAIM_EVENTS = frozenset({"ClaimMade", "ClaimReleased", "ClaimExpired", "ClaimHandedOff"})
MEMBER_EVENTS = frozenset({"AgentRegistered", "AgentUpdated", "AgentDeregistered", "AgentGone", "AgentStatusInferred"})
AGENT_TASK_EVENTS = frozenset({"TaskAssigned", "TaskCancelled", "TaskAttemptRefused", "TaskClaimDeclined"})
QUEUE_BATCHES = 1_000
POSITION_EVERY_S = 1.0
CLOSE_POLICY = 1008


def parse_position(text: str | None) -> LogPosition:
    if not text:
        return START
    transaction, _, position = text.partition("/")
    if not (transaction.isdigit() and position.isdigit()):
        raise ValueError("a position is transaction_id/global_position, as the feed sends it")
    return LogPosition(int(transaction), int(position))


def parse_topics(text: str, caller: Caller) -> frozenset[str]:
    topics = frozenset(part.strip() for part in text.split(",") if part.strip())
    if not topics:
        raise ValueError(f"give topics: {TOPIC_LIST}")
    for topic in topics:
        kind, _, agent_id = topic.partition(":")
        if kind in ("inbox", "tasks") and agent_id:
            if not re.match(AGENT_ID_PATTERN, agent_id):
                raise ValueError(f"topic {topic!r}: not an agent id")
            caller.reads_private(agent_id)
        elif topic not in TOPICS:
            raise ValueError(f"unknown topic {topic!r}; topics: {TOPIC_LIST}")
        elif topic == "tasks":
            caller.reads_every_task()
    return topics


def topic_of(event: RecordedEvent, topics: frozenset[str]) -> str | None:
    """The first wanted topic the event belongs to, or None."""
    stream = event.stream_id
    kind = event.event_type
    if stream == "chat" and kind == "ChatPosted":
        if "chat" in topics:
            return "chat"
        for mentioned in event.data.get("mentions", ()):
            if f"inbox:{mentioned}" in topics:
                return f"inbox:{mentioned}"
        return None
    if stream.startswith("inbox-"):
        topic = "inbox:" + stream.removeprefix("inbox-")
        return topic if topic in topics else None
    if kind in LOCK_EVENTS:
        return "locks" if "locks" in topics else None
    if kind in CLAIM_EVENTS:
        return "claims" if "claims" in topics else None
    if kind in MEMBER_EVENTS:
        return "agents" if "agents" in topics else None
    if stream.startswith(("task-", "taskclaim-")):
        agent_id = event.data.get("agent_id")
        if kind in AGENT_TASK_EVENTS and agent_id and f"tasks:{agent_id}" in topics:
            return f"tasks:{agent_id}"
        return "tasks" if "tasks" in topics else None
    if stream.startswith("budget-"):
        return "budgets" if "budgets" in topics else None
    return None


def message(event: RecordedEvent, topic: str) -> bytes:
    return orjson.dumps({
        "type": "event", "topic": topic, "position": str(event.position), "global_position": event.global_position,
        "stream_id": event.stream_id, "stream_version": event.stream_version, "event_type": event.event_type,
        "data": event.data, "recorded_at": event.recorded_at,
    })  # fmt: skip


class Follower:
    """One socket's place at the hub: the batches handed to it, and whether it fell too far behind."""

    def __init__(self) -> None:
        self.batches: asyncio.Queue[list[RecordedEvent]] = asyncio.Queue(QUEUE_BATCHES)
        self.overflowed = asyncio.Event()
        """Set when it fell behind, the hub closed, or the socket went away."""
        self.gone = False

    async def next(self) -> list[RecordedEvent] | None:
        """The next batch; None once it fell behind (or the hub closed)."""
        if self.overflowed.is_set():
            return None
        getting = asyncio.ensure_future(self.batches.get())
        stopping = asyncio.ensure_future(self.overflowed.wait())
        done, _ = await asyncio.wait([getting, stopping], return_when=asyncio.FIRST_COMPLETED)
        for task in (getting, stopping):
            if task not in done:
                task.cancel()
        return getting.result() if getting in done else None


class Hub:
    """One follower of the log, handing each batch to every socket's queue."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.followers: set[Follower] = set()
        self._task: asyncio.Task[None] | None = None
        self.position = START

    async def start(self) -> None:
        if self._task is None:
            self.position = await self.store.head()
            self._task = asyncio.create_task(self._follow())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for follower in self.followers:
            follower.overflowed.set()

    async def _follow(self) -> None:
        while True:
            try:
                async for batch in await self.store.subscribe(after=self.position):
                    self.position = batch[-1].position
                    for follower in list(self.followers):
                        try:
                            follower.batches.put_nowait(list(batch))
                        except asyncio.QueueFull:  # a socket that does not read: closed, and it may resume
                            self.followers.discard(follower)
                            follower.overflowed.set()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the store reconnects; so does the hub, from where it was
                log.warning("feed.hub_interrupted", error=str(error))
                await asyncio.sleep(0.5)

    def join(self) -> Follower:
        follower = Follower()
        self.followers.add(follower)
        return follower

    def leave(self, follower: Follower) -> None:
        self.followers.discard(follower)


async def _send_events(socket: WebSocket, events: Iterable[RecordedEvent], topics: frozenset[str],
                       sent: LogPosition) -> LogPosition:  # fmt: skip
    for event in events:
        if event.position <= sent:
            continue
        sent = event.position
        topic = topic_of(event, topics)
        if topic is not None:
            await socket.send_bytes(message(event, topic))
    return sent


@router.websocket("/ws")
async def feed(socket: WebSocket) -> None:
    services: Services = socket.app.state.services
    hub: Hub = socket.app.state.hub
    token = socket.query_params.get("token") or socket.headers.get("authorization", "").partition(" ")[2]
    await socket.accept()
    try:
        caller = await services.auth.caller_of_token(token)
        topics = parse_topics(socket.query_params.get("topics", ""), caller)
        after = parse_position(socket.query_params.get("after"))
    except ApiError as error:
        await socket.close(4401 if error.status == 401 else 4403, str(error.detail)[:120])
        return
    except ValueError as error:
        await socket.close(CLOSE_POLICY, str(error)[:120])
        return
    await hub.start()
    follower = hub.join()
    watching = asyncio.create_task(_watch(socket, follower))
    try:
        sent = after
        while True:  # what it missed, from the log itself
            page = await services.store.read_all(after=sent, limit=1_000)
            if not page:
                break
            sent = await _send_events(socket, page, topics, sent)
        await socket.send_bytes(orjson.dumps({"type": "position", "position": str(sent), "caught_up": True}))
        told = time.monotonic()
        while True:
            batch = await follower.next()
            if batch is None:
                if not follower.gone:
                    await socket.close(1013, "the feed fell behind or is stopping; resume from your last position")
                return
            before = sent
            sent = await _send_events(socket, batch, topics, sent)
            if sent != before and time.monotonic() - told > POSITION_EVERY_S:
                await socket.send_bytes(orjson.dumps({"type": "position", "position": str(sent)}))
                told = time.monotonic()
    except WebSocketDisconnect:
        return
    finally:
        hub.leave(follower)
        watching.cancel()


async def _watch(socket: WebSocket, follower: Follower) -> None:
    """Read the socket (clients send nothing that matters) to notice it went away: the feed then stops waiting."""
    with contextlib.suppress(Exception):
        while (await socket.receive())["type"] != "websocket.disconnect":
            pass
    follower.gone = True
    follower.overflowed.set()
