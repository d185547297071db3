"""Reactions to documents: their activity (active, grace period, idle) decided from people joining and leaving."""
