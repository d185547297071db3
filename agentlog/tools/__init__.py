"""The tools over agentlog, declared once for the API, the planner's models and the MCP server."""
