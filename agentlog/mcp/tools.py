"""The tools: few, each doing a whole step, every reply carrying `attention` — unread messages and what the agent
holds that expires soon — because today's MCP clients drop server notifications: news rides on tool replies.

The tools call the API with the caller's own token (`agentlog.client`), so the API enforces what the token may do,
whatever the tools' hints say. Read-only tools are annotated `readOnlyHint`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

import jwt
from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations
from pydantic import ValidationError

from agentlog.client import AgentlogClient, ApiError
from agentlog.tools.catalogue import CATALOGUE, TOOLS

EXPIRING_S = 120.0
READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False, openWorldHint=False)
WRITES = ToolAnnotations(readOnlyHint=False, destructiveHint=False, openWorldHint=False)
RELEASES = ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=False, openWorldHint=False)

Session = Callable[[], Awaitable[tuple[AgentlogClient, str]]]
"""The caller's API client and agent id (from its token)."""

INSTRUCTIONS = (
    "Coordination with the other agents on this repository. Call start_session first. Take a lock before editing "
    "a file others may edit, and pass its fencing_token along with your writes; release it when done. Take work "
    "with claim_task, call heartbeat while on it (a refusal means stop: it was cancelled or given to another), "
    "and finish with complete_task. Read `attention` in every reply: unread messages, tasks assigned to you, and "
    "your locks or claims about to expire."
)
TASK_FIELDS = {"task_id", "task_type", "status", "attempt", "priority"}


