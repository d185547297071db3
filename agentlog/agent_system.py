"""Documents and agents in one `agentlog up` process: the document server, this manager's supervisor, the two
deciders and the timer service, wired around the handler runner.

Start order: the document server listens (its URL goes into `ManagerStarted`), the supervisor takes the manager's
lock and records the start, then the runner hosts the deciders and the supervisor's handler. Stop order, on
Ctrl-C/SIGTERM: the supervisor records the stop and detaches every agent, the document server closes, then the
handlers finish their batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence
from typing import Any

import structlog
from starlette.routing import Mount
from starlette.types import ASGIApp

from agentlog.config import Settings
from agentlog.documents.room import RoomLimits
from agentlog.documents.rooms import DocumentRooms
from agentlog.documents.server import (
    DocumentServer,
    EditActivity,
    Presence,
    ServerLimits,
    listening_socket,
    reachable_url,
    serve_documents,
)
from agentlog.documents.tokens import issue, signing_key
from agentlog.documents.updates import CHANNEL, UpdateFollower, UpdateWriter
from agentlog.domains.agents.events import AgentSpawnRequested
from agentlog.eventstore import EventStore
from agentlog.eventstore.postgres.notifications import Notifier
from agentlog.handlers import Handler
from agentlog.handlers.activity.status_keeper import StatusKeeper
from agentlog.handlers.agents.manager import AgentManager
from agentlog.handlers.agents.supervisor import Supervisor, SupervisorSettings
from agentlog.handlers.budgets.keeper import BudgetKeeper
from agentlog.handlers.coordination.expiry import CoordinationExpiry
from agentlog.handlers.coordination.operations import OperationExpiry
from agentlog.handlers.decider import Decider, DecisionHandler, record_settings
from agentlog.handlers.documents.activity import DocumentActivity
from agentlog.handlers.programs.keeper import ProgramKeeper
from agentlog.handlers.programs.runner import ProgramRunner, RunnerSettings
from agentlog.handlers.schedules.scheduler import Scheduler
from agentlog.handlers.tasks.dispatcher import Dispatcher
from agentlog.handlers.timers import TimerService
from agentlog.planning.hosting import planner_runtime
from agentlog.planning.runtime import PlannerRuntime

log = structlog.get_logger("agentlog.agents")


def log_deciders(settings: Settings) -> list[Decider[Any]]:
    """The deciders the API needs whether or not this process runs agents: the expiry of locks, claims, liveness
    and operations, the task dispatcher, the scheduler, the budget keeper, the status keeper and the program
    keeper."""
    return [
        CoordinationExpiry(),
        OperationExpiry(),
        Dispatcher(max_concurrent_tasks=settings.max_concurrent_tasks, per_agent_limit=settings.tasks_per_agent),
        Scheduler(),
        BudgetKeeper(),
        StatusKeeper(
            idle_after_s=settings.status_idle_after_s, offline_after_s=settings.status_offline_after_s,
            check_every_s=settings.status_check_every_s,
        ),
        ProgramKeeper(),
    ]


def deciders(settings: Settings) -> list[Decider[Any]]:
    """The deciders as configured (`agentlog replay --verify` refolds these)."""
    return [
        DocumentActivity(idle_grace_s=settings.idle_grace_s),
        AgentManager(
            max_restarts=settings.max_restarts,
            restart_backoff_s=settings.restart_backoff_s,
            start_deadline_s=settings.agent_start_deadline_s,
            stop_deadline_s=settings.agent_stop_deadline_s,
            proven_run_s=settings.proven_run_s,
        ),
        *log_deciders(settings),
    ]


class AgentSystem:
    def __init__(self, settings: Settings, *, api: ASGIApp | None = None) -> None:
        self.settings = settings
        self.api = api
        """The HTTP API, served on the document server's port after its routes (`agentlog up` hosting both)."""
        self.documents: DocumentServer | None = None
        self.supervisor: Supervisor | None = None
        self.programs: ProgramRunner | None = None
        self.planner: PlannerRuntime | None = None
        self.document_url = ""
        self._stop_documents = asyncio.Event()
        self._stop_timers = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, store: EventStore) -> list[Handler]:
        """Start serving documents and supervising workers; return the handlers the runner must host.

        The socket is bound first (a taken port fails here, before anything is recorded), then the manager's start
        is recorded, and only then are sockets accepted: every join is recorded after its server's
        `ManagerStarted`, which would otherwise discard it as a connection of the server's previous life.
        """
        settings = self.settings
        server_id = settings.manager_id
        key = await signing_key(store.pool)
        sock = listening_socket(settings.host, settings.port)
        room_limits = RoomLimits(
            messages_per_s=settings.document_messages_per_s,
            burst=settings.document_burst,
            pending_updates=settings.document_max_pending_updates,
            outbox_bytes=settings.document_outbox_bytes,
            awareness_ids=settings.document_max_awareness_ids,
        )
        writer = UpdateWriter(
            store.pool, server_id, Notifier(store.url, settings.notify_interval_s, server_id, channel=CHANNEL)
        )
        edits = EditActivity(store, server_id, settings.edit_activity_s)
        rooms = DocumentRooms(
            store.pool, writer, server_id, room_limits, unload_after_s=settings.idle_grace_s + 10,
            max_rooms=settings.document_max_rooms, on_person_edit=edits.edited,
        )  # fmt: skip
        follower = UpdateFollower(store.pool, store.url, server_id, poll_interval=settings.poll_interval_s)
        self.documents = DocumentServer(
            store, server_id, key, rooms, Presence(store, server_id), room_limits=room_limits,
            limits=ServerLimits(settings.document_max_sockets_per_person, settings.edit_activity_s),
        )  # fmt: skip
        self.documents.url = reachable_url(sock, settings.host)
        if self.api is not None:
            self.documents.mounted.append(Mount("/", app=self.api))
        self.supervisor = Supervisor(
            store,
            SupervisorSettings(
                manager_id=settings.manager_id,
                max_agents=settings.max_agents,
                document_url=self.documents.url,
                ping_s=settings.ping_s,
                stats_log_s=settings.stats_log_s,
                warm_worker=settings.warm_worker,
            ),
            command=self._worker_command,
            standby_command=self._standby_command,
            token=lambda spawn: issue(
                key, "agent", spawn.agent_id, ttl_s=settings.agent_token_ttl_s, document_id=spawn.document_id
            ),
            token_renewal_s=settings.agent_token_ttl_s / 3,
            on_new_incarnation=self.documents.presence.rejoin_all,
        )
        try:
            await self.supervisor.start()
        except BaseException:
            sock.close()
            raise
        listening = asyncio.Event()
        loop = asyncio.get_running_loop()
        serving = loop.create_task(
            serve_documents(
                self.documents,
                sock,
                self._stop_documents,
                listening,
                writer=writer,
                follower=follower,
                max_message_bytes=settings.document_max_message_bytes,
            )
        )
        waiting = loop.create_task(listening.wait())
        await asyncio.wait([serving, waiting], return_when=asyncio.FIRST_COMPLETED)
        if serving.done():
            waiting.cancel()
            await serving  # raises why it could not serve
        self._tasks.append(serving)
        timers = TimerService(store, self._stop_timers)
        self._tasks.append(loop.create_task(timers.run()))
        hosted = deciders(settings)
        for decider in hosted:  # only once this process surely runs, before it decides anything: from here on
            await record_settings(store, decider)  # these settings hold, in every process and every replay
        self.programs = ProgramRunner(
            store,
            RunnerSettings(
                api_url=self.documents.url.replace("ws://", "http://", 1).removesuffix("/doc"),
                log_dir=settings.home.resolve() / "programs",
                handover_s=settings.program_handover_s,
                token_renewal_s=settings.agent_token_ttl_s / 3,
            ),
            token=lambda agent_id: issue(key, "agent", agent_id, ttl_s=settings.agent_token_ttl_s),
        )
        handlers: list[Handler] = [*(DecisionHandler(decider) for decider in hosted), self.supervisor.handler,
                                   self.programs]  # fmt: skip
        if self.api is not None:  # the planner acts through the API, as its agents' own tokens allow
            api_url = self.documents.url.replace("ws://", "http://", 1).removesuffix("/doc")
            self.planner = planner_runtime(store, settings, api_url, key)
            handlers.append(self.planner)
        return handlers

    @property
    def lost(self) -> asyncio.Event:
        """Set when this manager lost its database lock (`up` then stops: another manager may be taking over)."""
        assert self.supervisor is not None
        return self.supervisor.lost

    @property
    def document_url_for_agents(self) -> str:
        """An agent joins the document server of its own manager: the nearest, and every server serves every
        document (what people type on another server reaches this one through the database)."""
        assert self.documents is not None
        return self.documents.url

    def _worker_command(self, spawn: AgentSpawnRequested) -> Sequence[str]:
        return [
            *self._worker_base(),
            "--document", spawn.document_id,
            "--agent", spawn.agent_id,
            "--url", self.document_url_for_agents,
        ]  # fmt: skip

    def _standby_command(self) -> Sequence[str]:
        """A worker that gets warm and waits; the supervisor recognises it after a crash by this argument."""
        return [*self._worker_base(), f"--standby-of={self.settings.manager_id}"]

    def _worker_base(self) -> list[str]:
        settings = self.settings
        command = [
            sys.executable, "-m", "agentlog.agents.worker",
            "--layout", settings.document_layout,
            "--metrics-interval", str(settings.metrics_s),
            "--llm-provider", settings.llm_provider,
            "--cache-dir", str(settings.home.resolve() / "cache"),
            "--budgeted",  # every LLM call reserves tokens on the agent's budgets first (`agentlog budget`)
        ]  # fmt: skip
        if settings.llm_base_url:
            command += ["--llm-base-url", settings.llm_base_url]
        if settings.llm_model:
            command += ["--llm-model", settings.llm_model]
        return command

    def hurry(self) -> None:
        """Stopping already, asked again: what is still stopping is killed now."""
        if self.programs is not None:
            self.programs.hurry()

    async def shutdown(self) -> None:
        if self.documents is not None:
            self.documents.accepting = False
            self.documents.rooms.pause()
        if self.supervisor is not None:
            await self.supervisor.shutdown()
        if self.programs is not None:
            await self.programs.shutdown()
        if self.planner is not None:
            await self.planner.shutdown()
        self._stop_documents.set()
        self._stop_timers.set()
        for task in self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
