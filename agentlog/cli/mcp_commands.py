"""`agentlog mcp`: the MCP server over stdio (for Claude Code, Cursor, Codex...), against a running `agentlog up`."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from agentlog.cli.common import ExitCode, fail, handles_errors, write_line


@handles_errors
def mcp_command(
    tools_size: Annotated[
        bool, typer.Option("--tools-size", help="print the size of the tool list (characters, ~tokens) and exit")
    ] = False,
) -> None:
    """Serve the coordination tools over stdio: the API at AGENTLOG_URL (default http://127.0.0.1:8787), as the
    agent whose token is AGENTLOG_TOKEN (`agentlog token agent ID`)."""
    try:
        from agentlog.mcp.stdio import stdio_server  # imported here: the MCP SDK is heavy
        from agentlog.mcp.tools import tool_list_size

        server = stdio_server()
    except ValueError as error:
        fail(str(error), ExitCode.USAGE)
    if tools_size:
        characters, tokens = asyncio.run(tool_list_size(server))
        write_line(f"{characters} characters, ~{tokens} tokens in {len(server._tool_manager.list_tools())} tools")
        return
    server.run("stdio")
