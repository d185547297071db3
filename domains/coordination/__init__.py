"""Coordination of agents working on one repository: registry, chat, direct messages, checkpoints, memories,
locks and claims — their event types (`events`) and the pure rules both the projections and the deciders fold."""
