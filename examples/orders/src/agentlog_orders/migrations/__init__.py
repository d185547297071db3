"""The orders plugin's alembic revisions: a branch of its own (`orders`) beside agentlog's, applied by
`agentlog migrate` and `agentlog up` (the entry point `agentlog.migrations` names this package)."""
