"""agentlog's own event types, one module per stream category. Importing this package registers them all."""

from eventstore.event_types import agents, deciders, documents, timers, tokens

__all__ = ["agents", "deciders", "documents", "timers", "tokens"]
