"""The projections agentlog ships: over the log itself, before any domain projection exists."""
