"""The MCP server through the SDK's own client (issue 12, item 4): over streamable HTTP at /mcp with bearer tokens,
and over stdio (`agentlog mcp`) against the API; whole-step tools, `attention` in every reply, readOnlyHint on
the read-only ones, the tool list's size, and the API's scopes whatever the hints."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import httpx
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from agentlog.eventstore import EventStore
from tests.support.api import api_running
from tests.support.coordination import settled

TOOLS = {"start_session", "send_message", "fetch_inbox", "acquire_lock", "release_lock", "claim",
         "save_checkpoint", "remember", "recall", "claim_task", "heartbeat", "complete_task", "catalogue",
         "use_tool"}  # fmt: skip


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(tool, arguments)
    assert not result.isError, result.content
    payload: dict[str, Any] = result.structuredContent or json.loads(result.content[0].text)  # type: ignore[union-attr]
    return payload.get("result", payload) if "attention" not in payload else payload


async def test_the_tools_over_streamable_http(store: EventStore) -> None:
    async with api_running(store) as api:
        headers = {"authorization": f"Bearer {api.token('agent', 'claude-1')}"}
        async with httpx.AsyncClient(headers=headers, timeout=30) as http, \
                streamable_http_client(f"{api.url}/mcp", http_client=http) as (read, write, _), \
                ClientSession(read, write) as session:  # fmt: skip
            await session.initialize()
            listed = (await session.list_tools()).tools
            assert {tool.name for tool in listed} == TOOLS
            hints = {tool.name: tool.annotations.readOnlyHint for tool in listed if tool.annotations}
            assert hints["recall"] is True and hints["acquire_lock"] is False
            size = len(json.dumps([tool.model_dump(mode="json", exclude_none=True) for tool in listed]))
            assert size // 4 < 4_000, f"the tool list costs ~{size // 4} tokens"

            started = await call(session, "start_session", working_on="the parser")
            assert started["result"]["agent"]["agent_id"] == "claude-1"
            assert started["attention"]["unread_messages"] == 0
            lock = await call(session, "acquire_lock", resource="src/parser.py", ttl_s=60)
            assert lock["result"]["fencing_token"] == 1
            assert lock["attention"]["locks_expiring"][0]["resource"] == "src/parser.py"
            async with api.client("agent", "bob") as bob:
                await bob.put("/agents/bob", json={})
                refused = await call(session, "acquire_lock", resource="src/parser.py")
                assert "result" in refused and refused["result"]["fencing_token"] == 1, "renewed by its holder"
                await bob.post("/agents/claude-1/inbox", json={"body": "ping"})
                assert (await bob.post("/locks/src/lexer.py", json={})).status_code == 201
            await settled(store)
            held = await call(session, "acquire_lock", resource="src/lexer.py")
            assert held["result"]["refused"]["holder"] == "bob"
            listed_catalogue = await call(session, "catalogue")
            assert {"name": "list_tasks", "permission": "read"}.items() <= listed_catalogue["result"][2].items()
            schema = await call(session, "catalogue", name="create_task")
            assert "task_type" in schema["result"]["parameters"]["properties"]
            made = await call(session, "use_tool", name="create_task", arguments={"task_type": "todo", "title": "x"})
            assert made["result"]["status"] == "queued"
            wrong = await call(session, "use_tool", name="create_task", arguments={"title": 3})
            assert wrong["result"]["refused"]["status"] == 422
            assert held["attention"]["unread_messages"] == 1, "news rides on every reply"
            inbox = await call(session, "fetch_inbox")
            assert [m["body"] for m in inbox["result"]["messages"]] == ["ping"]
            await call(session, "send_message", to="chat", body="@bob thanks")
            await call(session, "remember", text="lexer tokens are in tokens.py", tags=["lexer"])
            await call(session, "save_checkpoint", summary="halfway", state={"step": 3})
            claimed = await call(session, "claim", pattern="src/parser/**")
            assert claimed["result"]["pattern"] == "src/parser/**"
            await settled(store)
            found = await call(session, "recall", query="lexer token")
            assert found["result"][0]["text"] == "lexer tokens are in tokens.py"
            assert (await call(session, "release_lock", resource="src/parser.py", fencing_token=1))["result"] == {
                "released": "src/parser.py"}  # fmt: skip
        async with httpx.AsyncClient() as http:
            forged = await http.post(f"{api.url}/mcp", headers={"authorization": "Bearer forged"},
                                     json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})  # fmt: skip
            assert forged.status_code == 401


async def test_the_tools_over_stdio(store: EventStore) -> None:
    async with api_running(store) as api:
        environment = {key: value for key, value in os.environ.items() if not key.startswith("AGENTLOG_")}
        environment |= {"AGENTLOG_URL": api.url, "AGENTLOG_TOKEN": api.token("agent", "codex-1")}
        parameters = StdioServerParameters(command=sys.executable, args=["-m", "agentlog.cli", "mcp"], env=environment)
        async with stdio_client(parameters) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            assert {tool.name for tool in (await session.list_tools()).tools} == TOOLS
            started = await call(session, "start_session", working_on="docs")
            assert started["result"]["agent"]["agent_id"] == "codex-1" and "attention" in started
            lock = await call(session, "acquire_lock", resource="docs/index.md")
            assert lock["result"]["holder"] == "codex-1"


async def test_the_task_tools_claim_beat_and_complete(store: EventStore) -> None:
    async with api_running(store) as api:
        headers = {"authorization": f"Bearer {api.token('agent', 'claude-1')}"}
        async with httpx.AsyncClient(headers=headers, timeout=30) as http, \
                streamable_http_client(f"{api.url}/mcp", http_client=http) as (read, write, _), \
                ClientSession(read, write) as session:  # fmt: skip
            await session.initialize()
            await call(session, "start_session", working_on="tasks", capabilities=["python"])
            assert (await call(session, "claim_task", wait_s=2))["result"]["declined"], "nothing to take yet"
            async with api.client("person", "ada") as ada:
                workflow = {"tasks": [{"task_id": task_id, "task_type": "lint", "priority": priority,
                                       "capabilities": ["python"]} for task_id, priority in (("high", 9), ("low", 2))]}
                assert (await ada.post("/workflows", json=workflow)).status_code == 201
            await settled(store)
            taken = await call(session, "claim_task")
            task = taken["result"]
            assert (task["task_id"], task["attempt"]) == ("high", 1), taken
            beat = await call(session, "heartbeat", task_id="high", attempt=1, progress={"files": 3})
            assert beat["result"]["status"] == "running"
            done = await call(session, "complete_task", task_id="high", attempt=1, result={"warnings": 0})
            assert done["result"]["status"] == "completed"
            await settled(store)
            late = await call(session, "heartbeat", task_id="high", attempt=1)
            assert late["result"]["refused"]["rule"] == "task-finished"
            assert late["attention"]["tasks_assigned"] == [{"task_id": "low", "attempt": 1}], "news rides along"
            assert (await call(session, "claim_task"))["result"]["task_id"] == "low"
            empty = await call(session, "complete_task", task_id="low", attempt=1, error="")
            assert empty["result"]["refused"]["status"] == 422, "an empty error is no success (it completed the task)"
            failed = await call(session, "complete_task", task_id="low", attempt=1, error="linter crashed",
                                retryable=False)  # fmt: skip
            assert failed["result"]["status"] == "failed"
            await settled(store)
            resumed = await call(session, "start_session")
            assert resumed["result"]["tasks"] == []
