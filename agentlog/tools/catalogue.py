"""The tools over agentlog itself, each declared once: its name, what it does, its arguments (a pydantic model, so
one JSON schema), whether it only reads, and what it does through the API (`agentlog.client`, with the caller's
own token). The API serves them at `/api/v1/tools` (list and call), and planners and executors are given them as
the model's tools, from this one declaration.

A tool's permission is a declaration, not the boundary: a tool runs the API's routes with the caller's token, so a
read-only token (an executor's) cannot write through any of them, whatever list it was shown (`api.guard`).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentlog.client import AgentlogClient

Permission = Literal["read", "write"]
Limit = Annotated[int, Field(ge=1, le=100)]


class Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Run = Callable[[AgentlogClient, str, Any], Awaitable[Any]]
"""What a tool does: (the caller's client, the caller's agent id, its arguments) → a JSON-able result."""


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    permission: Permission
    arguments: type[Arguments]
    run: Run

    def schema(self) -> dict[str, Any]:
        """The JSON schema of the arguments, as models and MCP clients are shown it (no titles: they cost tokens).
        Made once per tool (pydantic takes about half a millisecond per model)."""
        return copy.deepcopy(_schema_of(self.arguments))


@functools.cache
def _schema_of(arguments: type[Arguments]) -> dict[str, Any]:
    schema: dict[str, Any] = _untitled(arguments.model_json_schema())
    return schema


def _untitled(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _untitled(v) for k, v in schema.items() if k != "title" or not isinstance(v, str)}
    if isinstance(schema, list):
        return [_untitled(item) for item in schema]
    return schema


def _dump(value: Any, *fields: str) -> Any:
    if isinstance(value, list):
        return [_dump(item, *fields) for item in value]
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", include=set(fields) or None)
    return value


# -- read-only tools --------------------------------------------------------------------------------------------


class ReadRegistry(Arguments):
    capability: str | None = Field(default=None, description="only agents having this capability")
    status: Literal["active", "idle", "offline"] | None = None
    limit: Limit = 50


async def _read_registry(client: AgentlogClient, _me: str, args: ReadRegistry) -> Any:
    found = await client.agents(state="registered", status=args.status, capability=args.capability, limit=args.limit)
    return _dump(found, "agent_id", "name", "status", "working_on", "capabilities")


class ListTasks(Arguments):
    status: str | None = Field(default=None, description="queued, assigned, running, completed, dead, cancelled...")
    task_type: str | None = None
    limit: Limit = 50


async def _list_tasks(client: AgentlogClient, _me: str, args: ListTasks) -> Any:
    found = await client.tasks(status=args.status, task_type=args.task_type, limit=args.limit)
    return _dump(found, "task_id", "task_type", "status", "priority", "agent_id", "attempt", "created_at")


class ReadTask(Arguments):
    task_id: str


async def _read_task(client: AgentlogClient, _me: str, args: ReadTask) -> Any:
    return _dump(await client.task(args.task_id))


class ReadChat(Arguments):
    after: int = Field(default=0, ge=0, description="read after this position (0: from the start)")
    limit: Limit = 20


async def _read_chat(client: AgentlogClient, _me: str, args: ReadChat) -> Any:
    page = await client.chat(after=args.after, limit=args.limit)
    messages = _dump(page.messages, "seq", "author", "body", "posted_at", "mentions")
    return {"messages": messages, "next_after": page.next_after}


class ReadInbox(Arguments):
    unread: bool = True
    limit: Limit = 20


async def _read_inbox(client: AgentlogClient, me: str, args: ReadInbox) -> Any:
    page = await client.inbox(me, unread=args.unread, limit=args.limit)
    return {"messages": _dump(page.messages, "message_id", "sender", "body", "data", "thread_id", "sent_at")}


class CheckLock(Arguments):
    resource: str = Field(description="a file path relative to the repository")


async def _check_lock(client: AgentlogClient, _me: str, args: CheckLock) -> Any:
    lock = await client.lock(args.resource)
    return None if lock is None else _dump(lock, "resource", "holder", "fencing_token", "expires_at", "reason")


class SearchMemories(Arguments):
    query: str | None = Field(default=None, description="words to search for (best match first)")
    tag: str | None = None
    limit: Limit = 10


async def _search_memories(client: AgentlogClient, _me: str, args: SearchMemories) -> Any:
    found = await client.recall(args.query, tag=args.tag, limit=args.limit)
    return _dump(found, "memory_id", "agent_id", "kind", "text", "tags")


class ReadDocument(Arguments):
    document_id: str = Field(min_length=1, max_length=200, description="the collaborative document's id")


async def _read_document(client: AgentlogClient, _me: str, args: ReadDocument) -> Any:
    return await client.document_text(args.document_id)


# -- tools that write -------------------------------------------------------------------------------------------


class CreateTask(Arguments):
    task_type: str = Field(description="what kind of work, e.g. 'todo' or 'reminder'")
    title: str = Field(max_length=500, description="what is to be done, in a sentence")
    details: dict[str, Any] = Field(default_factory=dict, description="anything else the doer needs (JSON)")
    priority: int = Field(default=5, ge=1, le=10, description="1 lowest, 10 highest")
    capabilities: list[str] = Field(default_factory=list, description="what an agent needs to do it")
    delay_s: float | None = Field(default=None, ge=0, le=366 * 86_400, description="not before this many seconds")


async def _create_task(client: AgentlogClient, _me: str, args: CreateTask) -> Any:
    run_at = None if args.delay_s is None else datetime.now(UTC) + timedelta(seconds=args.delay_s)
    payload = {"title": args.title, **args.details}
    created = await client.create_task(
        args.task_type, payload=payload, priority=args.priority, capabilities=args.capabilities, run_at=run_at
    )
    return _dump(created, "task_id", "task_type", "status", "priority")


class CancelTask(Arguments):
    task_id: str
    reason: str = Field(default="", max_length=500)


async def _cancel_task(client: AgentlogClient, _me: str, args: CancelTask) -> Any:
    return _dump(await client.cancel_task(args.task_id, args.reason), "task_id", "status")


class PostChat(Arguments):
    body: str = Field(min_length=1, max_length=10_000, description="@agent-id mentions reach their inboxes")


async def _post_chat(client: AgentlogClient, _me: str, args: PostChat) -> Any:
    return _dump(await client.post_chat(args.body))


class SendMessage(Arguments):
    to: str = Field(description="the agent id")
    body: str = Field(min_length=1, max_length=10_000)
    thread_id: str | None = None


async def _send_message(client: AgentlogClient, _me: str, args: SendMessage) -> Any:
    return _dump(await client.send(args.to, args.body, thread_id=args.thread_id))


class AcquireLock(Arguments):
    resource: str = Field(description="a file path relative to the repository")
    ttl_s: float = Field(default=300, gt=0, le=86_400)
    reason: str = Field(default="", max_length=500)


async def _acquire_lock(client: AgentlogClient, _me: str, args: AcquireLock) -> Any:
    lock = await client.acquire(args.resource, ttl_s=args.ttl_s, reason=args.reason)
    return _dump(lock, "resource", "holder", "fencing_token", "expires_at")


class ReleaseLock(Arguments):
    resource: str
    fencing_token: int = Field(ge=1)


async def _release_lock(client: AgentlogClient, _me: str, args: ReleaseLock) -> Any:
    return _dump(await client.release(args.resource, args.fencing_token), "resource", "holder")


class WriteMemory(Arguments):
    text: str = Field(min_length=1, max_length=10_000)
    tags: list[str] = Field(default_factory=list, max_length=20)
    kind: Literal["learning", "pattern", "fact"] = "learning"


async def _write_memory(client: AgentlogClient, me: str, args: WriteMemory) -> Any:
    return _dump(await client.remember(me, args.text, tags=args.tags, kind=args.kind), "memory_id")


class MarkPlace(Arguments):
    document_id: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=200, description="the place's name as written in the document")
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    occurrences: Literal["all", "first"] = "all"


async def _mark_place(client: AgentlogClient, _me: str, args: MarkPlace) -> Any:
    return await client.mark_place(args.document_id, args.text, args.latitude, args.longitude,
                                   occurrences=args.occurrences)  # fmt: skip


TOOLS: tuple[Tool, ...] = (
    Tool("read_document", "A collaborative document's text as stored, paragraphs on lines.", "read", ReadDocument,
         _read_document),
    Tool("read_registry", "The agents registered now: their status, what they work on, their capabilities.",
         "read", ReadRegistry, _read_registry),
    Tool("list_tasks", "Tasks in the queue, newest first, by status and type.", "read", ListTasks, _list_tasks),
    Tool("read_task", "One task: its payload, status, attempts and result.", "read", ReadTask, _read_task),
    Tool("read_chat", "The group chat, oldest first, after a position.", "read", ReadChat, _read_chat),
    Tool("read_inbox", "My direct messages (unread ones unless unread=false); they stay unread.", "read", ReadInbox,
         _read_inbox),
    Tool("check_lock", "Who holds the lock on a resource, until when (null: free).", "read", CheckLock, _check_lock),
    Tool("search_memories", "Search what agents have learned, by words and/or tag.", "read", SearchMemories,
         _search_memories),
    Tool("create_task", "Queue a task for an agent to do (delay_s: not before then, e.g. a reminder).", "write",
         CreateTask, _create_task),
    Tool("cancel_task", "Cancel a task (a running one's agent is told).", "write", CancelTask, _cancel_task),
    Tool("post_chat", "Post to the group chat.", "write", PostChat, _post_chat),
    Tool("send_message", "Send a direct message to an agent.", "write", SendMessage, _send_message),
    Tool("acquire_lock", "Lock a resource for ttl_s seconds; keep the fencing_token.", "write", AcquireLock,
         _acquire_lock),
    Tool("release_lock", "Release my lock (with its fencing_token).", "write", ReleaseLock, _release_lock),
    Tool("write_memory", "Store something learned, for me and the other agents.", "write", WriteMemory,
         _write_memory),
    Tool("mark_place", "Mark a place where its name stands in a document (people see it at once).", "write",
         MarkPlace, _mark_place),
)  # fmt: skip
CATALOGUE: Mapping[str, Tool] = {tool.name: tool for tool in TOOLS}
READ_ONLY_TOOLS: tuple[Tool, ...] = tuple(tool for tool in TOOLS if tool.permission == "read")
