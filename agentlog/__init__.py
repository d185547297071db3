"""agentlog: an event-sourced control plane for fleets of AI agents, on PostgreSQL.

The application edges live here: settings, the embedded database, migrations and the `agentlog` command. The
layers below are `handlers` (reactions and decisions), `projections` (read models) and `eventstore` (the log).
"""

__version__ = "0.1.0"
