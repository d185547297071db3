"""agentlog's own event types, one module per stream category. Importing this package registers them all."""

from eventstore.event_types import documents

__all__ = ["documents"]
