"""/sessions: talk to the planner. A message posted to a session is a request (a turn); the planner runtime
(`agentlog.planning.runtime`) answers it from the log, and the caller follows the turn as Server-Sent Events
(`Accept: text/event-stream`, or `?stream=true`) read from the log too — a caller that reconnects, or comes late,
sees the same transcript (`GET /sessions/{id}/turns/{turn_id}/events`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from agentlog.api.auth import Caller
from agentlog.api.errors import ApiError, forbidden, not_found
from agentlog.api.reads import QUERIES
from agentlog.api.services import Act, Reader, Svc, Who
from agentlog.domains.planning.events import (
    PlanCancelRequested,
    SessionOpened,
    UserMessagePosted,
    session_stream,
)
from agentlog.domains.planning.session import Session
from agentlog.eventstore import Event, EventStore
from agentlog.planning.contents import Contents
from agentlog.planning.transcript import turn_events

router = APIRouter(tags=["sessions"])
SessionPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="the session's id")]
MAX_MESSAGE_CHARS = 100_000
STREAM_IDLE_S = 600.0
"""A turn followed this long with nothing new ends the stream (the turn goes on; follow it again)."""


class SessionMessage(BaseModel):
    content: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    title: str = Field(default="", max_length=500, description="the session's title, when this opens it")


class Posted(BaseModel):
    session_id: str
    turn_id: str
    stream_version: int


async def _fold(store: EventStore, session_id: str) -> tuple[Session, int]:
    recorded = await store.read_stream(session_stream(session_id))
    return Session.fold(session_id, (store.decode(r) for r in recorded)), len(recorded)


def _owns(who: Caller, session: Session) -> bool:
    """The session's opener (by name and kind: agent `ana` is not person `ana`), or an admin."""
    opened = session.opened
    return who.kind == "admin" or (opened is not None and (opened.opened_by, opened.opened_by_kind) == (who.name,
                                                                                                        who.kind))


def _may_post(who: Caller, session_id: str, session: Session) -> None:
    if session.opened is not None and not _owns(who, session):
        raise forbidden(f"session {session_id} is {session.opened.opened_by_kind} {session.opened.opened_by}'s")


def _may_read(who: Caller, session: Session) -> None:
    """People and admins read every session; an agent the sessions it opened (a session is a person's
    conversation: an executor, reading for its step, has no business in another's)."""
    if who.kind == "agent" and not _owns(who, session):
        raise forbidden(f"this token is agent {who.name}'s: it reads the sessions it opened only")


@router.post("/sessions/{session_id}/messages", summary="Ask the planner; follow the turn with SSE",
             response_model=Posted, status_code=202)  # fmt: skip
async def post_message(
    session_id: SessionPath, body: SessionMessage, request: Request, services: Svc, who: Who, actor: Act,
    stream: bool = False,
) -> Any:  # fmt: skip
    if who.identity.read_only:
        raise forbidden("a read-only token cannot ask the planner")
    turn_id = actor.mint("msg-")
    stream_id = session_stream(session_id)
    content, ref = await Contents(services.store.pool).inline_or_ref(body.content)
    version = 0
    posted = False

    async def plan() -> list[tuple[str, int | None, list[Event]]]:
        # Folded and checked at the version it appends at: two first posts at once cannot both open the session.
        nonlocal version, posted
        session, version = await _fold(services.store, session_id)
        _may_post(who, session_id, session)
        if turn_id in session.turns:  # this very request ran before (its Idempotency-Key names the turn)
            posted = False
            return []
        events: list[Event] = []
        if session.opened is None:
            events.append(SessionOpened(session_id=session_id, opened_by=who.name, opened_by_kind=who.kind,
                                        title=body.title))  # fmt: skip
        events.append(UserMessagePosted(session_id=session_id, message_id=turn_id, author=who.name,
                                        author_kind=who.kind, content=content, content_ref=ref))  # fmt: skip
        posted = True
        return [(stream_id, version, events)]

    written = await services.coordinator.decide(actor, plan)
    if posted:
        services.wrote(who, written)
    posted_at = version + 1 if posted else 1  # a turn posted before is followed from the session's start
    if stream or "text/event-stream" in request.headers.get("accept", ""):
        return _sse(services.store, session_id, turn_id, posted_at)
    return Posted(session_id=session_id, turn_id=turn_id, stream_version=written.stream_version or version)


@router.get("/sessions/{session_id}/turns/{turn_id}/events", summary="Follow a turn (SSE), from its start")
async def turn_stream(session_id: SessionPath, turn_id: Annotated[str, Path(max_length=100)], services: Svc,
                      who: Reader) -> StreamingResponse:  # fmt: skip
    session, _ = await _fold(services.store, session_id)
    _may_read(who, session)
    if turn_id not in session.turns:
        raise not_found(f"session {session_id} has no turn {turn_id}")
    return _sse(services.store, session_id, turn_id, 1)


def _sse(store: EventStore, session_id: str, turn_id: str, from_version: int) -> StreamingResponse:
    return StreamingResponse(_follow(store, session_id, turn_id, from_version), media_type="text/event-stream",
                             headers={"cache-control": "no-cache", "x-accel-buffering": "no"})  # fmt: skip


