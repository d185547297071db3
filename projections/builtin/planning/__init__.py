"""The read side of planner sessions (`domains.planning`): the `planning` projection (sessions, turns, plans,
steps, transcripts and executions: `sessions`, its rules in `rows`) and the `tool_refusals` projection
(`refusals`)."""
