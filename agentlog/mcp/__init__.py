"""The MCP server (the official `mcp` SDK): a few tools, each a whole step of an agent's work, over the API."""
