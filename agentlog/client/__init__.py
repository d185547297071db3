"""A typed async client of the agentlog API (`agentlog.client.models` are the server's own request and answer
models)."""