def agent_of(token: str) -> str:
    """The agent a token acts as (its `sub`); the API checks the token itself."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as error:
        raise ValueError(f"AGENTLOG_TOKEN is not an agentlog token: {error}") from error
    if claims.get("kind") != "agent":
        raise ValueError("the MCP tools act as an agent: use `agentlog token agent ID`")
    return str(claims["sub"])


async def attention(client: AgentlogClient, agent_id: str) -> dict[str, Any]:
    """Unread messages and what expires within two minutes; also the agent's heartbeat (a tool call is a sign of
    life)."""
    try:
        await client.heartbeat(agent_id)
        health = await client.health(agent_id)
        unread = (await client.inbox(agent_id, limit=1)).unread
        assigned = await client.tasks(agent_id=agent_id, status="assigned", limit=20)
    except ApiError as error:
        return {"error": str(error)}
    now = datetime.now(UTC)

    def left(expires_at: datetime | None) -> float | None:
        return None if expires_at is None else round((expires_at - now).total_seconds(), 1)

    return {
        "unread_messages": unread,
        "tasks_assigned": [{"task_id": task.task_id, "attempt": task.attempt} for task in assigned],
        "locks_expiring": [{"resource": lock.resource, "fencing_token": lock.fencing_token,
                            "expires_in_s": left(lock.expires_at)} for lock in health.locks_expiring],
        "claims_expiring": [{"claim_id": c.claim_id, "pattern": c.pattern, "expires_in_s": left(c.expires_at)}
                            for c in health.claims_expiring],
    }  # fmt: skip


async def reply(client: AgentlogClient, agent_id: str, result: Any) -> dict[str, Any]:
    return {"result": result, "attention": await attention(client, agent_id)}


def refusal(error: ApiError) -> dict[str, Any]:
    details = {k: v for k, v in error.body.items()
               if k in ("holder", "conflicts", "fencing_token", "rule", "current_attempt", "task_status",
                        "budget_id", "remaining_tokens")}  # fmt: skip
    return {"refused": {"status": error.status, "code": error.code, "detail": error.detail, **details}}


def build(session: Session, **settings: Any) -> FastMCP:  # noqa: PLR0915 - the tools, one place
    """The server with its tools; `session` gives each call its API client and agent. The catalogue's tools
    (`agentlog.tools.catalogue`, the planner's) are served from their one declaration through `catalogue` and
    `use_tool`, on demand: listed all at once they would cost every client's context their schemas."""
    server = FastMCP("agentlog", instructions=INSTRUCTIONS, **settings)

    @server.tool(annotations=WRITES)
    async def start_session(working_on: str = "", capabilities: list[str] | None = None) -> dict[str, Any]:
        """Register (or update) me and get everything to pick up my work: unread messages, recent chat, my locks
        and claims with expiries, my last checkpoint, my tasks and what my token budgets have left."""
        client, me = await session()
        fields: dict[str, Any] = {"working_on": working_on} | ({"capabilities": capabilities} if capabilities else {})
        await client.register(me, **fields)
        bundle = await client.hot_start(me)
        answer = bundle.model_dump(mode="json", exclude={"tasks"})
        answer["tasks"] = [task.model_dump(mode="json", include=TASK_FIELDS) for task in bundle.tasks]
        return await reply(client, me, answer)

    @server.tool(annotations=WRITES)
    async def send_message(to: str, body: str, thread_id: str | None = None) -> dict[str, Any]:
        """Send `body` to an agent id, or to everyone with to="chat" (@agent-id mentions reach their inboxes)."""
        client, me = await session()
        try:
            if to == "chat":
                sent = await client.post_chat(body)
            else:
                sent = await client.send(to, body, thread_id=thread_id)
        except ApiError as error:
            return await reply(client, me, refusal(error))
        return await reply(client, me, sent.model_dump(mode="json"))

    @server.tool(annotations=WRITES)
    async def fetch_inbox(acknowledge: bool = True, limit: int = 20) -> dict[str, Any]:
        """My unread messages, oldest first; acknowledged as read unless acknowledge=false."""
        client, me = await session()
        page = await client.inbox(me, limit=limit)
        if acknowledge and page.messages:
            await client.acknowledge(me, [m.message_id for m in page.messages])
        messages = [m.model_dump(mode="json", include={"message_id", "kind", "sender", "body", "data", "thread_id",
                                                       "task_id", "sent_at"}) for m in page.messages]  # fmt: skip
        return await reply(client, me, {"messages": messages})

    @server.tool(annotations=WRITES)
    async def acquire_lock(resource: str, ttl_s: float = 300, reason: str = "") -> dict[str, Any]:
        """Lock a file path (relative to the repository) for ttl_s seconds. Keep the fencing_token: pass it with
        your writes, to renew (call again) and to release. Held by another: refused, naming the holder."""
        client, me = await session()
        try:
            lock = await client.acquire(resource, ttl_s=ttl_s, reason=reason)
        except ApiError as error:
            return await reply(client, me, refusal(error))
        return await reply(client, me, lock.model_dump(mode="json", exclude={"stream_version"}))

    @server.tool(annotations=RELEASES)
    async def release_lock(resource: str, fencing_token: int) -> dict[str, Any]:
        """Release my lock on `resource` (with the fencing_token acquire_lock gave)."""
        client, me = await session()
        try:
            lock = await client.release(resource, fencing_token)
        except ApiError as error:
            return await reply(client, me, refusal(error))
        return await reply(client, me, {"released": lock.resource})

    @server.tool(annotations=WRITES)
    async def claim(pattern: str, kind: Literal["path", "topic"] = "path", exclusive: bool = True,
                    ttl_s: float = 1800, reason: str = "") -> dict[str, Any]:  # fmt: skip
        """Claim a path glob (src/parser/**) or a topic so others do not duplicate the work; overlapping claims
        and locks of others are refused, naming them."""
        client, me = await session()
        try:
            made = await client.claim(pattern, kind=kind, exclusive=exclusive, ttl_s=ttl_s, reason=reason)
        except ApiError as error:
            return await reply(client, me, refusal(error))
        return await reply(client, me, made.model_dump(mode="json", include={"claim_id", "pattern", "kind",
                                                                              "exclusive", "ttl_s"}))  # fmt: skip

    @server.tool(annotations=WRITES)
    async def save_checkpoint(summary: str, state: dict[str, Any] | None = None) -> dict[str, Any]:
        """Save where I am (a summary and any JSON state) so a restarted session can pick up from here."""
        client, me = await session()
        saved = await client.save_checkpoint(me, summary, state or {})
        return await reply(client, me, {"saved": saved.stream_version})

    @server.tool(annotations=WRITES)
    async def remember(text: str, tags: list[str] | None = None,
                       kind: Literal["learning", "pattern", "fact"] = "learning") -> dict[str, Any]:  # fmt: skip
        """Store something learned, for me and the other agents."""
        client, me = await session()
        stored = await client.remember(me, text, tags=tags or [], kind=kind)
        return await reply(client, me, {"memory_id": stored.memory_id})

    @server.tool(annotations=READ_ONLY)
    async def recall(query: str | None = None, tag: str | None = None, limit: int = 10) -> dict[str, Any]:
        """Search every agent's memories by text (best match first) and/or tag."""
        client, me = await session()
        found = await client.recall(query, tag=tag, limit=limit)
        return await reply(client, me, [m.model_dump(mode="json", include={"agent_id", "kind", "text", "tags"})
                                        for m in found])  # fmt: skip

    @server.tool(annotations=WRITES)
    async def claim_task(task_types: list[str] | None = None, wait_s: float = 5) -> dict[str, Any]:
        """Take the best task I can do now (of these types, any when none) and start it: one already assigned to
        me first, else one claimed. Keep its task_id and attempt: heartbeat and complete_task name them."""
        client, me = await session()
        try:
            pushed = [task for task in await client.tasks(agent_id=me, status="assigned", limit=100)
                      if not task_types or task.task_type in task_types]  # fmt: skip
            pushed.sort(key=lambda task: (-task.priority, task.assigned_at or task.created_at))
            if pushed:
                task = await client.assignment(pushed[0].task_id)
            else:
                answer = await client.claim_task(task_types=task_types or (), wait_s=min(max(wait_s, 0), 30))
                if answer.assignment is None:
                    return await reply(client, me, answer.model_dump(mode="json", include={"declined", "pending"}))
                task = answer.assignment
            await client.start_task(task.task_id, task.attempt)
        except ApiError as error:
            return await reply(client, me, refusal(error))
        return await reply(client, me, task.model_dump(mode="json", exclude={"agent_id", "claim_id"}))

    @server.tool(annotations=WRITES)
    async def heartbeat(task_id: str, attempt: int, progress: dict[str, Any] | None = None) -> dict[str, Any]:
        """Tell that I am still on the task (every heartbeat_interval_s). Refused: stop working on it — it was
        cancelled, or the attempt was given up on and handed on (`rule` says which)."""
        client, me = await session()
        try:
            state = await client.task_heartbeat(task_id, attempt, progress=progress)
        except ApiError as error:
            return await reply(client, me, refusal(error))
        return await reply(client, me, state.model_dump(mode="json", include={"task_id", "status", "attempt"}))

    @server.tool(annotations=WRITES)
    async def complete_task(task_id: str, attempt: int, result: dict[str, Any] | None = None,
                            error: str | None = None, retryable: bool = True) -> dict[str, Any]:  # fmt: skip
        """Finish my attempt: with its result, or with `error` when it failed (retried later while `retryable`
        and attempts are left). A stale attempt is refused: another worker has the task now."""
        client, me = await session()
        try:
            if error is not None:  # an empty one is refused (422), never taken for success
                state = await client.fail_task(task_id, attempt, error, retryable=retryable)
            else:
                state = await client.complete_task(task_id, attempt, result=result)
        except ApiError as refused:
            return await reply(client, me, refusal(refused))
        except ValidationError as wrong:  # checked by the client before sending: the same answer as the API's
            fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in wrong.errors())
            return await reply(client, me, {"refused": {"status": 422, "code": "invalid", "detail": fields}})
        return await reply(client, me, state.model_dump(mode="json", include={"task_id", "status", "attempt"}))

    @server.tool(annotations=READ_ONLY)
    async def catalogue(name: str | None = None) -> dict[str, Any]:
        """agentlog's tool catalogue (the planner's tools): each tool's name, permission and description, or one
        tool's JSON schema when `name` is given. Call them with use_tool."""
        client, me = await session()
        if name is None:
            listed = [{"name": t.name, "permission": t.permission, "description": t.description} for t in TOOLS]
            return await reply(client, me, listed)
        tool = CATALOGUE.get(name)
        if tool is None:
            return await reply(client, me, {"refused": {"status": 404, "code": "not_found",
                                                        "detail": f"no tool {name!r}"}})  # fmt: skip
        return await reply(client, me, {"name": tool.name, "permission": tool.permission,
                                        "description": tool.description, "parameters": tool.schema()})  # fmt: skip

    @server.tool(annotations=WRITES)
    async def use_tool(name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call a tool of the catalogue with its arguments (see catalogue(name) for its schema)."""
        client, me = await session()
        try:
            result = await client.call_tool(name, arguments or {})
        except ApiError as error:
            return await reply(client, me, refusal(error))
        return await reply(client, me, result)

    return server


async def tool_list_size(server: FastMCP) -> tuple[int, int]:
    """(characters, estimated tokens) of the tools/list answer a client puts in its context (~4 characters a
    token for JSON schema text)."""
    import json

    tools = await server.list_tools()
    text = json.dumps([tool.model_dump(mode="json", exclude_none=True) for tool in tools])
    return len(text), len(text) // 4
