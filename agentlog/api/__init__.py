"""The HTTP API under /api/v1 (FastAPI): coordination of agents over the log, authenticated by agentlog tokens."""
