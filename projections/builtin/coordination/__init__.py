"""The coordination projections: registry, chat, inbox, checkpoints, memories, locks and claims."""
