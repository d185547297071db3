"""The planner runtime: drives every planner session from its stream, one action at a time.

It is a handler (`planner`): the handler lock gives one active runtime per database, a standby takes over when it
goes, and the log wakes it (a `UserMessagePosted`, a `PlanCancelRequested`). For each session with an unfinished
turn a driver folds the stream, asks the session's rule what to do next (`domains.planning.session.next_action`),
does that one thing, records what came of it and asks again. Everything it records has an id derived from what it
is (session, turn, thread, call), so an action done twice by two runtimes (a takeover mid-action) is recorded once.

Its effects go through the API, as any agent's would: the planner's tool calls with the planner's token, an
executor's with the executor's read-only token (the server refuses its writes, and records the refusal), each
with an Idempotency-Key derived from the call, so a call made again after a crash writes nothing twice. Budgets are
reserved for each model call on the calling agent's budgets before it is made, and settled after.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError

from agentlog.api.guard import SESSION_HEADER, STEP_HEADER, TOOL_HEADER
from agentlog.client import AgentlogClient, ApiError
from agentlog.domains.budgets.ledger import BudgetError
from agentlog.domains.planning.events import (
    FINAL_THREAD,
    ModelAnswered,
    PlanCreated,
    PlanFinished,
    StepCompleted,
    StepFailed,
    StepStarted,
    ToolAnswered,
    ToolCallRecord,
    TurnAnalysed,
    TurnFinished,
    session_stream,
)
from agentlog.domains.planning.session import (
    Action,
    Analyse,
    CallModel,
    CallTool,
    CompleteStep,
    FailStep,
    FinishPlan,
    FinishTurn,
    Session,
    StartStep,
    Turn,
    next_action,
)
from agentlog.eventstore import START, Event, EventStore, InvalidEventError, NewEvent
from agentlog.eventstore.errors import EventTooLargeError
from agentlog.eventstore.folds import Planned, append_decided
from agentlog.eventstore.postgres import recorder
from agentlog.eventstore.postgres.queries import load_queries
from agentlog.handlers.budgets.reservations import Reservations
from agentlog.handlers.handler import HandlerBatch
from agentlog.llm.chat import ChatMessage, ChatProvider, ChatRequest, ChatResponse, Profile, collect, estimate_tokens
from agentlog.llm.port import LLMProviderError
from agentlog.planning.contents import Contents
from agentlog.planning.prompts import (
    ANALYSIS_THREAD,
    analysis_prompt,
    history,
    read_analysis,
    result_text,
    thread_messages,
    tool_specs,
)
from agentlog.planning.step_tasks import StepTaskError, StepTasks, executor_capability
from agentlog.tools.catalogue import CATALOGUE, READ_ONLY_TOOLS, TOOLS

log = structlog.get_logger("agentlog.planning")

NAME = "planner"
PROJECTION = "planning"
"""The projection whose turns tell a runtime taking over which sessions to resume."""
QUERIES = load_queries(Path(__file__).with_suffix(".sql"))
PLANNER_ID_PREFIX = "planner-"
EXECUTOR_ID_PREFIX = "exec-"
GIVE_UP_AFTER = 6
"""Failures in a row of one session's actions after which its turn ends with the error (about 15 s of pauses)."""
MODEL_TIMEOUT_S = 300.0
"""The longest a model call may take, stream and all."""
_NAMESPACE = uuid.UUID("3f0c0f4e-5a5e-4d55-9a57-8f6f1c3c2b11")
Token = Callable[[str, bool], str]
"""(agent id, read only) → a token for it."""


def _short(text: str, keep: int) -> str:
    return text if len(text) <= keep else hashlib.sha256(text.encode()).hexdigest()[:keep]


def planner_of(session_id: str) -> str:
    return PLANNER_ID_PREFIX + _short(session_id, 56)


def executor_of(plan_id: str, step_id: str) -> str:
    return f"{EXECUTOR_ID_PREFIX}{_short(plan_id, 24)}-{step_id}"


def event_id(*parts: object) -> uuid.UUID:
    """The id of what the runtime records for this (session, turn, thread, ...): the same whoever records it."""
    return uuid.uuid5(_NAMESPACE, "/".join(str(part) for part in parts))


def _call_id(call_index: int, number: int, given: str) -> str:
    """The id a tool call is recorded under: unique in its thread whatever the provider sent (none, or the same
    `call_0` in every answer), the provider's own kept after it."""
    return f"c{call_index}.{number}-{given}"[:100]


