"""Planner and executor agents (seed 004) at the edge: the runtime that drives sessions from the log, what
models are told, the offline local model and the content store."""