async def _follow(store: EventStore, session_id: str, turn_id: str, version: int) -> AsyncIterator[bytes]:
    stream_id = session_stream(session_id)
    waiter = await store.waiter()
    plan_ids: set[str] = set()
    idle_since = asyncio.get_running_loop().time()
    try:
        while True:
            waiter.clear()
            page = await store.read_stream(stream_id, from_version=version, limit=500)
            for recorded in page:
                version = recorded.stream_version + 1
                for name, data in turn_events(store.decode(recorded), turn_id, plan_ids):
                    yield f"event: {name}\ndata: {json.dumps(data, default=str)}\n\n".encode()
                    if name in ("done", "error"):
                        return
            now = asyncio.get_running_loop().time()
            if page:
                idle_since = now
            elif now - idle_since > STREAM_IDLE_S:
                yield b": idle, the turn goes on; follow it again\n\n"
                return
            if len(page) < 500 and not await waiter.wait(1.0):
                yield b": keep-alive\n\n"
    finally:
        store.forget_waiter(waiter)


class PlanCancel(BaseModel):
    reason: str = Field(default="", max_length=500)


@router.post("/sessions/{session_id}/plans/{plan_id}/cancel", summary="Cancel a plan (its running step stops "
             "after its current call)", status_code=202)  # fmt: skip
async def cancel_plan(session_id: SessionPath, plan_id: Annotated[str, Path(max_length=100)], body: PlanCancel,
                      services: Svc, who: Who, actor: Act) -> dict[str, Any]:  # fmt: skip
    session, _ = await _fold(services.store, session_id)
    plan = session.plans.get(plan_id)
    if plan is None:
        raise not_found(f"session {session_id} has no plan {plan_id}")
    if not _owns(who, session):
        raise forbidden(f"plan {plan_id} is of {session_id}, which is not this token's: its opener or an admin "
                        "cancels it")
    if plan.finished is not None:
        raise ApiError(409, "plan_finished", f"plan {plan_id} is {plan.finished.status} already")
    cancel = PlanCancelRequested(session_id=session_id, plan_id=plan_id, requested_by=who.name, reason=body.reason)

    async def decide() -> list[tuple[str, int | None, list[Event]]]:
        return [(session_stream(session_id), None, [cancel])]

    services.wrote(who, await services.coordinator.decide(actor, decide))
    return {"session_id": session_id, "plan_id": plan_id, "cancel_requested": True}


@router.get("/sessions/{session_id}", summary="A session as its stream says now: turns, plans and steps")
async def get_session(session_id: SessionPath, services: Svc, who: Reader,
                      turns: Annotated[int, Query(ge=1, le=1000)] = 50) -> dict[str, Any]:  # fmt: skip
    session, version = await _fold(services.store, session_id)
    if session.opened is None:
        raise not_found(f"no session {session_id}")
    _may_read(who, session)
    shown = []
    for turn in list(session.turns.values())[-turns:]:
        plan = turn.plan
        shown.append({
            "turn_id": turn.turn_id, "author": turn.asked.author, "content": turn.asked.content,
            "strategy": turn.analysed.strategy if turn.analysed else None,
            "status": turn.finished.status if turn.finished else "running",
            "answer": turn.finished.content if turn.finished else None,
            "error": turn.finished.error if turn.finished else None,
            "plan": None if plan is None else {
                "plan_id": plan.plan_id,
                "status": plan.finished.status if plan.finished else "running",
                "steps": [{"step_id": s.spec.step_id, "title": s.spec.title, "executor": s.spec.executor,
                           "depends_on": s.spec.depends_on, "status": s.status, "agent_id": s.agent_id,
                           "error": s.error or None} for s in plan.steps.values()],
            },
        })  # fmt: skip
    return {"session_id": session_id, "opened_by": session.opened.opened_by, "title": session.opened.title,
            "stream_version": version, "turns": shown}  # fmt: skip


def _rows(rows: list[Any]) -> list[dict[str, Any]]:
    return [dict(row) for row in rows]


@router.get("/sessions", summary="Planner sessions, the last active first, with what they cost")
async def list_sessions(services: Svc, who: Reader,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:  # fmt: skip
    rows = _rows(await services.store.pool.fetch(QUERIES["planning_sessions"], limit))
    return [row for row in rows if who.kind != "agent" or row["opened_by"] == who.name]


@router.get("/sessions/{session_id}/executions", summary="A session's executions: each agent's model calls, "
            "tokens, time and tool calls per turn")  # fmt: skip
async def list_executions(session_id: SessionPath, services: Svc, who: Reader) -> list[dict[str, Any]]:
    _may_read(who, (await _fold(services.store, session_id))[0])
    return _rows(await services.store.pool.fetch(QUERIES["planning_executions"], session_id))


@router.get("/refusals", summary="Tool calls and writes the server refused (read-only tokens), newest first")
async def list_refusals(services: Svc, who: Reader,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:  # fmt: skip
    rows = _rows(await services.store.pool.fetch(QUERIES["tool_refusals"], limit))
    for row in rows:
        if isinstance(row["arguments"], str):
            row["arguments"] = json.loads(row["arguments"])
    return rows
