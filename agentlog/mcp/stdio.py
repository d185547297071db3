"""`agentlog mcp`: the tools over stdio, against the API at AGENTLOG_URL with the agent token AGENTLOG_TOKEN."""

from __future__ import annotations

import os
from typing import Any

from agentlog.client import AgentlogClient
from agentlog.mcp.tools import agent_of, build

DEFAULT_URL = "http://127.0.0.1:8787"


def stdio_server(url: str | None = None, token: str | None = None) -> Any:
    url = url or os.environ.get("AGENTLOG_URL", DEFAULT_URL)
    token = token or os.environ.get("AGENTLOG_TOKEN", "")
    agent_id = agent_of(token)
    client = AgentlogClient(url, token)

    async def session() -> tuple[AgentlogClient, str]:
        return client, agent_id

    return build(session)
