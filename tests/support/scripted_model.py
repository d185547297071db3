"""A scripted chat provider and helpers to drive the planner runtime against the real API (the hostile tests)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from agentlog.domains.planning.events import session_stream
from agentlog.domains.planning.session import Session
from agentlog.llm.chat import ChatChunk, ChatRequest, ToolCallDelta, Usage


def marker(request: ChatRequest) -> str:
    system = request.messages[0].content
    return system.split("]", 1)[0] + "]"


class Scripted:
    """`answer(request, n)` → (text, [(call_id, name, arguments dict)], usage) for the n-th call."""

    provider = "scripted"

    def __init__(
        self, answer: Callable[[ChatRequest, int], tuple[str, list[tuple[str | None, str, dict]], tuple[int, int]]]
    ) -> None:
        self.answer = answer
        self.calls = 0
        self.requests: list[ChatRequest] = []

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        n = self.calls
        self.calls += 1
        self.requests.append(request)
        text, calls, usage = self.answer(request, n)
        if text:
            yield ChatChunk(text=text)
        if calls:
            yield ChatChunk(
                tool_calls=tuple(
                    ToolCallDelta(i, cid, name, json.dumps(args)) for i, (cid, name, args) in enumerate(calls)
                )
            )
        yield ChatChunk(finish_reason="tool_calls" if calls else "stop", usage=Usage(*usage))

    async def aclose(self) -> None:
        return None


def analysis(strategy: str, steps: list[dict[str, Any]] | None = None) -> str:
    return json.dumps({"strategy": strategy, "analysis": "scripted", "steps": steps or []})


async def session_of(store, session_id: str) -> Session:
    recorded = await store.read_stream(session_stream(session_id))
    return Session.fold(session_id, [store.decode(r) for r in recorded])


async def wait_finished(store, session_id: str, timeout: float) -> Session:
    try:
        async with asyncio.timeout(timeout):
            while True:
                s = await session_of(store, session_id)
                if s.turns and all(t.finished is not None for t in s.turns.values()):
                    return s
                await asyncio.sleep(0.1)
    except TimeoutError:
        return await session_of(store, session_id)
