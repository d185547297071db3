"""Planner sessions (seed 004): requests, plans of steps done by the planner or by read-only executors, and every
model call and tool call on the way — their event types (`events`) and the one rule of what a session does next
(`session`)."""
