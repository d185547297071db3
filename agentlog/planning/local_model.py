"""The offline model: a deterministic `ChatProvider` that plans and calls tools over agentlog's own catalogue, so
that the whole planner flow runs, and is tested, without a network. It streams like a hosted model (text in
pieces, tool calls with their arguments split over deltas, the usage in the last chunk) and bills about four
characters a token.

It reads the marker that opens the system prompt (`prompts`) and the request in plain words:
- a request that asks to create tasks, schedule or remind, post or remember is `complex`: a first step has an
  executor gather what is known (memories, tasks, chat), then one planner step per thing to change;
  "ask an executor to ..." gives that to an executor as it is (which cannot write: the server refuses it);
- a question about tasks, agents, the chat or memories is `tool`: answered after reading them;
- anything else is `simple`.
It is a stand-in with a fixed repertoire, not a language model: it never invents an answer it did not read.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from agentlog.llm.chat import ChatChunk, ChatMessage, ChatRequest, ToolCallDelta, Usage
from agentlog.planning.prompts import ANALYSE, EXECUTOR, FINAL, PLANNER

PROVIDER = "local"
MODEL = "agentlog-local-1"
_CLAUSES = re.compile(r"\s*(?:,|;|\band then\b|\bthen\b|\band\b)\s*", re.IGNORECASE)
_TOPIC = re.compile(r"\b(?:for|about|on|of)\s+(?:the\s+|a\s+|an\s+|my\s+|our\s+)?(.+)$", re.IGNORECASE)
_EXECUTOR_ASKED = re.compile(r"\bask an executor to\s+(.+)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _Intent:
    kind: str  # "tasks", "reminder", "post", "remember", "delegate"
    clause: str
    topic: str


def _topic(clause: str, fallback: str) -> str:
    found = _TOPIC.search(clause)
    topic = (found.group(1) if found else fallback).strip(" .!?")
    return topic[:200] or fallback


def _intents(request: str) -> list[_Intent]:
    delegated = _EXECUTOR_ASKED.search(request)
    if delegated:
        return [_Intent("delegate", delegated.group(1).strip(" .!?"), _topic(delegated.group(1), "the request"))]
    intents: list[_Intent] = []
    topic = _topic(_CLAUSES.split(request)[0], "the request")
    for clause in (c for c in _CLAUSES.split(request) if c and c.strip()):
        low = clause.lower()
        here = _topic(clause, topic) if _TOPIC.search(clause) else topic
        if re.search(r"\b(create|add|make|queue|open)\b.*\b(tasks?|todos?)\b", low):
            intents.append(_Intent("tasks", clause, here))
        elif re.search(r"\b(schedule|remind|reminder)\b", low):
            intents.append(_Intent("reminder", clause, here))
        elif re.search(r"\b(post|announce|tell)\b.*\b(chat|team|everyone)\b", low):
            intents.append(_Intent("post", clause, here))
        elif re.search(r"\b(remember|note that|memori[sz]e)\b", low):
            intents.append(_Intent("remember", clause, here))
    return intents


_QUESTIONS = {"tasks": "list_tasks", "task": "list_tasks", "agents": "read_registry", "agent": "read_registry",
              "registry": "read_registry", "chat": "read_chat", "memories": "search_memories",
              "learned": "search_memories"}  # fmt: skip


def _analyse(request: str) -> dict[str, Any]:
    intents = _intents(request)
    if intents and intents[0].kind == "delegate":
        only = intents[0]
        step = {"step_id": "s1", "title": only.clause[:200], "instructions": only.clause, "depends_on": [],
                "executor": True}  # fmt: skip
        return {"strategy": "complex", "analysis": "an executor is asked to do it", "steps": [step]}
    if intents:
        topic = intents[0].topic
        steps: list[dict[str, Any]] = [
            {"step_id": "s1", "title": f"Gather what is known about {topic}",
             "instructions": f"Search the memories, the task queue and the chat for {topic}.", "depends_on": [],
             "executor": True},
        ]  # fmt: skip
        for number, intent in enumerate(intents, start=2):
            steps.append({"step_id": f"s{number}", "title": intent.clause.strip()[:200],
                          "instructions": f"{intent.kind}: {intent.topic}", "depends_on": ["s1"],
                          "executor": False})  # fmt: skip
        return {"strategy": "complex", "analysis": f"{len(intents)} change(s) to make, after a look at what is known",
                "steps": steps}  # fmt: skip
    words = set(re.findall(r"[a-z]+", request.lower()))
    if words & set(_QUESTIONS) and words & {"what", "which", "list", "show", "who", "any", "how"}:
        return {"strategy": "tool", "analysis": "a question the tools answer", "steps": []}
    return {"strategy": "simple", "analysis": "a message to answer", "steps": []}


def _calls_for(role: str, request: str) -> list[tuple[str, dict[str, Any]]]:
    """The tool calls a thread starts with, from what it is asked."""
    first_line = request.splitlines()[0] if request else ""
    if role == EXECUTOR:
        delegated = _intents(first_line.partition(": ")[2] or first_line)
        if delegated and delegated[0].kind in ("post", "tasks", "remember", "reminder"):
            # Told to change something, it tries: the server refuses an executor's write.
            return [_write_call(delegated[0], request)]
        topic = _topic(request.splitlines()[1] if len(request.splitlines()) > 1 else request, "the request")
        query = " ".join(re.findall(r"\w+", topic)[:3])
        return [("search_memories", {"query": query, "limit": 5}), ("list_tasks", {"limit": 20}),
                ("read_chat", {"limit": 10})]  # fmt: skip
    instruction = next((line for line in request.splitlines() if re.match(r"^\w+: ", line) and ":" in line
                        and line.split(":")[0] in ("tasks", "reminder", "post", "remember")), "")  # fmt: skip
    if instruction:
        kind, _, topic = instruction.partition(": ")
        return [_write_call(_Intent(kind, "", topic), request)] if kind != "tasks" else [
            ("create_task", {"task_type": "todo", "title": title, "details": {"topic": topic}, "priority": 5})
            for title in (f"Book transport for the {topic}", f"Book accommodation for the {topic}",
                          f"Plan the days of the {topic}")
        ]  # fmt: skip
    words = set(re.findall(r"[a-z]+", request.lower()))
    return [(tool, {"limit": 20}) for word, tool in _QUESTIONS.items() if word in words][:1]


def _write_call(intent: _Intent, request: str) -> tuple[str, dict[str, Any]]:
    if intent.kind == "reminder":
        return ("create_task", {"task_type": "reminder", "title": f"Reminder: {intent.topic}",
                                "details": {"topic": intent.topic}, "delay_s": 86_400})  # fmt: skip
    if intent.kind == "post":
        return ("post_chat", {"body": f"Update on {intent.topic}: {request.splitlines()[0][:300]}"})
    if intent.kind == "remember":
        return ("write_memory", {"text": intent.topic, "tags": ["planner"], "kind": "fact"})
    return ("create_task", {"task_type": "todo", "title": intent.topic[:500]})


def _summary(results: list[tuple[str, str]]) -> str:
    parts: list[str] = []
    for tool, text in results:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if isinstance(value, dict) and ("refused" in value or "failed" in value):
            parts.append(f"{tool} was {'refused' if 'refused' in value else 'failed'}: "
                         f"{value.get('refused') or value.get('failed')}")  # fmt: skip
        elif isinstance(value, list):
            parts.append(f"{tool} found {len(value)}")
        elif isinstance(value, dict) and "messages" in value:
            parts.append(f"{tool} found {len(value['messages'])} message(s)")
        elif isinstance(value, dict) and "task_id" in value:
            parts.append(f"{tool} made task {value['task_id']} ({value.get('task_type', '')})")
        else:
            parts.append(f"{tool} answered {str(value)[:120]}")
    return "; ".join(parts) + "." if parts else "Nothing to report."


class LocalChatModel:
    """The deterministic offline `ChatProvider` (see the module's docstring)."""

    provider: str = PROVIDER

    def __init__(self, model: str = MODEL, *, delay_s: float = 0.0) -> None:
        self.model = model
        self.delay_s = delay_s

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        text, calls = self.answer(request.messages, tools=bool(request.tools))
        for piece in re.findall(r"\S+\s*", text):
            yield ChatChunk(text=piece)
        for index, (call_id, name, arguments) in enumerate(calls):
            encoded = json.dumps(arguments)
            half = len(encoded) // 2
            yield ChatChunk(tool_calls=(ToolCallDelta(index, call_id, name, encoded[:half]),))
            yield ChatChunk(tool_calls=(ToolCallDelta(index, arguments=encoded[half:]),))
        yield ChatChunk(finish_reason="tool_calls" if calls else "stop")
        prompt = sum(len(m.content) + sum(len(json.dumps(dict(c.arguments))) for c in m.tool_calls)
                     for m in request.messages)  # fmt: skip
        completion = len(text) + sum(len(json.dumps(a)) + len(n) for _, n, a in calls)
        yield ChatChunk(usage=Usage(max(1, prompt // 4), max(1, completion // 4)))

    def answer(self, messages: tuple[ChatMessage, ...], *, tools: bool = True
               ) -> tuple[str, list[tuple[str, str, dict[str, Any]]]]:  # fmt: skip
        system = messages[0].content if messages and messages[0].role == "system" else ""
        role = next((marker for marker in (ANALYSE, PLANNER, EXECUTOR, FINAL) if system.startswith(marker)), PLANNER)
        asked = next((m.content for m in reversed(messages) if m.role == "user"), "")
        if role == ANALYSE:
            return json.dumps(_analyse(asked)), []
        if role == FINAL:
            done = [line[2:] for line in asked.splitlines() if line.startswith("- ")]
            return "Done. " + " ".join(done), []
        last_asked = max(i for i, m in enumerate(messages) if m.role in ("user", "system"))
        since = messages[last_asked + 1:]  # this thread's calls, after what it was asked (earlier turns before)
        results = [(self._tool_of(since, m.tool_call_id), m.content) for m in since if m.role == "tool"]
        answered = any(m.role == "assistant" for m in since)
        if not answered:
            calls = _calls_for(role, asked) if tools else []
            if calls:
                tag = hashlib.sha256(asked.encode()).hexdigest()[:10]
                return "", [(f"call_{tag}_{i}", name, args) for i, (name, args) in enumerate(calls)]
            return ("Hello. I plan work for a fleet of agents: ask me to create tasks, schedule a reminder, or "
                    "what is in the task queue, the registry, the chat or the memories."), []  # fmt: skip
        return _summary(results), []

    @staticmethod
    def _tool_of(messages: tuple[ChatMessage, ...], call_id: str | None) -> str:
        for message in messages:
            for call in message.tool_calls:
                if call.call_id == call_id:
                    return call.name
        return "a tool"

    async def aclose(self) -> None:
        return None
