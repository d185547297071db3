"""Reactions to the log: handlers, the runner that hosts them, and (later) deciders, timers and effectors."""

from agentlog.handlers.handler import Handler, HandlerBatch
from agentlog.handlers.runner import HandlerInstance, HandlerRunner, HandlerState

__all__ = ["Handler", "HandlerBatch", "HandlerInstance", "HandlerRunner", "HandlerState"]