def _failure(error: BaseException, timeout_s: float) -> str:
    if isinstance(error, LLMProviderError):
        return str(error)
    if isinstance(error, TimeoutError):
        return f"the model call took more than {timeout_s:g} s"
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"the model's answer cannot be recorded: {where}: {first['msg']}"
    return f"the model call failed: {type(error).__name__}: {error}"[:2_000]


class _ToolError(Exception):
    """A tool call that cannot be made as asked (no such tool, invalid arguments): the model is told why."""


@dataclass(frozen=True, slots=True)
class Spent:
    """What a model call used, on the reservation it was made under: settled with the call's answer."""

    agent_id: str
    reservation_id: str
    tokens: int


@dataclass(frozen=True)
class RuntimeSettings:
    api_url: str
    profiles: Mapping[str, Profile]
    """`balanced` (the planner) and `speed` (executors)."""
    max_sessions: int = 8
    """Sessions driven at once; more wait their turn."""
    reservation_ttl_s: float = 600.0
    token_renewal_s: float = 300.0
    model_timeout_s: float = MODEL_TIMEOUT_S
    """Tokens (of a lifetime of three times this) are issued again this often."""


class PlannerRuntime:
    name = NAME
    event_types: frozenset[str] | None = frozenset({"UserMessagePosted", "PlanCancelRequested"})

    def __init__(self, store: EventStore, settings: RuntimeSettings, provider: ChatProvider, token: Token,
                 admin_token: Callable[[], str]) -> None:  # fmt: skip
        self.store = store
        self.settings = settings
        self.provider = provider
        self.contents = Contents(store.pool)
        self._token = token
        self._admin_token = admin_token
        self._clients: dict[tuple[str, bool], tuple[AgentlogClient, float]] = {}
        self._drivers: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._slots = asyncio.Semaphore(settings.max_sessions)
        self._active = False
        self._folds: dict[str, tuple[Session, int]] = {}
        self._registered: set[str] = set()
        self._http: AgentlogClient | None = None
        self.reservations = Reservations(store)

    # -- the handler's side ------------------------------------------------------------------------------------

    async def handle(self, batch: HandlerBatch) -> None:
        for typed in batch.events:
            self.wake(str(getattr(typed.event, "session_id", "")))

    async def session_started(self) -> None:
        """Become the active runtime: resume every session with a turn not finished — those the planning
        projection shows running, and those with events it has not applied yet (read from the log after its
        checkpoint, not the whole log: a takeover costs what is new, not every session ever)."""
        self._active = True
        self._folds.clear()
        self._registered.clear()
        checkpoint = await recorder.select_checkpoint(self.store.pool, PROJECTION)
        sessions: set[str] = set()
        if checkpoint is not None:
            sessions.update(row["session_id"] for row in await self.store.pool.fetch(QUERIES["running_turns"]))
        after = checkpoint or START
        while True:
            page = await self.store.read_category("session", after=after, limit=1000)
            sessions.update(str(recorded.data.get("session_id", "")) for recorded in page)
            if len(page) < 1000:
                break
            after = page[-1].position
        for session_id in sessions:
            self.wake(session_id)

    def session_ended(self) -> None:
        self._active = False
        for driver in self._drivers.values():
            driver.cancel()

    def wake(self, session_id: str) -> None:
        if not session_id or not self._active:
            return
        driver = self._drivers.get(session_id)
        if driver is not None and not driver.done():
            self._again.add(session_id)
            return
        driver = asyncio.get_running_loop().create_task(self._drive(session_id))
        self._drivers[session_id] = driver
        driver.add_done_callback(lambda done: self._drivers.pop(session_id, None) if
                                 self._drivers.get(session_id) is done else None)  # fmt: skip

    async def shutdown(self) -> None:
        self.session_ended()
        for driver in list(self._drivers.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await driver
        self._clients.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None
        await self.provider.aclose()

    # -- a session's driver ------------------------------------------------------------------------------------

    async def _drive(self, session_id: str) -> None:
        """Act on the session until it has nothing to do, one action per turn of a slot (a session waiting out a
        failure holds none: it cannot keep others waiting). A failure (the API or the database away) is retried
        after a doubling pause: what was recorded stays, and the action is decided again from the log; one that
        fails `GIVE_UP_AFTER` times in a row ends its turn with the error, recorded, when the log takes it."""
        pause, failures, why = 0.5, 0, ""
        while True:
            self._again.discard(session_id)
            try:
                async with self._slots:
                    session = await self._fold(session_id)
                    action = next_action(session)
                    if action is None:
                        if session_id not in self._again:
                            self._folds.pop(session_id, None)
                            return
                        continue
                    if failures >= GIVE_UP_AFTER:
                        await self._give_up(session, action.turn, f"gave up after {failures} failures: {why}")
                    else:
                        await self._perform(session, action)
                pause, failures = 0.5, 0
            except Exception as error:
                self._folds.pop(session_id, None)  # folded again from the log: it is the truth
                failures += 1
                why = f"{type(error).__name__}: {error}"[:500]
                log.exception("planning.action_failed", session_id=session_id, failures=failures, retry_in_s=pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 30.0)

    async def _give_up(self, session: Session, turn: Turn, error: str) -> None:
        """The turn ends in error (its thread cannot go on, or its actions kept failing)."""
        end = TurnFinished(session_id=session.session_id, turn_id=turn.turn_id, status="error", error=error[:2_000])
        await self._record(session, [(event_id(session.session_id, turn.turn_id, "finished"), end)])

    async def _fold(self, session_id: str) -> Session:
        """The session as its stream folds now: the fold kept from the last action, and what was recorded since."""
        stream = session_stream(session_id)
        session, version = self._folds.get(session_id) or (Session(session_id), 0)
        while True:
            page = await self.store.read_stream(stream, from_version=version + 1, limit=1000)
            for recorded in page:
                session.evolve(self.store.decode(recorded))
                version = recorded.stream_version
            if len(page) < 1000:
                break
        self._folds[session_id] = (session, version)
        return session

    async def _record(self, session: Session, events: Sequence[tuple[uuid.UUID, Event]],
                      spent: Spent | None = None) -> None:  # fmt: skip
        """Append the runtime's events (ids derived from what they are), with the settlement of the model call
        they answer in the same transaction when there is one."""
        ids = {id(event): eid for eid, event in events}
        stream = session_stream(session.session_id)

        async def plan() -> list[Planned]:
            planned: list[Planned] = []
            if spent is not None:
                planned, _ = await self.reservations.closing(spent.agent_id, spent.reservation_id, spent.tokens,
                                                             datetime.now(UTC))  # fmt: skip
            return [*planned, (stream, None, [event for _, event in events])]

        def new_event(event: Event) -> NewEvent:
            found = ids.get(id(event))
            return NewEvent(event) if found is None else NewEvent(event, event_id=found)

        await append_decided(self.store, plan, new_event)

    async def _perform(self, session: Session, action: Action) -> None:
        sid = session.session_id
        turn = action.turn
        if isinstance(action, Analyse):
            await self._analyse(session, turn)
        elif isinstance(action, CallModel):
            await self._call_model(session, action)
        elif isinstance(action, CallTool):
            await self._call_tool(session, action)
        elif isinstance(action, StartStep):
            step = action.step
            agent = executor_of(action.plan.plan_id, step.spec.step_id) if step.spec.executor else planner_of(sid)
            if step.spec.executor:
                await self._register(agent, step.spec.title, {"role": "executor", "session_id": sid,
                                                              "plan_id": action.plan.plan_id,
                                                              "step_id": step.spec.step_id},
                                     capabilities=[executor_capability(agent)])  # fmt: skip
                try:
                    await self._step_tasks().begin(agent, sid, action.plan.plan_id, step.spec.step_id, step.spec.title)
                except StepTaskError as unassigned:
                    await self._fail_step(session, action.plan.plan_id, step.spec.step_id, agent, str(unassigned))
                    return
            started = StepStarted(session_id=sid, plan_id=action.plan.plan_id, step_id=step.spec.step_id,
                                  agent_id=agent, executor=step.spec.executor)  # fmt: skip
            await self._record(session, [(event_id(sid, action.plan.plan_id, step.spec.step_id, "started"), started)])
        elif isinstance(action, CompleteStep):
            content, ref = action.answer.content, action.answer.content_ref
            done = StepCompleted(session_id=sid, plan_id=action.plan.plan_id, step_id=action.step.spec.step_id,
                                 content=content, content_ref=ref)  # fmt: skip
            if action.step.spec.executor and action.step.agent_id:
                resolve = await self._resolver(session)
                await self._step_tasks().end(action.step.agent_id, action.plan.plan_id, action.step.spec.step_id,
                                             result=resolve(content, ref))  # fmt: skip
            await self._record(session, [(event_id(sid, action.plan.plan_id, action.step.spec.step_id, "end"), done)])
            await self._retire(action.step.agent_id, action.step.spec.executor, "step completed")
        elif isinstance(action, FailStep):
            executor = action.step.agent_id if action.step.spec.executor else None
            await self._fail_step(session, action.plan.plan_id, action.step.spec.step_id, executor, action.error)
        elif isinstance(action, FinishPlan):
            finished = PlanFinished(session_id=sid, plan_id=action.plan.plan_id, status=action.status,
                                    reason=action.reason[:2_000])  # fmt: skip
            await self._record(session, [(event_id(sid, action.plan.plan_id, "finished"), finished)])
        elif isinstance(action, FinishTurn):
            content, ref = ("", None) if action.answer is None else (action.answer.content, action.answer.content_ref)
            end = TurnFinished(session_id=sid, turn_id=turn.turn_id, status=action.status, content=content,
                               content_ref=ref, error=action.error[:2_000])  # fmt: skip
            await self._record(session, [(event_id(sid, turn.turn_id, "finished"), end)])
            if not session.open_turns()[1:]:  # its last open turn: the planner leaves the registry till the next
                await self._retire(planner_of(sid), True, f"turn {turn.turn_id} finished")

    # -- model calls -------------------------------------------------------------------------------------------

    async def _analyse(self, session: Session, turn: Turn) -> None:
        sid = session.session_id
        planner = planner_of(sid)
        await self._register(planner, "planning", {"role": "planner", "session_id": sid})
        resolve = await self._resolver(session)
        messages = [ChatMessage("system", analysis_prompt(TOOLS)), *history(session, turn, resolve)]
        answered = await self._ask(session, turn, ANALYSIS_THREAD, planner, "planner", messages, tools=False)
        if answered is None:
            return
        model_event, response, spent = answered
        strategy, analysis, steps = read_analysis(response.message.content)
        records: list[tuple[uuid.UUID, Event]] = [(event_id(sid, turn.turn_id, ANALYSIS_THREAD, 0), model_event)]
        records.append((event_id(sid, turn.turn_id, "analysed"),
                        TurnAnalysed(session_id=sid, turn_id=turn.turn_id, planner_id=planner, strategy=strategy,
                                     analysis=analysis)))  # fmt: skip
        if steps:
            plan_id = f"plan-{_short(turn.turn_id, 40)}"
            records.append((event_id(sid, turn.turn_id, "plan"),
                            PlanCreated(session_id=sid, turn_id=turn.turn_id, plan_id=plan_id, planner_id=planner,
                                        steps=steps)))  # fmt: skip
        await self._record_answer(session, turn, ANALYSIS_THREAD, records, spent)

    async def _call_model(self, session: Session, action: CallModel) -> None:
        sid, turn, step = session.session_id, action.turn, action.step
        executor = step is not None and step.spec.executor
        agent = step.agent_id if step is not None and step.agent_id else planner_of(sid)
        resolve = await self._resolver(session)
        messages = thread_messages(session, turn, step, action.thread_id, resolve)
        in_step = action.thread_id not in (None, FINAL_THREAD)
        tools = in_step or (action.thread_id is None and turn.analysed is not None and turn.analysed.strategy == "tool")
        answered = await self._ask(session, turn, action.thread_id, agent, "executor" if executor else "planner",
                                   messages, tools=tools, call_index=action.call_index)  # fmt: skip
        if answered is not None:
            key = event_id(sid, turn.turn_id, action.thread_id or "", action.call_index)
            await self._record_answer(session, turn, action.thread_id, [(key, answered[0])], answered[2])

    async def _ask(self, session: Session, turn: Turn, thread_id: str | None, agent: str, role: str,
                   messages: list[ChatMessage], *, tools: bool, call_index: int = 0,
                   ) -> tuple[ModelAnswered, ChatResponse, Spent | None] | None:  # fmt: skip
        """One model call, budgeted: reserved on the agent's budgets first, then made; its answer as an event and
        what it spent, both for the caller to record in one append (`_record`): the answer is in the log exactly
        when its cost is. A refusal (budget, provider) ends the thread instead, recorded, and gives None."""
        executor = role == "executor"
        profile = self.settings.profiles["speed" if executor else "balanced"]
        offered = READ_ONLY_TOOLS if executor else TOOLS
        request = ChatRequest(tuple(messages), profile, tool_specs(offered) if tools else ())
        reservation_id = f"rsv-{uuid.uuid4().hex[:16]}"
        try:
            held, _ = await self.reservations.reserve(
                agent, reservation_id, estimate_tokens(request), datetime.now(UTC),
                ttl_s=self.settings.reservation_ttl_s, purpose=f"planner session {session.session_id}",
            )  # fmt: skip
        except BudgetError as refused:
            await self._end_thread(session, turn, thread_id, f"the token budget refused the call: {refused}")
            return None
        try:
            async with asyncio.timeout(self.settings.model_timeout_s):
                response = await collect(self.provider, request)
            content, ref = await self.contents.inline_or_ref(response.message.content)
            (prompt_ref,) = await self.contents.put([json.dumps([m.to_wire() for m in messages],
                                                                ensure_ascii=False)])  # fmt: skip
            calls = [ToolCallRecord(call_id=_call_id(call_index, number, c.call_id), tool=c.name,
                                    arguments=dict(c.arguments))
                     for number, c in enumerate(response.message.tool_calls)]  # fmt: skip
            event = ModelAnswered(
                session_id=session.session_id, turn_id=turn.turn_id, step_id=thread_id, agent_id=agent,
                role="executor" if executor else "planner", call_index=call_index, tool_calls=calls,
                content=content, content_ref=ref, provider=response.provider, model=response.model,
                prompt_tokens=response.usage.prompt_tokens, completion_tokens=response.usage.completion_tokens,
                duration_ms=response.duration_ms, message_count=len(messages), prompt_ref=prompt_ref,
            )  # fmt: skip
        except asyncio.CancelledError:
            if held:
                await asyncio.shield(self._release(agent, reservation_id, "the runtime stopped during the call"))
            raise
        except Exception as failed:
            # Any failure of the model's side (a provider's error, an answer the log cannot take: a tool name it
            # refuses, too many calls, text it cannot keep) ends the thread with why: asked again, the model
            # would be paid again for the same answer.
            if held:
                await self._release(agent, reservation_id, "the model call failed")
            await self._end_thread(session, turn, thread_id, _failure(failed, self.settings.model_timeout_s))
            return None
        spent = Spent(agent, reservation_id, response.usage.total_tokens) if held else None
        return event, response, spent

    async def _release(self, agent: str, reservation_id: str, reason: str) -> None:
        with contextlib.suppress(BudgetError):  # expired meanwhile: nothing to give back
            await self.reservations.close(agent, reservation_id, None, datetime.now(UTC), reason=reason)

    async def _record_answer(self, session: Session, turn: Turn, thread_id: str | None,
                             records: list[tuple[uuid.UUID, Event]], spent: Spent | None) -> None:  # fmt: skip
        """Record a model's answer with its settlement; an answer the log refuses (text it cannot keep: a NUL,
        a lone surrogate; too large) ends the thread instead, and its reservation is given back."""
        try:
            await self._record(session, records, spent)
        except (InvalidEventError, EventTooLargeError) as refused:
            if spent is not None:
                await self._release(spent.agent_id, spent.reservation_id, "the answer could not be recorded")
            await self._end_thread(session, turn, thread_id, f"the model's answer cannot be recorded: {refused}")

    async def _end_thread(self, session: Session, turn: Turn, thread_id: str | None, error: str) -> None:
        """A thread that cannot go on: its step fails (a step's thread), or its turn ends in error."""
        plan = turn.plan
        if plan is not None and thread_id is not None and thread_id in plan.steps:
            step = plan.steps[thread_id]
            await self._fail_step(session, plan.plan_id, thread_id, step.agent_id if step.spec.executor else None,
                                  error)  # fmt: skip
            return
        await self._give_up(session, turn, error)

    async def _fail_step(self, session: Session, plan_id: str, step_id: str, executor: str | None,
                         error: str) -> None:  # fmt: skip
        """A step fails, however it came to: its task fails too and its executor leaves, then it is recorded."""
        if executor is not None:
            await self._step_tasks().end(executor, plan_id, step_id, error=error)
        failed = StepFailed(session_id=session.session_id, plan_id=plan_id, step_id=step_id, error=error[:2_000])
        await self._record(session, [(event_id(session.session_id, plan_id, step_id, "end"), failed)])
        await self._retire(executor, True, "step failed")

    # -- tool calls --------------------------------------------------------------------------------------------

    async def _call_tool(self, session: Session, action: CallTool) -> None:
        sid, turn, call = session.session_id, action.turn, action.call
        read_only = action.step is not None and action.step.spec.executor
        client = self._client(action.agent_id, read_only=read_only)
        key = hashlib.sha256(f"{sid}/{turn.turn_id}/{action.thread_id}/{call.call_id}".encode()).hexdigest()
        headers = {SESSION_HEADER: sid, TOOL_HEADER: call.tool, **({STEP_HEADER: action.thread_id}
                                                                    if action.thread_id else {})}  # fmt: skip
        began = time.perf_counter()
        ok, refused, error, result = True, False, "", ""
        tool = CATALOGUE.get(call.tool)
        try:
            if tool is None:
                raise _ToolError(f"no tool {call.tool!r}; the tools are {', '.join(CATALOGUE)}")
            try:
                arguments = tool.arguments.model_validate(dict(call.arguments))
            except ValidationError as wrong:
                first = wrong.errors()[0]
                raise _ToolError(f"invalid arguments: {'.'.join(map(str, first['loc']))}: {first['msg']}") from wrong
            # The tool's routes, with the agent's own token: the server decides what it may do (an executor's
            # token reads only: its writes are refused there, and recorded), whatever it was shown.
            result = result_text(await tool.run(client.keyed(key, headers), action.agent_id, arguments))
        except ApiError as failed:
            ok, refused = False, failed.code == "read_only_token"
            error = f"{failed.status} {failed.code}: {failed.detail}"[:2_000]
        except _ToolError as wrong:
            ok, error = False, str(wrong)[:2_000]
        content, ref = await self.contents.inline_or_ref(result)
        answered = ToolAnswered(
            session_id=sid, turn_id=turn.turn_id, step_id=action.thread_id, agent_id=action.agent_id,
            call_id=call.call_id, tool=call.tool, ok=ok, refused=refused, error=error, content=content,
            content_ref=ref, duration_ms=(time.perf_counter() - began) * 1000,
        )  # fmt: skip
        await self._record(session, [(event_id(sid, turn.turn_id, action.thread_id or "", "tool", call.call_id),
                                      answered)])  # fmt: skip

    # -- agents ------------------------------------------------------------------------------------------------

    async def _register(self, agent_id: str, working_on: str, metadata: dict[str, Any],
                        capabilities: Sequence[str] = ()) -> None:  # fmt: skip
        if agent_id in self._registered:
            return
        # Pull-only: the dispatcher never pushes the queue's tasks to a planner or an executor (an executor pulls
        # its own step's task, which asks for a capability only it has).
        role = str(metadata.get("role", ""))
        await self._client("", admin=True).register(agent_id, working_on=working_on[:500],
                                                    capabilities=[role, *capabilities],
                                                    metadata={**metadata, "task_mode": "pull"})  # fmt: skip
        self._registered.add(agent_id)

    async def _retire(self, agent_id: str | None, executor: bool, reason: str) -> None:
        if agent_id is None or not executor:
            return
        self._registered.discard(agent_id)
        with contextlib.suppress(ApiError):
            await self._client("", admin=True).deregister(agent_id, reason)

    def _step_tasks(self) -> StepTasks:
        return StepTasks(self._client("", admin=True))

    def _client(self, agent_id: str, *, read_only: bool = False, admin: bool = False) -> AgentlogClient:
        """The API client of an agent (or the runtime's admin), its token renewed every `token_renewal_s`; all of
        them share one connection pool."""
        key = ("" if admin else agent_id, read_only)
        now = time.monotonic()
        found = self._clients.get(key)
        if found is not None and now - found[1] < self.settings.token_renewal_s:
            return found[0]
        token = self._admin_token() if admin else self._token(agent_id, read_only)
        if self._http is None:
            self._http = AgentlogClient(self.settings.api_url, token)
        client = self._http.acting_as(token)
        self._clients[key] = (client, now)
        while len(self._clients) > 10_000:  # agents of sessions long done
            del self._clients[next(iter(self._clients))]
        return client

    async def _resolver(self, session: Session) -> Callable[[str, str | None], str]:
        refs = [ref for ref in _refs(session) if ref]
        texts = await self.contents.get(refs) if refs else {}
        return lambda content, ref: texts[ref] if ref else content


def _refs(session: Session) -> list[str | None]:
    refs: list[str | None] = []
    for turn in session.turns.values():
        refs.append(turn.asked.content_ref)
        if turn.finished is not None:
            refs.append(turn.finished.content_ref)
        for thread in turn.threads.values():
            refs.extend(answer.content_ref for answer in thread.answers)
            refs.extend(told.content_ref for told in thread.tool_answers.values())
        if turn.plan is not None:
            refs.extend(step.result.content_ref for step in turn.plan.steps.values() if step.result is not None)
    return refs
